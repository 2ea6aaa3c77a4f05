"""A small PettingZoo parallel env for tests, importable by name (``pz:pz_toy``)
so that worker processes can build it: tests/ is on the path the spawned
workers inherit.

Three agents; everything random is drawn from the episode seed: each agent's
action mask (Discrete(4); the no-op 0 is always available), when agent 2 leaves
(terminated), and the rewards. The episode ends when a shared counter reaches
``goal`` (terminated) or at ``max_cycles`` (truncated). ``fail_seed`` /
``fail_at``: the episode seeded ``fail_seed`` raises at step ``fail_at``
(``exit=True``: the process exits instead), to test how failures travel.
"""

from __future__ import annotations

import os

import gymnasium
import numpy as np
from pettingzoo.utils.env import ParallelEnv


class Toy(ParallelEnv):
    metadata = {"name": "toy"}

    def __init__(self, max_cycles: int = 12, goal: int = 14, fail_seed: int = -1, fail_at: int = 0, exit: bool = False):
        self.possible_agents = ["a0", "a1", "a2"]
        self.agents: list[str] = []
        self.max_cycles, self.goal = max_cycles, goal
        self.fail_seed, self.fail_at, self.exit = fail_seed, fail_at, exit
        self._obs_space = gymnasium.spaces.Box(-np.inf, np.inf, (3,), np.float32)
        self._act_space = gymnasium.spaces.Discrete(4)

    def observation_space(self, agent):
        return self._obs_space

    def action_space(self, agent):
        return self._act_space

    def _masks(self):
        m = self.rng.random((3, 4)) < 0.5
        m[:, 0] = True  # the no-op
        return m

    def _out(self):
        self.mask = self._masks()
        obs = {a: np.array([self.t, self.count, i + self.rng.random()], np.float32) for i, a in enumerate(self.possible_agents) if a in self.agents}
        infos = {a: {"action_mask": self.mask[i].astype(np.int8)} for i, a in enumerate(self.possible_agents) if a in self.agents}
        return obs, infos

    def reset(self, seed=None, options=None):
        self.seed_, self.rng = seed, np.random.default_rng(seed)
        self.t, self.count = 0, 0
        self.leave_at = int(self.rng.integers(1, self.max_cycles + 3))
        self.agents = list(self.possible_agents)
        return self._out()

    def step(self, actions):
        self.t += 1
        if self.seed_ == self.fail_seed and self.t == self.fail_at:
            if self.exit:
                os._exit(3)
            raise RuntimeError(f"toy env failed at step {self.t}")
        rew = {a: float(actions[a] * self.rng.random()) for a in self.agents}
        self.count += sum(int(actions[a]) for a in self.agents)
        term = {a: self.count >= self.goal or (a == "a2" and self.t >= self.leave_at) for a in self.agents}
        trunc = {a: self.t >= self.max_cycles and not term[a] for a in self.agents}
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        obs, infos = self._out()
        obs.update({a: np.zeros(3, np.float32) for a in term if a not in obs})
        return obs, rew, term, trunc, infos


def parallel_env(**kwargs) -> Toy:
    return Toy(**kwargs)
