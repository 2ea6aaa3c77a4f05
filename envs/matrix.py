"""Repeated one-step cooperative matrix games from any payoff table.

Every agent picks an action at once and the whole team gets
``table[a_0, a_1, ..., a_{n-1}]``. The table has one axis per agent, so a
2-D table is a two-agent game and a 3-D table a three-agent one; an agent
whose axis is shorter than the longest has its extra actions masked out.

Two classic presets probe relative overgeneralisation (Claus & Boutilier
1998; Wei & Luke 2016). In the *climbing* game the optimum 11 sits next to
-30 penalties, so independent learners drift to the safe 7 or 5. In the
*penalty* game the two optima 10 share rows with a ``-k`` miscoordination
cost, and the safe 2 in the middle is tempting for large ``k``.

The game is played ``episode_limit`` times in a row. Agents observe a
constant 1 and a one-hot of the step index (all zeros once the episode is
over); the global state is the same vector. The fixed horizon is part of the
task, so the last step *terminates* the episode (no bootstrapping).
"""

from __future__ import annotations

import json
from typing import Any

import numpy as np

from .base import EnvError, EnvSpec, MultiAgentEnv

CLIMBING = [[11.0, -30.0, 0.0], [-30.0, 7.0, 0.0], [0.0, 6.0, 5.0]]


def penalty_table(k: float) -> list[list[float]]:
    """The penalty game: optima 10 on the anti-diagonal, ``-k`` for miscoordination."""
    return [[-k, 0.0, 10.0], [0.0, 2.0, 0.0], [10.0, 0.0, -k]]


PRESETS = ("climbing", "penalty")


def parse_payoff(payoff: Any) -> np.ndarray:
    """A payoff table (nested list, array or JSON string) as a float32 array.

    Raises EnvError for a ragged, empty or non-finite table."""
    if isinstance(payoff, str):
        try:
            payoff = json.loads(payoff)
        except json.JSONDecodeError as e:
            raise EnvError(f"matrix: payoff string is not valid JSON ({e.msg}); give e.g. '[[1,0],[0,1]]'") from None
    try:
        table = np.asarray(payoff, dtype=np.float64)
    except (ValueError, TypeError):
        raise EnvError("matrix: payoff must be a rectangular nested list of numbers (one axis per agent), e.g. [[1,0],[0,1]]") from None
    if table.ndim < 1 or table.size == 0:
        raise EnvError(f"matrix: payoff must have one axis per agent and at least one action each, got shape {table.shape}")
    if not np.isfinite(table).all():
        raise EnvError("matrix: payoff values must be finite numbers")
    return table.astype(np.float32)


class MatrixGameEnv(MultiAgentEnv):
    """A cooperative matrix game repeated ``episode_limit`` times.

    Give either ``payoff`` (one axis per agent) or ``preset``; with neither
    the climbing game is played.
    """

    snapshot_fields = ()  # the step counter (base class) is the only state

    def __init__(
        self,
        n_envs: int = 1,
        payoff: Any = None,
        preset: str | None = None,
        k: float = 100.0,
        episode_limit: int = 1,
    ) -> None:
        super().__init__(n_envs)
        if payoff is not None and preset is not None:
            raise EnvError(f"matrix: give either payoff or preset, not both (preset={preset!r})")
        if preset is None:
            table = parse_payoff(CLIMBING if payoff is None else payoff)
        elif preset == "climbing":
            table = parse_payoff(CLIMBING)
        elif preset == "penalty":
            table = parse_payoff(penalty_table(float(k)))
        else:
            raise EnvError(f"matrix: unknown preset {preset!r}; choose one of: {', '.join(PRESETS)} (or give payoff=...)")
        episode_limit = int(episode_limit)
        if episode_limit < 1:
            raise EnvError(f"matrix: episode_limit must be >= 1, got {episode_limit}")
        self.table = table
        self.n_agents = table.ndim
        n_actions = max(table.shape)
        self.spec = EnvSpec(
            name=preset or "matrix",
            n_agents=self.n_agents,
            obs_dim=1 + episode_limit,
            state_dim=1 + episode_limit,
            episode_limit=episode_limit,
            n_actions=n_actions,
            options={"payoff": table.tolist(), "preset": preset, "k": float(k), "episode_limit": episode_limit},
        )
        # agent i may use actions 0 .. table.shape[i]-1
        self._agent_avail = np.arange(n_actions)[None, :] < np.asarray(table.shape)[:, None]  # [n, n_actions]
        # row j = observation at step j: [1, onehot(j)]; the last row (episode over) is [1, 0...0]
        self._obs_rows = np.zeros((episode_limit + 1, 1 + episode_limit), dtype=np.float32)
        self._obs_rows[:, 0] = 1.0
        self._obs_rows[np.arange(episode_limit), 1 + np.arange(episode_limit)] = 1.0

    def _counterfactual_env(self) -> MultiAgentEnv:
        """Built from the table itself: ``spec.options`` of a preset names both
        ``payoff`` and ``preset``, which the constructor refuses together."""
        if self._cf_env is None:
            self._cf_env = MatrixGameEnv(self.n_envs * self.n_agents, payoff=self.table, episode_limit=self.spec.episode_limit)
            self._cf_env.spec = self.spec
        return self._cf_env

    def _reset_slots(self, idx: np.ndarray) -> None:
        pass  # the only state is the step counter, which the base class resets

    def _step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        # inactive slots may carry any in-range action; clip so the lookup never fails
        acts = np.minimum(actions, np.asarray(self.table.shape) - 1)
        reward = self.table[tuple(acts.T)]  # [B]
        terminated = self._t + 1 >= self.spec.episode_limit
        return np.repeat(reward[:, None], self.n_agents, axis=1), terminated

    def _obs(self) -> np.ndarray:
        row = self._obs_rows[np.minimum(self._t, self.spec.episode_limit)]  # [B, obs_dim]
        return np.repeat(row[:, None, :], self.n_agents, axis=1)

    def _state(self) -> np.ndarray:
        return self._obs_rows[np.minimum(self._t, self.spec.episode_limit)]

    def _avail(self) -> np.ndarray:
        return np.broadcast_to(self._agent_avail, (self.n_envs, *self._agent_avail.shape)).copy()
