"""A run's logs: ``metrics.csv`` (one row per log interval), ``eval.csv`` (one row
per evaluation during training) and TensorBoard events (training scalars under
``train/…``, evaluation scalars under ``eval/…``).

Both CSV files are rewritten up to the resume step when a run resumes, so a run
killed and resumed ends with the files of an uninterrupted one.
"""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import IO, Any

import numpy as np

METRIC_FIELDS = [
    "env_steps",
    "episodes",
    "updates",
    "return_mean",
    "return_min",
    "return_max",
    "episode_len",
    "epsilon",  # Q-learners' exploration (learner.exploration)
    "noise",  # continuous MADDPG's exploration noise std
    "loss",
    "td_abs",
    "q_taken",
    "grad_norm",
    "entropy",
    "clip_frac",
    "msgs_per_step",
    "msg_floats_per_step",
    "wall_s",
    "steps_per_s",
]
NONDETERMINISTIC = {"wall_s", "steps_per_s"}
# what a learner's update may report (Q-learners: the first four; actor-critics: td_abs is
# the value error |return - V|, q_taken the mean V, plus entropy and clip_frac)
LEARNER_METRICS = ("loss", "td_abs", "q_taken", "grad_norm", "entropy", "clip_frac")

# eval.csv: the greedy evaluation during training. The first seven columns are fixed
# (other tools read them); new columns go at the end. episodes and wall_s mean what they
# mean in metrics.csv (training episodes so far, training wall clock so far); eval_episodes
# and eval_seed say which episodes were played (marl-eval RUN --seed EVAL_SEED --episodes N --checkpoint STEP
# plays them again); eval_wall_s is the evaluation's own time.
EVAL_FIELDS = [
    "env_steps",
    "episodes",
    "return_mean",
    "return_std",
    "return_min",
    "return_max",
    "wall_s",
    "eval_episodes",
    "eval_seed",
    "episode_len",
    "eval_wall_s",
]
EVAL_NONDETERMINISTIC = {"wall_s", "eval_wall_s"}


class _CsvLog:
    """A CSV file of rows keyed by ``env_steps``; on resume, the rows up to that step are kept."""

    def __init__(self, path: Path, fields: list[str], resume_step: int | None) -> None:
        self.path, self.fields = path, fields
        rows: list[dict[str, str]] = []
        if resume_step is not None and path.exists():
            with open(path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["env_steps"]) <= resume_step]
        tmp = path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields, extrasaction="ignore")
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, path)
        self.f: IO[str] = open(path, "a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=fields)

    def write(self, row: dict[str, Any]) -> None:
        self.w.writerow({k: _fmt(row.get(k)) for k in self.fields})
        self.f.flush()

    def close(self) -> None:
        self.f.close()


class MetricsLog:
    """metrics.csv and eval.csv (each rewritten up to a step on resume) + TensorBoard events."""

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        self.metrics = _CsvLog(run_dir / "metrics.csv", METRIC_FIELDS, resume_step)
        self.evals = _CsvLog(run_dir / "eval.csv", EVAL_FIELDS, resume_step)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=(resume_step + 1) if resume_step is not None else None)
        except ImportError:  # tensorboard is part of [train]; tolerate its absence
            self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        """A training row: metrics.csv, and TensorBoard as ``train/<column>``."""
        self.metrics.write(row)
        self._scalars("train", row)

    def write_eval(self, row: dict[str, Any]) -> None:
        """An evaluation row: eval.csv, and TensorBoard as ``eval/<column>``."""
        self.evals.write(row)
        self._scalars("eval", {k: v for k, v in row.items() if k != "eval_seed"})

    def _scalars(self, prefix: str, row: dict[str, Any]) -> None:
        if self.tb is None:
            return
        step = int(row["env_steps"])
        for k, v in row.items():
            if k != "env_steps" and v is not None and np.isfinite(v):
                self.tb.add_scalar(f"{prefix}/{k}", float(v), step)

    def close(self) -> None:
        self.metrics.close()
        self.evals.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
