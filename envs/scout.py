"""Scout: one agent sees the target, the others must be told.

Each episode draws a hidden target ``g`` out of ``n_targets`` and one scout
among the ``n`` agents; both change every episode. Every step each agent
names a target (action ``0..n_targets-1``); the team reward of the step is
the fraction of agents that named ``g``. Only the scout's observation holds
``g``; every agent knows whether it is the scout.

Why talking is necessary, in numbers. Nothing a non-scout observes depends on
``g`` (no agent sees another's actions), so without messages it can only
guess: a chance of ``1/K`` per step. The best a silent team can do is

    silent ceiling = T * (1 + (n - 1) / K) / n          (n=4, K=4, T=4: 1.75)

A message sent at step ``t`` is heard at ``t + 1`` (docs/design.md contract 3), so
step 0 is a guess for everyone but the scout even with perfect talk:

    talking ceiling = (1 + (n - 1) / K) / n + (T - 1)   (n=4, K=4, T=4: 3.4375)

Random play returns ``T / K`` (1.0). With a sparse topology (``knn:K``,
``range:R``) some agents do not hear the scout directly and need relays,
one step per hop. Agents stand still at random positions in the unit square
(drawn per episode), which is what ``knn`` and ``range`` use.

obs   [is_scout, one_hot(g) if scout else 0 (K), t / T]          1 + K + 1
state [one_hot(g) (K), one_hot(scout) (n), t / T]                K + n + 1
"""

from __future__ import annotations

import numpy as np

from .base import EnvError, EnvSpec, MultiAgentEnv


def silent_ceiling(n_agents: int, n_targets: int, episode_limit: int) -> float:
    """Best expected return of a team without messages."""
    return episode_limit * (1 + (n_agents - 1) / n_targets) / n_agents


def talking_ceiling(n_agents: int, n_targets: int, episode_limit: int) -> float:
    """Best expected return with one-step-delayed messages everyone hears."""
    return (1 + (n_agents - 1) / n_targets) / n_agents + (episode_limit - 1)


class ScoutEnv(MultiAgentEnv):
    snapshot_fields = ("_goal", "_scout", "_pos")

    def __init__(self, n_envs: int = 1, n_agents: int = 4, n_targets: int = 4, episode_limit: int = 4) -> None:
        super().__init__(n_envs)
        for name, v, lo, hi in (("n_agents", n_agents, 2, 64), ("n_targets", n_targets, 2, 32), ("episode_limit", episode_limit, 2, 1000)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or not lo <= v <= hi:
                raise EnvError(f"scout: {name} must be an int in {lo}..{hi}, got {v!r}")
        n, K, T = int(n_agents), int(n_targets), int(episode_limit)
        self.n, self.K, self.T = n, K, T
        self.spec = EnvSpec(
            name="scout",
            n_agents=n,
            obs_dim=K + 2,
            state_dim=K + n + 1,
            episode_limit=T,
            n_actions=K,
            has_positions=True,
            pos_dim=2,
            noop_action=None,
            options={"n_agents": n, "n_targets": K, "episode_limit": T},
        )
        B = self.n_envs
        self._goal = np.zeros(B, dtype=np.int64)
        self._scout = np.zeros(B, dtype=np.int64)
        self._pos = np.zeros((B, n, 2), dtype=np.float32)

    def _reset_slots(self, idx: np.ndarray) -> None:
        for i in idx:
            r = self.rng(int(i))
            self._goal[i] = r.integers(self.K)
            self._scout[i] = r.integers(self.n)
            self._pos[i] = r.random((self.n, 2), dtype=np.float32)

    def _step(self, actions: np.ndarray, active: np.ndarray):
        hit = (actions == self._goal[:, None]).mean(axis=1).astype(np.float32)  # [B]
        reward = np.repeat(hit[:, None], self.n, axis=1)
        return reward, self._t + 1 >= self.T  # a fixed horizon: the last step is terminal (t/T is observed)

    def _obs(self) -> np.ndarray:
        B, n, K = self.n_envs, self.n, self.K
        obs = np.zeros((B, n, K + 2), dtype=np.float32)
        rows = np.arange(B)
        obs[rows, self._scout, 0] = 1.0
        obs[rows, self._scout, 1 + self._goal] = 1.0
        obs[:, :, -1] = (self._t / self.T)[:, None]
        return obs

    def _state(self) -> np.ndarray:
        B, n, K = self.n_envs, self.n, self.K
        s = np.zeros((B, K + n + 1), dtype=np.float32)
        rows = np.arange(B)
        s[rows, self._goal] = 1.0
        s[rows, K + self._scout] = 1.0
        s[:, -1] = self._t / self.T
        return s

    def _positions(self) -> np.ndarray:
        return self._pos.copy()
