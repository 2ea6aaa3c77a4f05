"""Naive self-play: every episode is played against the newest snapshot.

The learner best-responds to its latest self. In a game with a cycle
(rock-paper-scissors) that chases the cycle round and round: the policy that
beats the last snapshot is beaten by the next one, and nothing remembers why
an older strategy lost. ``docs/league.md`` shows the exploitability that
never settles.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class NaiveSelfPlay:
    """The opponent distribution of naive self-play: all mass on the newest member."""

    def probabilities(self, n_members: int) -> np.ndarray:
        p = np.zeros(n_members)
        p[-1] = 1.0
        return p
