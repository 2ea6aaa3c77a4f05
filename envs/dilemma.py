"""Iterated prisoner's dilemma: a mixed-motive game with per-agent rewards.

Two agents play ``episode_limit`` rounds. Action 0 cooperates, 1 defects.
The payoff (row player first) is the classic T > R > P > S with 2R > T + S:

                 other C        other D
    me C         R = 3          S = 0
    me D         T = 5          P = 1

Each agent is paid its own payoff (``shared_reward`` is False), so per-agent
critics see different rewards. Defecting dominates in a single round, while
mutual cooperation pays each agent 3 per round against 1 for mutual
defection. Both agents observe the previous round's joint action (one-hot of
4, zeros in the first round), which of the two they are, and t / T; the
state is the same without the "which agent" bit.
"""

from __future__ import annotations

import numpy as np

from .base import EnvError, EnvSpec, MultiAgentEnv

PAYOFF = np.array([[[3.0, 3.0], [0.0, 5.0]], [[5.0, 0.0], [1.0, 1.0]]], dtype=np.float32)  # [a0, a1] -> (r0, r1)


class DilemmaEnv(MultiAgentEnv):
    snapshot_fields = ("_last",)

    def __init__(self, n_envs: int = 1, episode_limit: int = 10) -> None:
        super().__init__(n_envs)
        if isinstance(episode_limit, bool) or not isinstance(episode_limit, (int, np.integer)) or not 1 <= episode_limit <= 10_000:
            raise EnvError(f"dilemma: episode_limit must be an int in 1..10000, got {episode_limit!r}")
        self.T = int(episode_limit)
        self.spec = EnvSpec(
            name="dilemma", n_agents=2, obs_dim=4 + 2 + 1, state_dim=4 + 1, episode_limit=self.T, n_actions=2,
            shared_reward=False, noop_action=0, options={"episode_limit": self.T},
        )
        self._last = np.full(self.n_envs, -1, dtype=np.int64)  # previous joint action 0..3, -1 before the first round

    def _reset_slots(self, idx: np.ndarray) -> None:
        self._last[idx] = -1

    def _step(self, actions: np.ndarray, active: np.ndarray):
        reward = PAYOFF[actions[:, 0], actions[:, 1]]  # [B, 2]
        self._last = np.where(active, actions[:, 0] * 2 + actions[:, 1], self._last)
        return reward, self._t + 1 >= self.T

    def _joint(self) -> np.ndarray:
        j = np.zeros((self.n_envs, 4), dtype=np.float32)
        has = self._last >= 0
        j[np.flatnonzero(has), self._last[has]] = 1.0
        return j

    def _obs(self) -> np.ndarray:
        j = self._joint()
        obs = np.zeros((self.n_envs, 2, 7), dtype=np.float32)
        obs[:, :, :4] = j[:, None]
        obs[:, 0, 4] = obs[:, 1, 5] = 1.0
        obs[:, :, 6] = (self._t / self.T)[:, None]
        return obs

    def _state(self) -> np.ndarray:
        return np.concatenate([self._joint(), (self._t / self.T)[:, None].astype(np.float32)], axis=1)
