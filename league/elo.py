"""Elo ratings from a table of match results (a league's payoff counts).

A league plays many matches between a fixed set of members, not a stream of
games in time order, so the ratings are fitted to all results at once
(the Bradley–Terry maximum-likelihood fit, which is what Elo's update rule
approximates online): member ``i`` beats ``j`` with probability
``1 / (1 + 10 ** ((r_j - r_i) / 400))``; a draw counts as half a win for each.
The fit is unique only up to a shift, so the ratings are centred on
``base`` (1000 by default: the mean member has 1000). A small prior (one
drawn game against a member of the mean rating) keeps ratings finite for a
member that won or lost every game; its pull fades as games accumulate.

The result depends only on the counts, never on their order, so the same
league gives the same ratings whether its matches ran in one process or on
many workers.
"""

from __future__ import annotations

import numpy as np

SCALE = 400.0 / np.log(10.0)  # Elo points per unit of log-odds


def elo_ratings(wins: np.ndarray, draws: np.ndarray | None = None, base: float = 1000.0, prior_games: float = 1.0,
                iterations: int = 2000, tol: float = 1e-10) -> np.ndarray:
    """Ratings ``[m]`` from ``wins[i, j]`` (games ``i`` won against ``j``) and
    ``draws[i, j]`` (drawn games of ``i`` against ``j``; either triangle or both). Members that never played get ``base``."""
    w = np.asarray(wins, dtype=np.float64)
    m = w.shape[0]
    if w.shape != (m, m):
        raise ValueError(f"wins must be a square matrix, got shape {w.shape}")
    d = np.zeros_like(w) if draws is None else np.asarray(draws, dtype=np.float64)
    if d.shape != w.shape:
        raise ValueError(f"draws must have the shape of wins {w.shape}, got {d.shape}")
    if (w < 0).any() or (d < 0).any():
        raise ValueError("counts must be >= 0")
    dd = d + d.T  # drawn games between i and j, whichever seat each played
    games = w + w.T + dd
    score = w + 0.5 * dd  # points i took from j
    r = np.zeros(m)  # log-strengths; one minorise-maximise (Zermelo) sweep per iteration
    for _ in range(iterations):
        p = np.exp(r)
        # prior: prior_games / 2 points out of prior_games against a member of strength 1 (the mean)
        num = score.sum(axis=1) + 0.5 * prior_games
        den = (games / (p[:, None] + p[None, :] + 1e-300)).sum(axis=1) + prior_games / (p + 1.0)
        new = np.log(num) - np.log(den)
        new -= new.mean()
        if np.max(np.abs(new - r)) < tol:
            r = new
            break
        r = new
    return base + SCALE * r


def expected_score(r_i: float, r_j: float) -> float:
    """The probability that a member rated ``r_i`` beats one rated ``r_j`` (Elo's logistic curve)."""
    return 1.0 / (1.0 + 10.0 ** ((r_j - r_i) / 400.0))
