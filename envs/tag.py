"""Tag: a two-team capture-the-flag game of tag on a grid, zero-sum and symmetric.

Two teams of ``team_size`` agents (1..8; agents ``0..n-1`` are team 0, agents
``n..2n-1`` team 1) play on a ``grid x grid`` board (x to the right, y up)
with a few walls. Team 0's home is the lower half (rows with ``2y < grid-1``),
team 1's the upper half (``2y > grid-1``); on an odd grid the middle row is
neutral. Each team has a flag at the middle of its back row, team 0's at
``((grid-1)//2, 0)`` and team 1's at the mirror image, and starts each episode
on random cells of its two back rows (drawn from the slot's generator).

**Rules**, applied to every slot at once after the simultaneous moves:

- Actions: 0 stay, 1 forward, 2 back, 3 left, 4 right, *in the agent's own
  frame*: forward is +y for team 0 and -y for team 1 (left is -x for team 0
  and +x for team 1). A move into a wall, off the board or onto the agent's
  own flag leaves it in place; teammates may share a cell.
- **Tagging.** An agent standing in the other team's home is tagged when it
  ends the step on the same cell as an opponent, or swaps cells with one.
  A tagged agent goes back to the cell it started the episode on. So each
  team can only be tagged on the other's side; defenders must meet an
  intruder, not merely stand near it.
- **Capture.** An agent that ends a step on the other team's flag, untagged,
  captures it: its team wins, and the episode ends (terminated). Both teams
  capturing on the same step is a draw. Reaching ``episode_limit`` without a
  capture is a draw too, and ends the episode as terminated: the limit is part
  of the game (the elapsed fraction is in every observation).

**Rewards** are zero-sum and paid only at the end: every agent of the winning
team gets +1, every agent of the losing team -1, and both get 0 on a draw. So
team 0's return (the mean over its agents) is exactly minus team 1's, and its
sign is the outcome: > 0 a win, 0 a draw, < 0 a loss for team 0.
``info["outcome"]`` holds that outcome per slot every step (``[B]`` int64: 1,
0 or -1 for **team 0**; 0 while the episode runs), read it where ``done``.

**Symmetry.** The board, the walls and the flags are point-symmetric under
the half turn ``(x, y) -> (grid-1-x, grid-1-y)``, and every agent observes and
acts in its own frame: team 1's observations and actions are team 0's,
mirrored by that half turn. A policy trained in team 0's seat therefore plays
team 1's seat unchanged, which self-play relies on (``league/selfplay.py``):
an episode with the teams' roles swapped and the board turned is the same
episode with the rewards negated (``tests/test_tag.py`` checks it).

**Observation** (partial, fixed size). Each agent sees a ``(2*view+1)^2``
window centred on itself, in its own frame, in five channels: walls (cells off
the board count as walls), teammates per cell (not counting itself), opponents
per cell, its own flag, and the enemy flag. Window entry ``[a, b]`` is the
cell at offset ``(a - view, b - view)`` from the agent, in its own frame::

    obs = [x'/(grid-1), y'/(grid-1), t/limit, walls[W*W], mates[W*W], opponents[W*W], own_flag[W*W], enemy_flag[W*W]]

with ``(x', y')`` the agent's cell in its own frame. The state (for mixers and
critics only) is every agent's normalised cell in the world frame, in agent
order, and the elapsed fraction. Positions (for the topology) are the agents'
world cells, so ``knn:K`` and ``range:R`` work; a topology over both teams is
fine, and ``team_view`` keeps only the learning team's.

Walls: ``walls=None`` is the default layout (on the 7x7 board: ``(1,3)``,
``(5,3)``, ``(3,2)``, ``(3,4)``, a block in front of each flag and one at each
end of the neutral row); ``walls=[[x, y], ...]`` any point-symmetric layout
that keeps every start cell connected to the enemy flag; ``walls=[]`` none.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import numpy as np

from .base import EnvError, EnvSpec, MultiAgentEnv, TimeStep

MIN_TEAM, MAX_TEAM = 1, 8
MIN_GRID, MAX_GRID = 5, 32
# action -> (dx, dy) in team 0's frame (team 1's frame is the half turn: the negation)
MOVES = np.array([[0, 0], [0, 1], [0, -1], [-1, 0], [1, 0]], dtype=np.int64)
N_CHANNELS = 5  # walls, mates, opponents, own flag, enemy flag


def default_walls(grid: int) -> list[tuple[int, int]]:
    """A block in front of each flag and one near each end of the middle row (point-symmetric)."""
    g = grid
    cells = {(1, g // 2), (g - 2, g - 1 - g // 2), ((g - 1) // 2, 2), (g - 1 - (g - 1) // 2, g - 3)}
    return sorted(cells)


class TagEnv(MultiAgentEnv):
    """Two teams capture each other's flag and tag intruders on their own half."""

    snapshot_fields: tuple[str, ...] = ("pos", "spawn", "outcome")

    def __init__(
        self,
        n_envs: int = 1,
        team_size: int = 2,
        grid: int = 7,
        view: int = 2,
        episode_limit: int = 30,
        walls: Any = None,
    ) -> None:
        super().__init__(n_envs)
        team_size, grid, view, episode_limit = (int(v) for v in (team_size, grid, view, episode_limit))
        if not MIN_TEAM <= team_size <= MAX_TEAM:
            raise EnvError(f"tag: team_size must be in {MIN_TEAM}..{MAX_TEAM}, got {team_size}")
        if not MIN_GRID <= grid <= MAX_GRID:
            raise EnvError(f"tag: grid must be in {MIN_GRID}..{MAX_GRID}, got {grid}")
        if not 0 <= view < grid:
            raise EnvError(f"tag: view must be in 0..{grid - 1}, got {view}")
        if episode_limit < 1:
            raise EnvError(f"tag: episode_limit must be >= 1, got {episode_limit}")
        g = grid
        self.grid, self.view, self.team_size = g, view, team_size
        n = 2 * team_size
        self.team_of = np.repeat(np.arange(2), team_size)  # [n]
        self.sign = 1 - 2 * self.team_of  # [n] +1 for team 0, -1 for team 1 (the half turn)
        self.flags = np.array([[(g - 1) // 2, 0], [g - 1 - (g - 1) // 2, g - 1]], dtype=np.int64)  # [team, (x, y)]
        wall_cells = default_walls(g) if walls is None else self._parse_walls(walls)
        self.wall = np.zeros((g, g), dtype=bool)
        for x, y in wall_cells:
            self.wall[x, y] = True
        # blocked[team, x, y]: cells an agent of that team cannot enter (walls and its own flag)
        self.blocked = np.repeat(self.wall[None], 2, axis=0)
        self.blocked[0, self.flags[0, 0], self.flags[0, 1]] = True
        self.blocked[1, self.flags[1, 0], self.flags[1, 1]] = True
        # start cells of team 0: its two back rows, minus walls and its flag; team 1's are their mirror
        starts = [(x, y) for y in (0, 1) for x in range(g) if not self.blocked[0, x, y]]
        self._check_layout(wall_cells, starts)
        self.starts = np.array(starts, dtype=np.int64)  # [S, 2] in team 0's frame
        self.win = 2 * view + 1
        w2 = self.win * self.win
        self.spec = EnvSpec(
            name="tag",
            n_agents=n,
            obs_dim=3 + N_CHANNELS * w2,
            state_dim=2 * n + 1,
            episode_limit=episode_limit,
            n_actions=len(MOVES),
            has_positions=True,
            pos_dim=2,
            shared_reward=False,
            options={"team_size": team_size, "grid": g, "view": view, "episode_limit": episode_limit,
                     "walls": [list(c) for c in wall_cells]},
            teams=(tuple(range(team_size)), tuple(range(team_size, n))),
        )
        B = self.n_envs
        self.pos = np.zeros((B, n, 2), dtype=np.int64)  # world cells (x, y)
        self.spawn = np.zeros((B, n, 2), dtype=np.int64)  # where each agent started (and returns when tagged)
        self.outcome = np.zeros(B, dtype=np.int64)  # for team 0: 1 win, 0 draw / running, -1 loss
        self._build_tables()

    # ---- options ------------------------------------------------------------------
    def _parse_walls(self, walls: Any) -> list[tuple[int, int]]:
        g = self.grid
        try:
            cells = sorted({(int(x), int(y)) for x, y in walls})
        except (TypeError, ValueError):
            raise EnvError(f"tag: walls must be a list of [x, y] cells, got {walls!r}") from None
        for x, y in cells:
            if not (0 <= x < g and 0 <= y < g):
                raise EnvError(f"tag: wall cell {[x, y]} is off the {g}x{g} board")
            if (g - 1 - x, g - 1 - y) not in cells:
                raise EnvError(f"tag: walls must be point-symmetric (the game is symmetric): {[x, y]} has no mirror {[g - 1 - x, g - 1 - y]}")
        return cells

    def _check_layout(self, wall_cells: list[tuple[int, int]], starts: list[tuple[int, int]]) -> None:
        """Flags must be free, and every start cell must reach the enemy flag (a breadth-first search)."""
        g = self.grid
        for f in self.flags:
            if self.wall[f[0], f[1]]:
                raise EnvError(f"tag: a wall stands on a flag {f.tolist()}")
        if not starts:
            raise EnvError("tag: walls leave team 0 no start cell in its two back rows")
        seen = np.zeros((g, g), dtype=bool)
        target = tuple(self.flags[1])
        queue = deque([target])
        seen[target] = True
        while queue:
            x, y = queue.popleft()
            for dx, dy in MOVES[1:]:
                nx, ny = x + dx, y + dy
                if 0 <= nx < g and 0 <= ny < g and not seen[nx, ny] and not self.blocked[0, nx, ny]:
                    seen[nx, ny] = True
                    queue.append((nx, ny))
        cut = [list(c) for c in starts if not seen[c]]
        if cut:
            raise EnvError(f"tag: walls {[list(c) for c in wall_cells]} cut start cell {cut[0]} off the enemy flag")

    def _build_tables(self) -> None:
        """Per-cell windows of the fixed channels (walls, each flag) in the world frame, and the
        window offsets into per-slot count grids padded by ``view`` (as ``envs/warehouse.py``)."""
        g, v, W = self.grid, self.view, self.win
        P = g + 2 * v
        self._pad = P
        padded_wall = np.ones((P, P), dtype=np.float32)
        padded_wall[v : v + g, v : v + g] = self.wall
        off = np.arange(-v, v + 1)
        self._win_off = (off[:, None] * P + off[None, :]).reshape(-1).astype(np.int64)  # [W*W]
        centre = ((np.arange(g)[:, None] + v) * P + (np.arange(g)[None, :] + v))[..., None] + self._win_off  # [g, g, W*W]
        self._wall_tab = padded_wall.reshape(-1)[centre]
        self._flag_tab = []
        for fx, fy in self.flags:
            padded = np.zeros((P, P), dtype=np.float32)
            padded[fx + v, fy + v] = 1.0
            self._flag_tab.append(padded.reshape(-1)[centre])
        self._centre = v * W + v

    # ---- geometry -----------------------------------------------------------------
    def own_frame(self, pos: np.ndarray) -> np.ndarray:
        """World cells ``[..., n, 2]`` in each agent's own frame (team 1's turned by a half turn)."""
        g = self.grid
        return np.where((self.team_of == 1)[:, None], g - 1 - pos, pos)

    def in_home(self, y: np.ndarray, team: np.ndarray) -> np.ndarray:
        """Whether row ``y`` lies in ``team``'s home half (broadcasting)."""
        g = self.grid
        return np.where(team == 0, 2 * y < g - 1, 2 * y > g - 1)

    # ---- episode dynamics -----------------------------------------------------------
    def _reset_slots(self, idx: np.ndarray) -> None:
        n, k, S = self.spec.n_agents, self.team_size, len(self.starts)
        for i in idx:
            cells = self.starts[self.rng(int(i)).integers(0, S, size=n)]  # each team draws in its own frame
            self.spawn[i, :k] = cells[:k]
            self.spawn[i, k:] = self.grid - 1 - cells[k:]
        self.pos[idx] = self.spawn[idx]
        self.outcome[idx] = 0

    def _step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        g, team = self.grid, self.team_of
        old = self.pos
        new = old + self.sign[None, :, None] * MOVES[actions]
        inside = ((new >= 0) & (new < g)).all(axis=2)
        cx, cy = np.clip(new[..., 0], 0, g - 1), np.clip(new[..., 1], 0, g - 1)
        blocked = ~inside | self.blocked[team[None, :], cx, cy]
        new = np.where((blocked | ~active[:, None])[..., None], old, new)
        # tags: an agent in the other team's home meets an opponent on its cell, or swaps cells with one
        opp = team[:, None] != team[None, :]  # [n, n]
        same = (new[:, :, None] == new[:, None, :]).all(axis=3)
        swap = (new[:, :, None] == old[:, None, :]).all(axis=3) & (new[:, None, :] == old[:, :, None]).all(axis=3)
        away = self.in_home(new[..., 1], 1 - team[None, :])  # [B, n]
        tagged = away & ((same | swap) & opp).any(axis=2) & active[:, None]
        self.pos = np.where(tagged[..., None], self.spawn, new)
        # captures: an untagged agent on the enemy flag
        on_enemy_flag = (new == self.flags[1 - team][None]).all(axis=2) & ~tagged & active[:, None]  # [B, n]
        cap0 = on_enemy_flag[:, team == 0].any(axis=1)
        cap1 = on_enemy_flag[:, team == 1].any(axis=1)
        result = cap0.astype(np.int64) - cap1.astype(np.int64)  # both: a draw
        self.outcome = np.where(active, result, self.outcome)
        out_of_time = self._t + 1 >= self.spec.episode_limit
        terminated = active & (cap0 | cap1 | out_of_time)
        reward = (result[:, None] * self.sign[None, :]).astype(np.float32)
        return reward, terminated

    def _timestep(self, reward: np.ndarray) -> TimeStep:
        ts = super()._timestep(reward)
        ts.info["outcome"] = self.outcome.copy()
        return ts

    # ---- observations ----------------------------------------------------------------
    def _obs(self) -> np.ndarray:
        B, n, g, v, P = self.pos.shape[0], self.spec.n_agents, self.grid, self.view, self._pad
        w2 = self.win * self.win
        x, y = self.pos[..., 0], self.pos[..., 1]
        team = self.team_of
        obs = np.empty((B, n, self.spec.obs_dim), dtype=np.float32)
        obs[:, :, :2] = self.own_frame(self.pos) / (g - 1)
        obs[:, :, 2] = (self._t / self.spec.episode_limit)[:, None]
        base = (np.arange(B, dtype=np.int64) * P * P)[:, None]
        cell = base + (x + v) * P + (y + v)  # [B, n] in the padded per-slot grids
        win = cell[:, :, None] + self._win_off  # [B, n, W*W] world-frame windows
        counts = [np.bincount(cell[:, team == t].reshape(-1), minlength=B * P * P)[win] for t in (0, 1)]
        mine = team[None, :, None] == 0  # [1, n, 1]
        mates = np.where(mine, counts[0], counts[1]).astype(np.float32)
        mates[:, :, self._centre] -= 1.0
        chans = [
            self._wall_tab[x, y],
            mates,
            np.where(mine, counts[1], counts[0]),
            np.where(mine, self._flag_tab[0][x, y], self._flag_tab[1][x, y]),
            np.where(mine, self._flag_tab[1][x, y], self._flag_tab[0][x, y]),
        ]
        t1 = team == 1
        for c, arr in enumerate(chans):
            arr = np.asarray(arr, dtype=np.float32)
            arr[:, t1] = arr[:, t1, ::-1]  # the half turn: window entry k becomes W*W-1-k
            obs[:, :, 3 + c * w2 : 3 + (c + 1) * w2] = arr
        return obs

    def _state(self) -> np.ndarray:
        B, g = self.pos.shape[0], self.grid
        state = np.empty((B, self.spec.state_dim), dtype=np.float32)
        state[:, :-1] = self.pos.reshape(B, -1) / (g - 1)
        state[:, -1] = self._t / self.spec.episode_limit
        return state

    def _positions(self) -> np.ndarray:
        return self.pos.astype(np.float32)
