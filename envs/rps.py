"""A two-team zero-sum matrix game with a cycle: biased rock-paper-scissors.

Team 0 (agent 0, the row player) and team 1 (agent 1, the column player) pick
an action at once; agent 0 gets ``payoff[a_0, a_1]`` and agent 1 its
negative. The default payoff is rock-paper-scissors with one biased edge,
rock beating scissors pays 2::

              rock  paper  scissors
    rock        0    -1       2
    paper       1     0      -1
    scissors   -2     1       0

The matrix is antisymmetric, so the game is symmetric and its value is 0.
Its unique Nash equilibrium is (1/4, 1/2, 1/4): the bias makes paper the
action to play most, because it answers the now-tempting rock. Pure
strategies are exploitable by 1 (rock, paper) or 2 (scissors); the uniform
strategy by 1/3 (``exploitability`` below computes it exactly).

Both agents observe the same constant vector (as in ``envs/matrix.py``: a 1
and a one-hot of the step index), so a policy trained in one seat plays the
other seat unchanged: that is what self-play in ``marl_edge.league`` relies on.

``exploitability`` and ``solve_zero_sum`` are exact: they solve the
maximin linear programme by enumerating square supports, which is cheap for
the small matrices of matrix games (numpy only).
"""

from __future__ import annotations

import itertools
from typing import Any

import numpy as np

from .base import EnvError, EnvSpec, MultiAgentEnv
from .matrix import parse_payoff

BIASED_RPS = [[0.0, -1.0, 2.0], [1.0, 0.0, -1.0], [-2.0, 1.0, 0.0]]
ACTION_NAMES = ("rock", "paper", "scissors")
MAX_ACTIONS = 8  # support enumeration grows as 4^n; matrix games stay far below


def solve_zero_sum(payoff: Any) -> tuple[float, np.ndarray]:
    """The value of the zero-sum game ``payoff`` (row player's gains) and a maximin
    strategy of the row player.

    Why support enumeration: an optimal vertex of the maximin LP
    ``max v s.t. x^T A >= v, sum x = 1, x >= 0`` is fixed by a row support ``I``
    and as many tight columns ``J``, where ``x_I^T A[I, J] = v`` and
    ``sum x_I = 1`` is a square linear system. Solving every such system and
    keeping the best feasible ``x`` gives the exact optimum without an LP solver.
    """
    a = np.asarray(parse_payoff(payoff), dtype=np.float64)
    if a.ndim != 2:
        raise EnvError(f"rps: a two-player payoff matrix is needed, got shape {a.shape}")
    m, n = a.shape
    if max(m, n) > MAX_ACTIONS:
        raise EnvError(f"rps: exact solving is for matrix games up to {MAX_ACTIONS} actions a side, got {m}x{n}")
    best_v, best_x = -np.inf, np.full(m, 1.0 / m)
    for k in range(1, min(m, n) + 1):
        for rows in itertools.combinations(range(m), k):
            for cols in itertools.combinations(range(n), k):
                # unknowns (x_rows, v): A[rows, cols]^T x - v = 0 (k equations), sum x = 1
                lhs = np.zeros((k + 1, k + 1))
                lhs[:k, :k] = a[np.ix_(rows, cols)].T
                lhs[:k, k] = -1.0
                lhs[k, :k] = 1.0
                rhs = np.zeros(k + 1)
                rhs[k] = 1.0
                try:
                    sol = np.linalg.solve(lhs, rhs)
                except np.linalg.LinAlgError:
                    continue
                if (sol[:k] < -1e-9).any():
                    continue
                x = np.zeros(m)
                x[list(rows)] = np.clip(sol[:k], 0.0, None)
                x /= x.sum()
                guaranteed = float((x @ a).min())
                if guaranteed > best_v + 1e-12:
                    best_v, best_x = guaranteed, x
    return best_v, best_x


def exploitability(strategy: Any, payoff: Any = BIASED_RPS, seat: int = 0) -> float:
    """How much a best-responding opponent gains against ``strategy`` beyond the
    game value: ``v - min_j (x^T A)_j`` for the row seat (``seat=0``), and the
    same with ``-A^T`` for the column seat. 0 exactly at a Nash strategy.

    ``strategy`` is a probability vector over the seat's actions (a mixture of
    policies is the average of their vectors, weighted by the mixture)."""
    a = np.asarray(parse_payoff(payoff), dtype=np.float64)
    if seat == 1:
        a = -a.T
    x = np.asarray(strategy, dtype=np.float64).reshape(-1)
    if x.shape[0] != a.shape[0] or (x < -1e-9).any() or abs(x.sum() - 1.0) > 1e-6:
        raise EnvError(f"rps: a strategy is a probability vector of length {a.shape[0]}, got {np.round(x, 4).tolist()}")
    value, _ = solve_zero_sum(a)
    return float(value - (x @ a).min())


class RPSEnv(MultiAgentEnv):
    """Biased rock-paper-scissors (or any two-player zero-sum matrix game), two teams of one.

    ``payoff``: the row player's gains (nested list or JSON string);
    ``episode_limit``: rounds per episode (each round terminates on the last step).
    """

    def __init__(self, n_envs: int = 1, payoff: Any = None, episode_limit: int = 1) -> None:
        super().__init__(n_envs)
        table = parse_payoff(BIASED_RPS if payoff is None else payoff)
        if table.ndim != 2:
            raise EnvError(f"rps: payoff must be a matrix (the row player's gains), got shape {table.shape}")
        episode_limit = int(episode_limit)
        if episode_limit < 1:
            raise EnvError(f"rps: episode_limit must be >= 1, got {episode_limit}")
        self.table = table
        n_actions = max(table.shape)
        self.spec = EnvSpec(
            name="rps",
            n_agents=2,
            obs_dim=1 + episode_limit,
            state_dim=1 + episode_limit,
            episode_limit=episode_limit,
            n_actions=n_actions,
            shared_reward=False,
            options={"payoff": table.tolist(), "episode_limit": episode_limit},
            teams=((0,), (1,)),
        )
        self._agent_avail = np.arange(n_actions)[None, :] < np.asarray(table.shape)[:, None]  # [2, n_actions]
        self._obs_rows = np.zeros((episode_limit + 1, 1 + episode_limit), dtype=np.float32)
        self._obs_rows[:, 0] = 1.0
        self._obs_rows[np.arange(episode_limit), 1 + np.arange(episode_limit)] = 1.0

    def _reset_slots(self, idx: np.ndarray) -> None:
        pass  # the only state is the step counter, which the base class resets

    def _step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        acts = np.minimum(actions, np.asarray(self.table.shape) - 1)  # inactive slots may carry any action
        r = self.table[acts[:, 0], acts[:, 1]]
        terminated = self._t + 1 >= self.spec.episode_limit
        return np.stack([r, -r], axis=1), terminated

    def _obs(self) -> np.ndarray:
        row = self._obs_rows[np.minimum(self._t, self.spec.episode_limit)]
        return np.repeat(row[:, None, :], 2, axis=1)

    def _state(self) -> np.ndarray:
        return self._obs_rows[np.minimum(self._t, self.spec.episode_limit)]

    def _avail(self) -> np.ndarray:
        return np.broadcast_to(self._agent_avail, (self.n_envs, *self._agent_avail.shape)).copy()
