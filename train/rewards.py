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

Credit assignment (docs/credit.md). ``reward``: what each agent learns from:
``team`` (the env's reward), ``difference`` (D_i = R(s, a) - R(s, (a_-i, c_i)),
the team reward minus what it would have been had agent i played
``default_action`` c_i; from rolling the simulator back) or
``team+difference`` (the env's reward plus D_i). ``shaping``: a potential
Phi adds F = gamma * Phi(s') - Phi(s) to what is learned (``builtin``: the
env's own Phi; ``MODULE:FUNCTION``: a function of the env returning [B] or
[B, n]); ``shaping_per_agent`` shapes each agent by its own Phi_i. The
rollout computes D_i and F per step (``envs.credit``); ``LearnerBase``
composes them here, before the standardisation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from ..envs.credit import REWARD_MODES, CreditSpec
from .config import ConfigError


@dataclass
class RewardConfig:
    """Reward keys shared by every learner (``--set standardise_rewards=true``)."""

    standardise_rewards: bool = False  # train on (r - running mean) / running std of the sampled rewards
    reward: str = "team"  # team | difference | team+difference (docs/credit.md)
    default_action: str = "noop"  # c_i of the difference rewards: noop (the env's noop action) or an action index
    shaping: str = "none"  # none | builtin | MODULE:FUNCTION: potential-based shaping F = gamma * Phi(s') - Phi(s)
    shaping_per_agent: bool = False  # each agent shaped by its own potential Phi_i (needs Phi [B, n])

    def validate_rewards(self) -> None:
        if self.reward not in REWARD_MODES:
            raise ConfigError(f"reward must be one of {', '.join(REWARD_MODES)}, got {self.reward!r}")
        if self.default_action != "noop" and not (self.default_action.isdigit()):
            raise ConfigError(f"default_action must be noop or an action index >= 0, got {self.default_action!r}")
        if self.shaping not in ("none", "builtin") and ":" not in self.shaping:
            raise ConfigError(f"shaping must be none, builtin or MODULE:FUNCTION, got {self.shaping!r}")
        if self.shaping_per_agent and self.shaping == "none":
            raise ConfigError("shaping_per_agent=true needs a potential: set shaping=builtin or shaping=MODULE:FUNCTION")

    @property
    def uses_difference(self) -> bool:
        return self.reward != "team"

    def credit_spec(self, gamma: float) -> CreditSpec | None:
        """What the rollout must record for these keys (None: the env's reward alone)."""
        spec = CreditSpec(self.uses_difference, self.default_action, self.shaping, self.shaping_per_agent, float(gamma))
        return spec if spec.active else None


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
