"""What a learner learns from: the reward keys every learner shares.

``standardise_rewards`` (EPyMARL's default for its Q-learners and PPO): the
rewards of each sampled batch update a running mean and variance, and the
learner trains on ``(r - mean) / std``. Sparse third-party tasks (LBF pays at
most 0.5 per agent, once per successful episode) otherwise give rewards far
below a fresh network's Q noise, and bootstrapping turns that noise into a
flat overestimate; standardising brings the reward to the scale the
defaults (lr, initialisation, gradient clipping) were tuned for. The
statistics cover filled steps only (padding is not a reward of 0) and are
saved with checkpoints, so ``--resume`` stays exact. Evaluation, returns and
metrics always use the env's own reward.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np


@dataclass
class RewardConfig:
    """Reward keys shared by every learner (``--set standardise_rewards=true``)."""

    standardise_rewards: bool = False  # train on (r - running mean) / running std of the sampled rewards


class RunningMeanStd:
    """Running mean and variance of a stream of batches (parallel/Chan update), float64.

    Starts from mean 0, variance 1 with a tiny weight (``count`` 1e-4), as the
    field's implementations do, so the first batch sets the scale."""

    def __init__(self, count: float = 1e-4) -> None:
        self.mean, self.var, self.count = 0.0, 1.0, float(count)

    def update(self, x: np.ndarray) -> None:
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if x.size == 0:
            return
        b_mean, b_var, b_count = float(x.mean()), float(x.var()), float(x.size)
        delta = b_mean - self.mean
        total = self.count + b_count
        self.mean += delta * b_count / total
        m2 = self.var * self.count + b_var * b_count + delta**2 * self.count * b_count / total
        self.var, self.count = m2 / total, total

    def normalise(self, x: np.ndarray) -> np.ndarray:
        return (np.asarray(x, dtype=np.float64) - self.mean) / np.sqrt(self.var + 1e-12)

    def state(self) -> dict[str, float]:
        return {"mean": self.mean, "var": self.var, "count": self.count}

    def load(self, d: dict[str, Any]) -> None:
        self.mean, self.var, self.count = float(d["mean"]), float(d["var"]), float(d["count"])
