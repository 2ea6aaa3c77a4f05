"""Prioritised fictitious self-play (PFSP): which past members a learner should play.

Fictitious self-play draws past opponents uniformly. PFSP (AlphaStar, Vinyals
et al. 2019) weights each candidate opponent by a function ``f`` of the
learner's win rate ``p`` against it, then normalises: opponents the learner
already beats are played rarely, so the games go where there is something to
learn.

- ``hard``: ``f(p) = (1 - p) ** k`` (``k = 2`` by default): mostly the opponents
  the learner still loses to. AlphaStar's main agents use it against the whole
  league.
- ``variance``: ``f(p) = p (1 - p)``: mostly opponents it beats about half the
  time, a curriculum for a learner that is far behind (AlphaStar's main
  exploiters, when they cannot yet beat the main agent).

When every weight is 0 (the learner beats every candidate, or loses to every
one under ``variance``) there is nothing to prefer, and the weights are uniform.
"""

from __future__ import annotations

import numpy as np

from .opponents import LeagueError

WEIGHTINGS = ("hard", "variance")


def pfsp_weights(win_rates: np.ndarray | list[float], weighting: str = "hard", k: float = 2.0) -> np.ndarray:
    """Normalised probabilities over the candidates, from the learner's win rates ``p`` in [0, 1]."""
    p = np.asarray(win_rates, dtype=np.float64)
    if p.size == 0:
        return p
    if ((p < 0) | (p > 1)).any():
        raise LeagueError(f"win rates must be in [0, 1], got {p.tolist()}")
    if weighting == "hard":
        if k <= 0:
            raise LeagueError(f"pfsp k must be > 0, got {k}")
        f = (1.0 - p) ** k
    elif weighting == "variance":
        f = p * (1.0 - p)
    else:
        raise LeagueError(f"pfsp weighting must be one of {', '.join(WEIGHTINGS)}, got {weighting!r}")
    total = f.sum()
    if total <= 1e-12:
        return np.full(p.size, 1.0 / p.size)
    return f / total
