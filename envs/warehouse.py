"""Warehouse: a fleet of robots fetches requested packages from shelves.

A ``grid x grid`` floor (x to the right, y up). The bottom row ``y = 0`` is
the delivery zone and rows 0-1 are the dock where the robots start; row 2 is
a cross aisle. The racks stand above it: every cell with ``y >= 3`` whose
column is not an aisle (``x % 3 != 0``) is a shelf, so racks are two shelves
wide with an aisle between them. At reset ``n_requests`` distinct shelves are drawn to hold a
requested package, and the robots are placed on random dock cells (they may
share a cell: the floor has no collisions, and robots drive under shelves as
unloaded robots do in RWARE).

Actions: 0 stay, 1 up (+y), 2 down (-y), 3 left (-x), 4 right (+x); a move
into a wall leaves the robot where it is. Loading is automatic, after the
move: an empty robot standing on a shelf with a waiting package picks it up
(capacity 1; when several robots stand on it, the lowest index gets it), and
a loaded robot in the delivery zone delivers it. When every requested package
is delivered the episode ends as a terminal success.

Rewards are shared by the team (every robot gets the team's reward):

- ``reward="dense"``: +1 per delivery and ``pickup_reward`` (0.5) per pickup.
- ``reward="sparse"``: nothing until the step the last package is delivered,
  which pays ``n_requests`` (what the deliveries pay in the dense variant).

The default ``n_requests`` is one package per robot and ``episode_limit`` is
16 steps: about one trip each, so a robot that idles leaves its package to
the others, who rarely have the time to fetch it too (on the default 7x7
floor with 4 robots, the best schedule delivers everything in time in every
one of 300 sampled episodes, but only in 62 % of them without robot 0). As in rendezvous, the
limit is part of the task: running out of time is a terminal failure, not a
truncation to bootstrap through, and the elapsed fraction is in every
observation.

Each robot sees a ``(2*view+1)^2`` window centred on itself, in four
channels: waiting packages, shelves, number of *other* robots per cell, and
cells outside the floor (the other channels read 0 there). Window entry
``[a, b]`` is the cell ``(x + a - view, y + b - view)``::

    obs = [x/(grid-1), y/(grid-1), carrying, packages[W*W], shelves[W*W], others[W*W], wall[W*W], t/limit]

The state holds every robot's normalised position and carrying flag, the
waiting flag of every shelf (in shelf order: by x, then y) and the elapsed
fraction. Positions (for the topology) are the robots' cells.

``potential()`` is each robot's progress towards its next target, for
potential-based shaping: ``-d / (2 * (grid - 1))`` with ``d`` the Manhattan
distance to the nearest waiting package when the robot is empty, or to the
delivery zone (``y``) when it carries one; 0 for an empty robot when no
package waits. Every step ``info["agent_stats"]`` reports, per robot,
``idle`` (1 when it neither moved, picked up nor delivered) and
``deliveries`` (1 when it delivered), which evaluation sums per episode.
"""

from __future__ import annotations

import numpy as np

from .base import EnvError, EnvSpec, MultiAgentEnv, TimeStep

MIN_AGENTS, MAX_AGENTS = 2, 16
MIN_GRID = 5
SHELF_ROW = 3  # rows 0-1: the dock (row 0 delivers), row 2: the cross aisle
REWARDS = ("dense", "sparse")
# action -> (dx, dy)
MOVES = np.array([[0, 0], [0, 1], [0, -1], [-1, 0], [1, 0]], dtype=np.int64)


class WarehouseEnv(MultiAgentEnv):
    """Robots fetch requested packages from shelves to the delivery zone."""

    # every per-slot state array (leading dim B) that _step, _obs, _state and potential read or
    # write: copying these (with the base's _t/_done/_terminated) snapshots an episode exactly
    snapshot_fields: tuple[str, ...] = ("pos", "carrying", "waiting", "delivered", "idle", "step_deliveries")

    def __init__(
        self,
        n_envs: int = 1,
        n_agents: int = 4,
        grid: int = 7,
        n_requests: int | None = None,
        view: int = 2,
        episode_limit: int = 16,
        reward: str = "dense",
        pickup_reward: float = 0.5,
    ) -> None:
        super().__init__(n_envs)
        n_agents, grid, view, episode_limit = (int(v) for v in (n_agents, grid, view, episode_limit))
        if not MIN_AGENTS <= n_agents <= MAX_AGENTS:
            raise EnvError(f"warehouse: n_agents must be in {MIN_AGENTS}..{MAX_AGENTS}, got {n_agents}")
        if grid < MIN_GRID:
            raise EnvError(f"warehouse: grid must be >= {MIN_GRID}, got {grid}")
        if view < 0:
            raise EnvError(f"warehouse: view must be >= 0, got {view}")
        if episode_limit < 1:
            raise EnvError(f"warehouse: episode_limit must be >= 1, got {episode_limit}")
        if reward not in REWARDS:
            raise EnvError(f"warehouse: reward must be one of {', '.join(REWARDS)}, got {reward!r}")
        if not pickup_reward >= 0:
            raise EnvError(f"warehouse: pickup_reward must be >= 0, got {pickup_reward}")
        xs, ys = np.meshgrid(np.arange(grid), np.arange(grid), indexing="ij")
        is_shelf = (ys >= SHELF_ROW) & (xs % 3 != 0)
        self.shelves = np.argwhere(is_shelf).astype(np.int64)  # [S, 2] (x, y), ordered by x then y
        n_shelves = len(self.shelves)
        n_requests = n_agents if n_requests is None else int(n_requests)
        if not 1 <= n_requests <= n_shelves:
            raise EnvError(f"warehouse: n_requests must be in 1..{n_shelves} (the shelves of a {grid}x{grid} floor), got {n_requests}")
        self.n_agents, self.grid, self.view, self.n_requests = n_agents, grid, view, n_requests
        self.dense = reward == "dense"
        self.pickup_reward = float(pickup_reward)
        self.win = 2 * view + 1
        w2 = self.win * self.win
        self.spec = EnvSpec(
            name="warehouse",
            n_agents=n_agents,
            obs_dim=4 + 4 * w2,
            state_dim=3 * n_agents + n_shelves + 1,
            episode_limit=episode_limit,
            n_actions=len(MOVES),
            has_positions=True,
            pos_dim=2,
            options={"n_agents": n_agents, "grid": grid, "n_requests": n_requests, "view": view,
                     "episode_limit": episode_limit, "reward": reward, "pickup_reward": self.pickup_reward},
            resizable=True,  # windowed observation: one size for any n (n_requests stays as given)
            state_agent_blocks=(2, 1),  # positions, then carrying flags, then the shelves and the elapsed fraction
        )
        B = self.n_envs
        self.pos = np.zeros((B, n_agents, 2), dtype=np.int64)  # (x, y) cells
        self.carrying = np.zeros((B, n_agents), dtype=bool)
        self.waiting = np.zeros((B, n_shelves), dtype=bool)  # the shelf's package waits to be picked up
        self.delivered = np.zeros(B, dtype=np.int64)  # packages delivered this episode
        self.idle = np.zeros((B, n_agents), dtype=np.float32)  # last step's agent stats
        self.step_deliveries = np.zeros((B, n_agents), dtype=np.float32)
        self._build_tables(is_shelf)

    def _build_tables(self, is_shelf: np.ndarray) -> None:
        """Lookup tables that make the observation a handful of gathers.

        ``_shelf_id[x, y]`` is the shelf index of a cell (-1: floor);
        ``_wall_tab[x, y]`` and ``_shelf_tab[x, y]`` the fixed windows of cell
        (x, y); packages and other robots are gathered from per-slot grids
        padded by ``view`` (sized from the arrays at call time, so an env
        whose state arrays are re-batched still observes correctly).
        """
        g, v, W = self.grid, self.view, self.win
        if g * g * W * W > 2**26:
            raise EnvError(f"warehouse: grid={g} with view={v} needs too large lookup tables; use a smaller grid or view")
        self._shelf_id = np.full((g, g), -1, dtype=np.int64)
        self._shelf_id[self.shelves[:, 0], self.shelves[:, 1]] = np.arange(len(self.shelves))
        P = g + 2 * v  # padded grid side
        self._pad = P
        padded_shelf = np.zeros((P, P), dtype=np.float32)
        padded_shelf[v : v + g, v : v + g] = is_shelf
        padded_wall = np.ones((P, P), dtype=np.float32)
        padded_wall[v : v + g, v : v + g] = 0.0
        off = np.arange(-v, v + 1)
        self._win_off = (off[:, None] * P + off[None, :]).reshape(-1).astype(np.int64)  # [W*W]
        centre = ((np.arange(g)[:, None] + v) * P + (np.arange(g)[None, :] + v))[..., None] + self._win_off  # [g, g, W*W]
        self._shelf_tab = padded_shelf.reshape(-1)[centre]
        self._wall_tab = padded_wall.reshape(-1)[centre]
        self._centre = v * W + v  # the robot's own cell in its window
        # where each shelf sits in the padded grid
        self._shelf_cell = (self.shelves[:, 0] + v) * P + (self.shelves[:, 1] + v)  # [S]
        self._dmax = 2.0 * (g - 1)

    # ---- episode dynamics ------------------------------------------------------
    def _reset_slots(self, idx: np.ndarray) -> None:
        n, g, S = self.n_agents, self.grid, len(self.shelves)
        for i in idx:
            rng = self.rng(int(i))
            dock = rng.integers(0, 2 * g, size=n)  # the dock: rows 0 and 1
            self.pos[i, :, 0] = dock % g
            self.pos[i, :, 1] = dock // g
            self.waiting[i] = False
            self.waiting[i, rng.choice(S, size=self.n_requests, replace=False)] = True
        self.carrying[idx] = False
        self.delivered[idx] = 0
        self.idle[idx] = 0.0
        self.step_deliveries[idx] = 0.0

    def _step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        B = self.pos.shape[0]
        rows = np.arange(B)
        moved = self.pos + MOVES[actions]
        np.clip(moved, 0, self.grid - 1, out=moved)
        stepped = (moved != self.pos).any(axis=2) & active[:, None]  # [B, n]
        self.pos = np.where(active[:, None, None], moved, self.pos)
        # deliver: a loaded robot in the delivery zone (row 0)
        delivers = self.carrying & (self.pos[:, :, 1] == 0) & active[:, None]
        self.carrying &= ~delivers
        # pick up: an empty robot on a shelf whose package waits; the lowest index wins a shared shelf
        sid = self._shelf_id[self.pos[:, :, 0], self.pos[:, :, 1]]  # [B, n]
        picks = np.zeros_like(self.carrying)
        for i in range(self.n_agents):
            s = sid[:, i]
            can = active & ~self.carrying[:, i] & (s >= 0) & self.waiting[rows, np.maximum(s, 0)]
            self.waiting[rows[can], s[can]] = False
            self.carrying[can, i] = True
            picks[can, i] = True
        n_del = delivers.sum(axis=1)
        self.delivered += n_del
        self.idle = np.where(active[:, None], ~(stepped | picks | delivers), 0.0).astype(np.float32)
        self.step_deliveries = delivers.astype(np.float32)
        success = active & (self.delivered >= self.n_requests)
        if self.dense:
            team = n_del + self.pickup_reward * picks.sum(axis=1)
        else:
            team = np.where(success, float(self.n_requests), 0.0)
        # The limit is part of the task (deliver within it or fail): reaching it
        # is a terminal failure, not a truncation to bootstrap through.
        out_of_time = active & (self._t + 1 >= self.spec.episode_limit)
        reward = np.repeat(team.astype(np.float32)[:, None], self.n_agents, axis=1)
        return reward, success | out_of_time

    def potential(self) -> np.ndarray:
        """[B, n] float32: minus each robot's normalised Manhattan distance to its
        next target (the nearest waiting package when empty, the delivery zone
        when loaded); 0 for an empty robot when no package waits. The team's
        potential is their mean."""
        d_shelf = np.abs(self.pos[:, :, None, :] - self.shelves[None, None]).sum(axis=3)  # [B, n, S]
        d_shelf = np.where(self.waiting[:, None, :], d_shelf, np.iinfo(np.int64).max)
        nearest = d_shelf.min(axis=2)
        empty_d = np.where(self.waiting.any(axis=1)[:, None], nearest, 0)
        d = np.where(self.carrying, self.pos[:, :, 1], empty_d)
        return (-d / self._dmax).astype(np.float32)

    def _timestep(self, reward: np.ndarray) -> TimeStep:
        ts = super()._timestep(reward)
        ts.info["agent_stats"] = {"idle": self.idle.copy(), "deliveries": self.step_deliveries.copy()}
        return ts

    # ---- observations --------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        B, n, g, w2, P, v = self.pos.shape[0], self.n_agents, self.grid, self.win * self.win, self._pad, self.view
        x, y = self.pos[:, :, 0], self.pos[:, :, 1]
        obs = np.empty((B, n, self.spec.obs_dim), dtype=np.float32)
        np.multiply(self.pos, 1.0 / (g - 1), out=obs[:, :, :2], casting="unsafe")
        obs[:, :, 2] = self.carrying
        base = (np.arange(B, dtype=np.int64) * P * P)[:, None]  # [B, 1]
        cell = base + (x + v) * P + (y + v)  # [B, n] the robots' cells in the padded grids
        win = cell[:, :, None] + self._win_off  # [B, n, W*W]
        packages = np.zeros(B * P * P, dtype=np.float32)
        packages[(base + self._shelf_cell)[self.waiting]] = 1.0
        obs[:, :, 3 : 3 + w2] = packages[win]
        obs[:, :, 3 + w2 : 3 + 2 * w2] = self._shelf_tab[x, y]
        occ = np.bincount(cell.reshape(-1), minlength=B * P * P)
        others = obs[:, :, 3 + 2 * w2 : 3 + 3 * w2]
        others[...] = occ[win]
        others[:, :, self._centre] -= 1.0
        obs[:, :, 3 + 3 * w2 : 3 + 4 * w2] = self._wall_tab[x, y]
        obs[:, :, -1] = (self._t / self.spec.episode_limit)[:, None]
        return obs

    def _state(self) -> np.ndarray:
        B, n, g = self.pos.shape[0], self.n_agents, self.grid
        state = np.empty((B, self.spec.state_dim), dtype=np.float32)
        state[:, : 2 * n] = self.pos.reshape(B, -1) / (g - 1)
        state[:, 2 * n : 3 * n] = self.carrying
        state[:, 3 * n : -1] = self.waiting
        state[:, -1] = self._t / self.spec.episode_limit
        return state

    def _positions(self) -> np.ndarray:
        return self.pos.astype(np.float32)
