"""Fictitious self-play: play the newest snapshot often, the past ones sometimes.

With probability ``latest`` an episode's opponent is the newest snapshot;
otherwise it is drawn uniformly from the older ones (OpenAI Five's 80 % / 20 %
split is the default). The past opponents keep the learner from forgetting
how to beat strategies it has moved away from, and the *population mixture*
(the uniform mixture of all snapshots, as in fictitious play's average
strategy) approaches a Nash equilibrium of a two-player zero-sum game even
while the newest policy keeps moving. With a single snapshot the newest one
plays every episode.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .opponents import LeagueError


@dataclass(frozen=True)
class FictitiousSelfPlay:
    """``latest``: probability of the newest member; the rest is spread evenly over the older ones."""

    latest: float = 0.8

    def __post_init__(self) -> None:
        if not 0.0 <= self.latest <= 1.0:
            raise LeagueError(f"fsp latest probability must be in [0, 1], got {self.latest}")

    def probabilities(self, n_members: int) -> np.ndarray:
        if n_members == 1:
            return np.ones(1)
        p = np.full(n_members, (1.0 - self.latest) / (n_members - 1))
        p[-1] = self.latest
        return p


def population_mixture(strategies: np.ndarray) -> np.ndarray:
    """The meta-strategy whose exploitability FSP reports: the uniform mixture of the
    members' mixed strategies ``[k, A]`` (each member equally likely to be picked
    before a game, then playing its own mixed strategy)."""
    return np.asarray(strategies, dtype=np.float64).mean(axis=0)
