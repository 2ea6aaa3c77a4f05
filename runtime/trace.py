"""The swarm's per-step trace (``marl-swarm --trace FILE.jsonl``). torch-free.

One JSON object per line, written as it happens (line-buffered): a crash or
SIGINT leaves every complete line usable, and a normal end adds the ``end``
line. The format is described in docs/robots.md ("The swarm trace"); a trace
replays in the env alone: ``envs.make(env, **env_options)``, reset with each
episode's seed, step with the recorded actions, and the rewards and returns
come out as recorded.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, TextIO

from .bundle import BundleError


class TraceWriter:
    """Writes the trace lines of one swarm run to ``path`` (created or truncated)."""

    def __init__(self, path: Path, bundle: Any, seed: int, episodes: int) -> None:
        try:
            self.f: TextIO | None = open(path, "w", buffering=1, encoding="utf-8")  # noqa: SIM115 -- closed by close()
        except OSError as e:
            raise BundleError(f"--trace {path}: cannot write it ({e})") from None
        m = bundle.manifest
        self._line({"kind": "header", "env": m.env.name, "env_options": m.env.options, "spec": m.env_spec.to_dict(),
                    "seed": int(seed), "episodes": int(episodes), "topology": m.topology})

    def _line(self, obj: dict[str, Any]) -> None:
        if self.f is not None:
            self.f.write(json.dumps(obj, separators=(",", ":")) + "\n")  # one write per line: a crash cuts at most the last

    def episode(self, ep: int, seed: int) -> None:
        self._line({"kind": "episode", "episode": ep, "seed": seed})

    def step(self, ep: int, t: int, actions: list[Any], reward: list[float], positions: list[list[float]] | None,
             heard: list[list[int]] | None, dropped: list[int] | None, absent: list[int]) -> None:
        self._line({"kind": "step", "episode": ep, "t": t, "actions": actions, "reward": reward, "positions": positions,
                    "heard": heard, "dropped": dropped, "absent": absent})

    def end(self, returns: list[float]) -> None:
        self._line({"kind": "end", "returns": [float(r) for r in returns]})

    def close(self) -> None:
        if self.f is not None:
            self.f.close()
            self.f = None


def read_trace(path: Path) -> list[dict[str, Any]]:
    """Every complete line of a trace (a line cut by a crash is left out)."""
    out = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        try:
            out.append(json.loads(line))
        except json.JSONDecodeError:
            continue
    return out
