"""Topology: who hears whom, step by step (docs/design.md contract 2).

numpy only. Training and the deployment world simulator call the *same*
``Topology.neighbours``, so a deployed team hears whom it heard in training.

Spec strings (what ``--set topology=...`` takes and what run dirs and bundles
record; ``str(topo)`` gives the canonical form back)::

    broadcast      every other agent: nearest first when the env  k_max = n-1
                   has positions (ties by index), else index order
    knn:K          the K nearest agents by Euclidean position,     k_max = K (1..n-1)
                   nearest first, ties broken by the lower index
    range:R        every agent within distance R (<= R), nearest   k_max = the cap
                   first (ties by index), at most k_max of them      (default n-1)
    graph:ring     agent i hears i-1 and i+1 (mod n)               k_max = max degree
    graph:grid     agents laid out row-major on an r x c grid,     k_max = max degree
                   c = ceil(sqrt(n)), r = ceil(n / c) (the last row
                   may be partial); 4-neighbourhood, no wrap-around
    graph:FILE     an edge list from a file (below)                k_max = max degree

``ring`` and ``grid`` are reserved names; a file called ``ring`` is
``graph:./ring``. Static graphs list each agent's neighbours sorted by index.

Graph files are JSON ``{"edges": [[i, j], ...], "directed": false}`` (optional
``"n_agents"`` is checked against the team size), or a text edge list with one
``i j`` pair per line (whitespace or comma separated, ``#`` starts a comment;
a line reading ``directed`` makes the list directed). Edges are undirected by
default; a directed edge ``[i, j]`` means messages flow from ``i`` to ``j``
(``j`` hears ``i``). Duplicate edges are merged; self-loops and agents out of
``0..n-1`` are errors.

``neighbours`` returns ``idx [B, n, k_max]`` int64 (the senders each receiver
hears, one per slot) and ``mask [B, n, k_max]`` bool. **Invalid slots hold
-1** and ``mask`` False; valid slots always come first. -1 is a deliberate
poison value: gather with ``np.where(mask, idx, 0)`` (or the torch
equivalent) and multiply by the mask, never with ``idx`` alone.

Determinism: distances are computed coordinate by coordinate in float64
(independent of the batch size and memory layout) and ordered with a stable
sort, so equal distances resolve to the lower index and a batch of ``B``
gives, slot for slot, exactly what ``B`` calls with one slot give.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .base import EnvError, EnvSpec

KINDS = ("broadcast", "knn", "range", "graph")
BUILTIN_GRAPHS = ("ring", "grid")
FLOAT_BYTES = 4  # message payloads are float32


class TopologyError(EnvError):
    """A user-facing topology error (bad spec string, bad graph file, no positions...)."""


# ---------------------------------------------------------------------------
# the topology


@dataclass(frozen=True)
class Topology:
    """A parsed topology for a team of ``n_agents``. Build it with ``parse_topology``.

    ``edges`` (static graphs only) are the directed (sender, receiver) pairs
    after symmetrisation, sorted; ``k_max`` is the neighbour slot count.
    """

    kind: str
    n_agents: int
    k_max: int
    k: int | None = None  # knn
    radius: float | None = None  # range
    graph: str | None = None  # "ring", "grid" or the file path as given
    edges: tuple[tuple[int, int], ...] = ()
    _table: np.ndarray | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        n, k = self.n_agents, self.k_max
        if self.kind not in KINDS:
            raise TopologyError(f"unknown topology kind {self.kind!r}; use one of {', '.join(KINDS)}")
        if self.kind == "broadcast" and k != n - 1:
            raise TopologyError(f"broadcast over {n} agents has k_max {n - 1}, got {k}")
        if self.kind == "knn" and not (self.k == k and 1 <= k <= n - 1):
            raise TopologyError(f"knn:{self.k} over {n} agents needs 1 <= K = k_max <= {n - 1}, got k_max {k}")
        if self.kind == "range" and not (
            self.radius is not None and math.isfinite(self.radius) and self.radius >= 0 and (1 <= k <= n - 1 or k == n - 1)
        ):
            raise TopologyError(f"range:{self.radius} over {n} agents needs R >= 0 and k_max in 1..{n - 1}, got k_max {k}")
        if self.kind == "graph":
            table = _static_table(self.edges, self.n_agents)
            if table.shape[1] != self.k_max:
                raise TopologyError(f"{self}: k_max {self.k_max} does not match the graph's max degree {table.shape[1]}")
            table.setflags(write=False)
            object.__setattr__(self, "_table", table)
        elif self.kind == "broadcast":
            n = self.n_agents
            table = np.array([[j for j in range(n) if j != i] for i in range(n)], dtype=np.int64).reshape(n, n - 1)
            table.setflags(write=False)
            object.__setattr__(self, "_table", table)

    # ---- description -------------------------------------------------------
    def __str__(self) -> str:
        if self.kind == "knn":
            return f"knn:{self.k}"
        if self.kind == "range":
            return f"range:{_fmt_float(self.radius)}"
        if self.kind == "graph":
            return f"graph:{self.graph}"
        return self.kind

    @property
    def spec(self) -> str:
        """The spec string (same as ``str(topo)``)."""
        return str(self)

    @property
    def needs_positions(self) -> bool:
        """True for ``knn`` and ``range``: ``neighbours`` needs agent positions."""
        return self.kind in ("knn", "range")

    @property
    def static(self) -> bool:
        """True when the neighbours never change (broadcast and graphs)."""
        return not self.needs_positions

    def to_dict(self) -> dict[str, Any]:
        """What run dirs and bundles record. File graphs carry their edges, so a
        bundle does not need the file (``from_dict`` never reads it)."""
        d: dict[str, Any] = {"spec": str(self), "kind": self.kind, "n_agents": self.n_agents, "k_max": self.k_max}
        if self.kind == "graph" and self.graph not in BUILTIN_GRAPHS:
            d["edges"] = [list(e) for e in self.edges]
            d["directed"] = True  # the pairs are already symmetrised
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Topology":
        try:
            spec, n = d["spec"], int(d["n_agents"])
        except (KeyError, TypeError, ValueError):
            raise TopologyError(f"a recorded topology needs 'spec' and 'n_agents', got {d!r}") from None
        k_max = d.get("k_max")
        if "edges" in d:
            kind, _, arg = str(spec).partition(":")
            if kind != "graph" or arg in BUILTIN_GRAPHS:
                raise TopologyError(f"recorded topology {spec!r} carries edges but is not a graph file")
            edges = _check_edges(d["edges"], n, bool(d.get("directed", False)), f"recorded topology {spec}")
            return _graph_topology(arg, n, edges, k_max)
        topo = parse_topology(str(spec), n, k_max if _kind_of(str(spec)) == "range" else None)
        if k_max is not None and int(k_max) != topo.k_max:
            raise TopologyError(f"recorded topology {spec} has k_max {k_max}, but it now gives {topo.k_max}")
        return topo

    @classmethod
    def from_string(cls, text: str, n_agents: int, k_max: int | None = None) -> "Topology":
        return parse_topology(text, n_agents, k_max)

    # ---- who hears whom --------------------------------------------------------
    def neighbours(self, positions: np.ndarray | None = None, batch: int | None = None) -> tuple[np.ndarray, np.ndarray]:
        """Each agent's neighbours this step.

        positions  [B, n, d] agent positions; required for knn and range;
                   orders broadcast nearest first; graphs use only its batch size.
        batch      B when no positions are given (default 1).

        Returns ``idx [B, n, k_max]`` int64 (-1 in invalid slots) and
        ``mask [B, n, k_max]`` bool. Fresh arrays the caller may modify.
        """
        n = self.n_agents
        B = self._batch(positions, batch)
        if self.kind == "broadcast" and positions is not None:  # everyone, nearest first
            order = np.argsort(_distances(positions), axis=2, kind="stable")[:, :, : self.k_max]
            return order.astype(np.int64, copy=False), np.ones(order.shape, dtype=bool)
        if self.static:
            idx = np.ascontiguousarray(np.broadcast_to(self._table, (B, n, self.k_max)))
            return idx, idx >= 0
        if positions is None:
            raise TopologyError(f"{self} needs agent positions [B, n, d]; got none — use broadcast or graph:... for envs without geometry")
        dist = _distances(positions)  # [B, n, n], self = +inf
        order = np.argsort(dist, axis=2, kind="stable")[:, :, : self.k_max]
        if self.kind == "knn":
            return order.astype(np.int64, copy=False), np.ones(order.shape, dtype=bool)
        near = np.take_along_axis(dist, order, axis=2)
        mask = near <= self.radius
        idx = np.where(mask, order, -1).astype(np.int64, copy=False)
        return idx, mask

    def _batch(self, positions: np.ndarray | None, batch: int | None) -> int:
        if batch is not None and (isinstance(batch, bool) or int(batch) != batch or batch < 1):
            raise TopologyError(f"batch must be an int >= 1, got {batch!r}")
        if positions is None:
            return 1 if batch is None else int(batch)
        shape = np.shape(positions)
        if len(shape) != 3 or shape[1] != self.n_agents or shape[2] < 1:
            raise TopologyError(
                f"{self}: positions must have shape [B, {self.n_agents}, d], got {tuple(shape)}"
                + (" (add a batch axis: positions[None])" if len(shape) == 2 else "")
            )
        if batch is not None and int(batch) != shape[0]:
            raise TopologyError(f"{self}: batch={batch} but positions have batch {shape[0]}")
        return int(shape[0])


# ---------------------------------------------------------------------------
# parsing


def parse_topology(text: str, n_agents: int, k_max: int | None = None) -> Topology:
    """Parse a spec string (``broadcast``, ``knn:K``, ``range:R``, ``graph:ring``,
    ``graph:grid``, ``graph:FILE``) for a team of ``n_agents``.

    ``k_max`` caps ``range:R`` (default n-1). Other kinds have a fixed slot
    count; a ``k_max`` that disagrees with it is an error.
    """
    if isinstance(n_agents, bool) or not isinstance(n_agents, (int, np.integer)) or n_agents < 1:
        raise TopologyError(f"topology: n_agents must be an int >= 1, got {n_agents!r}")
    n = int(n_agents)
    if k_max is not None:
        if isinstance(k_max, bool) or not isinstance(k_max, (int, np.integer)):
            raise TopologyError(f"topology: k_max must be an int, got {k_max!r}")
        k_max = int(k_max)
    if not isinstance(text, str) or not text.strip():
        raise TopologyError(f"topology must be a string like broadcast, knn:K, range:R or graph:ring|grid|FILE, got {text!r}")
    text = text.strip()
    kind, sep, arg = text.partition(":")
    kind = kind.strip().lower()
    arg = arg.strip()

    if kind == "broadcast":
        if sep and arg:
            raise TopologyError(f"topology {text!r}: broadcast takes no argument")
        topo = Topology("broadcast", n, n - 1)
    elif kind == "knn":
        try:
            k = int(arg)
        except ValueError:
            raise TopologyError(f"topology {text!r}: K must be an integer, as in knn:3") from None
        if n < 2:
            raise TopologyError(f"topology {text!r}: knn needs at least 2 agents, the team has {n}")
        if not 1 <= k <= n - 1:
            raise TopologyError(f"topology {text!r}: K must be in 1..{n - 1} for {n} agents, got {k}")
        topo = Topology("knn", n, k, k=k)
    elif kind == "range":
        try:
            r = float(arg)
        except ValueError:
            raise TopologyError(f"topology {text!r}: R must be a number, as in range:0.5") from None
        if not math.isfinite(r) or r < 0:
            raise TopologyError(f"topology {text!r}: R must be a finite number >= 0, got {arg}")
        cap = n - 1 if k_max is None else k_max
        if k_max is not None and not 1 <= k_max <= n - 1:
            raise TopologyError(f"topology {text!r}: k_max must be in 1..{n - 1} for {n} agents, got {k_max}")
        return Topology("range", n, cap, radius=r)
    elif kind == "graph":
        if not arg:
            raise TopologyError(f"topology {text!r}: name a graph, as in graph:ring, graph:grid or graph:FILE")
        if arg == "ring":
            edges = _ring_edges(n)
        elif arg == "grid":
            edges = _grid_edges(n)
        else:
            edges = _read_graph_file(arg, n)
        topo = _graph_topology(arg, n, edges, None)
    else:
        raise TopologyError(f"unknown topology {text!r}; use broadcast, knn:K, range:R or graph:ring|grid|FILE")

    if k_max is not None and k_max != topo.k_max:
        raise TopologyError(f"topology {topo}: k_max={k_max} applies only to range:R; {topo} has {topo.k_max} neighbour slots")
    return topo


def check_topology(topo: Topology, spec: EnvSpec) -> None:
    """Raise ``TopologyError`` if ``topo`` cannot run on the env ``spec``."""
    if topo.n_agents != spec.n_agents:
        raise TopologyError(f"topology {topo} was built for {topo.n_agents} agents; env {spec.name} has {spec.n_agents}")
    if topo.needs_positions and not spec.has_positions:
        raise TopologyError(f"{topo} needs agent positions; env {spec.name} has none — use broadcast or graph:ring|grid|FILE")


# ---------------------------------------------------------------------------
# accounting


def message_volume(topo: Topology, n_agents: int, d: int, positions: np.ndarray | None = None) -> dict[str, Any]:
    """Messages, floats and bytes (float32 payloads) per step, next to broadcast.

    A message is one valid (receiver, sender) pair. Static kinds and knn are
    exact without positions (knn:K is exactly n*K). With ``positions
    [B, n, d]`` the valid slots of that step are counted (an int when every
    slot agrees, else the mean over the B slots) -- that is how range:R is
    measured; range:R without positions reports the upper bound n*k_max with
    ``exact`` False.
    """
    if n_agents != topo.n_agents:
        raise TopologyError(f"topology {topo} was built for {topo.n_agents} agents, not {n_agents}")
    if isinstance(d, bool) or not isinstance(d, (int, np.integer)) or d < 1:
        raise TopologyError(f"message size d must be an int >= 1, got {d!r}")
    n, d = int(n_agents), int(d)
    exact = True
    messages: int | float
    if positions is not None:  # count the valid slots of this very step
        _, mask = topo.neighbours(positions)
        counts = mask.sum(axis=(1, 2))
        messages = int(counts[0]) if (counts == counts[0]).all() else float(counts.mean())
    elif topo.kind == "range":
        messages = n * topo.k_max  # upper bound: the count depends on positions
        exact = False
    elif topo.kind == "knn":
        messages = n * topo.k_max
    else:
        messages = int(np.count_nonzero(topo._table >= 0))
    bcast = n * (n - 1)
    return {
        "topology": str(topo),
        "n_agents": n,
        "d": d,
        "k_max": topo.k_max,
        "exact": exact,
        "messages_per_step": messages,
        "floats_per_step": messages * d,
        "bytes_per_step": messages * d * FLOAT_BYTES,
        "broadcast_messages_per_step": bcast,
        "broadcast_floats_per_step": bcast * d,
        "broadcast_bytes_per_step": bcast * d * FLOAT_BYTES,
        "fraction_of_broadcast": (messages / bcast) if bcast else 0.0,
    }


# ---------------------------------------------------------------------------
# helpers


def _kind_of(text: str) -> str:
    return text.strip().partition(":")[0].strip().lower()


def _fmt_float(x: float | None) -> str:
    s = repr(float(x))  # shortest string that round-trips
    return s[:-2] if s.endswith(".0") else s


def _distances(positions: np.ndarray) -> np.ndarray:
    """[B, n, n] Euclidean distances in float64, +inf on the diagonal.

    Summed coordinate by coordinate so each entry is the same whatever the
    batch size or memory layout (training and deployment agree bit for bit).
    """
    p = np.asarray(positions, dtype=np.float64)
    if not np.isfinite(p).all():
        b, i = np.argwhere(~np.isfinite(p).all(axis=2))[0]
        raise TopologyError(f"positions must be finite; agent {i} in slot {b} is at {p[b, i].tolist()}")
    n = p.shape[1]
    sq = np.zeros((p.shape[0], n, n), dtype=np.float64)
    for c in range(p.shape[2]):
        diff = p[:, :, None, c] - p[:, None, :, c]
        sq += diff * diff
    dist = np.sqrt(sq)
    dist[:, np.arange(n), np.arange(n)] = np.inf
    return dist


def _ring_edges(n: int) -> tuple[tuple[int, int], ...]:
    pairs = set()
    for i in range(n):
        for j in ((i - 1) % n, (i + 1) % n):
            if j != i:
                pairs.add((i, j))
    return tuple(sorted(pairs))


def grid_shape(n: int) -> tuple[int, int]:
    """(rows, cols) of ``graph:grid``: c = ceil(sqrt(n)), r = ceil(n / c)."""
    c = math.isqrt(n - 1) + 1 if n > 1 else 1  # ceil(sqrt(n)) without float error
    return -(-n // c), c


def _grid_edges(n: int) -> tuple[tuple[int, int], ...]:
    _, c = grid_shape(n)
    pairs = set()
    for i in range(n):
        r, col = divmod(i, c)
        for j in (i + 1 if col + 1 < c else -1, i + c):  # right and down neighbours
            if 0 <= j < n:
                pairs.add((i, j))
                pairs.add((j, i))
    return tuple(sorted(pairs))


def _check_edges(raw: Any, n: int, directed: bool, where: str) -> tuple[tuple[int, int], ...]:
    """Validate raw [[i, j], ...] and return sorted directed (sender, receiver) pairs."""
    if not isinstance(raw, (list, tuple)):
        raise TopologyError(f"{where}: 'edges' must be a list of [i, j] pairs, got {type(raw).__name__}")
    pairs = set()
    for e in raw:
        if not isinstance(e, (list, tuple)) or len(e) != 2 or not all(isinstance(v, int) and not isinstance(v, bool) for v in e):
            raise TopologyError(f"{where}: each edge must be a pair of agent indices [i, j], got {e!r}")
        i, j = e
        if not (0 <= i < n and 0 <= j < n):
            raise TopologyError(f"{where}: edge [{i}, {j}] is out of range; agents are 0..{n - 1}")
        if i == j:
            raise TopologyError(f"{where}: edge [{i}, {j}] is a self-loop; an agent cannot be its own neighbour")
        pairs.add((i, j))
        if not directed:
            pairs.add((j, i))
    if not pairs:
        raise TopologyError(f"{where}: the graph has no edges")
    return tuple(sorted(pairs))


def _read_graph_file(path_text: str, n: int) -> tuple[tuple[int, int], ...]:
    where = f"topology graph:{path_text}"
    path = Path(path_text).expanduser()
    if not path.is_file():
        raise TopologyError(f"{where}: no such file {str(path)!r} (expected a JSON or text edge list)")
    try:
        text = path.read_text()
    except (OSError, UnicodeDecodeError) as e:
        raise TopologyError(f"{where}: cannot read the file ({e})") from None
    if text.lstrip().startswith("{"):
        try:
            data = json.loads(text)
        except json.JSONDecodeError as e:
            raise TopologyError(f"{where}: invalid JSON at line {e.lineno}: {e.msg}") from None
        unknown = set(data) - {"edges", "directed", "n_agents"}
        if unknown:
            raise TopologyError(f"{where}: unknown keys {sorted(unknown)}; a graph file has 'edges', 'directed' and optionally 'n_agents'")
        if "edges" not in data:
            raise TopologyError(f"{where}: JSON graph needs an 'edges' list of [i, j] pairs")
        directed = data.get("directed", False)
        if not isinstance(directed, bool):
            raise TopologyError(f"{where}: 'directed' must be true or false, got {directed!r}")
        if "n_agents" in data and data["n_agents"] != n:
            raise TopologyError(f"{where}: the file is for {data['n_agents']} agents, the team has {n}")
        return _check_edges(data["edges"], n, directed, where)
    edges: list[list[int]] = []
    directed = False
    for lineno, line in enumerate(text.splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        if line.lower() == "directed" and not edges:
            directed = True
            continue
        parts = line.replace(",", " ").split()
        try:
            if len(parts) != 2:
                raise ValueError
            edges.append([int(parts[0]), int(parts[1])])
        except ValueError:
            raise TopologyError(f"{where}: line {lineno} must be two agent indices 'i j', got {line!r}") from None
    return _check_edges(edges, n, directed, where)


def _static_table(edges: tuple[tuple[int, int], ...], n: int) -> np.ndarray:
    """[n, max_degree] int64: each receiver's senders sorted by index, -1 padded."""
    heard: list[list[int]] = [[] for _ in range(n)]
    for s, r in sorted(set(edges)):
        heard[r].append(s)
    k = max((len(h) for h in heard), default=0)
    table = np.full((n, k), -1, dtype=np.int64)
    for r, h in enumerate(heard):
        table[r, : len(h)] = sorted(h)
    return table


def _graph_topology(name: str, n: int, edges: tuple[tuple[int, int], ...], k_max: int | None) -> Topology:
    degree = max(np.bincount(np.array([r for _, r in edges], dtype=np.int64), minlength=n).tolist(), default=0)
    if k_max is not None and int(k_max) != degree:
        raise TopologyError(f"topology graph:{name}: recorded k_max {k_max} does not match the graph's max degree {degree}")
    return Topology("graph", n, degree, graph=name, edges=tuple(edges))
