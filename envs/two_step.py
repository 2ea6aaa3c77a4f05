"""The two-step cooperative matrix game of the QMIX paper (Rashid et al. 2018).

Two agents, two actions. In state 1 agent 0's action picks the next state:
action 0 -> state 2A, where every joint action pays 7; action 1 -> state 2B,
which pays ``[[0, 1], [1, 8]]``. The optimum is 8 (2B, then both play 1);
VDN's additive factorisation cannot represent it and settles at 7.
Both agents observe the state one-hot; the global state is the same one-hot.
"""

from __future__ import annotations

import numpy as np

from .base import EnvSpec, MultiAgentEnv

PAYOFF_2B = np.array([[0.0, 1.0], [1.0, 8.0]], dtype=np.float32)
PAYOFF_2A = 7.0


class TwoStepEnv(MultiAgentEnv):
    snapshot_fields = ("_s",)

    def __init__(self, n_envs: int = 1) -> None:
        super().__init__(n_envs)
        self.spec = EnvSpec(name="two_step", n_agents=2, obs_dim=3, state_dim=3, episode_limit=2, n_actions=2)
        self._s = np.zeros(self.n_envs, dtype=np.int64)  # 0 = start, 1 = 2A, 2 = 2B

    def _reset_slots(self, idx: np.ndarray) -> None:
        self._s[idx] = 0

    def _step(self, actions: np.ndarray, active: np.ndarray):
        reward = np.zeros(self.n_envs, dtype=np.float32)
        first = active & (self._s == 0)
        second = active & (self._s > 0)
        in_2a = second & (self._s == 1)
        in_2b = second & (self._s == 2)
        reward[in_2a] = PAYOFF_2A
        reward[in_2b] = PAYOFF_2B[actions[in_2b, 0], actions[in_2b, 1]]
        self._s[first] = np.where(actions[first, 0] == 0, 1, 2)
        terminated = second
        return np.repeat(reward[:, None], 2, axis=1), terminated

    def _obs(self) -> np.ndarray:
        onehot = np.eye(3, dtype=np.float32)[self._s]
        return np.repeat(onehot[:, None, :], 2, axis=1)

    def _state(self) -> np.ndarray:
        return np.eye(3, dtype=np.float32)[self._s]
