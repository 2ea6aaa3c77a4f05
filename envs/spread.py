"""Spread: cooperative navigation (Lowe et al. 2017, MPE ``simple_spread``).

``n`` agents and ``n`` landmarks spawn uniformly in the arena ``[-1, 1]^2``.
The team should cover every landmark while keeping apart. Every step every
agent gets the shared reward::

    r = -sum_l min_i |p_i - l_l|  -  #{pairs i<j : |p_i - p_j| < 2 * agent_size}

Kinematics are deliberately simple (no momentum): each step an agent moves by
at most ``step_size`` and is clipped to the arena. Discrete mode has 5 actions
(0 stay, 1 up +y, 2 down -y, 3 left -x, 4 right +x); continuous mode takes an
action in ``[-1, 1]^2`` scaled by ``step_size``.

Each agent observes its own position, the landmarks relative to itself (in
landmark order) and the other agents relative to itself (in index order,
itself left out): ``obs_dim = 2 + 2n + 2(n-1)``. The state is every agent
position, every landmark position and the elapsed fraction of the episode
(``4n + 1``). As in MPE the task is the return over a fixed horizon of
``episode_limit`` steps, so reaching it is a termination (no bootstrap): value
targets stay the size of the return instead of -r/(1-gamma).
"""

from __future__ import annotations

import numpy as np

from .base import EnvError, EnvSpec, MultiAgentEnv

MIN_AGENTS, MAX_AGENTS = 2, 32
# discrete action -> direction
MOVES = np.array([[0.0, 0.0], [0.0, 1.0], [0.0, -1.0], [-1.0, 0.0], [1.0, 0.0]], dtype=np.float32)


class SpreadEnv(MultiAgentEnv):
    """Cover all landmarks without colliding (dense shared reward)."""

    snapshot_fields = ("pos", "landmarks")

    def __init__(
        self,
        n_envs: int = 1,
        n_agents: int = 3,
        continuous: bool = False,
        episode_limit: int = 25,
        agent_size: float = 0.08,
        step_size: float = 0.1,
    ) -> None:
        super().__init__(n_envs)
        n_agents, episode_limit = int(n_agents), int(episode_limit)
        if not MIN_AGENTS <= n_agents <= MAX_AGENTS:
            raise EnvError(f"spread: n_agents must be in {MIN_AGENTS}..{MAX_AGENTS}, got {n_agents}")
        if episode_limit < 1:
            raise EnvError(f"spread: episode_limit must be >= 1, got {episode_limit}")
        if not agent_size > 0 or not step_size > 0:
            raise EnvError(f"spread: agent_size and step_size must be > 0, got {agent_size} and {step_size}")
        self.n_agents = n = n_agents
        self.continuous = bool(continuous)
        self.agent_size = float(agent_size)
        self.step_size = float(step_size)
        self.spec = EnvSpec(
            name="spread",
            n_agents=n,
            obs_dim=2 + 2 * n + 2 * (n - 1),
            state_dim=4 * n + 1,
            episode_limit=episode_limit,
            n_actions=None if self.continuous else len(MOVES),
            action_dim=2 if self.continuous else None,
            action_low=-1.0,
            action_high=1.0,
            has_positions=True,
            pos_dim=2,
            options={
                "n_agents": n,
                "continuous": self.continuous,
                "episode_limit": episode_limit,
                "agent_size": self.agent_size,
                "step_size": self.step_size,
            },
        )
        B = self.n_envs
        self.pos = np.zeros((B, n, 2), dtype=np.float32)
        self.landmarks = np.zeros((B, n, 2), dtype=np.float32)
        # others[i] = the agents other than i, in index order
        self._others = np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=np.int64)
        self._pairs = np.triu(np.ones((n, n), dtype=bool), k=1)

    def _reset_slots(self, idx: np.ndarray) -> None:
        n = self.n_agents
        for i in idx:
            rng = self.rng(int(i))
            self.pos[i] = rng.uniform(-1.0, 1.0, size=(n, 2))
            self.landmarks[i] = rng.uniform(-1.0, 1.0, size=(n, 2))

    def _step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        move = actions.astype(np.float32) if self.continuous else MOVES[actions]
        moved = self.pos + np.float32(self.step_size) * move
        np.clip(moved, -1.0, 1.0, out=moved)
        if active.all():
            self.pos = moved
        else:
            self.pos[active] = moved[active]
        reward = self.current_reward()
        horizon = (self._t + 1 >= self.spec.episode_limit) & active
        return np.repeat(reward[:, None], self.n_agents, axis=1), horizon

    def coverage_and_collisions(self) -> tuple[np.ndarray, np.ndarray]:
        """[B] sum over landmarks of the distance to the nearest agent, [B] colliding pairs."""
        px, py = self.pos[:, :, 0], self.pos[:, :, 1]
        lx, ly = self.landmarks[:, :, 0], self.landmarks[:, :, 1]
        dx, dy = lx[:, :, None] - px[:, None, :], ly[:, :, None] - py[:, None, :]  # [B, landmark, agent]
        coverage = np.sqrt((dx * dx + dy * dy).min(axis=2)).sum(axis=1)
        dx, dy = px[:, :, None] - px[:, None, :], py[:, :, None] - py[:, None, :]  # [B, agent, agent]
        close = (dx * dx + dy * dy) < np.float32((2 * self.agent_size) ** 2)
        collisions = (close & self._pairs).sum(axis=(1, 2))
        return coverage, collisions

    def potential(self) -> np.ndarray:
        """Phi_i(s) = -(distance from agent i to its nearest landmark), [B, n] float32
        (docs/credit.md)."""
        dx = self.pos[:, :, None, 0] - self.landmarks[:, None, :, 0]  # [B, agent, landmark]
        dy = self.pos[:, :, None, 1] - self.landmarks[:, None, :, 1]
        return -np.sqrt((dx * dx + dy * dy).min(axis=2)).astype(np.float32)

    def current_reward(self) -> np.ndarray:
        """[B] the shared reward of the current configuration."""
        coverage, collisions = self.coverage_and_collisions()
        return (-coverage - collisions).astype(np.float32)

    def _obs(self) -> np.ndarray:
        B, n = self.n_envs, self.n_agents
        # obs as 2n (x, y) pairs: own position, n landmarks, n-1 other agents. x and y are
        # computed as separate planes (numpy broadcasting over a last axis of 2 is slow).
        obs = np.empty((B, n, 2 * n, 2), dtype=np.float32)
        px, py = self.pos[:, :, 0, None], self.pos[:, :, 1, None]  # [B, n, 1]
        obs[:, :, 0] = self.pos
        obs[:, :, 1 : n + 1, 0] = self.landmarks[:, None, :, 0] - px
        obs[:, :, 1 : n + 1, 1] = self.landmarks[:, None, :, 1] - py
        obs[:, :, n + 1 :, 0] = self.pos[:, self._others, 0] - px
        obs[:, :, n + 1 :, 1] = self.pos[:, self._others, 1] - py
        return obs.reshape(B, n, 4 * n)

    def _state(self) -> np.ndarray:
        B = self.n_envs
        elapsed = (self._t / self.spec.episode_limit).astype(np.float32)[:, None]
        return np.concatenate([self.pos.reshape(B, -1), self.landmarks.reshape(B, -1), elapsed], axis=1)

    def _positions(self) -> np.ndarray:
        return self.pos.copy()
