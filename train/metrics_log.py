"""metrics.csv and TensorBoard events of a run: one row per log interval."""

from __future__ import annotations

import csv
import os
from pathlib import Path
from typing import Any

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


class MetricsLog:
    """metrics.csv (rewritten up to a step on resume) + TensorBoard events."""

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        self.path = run_dir / "metrics.csv"
        rows: list[dict[str, str]] = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["env_steps"]) <= resume_step]
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)
        self.f = open(self.path, "a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=METRIC_FIELDS)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=(resume_step + 1) if resume_step is not None else None)
        except ImportError:  # tensorboard is part of [train]; tolerate its absence
            self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        self.w.writerow({k: _fmt(row.get(k)) for k in METRIC_FIELDS})
        self.f.flush()
        if self.tb is not None:
            step = int(row["env_steps"])
            for k, v in row.items():
                if k != "env_steps" and v is not None and np.isfinite(v):
                    self.tb.add_scalar(k, float(v), step)

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)
