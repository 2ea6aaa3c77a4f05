"""Rendezvous: a team must gather on a goal block of a grid at the same time.

A ``grid x grid`` world holds a ``goal_size x goal_size`` block of goal cells
at a random place each episode. Agents spawn uniformly at random (possibly on
the goal, possibly sharing cells) and each step move one cell: 0 stay, 1 up
(+y), 2 down (-y), 3 left (-x), 4 right (+x); moves into a wall leave the agent
where it is. The team earns +10 (every agent gets 10) at the step when *every*
agent stands on a goal cell, which also ends the episode; every other step
pays 0. An episode counts as a success when its return is >= 10.

The reward is sparse and needs everyone: a lone agent that finds the goal must
wait there for the rest, which only pays off if the others search too.

Each agent sees a ``(2*view+1)^2`` window centred on itself, as three
channels: goal cells, number of *other* agents per cell, and outside-the-grid
cells (goal and agents read 0 there). Window entry ``[a, b]`` is the cell
``(x + a - view, y + b - view)``; channels are flattened row-major after the
agent's own normalised position::

    obs = [x/(grid-1), y/(grid-1), goal[W*W], others[W*W], wall[W*W], t/limit]

The episode limit is part of the task: meeting must happen within it, so
running out of time is a terminal failure (``terminated``), not a truncation
that learners bootstrap through; the elapsed fraction is in every agent's
observation so the value of "still time left" is observable.

The state holds every agent's normalised position, the goal block's normalised
lower-left corner and the elapsed fraction of the episode. Positions (for the
topology) are the agents' cells in grid units.
"""

from __future__ import annotations

import numpy as np

from .base import EnvError, EnvSpec, MultiAgentEnv

SUCCESS_REWARD = 10.0
# action -> (dx, dy)
MOVES = np.array([[0, 0], [0, 1], [0, -1], [-1, 0], [1, 0]], dtype=np.int64)


class RendezvousEnv(MultiAgentEnv):
    """All agents must stand on the goal block at once (sparse team reward)."""

    snapshot_fields = ("pos", "goal")

    def __init__(
        self,
        n_envs: int = 1,
        n_agents: int = 4,
        grid: int = 5,
        goal_size: int = 3,
        view: int = 2,
        episode_limit: int = 25,
    ) -> None:
        super().__init__(n_envs)
        n_agents, grid, goal_size, view, episode_limit = (int(v) for v in (n_agents, grid, goal_size, view, episode_limit))
        if n_agents < 1:
            raise EnvError(f"rendezvous: n_agents must be >= 1, got {n_agents}")
        if grid < 2:
            raise EnvError(f"rendezvous: grid must be >= 2, got {grid}")
        if not 1 <= goal_size <= grid:
            raise EnvError(f"rendezvous: goal_size must be in 1..grid ({grid}), got {goal_size}")
        if view < 0:
            raise EnvError(f"rendezvous: view must be >= 0, got {view}")
        if episode_limit < 1:
            raise EnvError(f"rendezvous: episode_limit must be >= 1, got {episode_limit}")
        self.n_agents, self.grid, self.goal_size, self.view = n_agents, grid, goal_size, view
        self.win = 2 * view + 1
        w2 = self.win * self.win
        self.spec = EnvSpec(
            name="rendezvous",
            n_agents=n_agents,
            obs_dim=3 + 3 * w2,
            state_dim=2 * n_agents + 3,
            episode_limit=episode_limit,
            n_actions=len(MOVES),
            has_positions=True,
            pos_dim=2,
            options={"n_agents": n_agents, "grid": grid, "goal_size": goal_size, "view": view, "episode_limit": episode_limit},
            resizable=True,  # the window counts the other agents, so the observation has one size for any n
            state_agent_blocks=(2,),  # positions first, then the goal corner and the elapsed fraction
        )
        B = self.n_envs
        self.pos = np.zeros((B, n_agents, 2), dtype=np.int64)  # (x, y) cells
        self.goal = np.zeros((B, 2), dtype=np.int64)  # lower-left corner of the goal block
        self._spawn_high = np.array([grid] * (2 * n_agents) + [grid - goal_size + 1] * 2, dtype=np.int64)
        self._build_tables()

    def _build_tables(self) -> None:
        """Lookup tables that make the observation a handful of gathers.

        ``_wall_tab[x, y]`` is the wall window of cell (x, y);
        ``_goal_tab[x - gx + g - 1, y - gy + g - 1]`` the goal window of cell
        (x, y) for a goal block at (gx, gy); other agents are gathered from a
        per-slot occupancy grid padded by ``view``.
        """
        g, v, W, s = self.grid, self.view, self.win, self.goal_size
        size = (g * g + (2 * g - 1) ** 2) * W * W
        if size > 2**28:
            raise EnvError(f"rendezvous: grid={g} with view={v} needs {size >> 20} MB of lookup tables; use a smaller grid or view")
        off = np.arange(-v, v + 1)
        cx = np.arange(g)[:, None] + off  # [g, W] window x-coordinates of cell x
        inside = (cx >= 0) & (cx < g)
        self._wall_tab = (~(inside[:, None, :, None] & inside[None, :, None, :])).reshape(g, g, W * W).astype(np.float32)
        rx = np.arange(-(g - 1), g)[:, None] + off  # [2g-1, W] window offsets from the goal corner
        in_goal = (rx >= 0) & (rx < s)
        self._goal_tab = (in_goal[:, None, :, None] & in_goal[None, :, None, :]).reshape(2 * g - 1, 2 * g - 1, W * W).astype(np.float32)
        P = g + 2 * v  # padded grid side
        self._pad = P
        self._slot_base = (np.arange(self.n_envs, dtype=np.int64) * P * P)[:, None]  # [B, 1]
        self._win_off = ((off[:, None] * P + off[None, :]).reshape(-1)).astype(np.int64)  # [W*W]
        self._center = v * W + v  # the agent's own cell in its window

    # ---- episode dynamics ------------------------------------------------------
    def _reset_slots(self, idx: np.ndarray) -> None:
        n = self.n_agents
        for i in idx:
            cells = self.rng(int(i)).integers(0, self._spawn_high)  # agents' (x, y), then the goal corner
            self.pos[i] = cells[: 2 * n].reshape(n, 2)
            self.goal[i] = cells[2 * n :]

    def on_goal(self) -> np.ndarray:
        """[B, n] bool: the agent stands on a goal cell."""
        rel = self.pos - self.goal[:, None, :]
        return ((rel >= 0) & (rel < self.goal_size)).all(axis=2)

    def goal_distance(self) -> np.ndarray:
        """[B, n] int: the moves each agent needs to stand on the goal block."""
        rel = self.pos - self.goal[:, None, :]
        return (np.maximum(0, -rel) + np.maximum(0, rel - (self.goal_size - 1))).sum(axis=2)

    def potential(self) -> np.ndarray:
        """Phi_i(s) = -(moves agent i needs to reach the goal block), [B, n] float32:
        shaping that pays for closing in on the goal (docs/credit.md)."""
        return -self.goal_distance().astype(np.float32)

    def _step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        moved = self.pos + MOVES[actions]
        np.maximum(moved, 0, out=moved)
        np.minimum(moved, self.grid - 1, out=moved)
        if active.all():
            self.pos = moved
        else:
            self.pos[active] = moved[active]
        success = self.on_goal().all(axis=1) & active
        reward = np.where(success, np.float32(SUCCESS_REWARD), np.float32(0.0))
        # The limit is part of the task (meet within it or fail): reaching it
        # is a terminal failure, not a truncation to bootstrap through.
        out_of_time = self._t + 1 >= self.spec.episode_limit
        return np.repeat(reward[:, None], self.n_agents, axis=1), success | (out_of_time & active)

    # ---- observations --------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        B, n, g, w2 = self.n_envs, self.n_agents, self.grid, self.win * self.win
        x, y = self.pos[:, :, 0], self.pos[:, :, 1]
        obs = np.empty((B, n, self.spec.obs_dim), dtype=np.float32)
        np.multiply(self.pos, 1.0 / (g - 1), out=obs[:, :, :2], casting="unsafe")
        rel = self.pos - self.goal[:, None, :] + (g - 1)
        obs[:, :, 2 : 2 + w2] = self._goal_tab[rel[:, :, 0], rel[:, :, 1]]
        # other agents: occupancy of the padded grid, gathered around each agent, minus itself
        cell = self._slot_base + (x + self.view) * self._pad + (y + self.view)  # [B, n]
        occ = np.bincount(cell.reshape(-1), minlength=B * self._pad * self._pad)
        others = obs[:, :, 2 + w2 : 2 + 2 * w2]
        others[...] = occ[cell[:, :, None] + self._win_off]
        others[:, :, self._center] -= 1.0
        obs[:, :, 2 + 2 * w2 : 2 + 3 * w2] = self._wall_tab[x, y]
        obs[:, :, -1] = (self._t / self.spec.episode_limit)[:, None]
        return obs

    def _state(self) -> np.ndarray:
        B, g = self.n_envs, self.grid
        state = np.empty((B, self.spec.state_dim), dtype=np.float32)
        state[:, : 2 * self.n_agents] = self.pos.reshape(B, -1) / (g - 1)
        state[:, 2 * self.n_agents : -1] = self.goal / (g - 1)
        state[:, -1] = self._t / self.spec.episode_limit
        return state

    def _positions(self) -> np.ndarray:
        return self.pos.astype(np.float32)
