"""TensorBoard scalars keyed as CleanRL and TRL name them; the x-axis is env steps."""

from __future__ import annotations

from pathlib import Path

from torch.utils.tensorboard import SummaryWriter


class RunLogger:
    def __init__(self, run_dir: Path):
        self.writer = SummaryWriter(log_dir=str(Path(run_dir) / "tb"))
        self.recent_return = float("nan")

    def log(self, scalars: dict[str, float], step: int) -> None:
        for key, value in scalars.items():
            self.writer.add_scalar(key, value, step)
        self.recent_return = scalars.get("charts/episodic_return", self.recent_return)

    def close(self) -> None:
        self.writer.close()
