"""A small PettingZoo parallel env with agent positions, for tests (``pz:pz_walkers``;
tests/test_user_env.py also copies it into a temporary folder as a user's own file).

Four walkers start at random points of the unit square, drawn from the episode
seed, so the nearest neighbours of an agent are rarely the agents next to it in
index order. Each step every walker stands still or moves 0.1 along x or y
(Discrete(5)); it is rewarded by how close it is to the goal, a point also drawn
from the seed. It observes its own position and the goal. The positions are
given by ``agent_positions()`` as ``{agent: (x, y)}`` (docs/envs.md), so the
distance topologies ``knn:K`` and ``range:R`` work on it. ``leave_at=T``: walker
``w3`` leaves (terminated) at step T, and ``agent_positions()`` no longer names it.
"""

from __future__ import annotations

import gymnasium
import numpy as np
from pettingzoo.utils.env import ParallelEnv

MOVES = np.array([[0.0, 0.0], [0.1, 0.0], [-0.1, 0.0], [0.0, 0.1], [0.0, -0.1]], dtype=np.float32)


class Walkers(ParallelEnv):
    metadata = {"name": "walkers"}

    def __init__(self, max_cycles: int = 8, leave_at: int = 0) -> None:
        self.possible_agents = ["w0", "w1", "w2", "w3"]
        self.agents: list[str] = []
        self.max_cycles, self.leave_at = max_cycles, leave_at
        self._obs_space = gymnasium.spaces.Box(-2.0, 3.0, (4,), np.float32)
        self._act_space = gymnasium.spaces.Discrete(len(MOVES))

    def observation_space(self, agent: str) -> gymnasium.spaces.Box:
        return self._obs_space

    def action_space(self, agent: str) -> gymnasium.spaces.Discrete:
        return self._act_space

    def agent_positions(self) -> dict[str, np.ndarray]:
        return {a: self.pos[i].copy() for i, a in enumerate(self.possible_agents) if a in self.agents}

    def _obs(self) -> dict[str, np.ndarray]:
        return {a: np.concatenate([self.pos[i], self.goal]).astype(np.float32) for i, a in enumerate(self.possible_agents) if a in self.agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        rng = np.random.default_rng(seed)
        self.pos = rng.random((4, 2)).astype(np.float32)
        self.goal = rng.random(2).astype(np.float32)
        self.t = 0
        self.agents = list(self.possible_agents)
        return self._obs(), {a: {} for a in self.agents}

    def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
        self.t += 1
        for i, a in enumerate(self.possible_agents):
            if a in self.agents:
                self.pos[i] += MOVES[int(actions[a])]
        rew = {a: float(-np.linalg.norm(self.pos[i] - self.goal)) for i, a in enumerate(self.possible_agents) if a in self.agents}
        term = {a: a == "w3" and self.t == self.leave_at for a in self.agents}
        trunc = {a: self.t >= self.max_cycles and not term[a] for a in self.agents}
        obs = self._obs()
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        return obs, rew, term, trunc, {a: {} for a in obs}

    def state(self) -> np.ndarray:
        return np.concatenate([self.pos.reshape(-1), self.goal]).astype(np.float32)


def parallel_env(**kwargs: object) -> Walkers:
    return Walkers(**kwargs)
