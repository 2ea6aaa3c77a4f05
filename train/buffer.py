"""Replay of whole episodes, padded to the episode limit.

Layout per episode (T = episode limit): ``obs [T+1, n, o]``, ``state [T+1, s]``,
``avail [T+1, n, A]``, ``actions [T, n]``, ``reward [T, n]`` (per agent),
``terminated [T]`` (the task ended after step t: no bootstrap), ``filled [T]``
(step t is real, not padding); when the team communicates also
``inbox_idx, inbox_mask [T+1, n, k_max]`` (whom each agent heard at step t). The entry at index T+1 of a truncated episode
is its last observation, so the bootstrap of a time-limit end is correct.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..envs import EnvSpec
from ..envs.rollout import episode_layout

PER_STEP_PLUS_ONE = ("obs", "state", "avail", "inbox_idx", "inbox_mask")  # T+1 entries (one per observation)


def empty_episodes(spec: EnvSpec, count: int, k_max: int = 0) -> dict[str, np.ndarray]:
    return {k: np.zeros((count, *shape), dtype=dt) for k, (shape, dt) in episode_layout(spec, k_max).items()}


class EpisodeBuffer:
    """A ring buffer of ``capacity`` whole episodes."""

    def __init__(self, spec: EnvSpec, capacity: int, k_max: int = 0, extras: dict | None = None) -> None:
        if capacity < 1:
            raise ValueError("buffer capacity must be >= 1 episode")
        self.spec, self.capacity = spec, int(capacity)
        self.data = {k: np.zeros((self.capacity, *shape), dtype=dt) for k, (shape, dt) in episode_layout(spec, k_max, extras).items()}
        self.fields = tuple(self.data)
        self.size = 0
        self.pos = 0

    def __len__(self) -> int:
        return self.size

    def add(self, episodes: dict[str, np.ndarray]) -> None:
        """Insert ``k`` episodes given as arrays with a leading episode axis."""
        k = len(episodes["filled"])
        idx = (self.pos + np.arange(k)) % self.capacity
        for name in self.fields:
            self.data[name][idx] = episodes[name]
        self.pos = int((self.pos + k) % self.capacity)
        self.size = int(min(self.size + k, self.capacity))

    def clear(self) -> None:
        self.size = self.pos = 0

    def all(self) -> dict[str, np.ndarray]:
        """Every stored episode (oldest first when not wrapped), trimmed like ``sample``."""
        return self._take(np.arange(self.size))

    def sample(self, batch: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
        """``batch`` episodes uniformly, trimmed to the longest one sampled."""
        return self._take(rng.integers(0, self.size, size=batch))

    def _take(self, idx: np.ndarray) -> dict[str, np.ndarray]:
        filled = self.data["filled"][idx]
        T = int(filled.any(axis=0).nonzero()[0].max()) + 1 if filled.any() else 1
        out = {}
        for name in self.fields:
            arr = self.data[name][idx]
            out[name] = arr[:, : T + 1] if name in PER_STEP_PLUS_ONE else arr[:, :T]
        return out

    # ---- persistence (for --resume) ---------------------------------------
    def save(self, path: Path) -> None:
        arrays = {k: v[: self.size] for k, v in self.data.items()}
        arrays["_meta"] = np.array([self.size, self.pos, self.capacity], dtype=np.int64)
        with open(path, "wb") as f:
            np.savez(f, **arrays)

    def load(self, path: Path) -> None:
        with np.load(path, allow_pickle=False) as z:
            size, pos, capacity = (int(x) for x in z["_meta"])
            if capacity != self.capacity:
                raise ValueError(f"saved buffer capacity {capacity} != configured {self.capacity}")
            for k in self.fields:
                self.data[k][:size] = z[k]
            self.size, self.pos = size, pos
