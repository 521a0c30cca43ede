"""Compare finished runs across algorithms and tasks.

    python -m ppo_core.compare multirun/2026-11-21/10-00-00 [more run dirs ...] [--out DIR]

Reads every ``summary.json`` below the given directories (one per run, as ``run_training`` writes
them; peers may write the same keys) and reports, per task and algorithm:

- success rate: runs whose final evaluation reaches the task's standard threshold (a run stopped early
  by ``stop_at_return`` ends on an evaluation at or above it);
- final return as the interquartile mean (IQM) over seeds with a 95% bootstrap confidence interval
  (Agarwal et al. 2021, "Deep RL at the Edge of the Statistical Precipice", §4);
- median env steps and median training wall seconds to the first evaluation at or above the
  threshold, over the runs that got there.

Across tasks, final returns are normalised as (R − R_random) / (R_threshold − R_random), so 0 is the
uniform-random policy and 1 the threshold, and aggregated as an IQM with a stratified bootstrap CI
(seeds resampled within each task). Intervals come from ``scipy.stats.bootstrap`` with a fixed seed
rather than rliable, whose dependency ``arch`` fails to import under pandas 3; scipy resamples each
task's sample independently, which is exactly rliable's stratified bootstrap.

Writes ``results.csv``, ``results.md``, ``curves_<task>.png`` (mean evaluation return with a 95% CI
band across seeds against env steps) and ``aggregate.png`` into ``--out`` (default: the first
directory's ``compare/``).
"""

from __future__ import annotations

import argparse
import csv
import json
import math
import statistics
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from scipy import stats

THRESHOLDS = {
    "CartPole-v1": 475.0,
    "Acrobot-v1": -100.0,
    "MountainCar-v0": -110.0,
    "MountainCarContinuous-v0": 90.0,
    "Pendulum-v1": -200.0,
}
# Mean return of the uniform-random policy over 100 episodes (seeds 0-99, action_space.seed(0)),
# measured with gymnasium 1.4: the 0 of the normalised score.
RANDOM_RETURNS = {
    "CartPole-v1": 23.7,
    "Acrobot-v1": -497.1,
    "MountainCar-v0": -200.0,
    "MountainCarContinuous-v0": -33.3,
    "Pendulum-v1": -1207.6,
}
CONFIDENCE = 0.95
N_RESAMPLES = 2000
BOOTSTRAP_SEED = 0


@dataclass
class Run:
    algo: str
    task: str
    seed: int
    final_return: float
    eval_history: list[dict[str, float]]
    path: Path


@dataclass
class Row:
    task: str
    algo: str
    runs: int
    successes: int
    iqm: float
    ci_low: float
    ci_high: float
    reached: int
    median_steps_to_threshold: float | None
    median_seconds_to_threshold: float | None

    @property
    def success_rate(self) -> float:
        return self.successes / self.runs


# ------------------------------------------------------------------------------------------- loading
def load_runs(directories: list[Path]) -> list[Run]:
    """Every run below ``directories`` with a final evaluation; runs without one are reported and skipped."""
    runs = []
    for directory in directories:
        for path in sorted(Path(directory).rglob("summary.json")):
            try:
                summary = json.loads(path.read_text())
                if summary.get("eval_mean_return") is None:
                    print(f"skipped {path}: no evaluation", file=sys.stderr)
                    continue
                config = summary["config"]
                if "id" not in config["env"]:  # e.g. the text bandit: no standard threshold to judge it by
                    print(f"skipped {path}: env kind {config['env'].get('kind')!r} has no Gymnasium id",
                          file=sys.stderr)
                    continue
                runs.append(Run(config["algo"]["name"], config["env"]["id"], int(config["seed"]),
                                float(summary["eval_mean_return"]), list(summary.get("eval_history", [])), path))
            except (OSError, ValueError, KeyError, TypeError, AttributeError) as error:  # json errors are ValueErrors
                reason = f"missing field {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
                print(f"skipped {path}: not a readable run summary ({type(error).__name__}: {reason})",
                      file=sys.stderr)
    return runs


def group(runs: list[Run]) -> dict[tuple[str, str], list[Run]]:
    """Runs keyed by (task, algorithm), both sorted."""
    groups: dict[tuple[str, str], list[Run]] = {}
    for run in sorted(runs, key=lambda r: (r.task, r.algo, r.seed)):
        groups.setdefault((run.task, run.algo), []).append(run)
    return groups


# ------------------------------------------------------------------------------------------- statistics
def iqm(x: np.ndarray, axis: int = -1) -> np.ndarray:
    """Interquartile mean: the mean of the middle 50% (25% trimmed from each end)."""
    return stats.trim_mean(x, 0.25, axis=axis)


def _pooled_iqm(*samples: np.ndarray, axis: int = -1) -> np.ndarray:
    return iqm(np.concatenate(samples, axis=axis), axis=axis)


def iqm_with_ci(samples: list[np.ndarray]) -> tuple[float, float, float]:
    """IQM of the pooled samples and its 95% percentile-bootstrap interval; each sample (a task's
    seeds) is resampled on its own, the stratified bootstrap. A task with one seed gives no interval."""
    point = float(_pooled_iqm(*samples))
    if min(len(s) for s in samples) < 2:
        return point, math.nan, math.nan
    result = stats.bootstrap(tuple(samples), _pooled_iqm, confidence_level=CONFIDENCE, n_resamples=N_RESAMPLES,
                             method="percentile", vectorized=True, random_state=BOOTSTRAP_SEED)
    return point, float(result.confidence_interval.low), float(result.confidence_interval.high)


def mean_band(curves: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Mean over seeds (rows) of curves (S, P) and a 95% percentile-bootstrap band per point."""
    mean = curves.mean(axis=0)
    if curves.shape[0] < 2:
        return mean, mean, mean
    result = stats.bootstrap((curves,), np.mean, axis=0, confidence_level=CONFIDENCE, n_resamples=N_RESAMPLES,
                             method="percentile", random_state=BOOTSTRAP_SEED)
    low = np.where(np.isnan(result.confidence_interval.low), mean, result.confidence_interval.low)
    high = np.where(np.isnan(result.confidence_interval.high), mean, result.confidence_interval.high)
    return mean, low, high


def first_at_threshold(run: Run, threshold: float) -> dict[str, float] | None:
    return next((e for e in run.eval_history if e["mean_reward"] >= threshold), None)


def normalised(value: float | np.ndarray, task: str) -> float | np.ndarray:
    """(R − R_random) / (R_threshold − R_random): 0 for the random policy, 1 at the threshold."""
    return (value - RANDOM_RETURNS[task]) / (THRESHOLDS[task] - RANDOM_RETURNS[task])


def _median(values: list[float]) -> float | None:
    return statistics.median(values) if values else None


def summarise(task: str, algo: str, runs: list[Run]) -> Row:
    finals = np.array([r.final_return for r in runs])
    threshold = THRESHOLDS.get(task, math.inf)
    point, low, high = iqm_with_ci([finals])
    firsts = [e for e in (first_at_threshold(r, threshold) for r in runs) if e is not None]
    return Row(task, algo, len(runs), int((finals >= threshold).sum()), point, low, high, len(firsts),
               _median([e["env_steps"] for e in firsts]), _median([e["wall_seconds"] for e in firsts]))


def aggregate(groups: dict[tuple[str, str], list[Run]]) -> dict[str, tuple[float, float, float, int]]:
    """Per algorithm: IQM of normalised final returns over the known tasks, its stratified CI, and
    the number of tasks behind it."""
    by_algo: dict[str, list[np.ndarray]] = {}
    for (task, algo), runs in groups.items():
        if task in RANDOM_RETURNS:
            by_algo.setdefault(algo, []).append(normalised(np.array([r.final_return for r in runs]), task))
    return {algo: (*iqm_with_ci(samples), len(samples)) for algo, samples in sorted(by_algo.items())}


# ------------------------------------------------------------------------------------------- output
COLUMNS = ["task", "algo", "runs", "success_rate", "iqm_final_return", "ci_low", "ci_high", "reached_threshold",
           "median_env_steps_to_threshold", "median_wall_seconds_to_threshold"]


def _fmt(value: float | None, digits: int = 1) -> str:
    return "–" if value is None or (isinstance(value, float) and math.isnan(value)) else f"{value:.{digits}f}"


def markdown_table(rows: list[Row], aggregates: dict[str, tuple[float, float, float, int]]) -> str:
    lines = ["| task | algo | success | IQM final return [95% CI] | median env steps to threshold | "
             "median wall s to threshold |", "|---|---|---|---|---|---|"]
    for r in rows:
        reached = f" ({r.reached}/{r.runs} runs)" if r.reached else ""
        lines.append(f"| {r.task} (≥ {_fmt(THRESHOLDS.get(r.task))}) | {r.algo} | {r.successes}/{r.runs} | "
                     f"{_fmt(r.iqm)} [{_fmt(r.ci_low)}, {_fmt(r.ci_high)}] | "
                     f"{_fmt(r.median_steps_to_threshold, 0)}{reached} | {_fmt(r.median_seconds_to_threshold)} |")
    if aggregates:
        lines += ["", "| algo | tasks | IQM normalised final return [95% stratified CI] |", "|---|---|---|"]
        lines += [f"| {algo} | {n} | {point:.2f} [{_fmt(low, 2)}, {_fmt(high, 2)}] |"
                  for algo, (point, low, high, n) in aggregates.items()]
        lines.append("")
        lines.append("Normalised return: (R − R_random) / (R_threshold − R_random); 0 = uniform-random policy, "
                     "1 = threshold.")
    return "\n".join(lines)


def write_csv(rows: list[Row], path: Path) -> None:
    with open(path, "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(COLUMNS)
        for r in rows:
            writer.writerow([r.task, r.algo, r.runs, r.success_rate, r.iqm, r.ci_low, r.ci_high, r.reached,
                             r.median_steps_to_threshold, r.median_seconds_to_threshold])


def curves_on_grid(runs: list[Run]) -> tuple[np.ndarray, np.ndarray]:
    """Evaluation returns of each run (S, P) on the env steps of the run that evaluated longest,
    interpolated where runs evaluated at other steps; a run that stopped early (``stop_at_return``)
    holds its last evaluation to the end of the grid."""
    histories = [r.eval_history for r in runs if r.eval_history]
    grid = np.array([e["env_steps"] for e in max(histories, key=lambda h: h[-1]["env_steps"])], dtype=float)
    curves = [np.interp(grid, [e["env_steps"] for e in h], [e["mean_reward"] for e in h]) for h in histories]
    return grid, np.stack(curves)


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def plot_task(task: str, by_algo: dict[str, list[Run]], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 4))
    for algo, runs in by_algo.items():
        if not any(r.eval_history for r in runs):
            continue
        steps, curves = curves_on_grid(runs)
        mean, low, high = mean_band(curves)
        line, = ax.plot(steps, mean, label=f"{algo} ({curves.shape[0]} seeds)")
        ax.fill_between(steps, low, high, color=line.get_color(), alpha=0.2)
    if task in THRESHOLDS:
        ax.axhline(THRESHOLDS[task], color="grey", linestyle="--", linewidth=1, label="threshold")
    ax.set_xlabel("env steps")
    ax.set_ylabel("evaluation mean return")
    ax.set_title(f"{task}: mean and 95% bootstrap CI over seeds")
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def plot_aggregate(aggregates: dict[str, tuple[float, float, float, int]], path: Path) -> None:
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6, 0.6 * len(aggregates) + 1.5))
    names = list(aggregates)
    for i, algo in enumerate(names):
        point, low, high, _ = aggregates[algo]
        if not math.isnan(low):
            ax.plot([low, high], [i, i], linewidth=6, alpha=0.4, color=f"C{i}")
        ax.plot([point], [i], marker="|", markersize=18, color=f"C{i}")
    ax.set_yticks(range(len(names)), names)
    ax.axvline(1.0, color="grey", linestyle="--", linewidth=1)
    ax.set_xlabel("IQM of normalised final return, (R − R_random) / (R_threshold − R_random)")
    ax.set_title("All tasks: IQM and 95% stratified-bootstrap CI")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def _file_name(task: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in task)


def compare(directories: list[Path], out: Path) -> tuple[list[Row], dict[str, tuple[float, float, float, int]]]:
    """Load, summarise and write tables and plots; returns the rows and the per-algorithm aggregates."""
    runs = load_runs(directories)
    if not runs:
        raise FileNotFoundError(f"no summary.json with an evaluation below {', '.join(map(str, directories))}")
    groups = group(runs)
    rows = [summarise(task, algo, group_runs) for (task, algo), group_runs in groups.items()]
    aggregates = aggregate(groups)
    out.mkdir(parents=True, exist_ok=True)
    write_csv(rows, out / "results.csv")
    (out / "results.md").write_text(markdown_table(rows, aggregates) + "\n")
    for task in sorted({task for task, _ in groups}):
        plot_task(task, {algo: r for (t, algo), r in groups.items() if t == task}, out / f"curves_{_file_name(task)}.png")
    if aggregates:
        plot_aggregate(aggregates, out / "aggregate.png")
    return rows, aggregates


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("directories", type=Path, nargs="+", help="multirun or run directories to search")
    parser.add_argument("--out", type=Path, default=None, help="where to write tables and plots")
    args = parser.parse_args(argv)
    out = args.out or args.directories[0] / "compare"
    try:
        rows, aggregates = compare(args.directories, out)
    except FileNotFoundError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    print(markdown_table(rows, aggregates))
    print(f"\ntables and plots written to {out}")


if __name__ == "__main__":
    main()
