"""TensorBoard scalars keyed as CleanRL and TRL name them; the x-axis is env steps."""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


class RunLogger:
    def __init__(self, run_dir: Path, enabled: bool = True):
        """``enabled=False`` writes nothing (the ranks other than 0 of a data-parallel run)."""
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb")) if enabled else None
        self.recent_return = float("nan")

    def log(self, scalars: dict[str, float], step: int) -> None:
        if self.writer is not None:
            for key, value in scalars.items():
                self.writer.add_scalar(key, value, step)
        self.recent_return = scalars.get("charts/episodic_return", self.recent_return)

    def close(self) -> None:
        if self.writer is not None:
            self.writer.close()
