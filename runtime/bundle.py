"""Reading and checking a bundle (docs/design.md contract 5). torch-free.

A bundle is a folder::

    swarm.json              the manifest (below)
    agent_0/policy.onnx     agent 0's policy graph (contract 4)
    agent_0/agent.json      agent 0's card: its id, its files' sha256, its I/O
    agent_1/...
    swarm.json.sig          optional: an Ed25519 signature over swarm.json (runtime/signing.py),
                            required when the reader is given trusted keys

Agent folders must lie inside the bundle folder (no ``/``, no ``..``, no symlink
out of it), signed or not.

``swarm.json`` holds ``format`` ("marl-edge-bundle"), ``format_version``, the
env spec and options, the topology (as ``Topology.to_dict``), the message
size, whether the policies are recurrent (``recurrent``: a ``hidden`` input
and ``hidden_out`` output; feed-forward ones have neither), the policy's
inputs and outputs with shapes (``null`` = the dynamic batch), the agents with each file's sha256, the source run and checkpoint,
and the export's verification results (docs/export.md section 1 is the schema).
A one-team bundle (a league member, env ``team_view``) also records its
``seat``: which team of which two-team game its agents play (``TeamSeat``;
absent in bundles written before the field, and in every other bundle).

``Manifest.parse`` and ``AgentCard.parse`` check every field once (presence,
type, range, and the fields against each other) into frozen dataclasses; a
malformed field is one ``BundleError`` naming the file and the field path.
``marl-export`` writes both through ``to_dict()``: one schema for writing
and reading. Everything downstream reads attributes, never the raw dict.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

from ..envs import EnvError, EnvSpec
from ..envs.base import SCALARISATIONS
from ..errors import UserError

FORMAT = "marl-edge-bundle"
FORMAT_VERSION = 1
MANIFEST = "swarm.json"
AGENT_CARD = "agent.json"
POLICY_FILE = "policy.onnx"
COMMS = ("none", "mean", "knn", "attention")  # the message aggregators (train.comm.AGGREGATORS and "none")
QUANTIZE = ("none", "int8")
DTYPES = ("float32", "bool", "int64")
REEXPORT = "re-export the bundle with marl-export"
_SHA256 = re.compile(r"[0-9a-f]{64}")


class BundleError(UserError, ValueError):
    """A user-facing problem with a bundle (missing, corrupt, mismatched)."""


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def is_bundle(path: Path) -> bool:
    return (Path(path) / MANIFEST).is_file()


# ---- reading raw JSON values, each error naming its field ------------------------------------


class _Fields:
    """Typed reads of raw JSON values; every failure is one ``BundleError`` naming
    the file and the field path (``swarm.json: agents[2].dir: ...``)."""

    def __init__(self, where: Path | str) -> None:
        self.where = where

    def fail(self, path: str, problem: str) -> NoReturn:
        raise BundleError(f"{self.where}: {path}: {problem}; {REEXPORT}")

    def get(self, d: dict[str, Any], key: str, path: str) -> Any:
        if key not in d:
            self.fail(_join(path, key), "missing")
        return d[key]

    def map(self, v: Any, path: str) -> dict[str, Any]:
        if not isinstance(v, dict):
            self.fail(path, f"expected an object, got {_show(v)}")
        return v

    def list(self, v: Any, path: str) -> list[Any]:
        if not isinstance(v, list):
            self.fail(path, f"expected a list, got {_show(v)}")
        return v

    def str(self, v: Any, path: str, choices: tuple[str, ...] | None = None, empty: bool = False) -> str:
        if not isinstance(v, str):
            self.fail(path, f"expected a string, got {_show(v)}")
        if choices is not None and v not in choices:
            self.fail(path, f"expected one of {', '.join(repr(c) for c in choices)}, got {v!r}")
        if not empty and not v:
            self.fail(path, "expected a non-empty string, got ''")
        return v

    def bool(self, v: Any, path: str) -> bool:
        if not isinstance(v, bool):
            self.fail(path, f"expected true or false, got {_show(v)}")
        return v

    def int(self, v: Any, path: str, lo: int | None = None, hi: int | None = None) -> int:
        if isinstance(v, bool) or not isinstance(v, int):
            self.fail(path, f"expected an integer, got {_show(v)}")
        if (lo is not None and v < lo) or (hi is not None and v > hi):
            rng = f">= {lo}" if hi is None else f"in {lo}..{hi}"
            self.fail(path, f"expected an integer {rng}, got {v}")
        return v

    def opt_int(self, v: Any, path: str, lo: int | None = None) -> int | None:
        return None if v is None else self.int(v, path, lo)

    def float(self, v: Any, path: str) -> float:
        if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v in (float("inf"), float("-inf")):
            self.fail(path, f"expected a finite number, got {_show(v)}")
        return float(v)


def _join(path: str, key: str) -> str:
    return f"{path}.{key}" if path else key


def _show(v: Any) -> str:
    if v is None:
        return "null"
    text = json.dumps(v) if isinstance(v, (bool, dict, list)) else repr(v)
    text = text if len(text) <= 40 else text[:37] + "..."
    return f"{type(v).__name__ if not isinstance(v, (dict, list)) else ('object' if isinstance(v, dict) else 'list')} {text}"


# ---- the manifest's parts ---------------------------------------------------------------------


@dataclass(frozen=True)
class IOSpec:
    """One graph input or output: its name, shape (``None`` first: the dynamic batch) and dtype."""

    name: str
    shape: tuple[int | None, ...]
    dtype: str

    @classmethod
    def parse(cls, raw: Any, f: _Fields, path: str) -> "IOSpec":
        d = f.map(raw, path)
        name = f.str(f.get(d, "name", path), f"{path}.name")
        shape = f.list(f.get(d, "shape", path), f"{path}.shape")
        if not shape or shape[0] is not None:
            f.fail(f"{path}.shape", f"expected [null, ...] (the first dimension is the dynamic batch), got {_show(shape)}")
        dims = tuple(f.int(x, f"{path}.shape[{j}]", 1) for j, x in enumerate(shape[1:], 1))
        dtype = f.str(f.get(d, "dtype", path), f"{path}.dtype", DTYPES)
        return cls(name, (None, *dims), dtype)

    @classmethod
    def of(cls, x: "IOSpec | dict[str, Any]") -> "IOSpec":
        """An ``IOSpec`` from itself or from its dict form (``export.graph.io_specs``)."""
        return x if isinstance(x, IOSpec) else cls(x["name"], tuple(x["shape"]), x["dtype"])

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "shape": list(self.shape), "dtype": self.dtype}


@dataclass(frozen=True)
class EnvRef:
    """What rebuilds the env: its registered name and the options it was made with."""

    name: str
    options: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"name": self.name, "options": self.options}


@dataclass(frozen=True)
class AgentRecord:
    """``agents[i]`` of the manifest: the agent's id, its folder, each file's sha256."""

    id: int
    dir: str
    files: dict[str, str]

    def to_dict(self) -> dict[str, Any]:
        return {"id": self.id, "dir": self.dir, "files": dict(self.files)}


@dataclass(frozen=True)
class Source:
    """Where the bundle came from: the run, its checkpoint, its seed, the code's git state."""

    run_dir: str
    checkpoint_step: int
    seed: int
    git: dict[str, Any]

    def to_dict(self) -> dict[str, Any]:
        return {"run_dir": self.run_dir, "checkpoint_step": self.checkpoint_step, "seed": self.seed, "git": self.git}


@dataclass(frozen=True)
class TeamSeat:
    """``seat`` of the manifest: the bundle's agents are team ``team`` of ``game``, whose
    teams (the game's agent indices, ``EnvSpec.teams``) are ``teams``; agent ``i`` of the
    bundle plays the game's agent ``teams[team][i]``."""

    game: str
    teams: tuple[tuple[int, ...], ...]
    team: int

    @property
    def agents(self) -> tuple[int, ...]:
        return self.teams[self.team]

    def to_dict(self) -> dict[str, Any]:
        return {"game": self.game, "teams": [list(t) for t in self.teams], "team": self.team}


def _parse_teams(raw: Any, f: _Fields, path: str) -> tuple[tuple[int, ...], ...]:
    """A list of teams, each a list of agent indices (EnvSpec.teams); the split itself is checked by the caller."""
    return tuple(tuple(f.int(i, f"{path}[{k}][{j}]", 0) for j, i in enumerate(f.list(t, f"{path}[{k}]")))
                 for k, t in enumerate(f.list(raw, path)))


def _parse_seat(raw: Any, n: int, f: _Fields) -> TeamSeat:
    d = f.map(raw, "seat")
    teams = _parse_teams(f.get(d, "teams", "seat"), f, "seat.teams")
    flat = sorted(i for t in teams for i in t)
    if len(teams) < 2 or flat != list(range(len(flat))):
        f.fail("seat.teams", f"expected two or more teams splitting the game's agents 0..N-1 once each, got {[list(t) for t in teams]}")
    team = f.int(f.get(d, "team", "seat"), "seat.team", 0, len(teams) - 1)
    if len(teams[team]) != n:
        f.fail("seat.team", f"team {team} has {len(teams[team])} agents, the bundle {n}")
    return TeamSeat(f.str(f.get(d, "game", "seat"), "seat.game"), teams, team)


_SPEC_INTS = {"n_agents": 1, "obs_dim": 1, "state_dim": 0, "episode_limit": 1, "pos_dim": 1}


def _parse_env_spec(raw: Any, f: _Fields) -> EnvSpec:
    d = f.map(raw, "env_spec")
    kw: dict[str, Any] = {"name": f.str(f.get(d, "name", "env_spec"), "env_spec.name")}
    for key, lo in _SPEC_INTS.items():
        kw[key] = f.int(f.get(d, key, "env_spec"), f"env_spec.{key}", lo)
    for key in ("n_actions", "action_dim"):
        kw[key] = f.opt_int(f.get(d, key, "env_spec"), f"env_spec.{key}", 1)
    if (kw["n_actions"] is None) == (kw["action_dim"] is None):
        f.fail("env_spec.n_actions", f"exactly one of n_actions (discrete) and action_dim (continuous) must be set, "
                                     f"got n_actions={_show(kw['n_actions'])}, action_dim={_show(kw['action_dim'])}")
    for key in ("action_low", "action_high"):
        kw[key] = f.float(f.get(d, key, "env_spec"), f"env_spec.{key}")
    for key in ("has_positions", "shared_reward"):
        kw[key] = f.bool(f.get(d, key, "env_spec"), f"env_spec.{key}")
    kw["noop_action"] = f.opt_int(f.get(d, "noop_action", "env_spec"), "env_spec.noop_action", 0)
    if kw["n_actions"] is not None and kw["noop_action"] is not None and kw["noop_action"] >= kw["n_actions"]:
        f.fail("env_spec.noop_action", f"expected an action in 0..{kw['n_actions'] - 1}, got {kw['noop_action']}")
    kw["options"] = f.map(f.get(d, "options", "env_spec"), "env_spec.options")
    how = d.get("reward_scalarisation", "mean")  # bundles written before the key: the mean
    if how not in SCALARISATIONS:
        f.fail("env_spec.reward_scalarisation", f"expected one of {', '.join(SCALARISATIONS)}, got {_show(how)}")
    kw["reward_scalarisation"] = how
    kw["teams"] = _parse_teams(d.get("teams", []), f, "env_spec.teams")  # bundles written before the key: one team
    kw["resizable"] = f.bool(d.get("resizable", False), "env_spec.resizable")  # bundles written before the key: False
    kw["state_agent_blocks"] = tuple(f.int(w, f"env_spec.state_agent_blocks[{j}]", 1)
                                     for j, w in enumerate(f.list(d.get("state_agent_blocks", []), "env_spec.state_agent_blocks")))
    try:
        return EnvSpec(**kw)
    except EnvError as e:  # its own checks, should they grow
        f.fail("env_spec", str(e))


def _parse_io(raw: Any, f: _Fields, key: str) -> tuple[IOSpec, ...]:
    items = tuple(IOSpec.parse(x, f, f"{key}[{j}]") for j, x in enumerate(f.list(raw, key)))
    names = [x.name for x in items]
    for j, name in enumerate(names):
        if name in names[:j]:
            f.fail(f"{key}[{j}].name", f"{name!r} is listed twice")
    return items


def _check_io(m: "Manifest", f: _Fields) -> None:
    """The graph's I/O against the env spec and the message sizes (docs/export.md section 2)."""
    spec = m.env_spec
    acts = spec.n_actions or spec.action_dim
    want_in: dict[str, tuple[tuple[int | None, ...], str]] = {
        "obs": ((None, spec.obs_dim), "float32"),
        "avail_actions": ((None, acts), "bool"),  # type: ignore[dict-item]
        "hidden": ((None, m.hidden_dim), "float32"),
        "msg_in": ((None, m.k_max, m.msg_dim), "float32"),
        "msg_mask": ((None, m.k_max), "bool"),
        "prev_action": ((None, acts), "float32"),  # type: ignore[dict-item]
    }
    want_out: dict[str, tuple[tuple[int | None, ...], str]] = {
        "action": (((None,), "int64") if spec.discrete else ((None, acts), "float32")),  # type: ignore[dict-item]
        "hidden_out": ((None, m.hidden_dim), "float32"),
        "msg_out": ((None, m.msg_dim), "float32"),
        "q": ((None, acts), "float32"),  # type: ignore[dict-item]
        "logits": ((None, acts), "float32"),  # type: ignore[dict-item]
    }
    for key, items, want in (("inputs", m.inputs, want_in), ("outputs", m.outputs, want_out)):
        for j, x in enumerate(items):
            if x.name in want and (x.shape, x.dtype) != want[x.name]:
                shape, dtype = want[x.name]
                f.fail(f"{key}[{j}]", f"{x.name} should be {dtype} {json.dumps(list(shape))} "
                                      f"(env_spec, hidden_dim, k_max, msg_dim), got {x.dtype} {json.dumps(list(x.shape))}")
    names_in, names_out = [x.name for x in m.inputs], [x.name for x in m.outputs]
    if "obs" not in names_in:
        f.fail("inputs", "no 'obs' input")
    if "action" not in names_out:
        f.fail("outputs", "no 'action' output")
    if spec.discrete != ("avail_actions" in names_in):
        f.fail("inputs", f"a {'discrete' if spec.discrete else 'continuous'} policy {'needs' if spec.discrete else 'has no'} 'avail_actions'")
    if m.recurrent != ("hidden" in names_in):
        f.fail("recurrent", f"manifest says recurrent={m.recurrent} but the policy inputs {'have' if 'hidden' in names_in else 'lack'} 'hidden'")
    if m.recurrent != ("hidden_out" in names_out):
        f.fail("recurrent", f"manifest says recurrent={m.recurrent} but the policy outputs {'have' if 'hidden_out' in names_out else 'lack'} 'hidden_out'")
    for name, where in (("msg_in", names_in), ("msg_mask", names_in), ("msg_out", names_out)):
        if (name in where) != m.communicates:
            f.fail("inputs" if where is names_in else "outputs",
                   f"msg_dim is {m.msg_dim} but the policy {'lacks' if m.communicates else 'has'} {name!r}")


@dataclass(frozen=True)
class Manifest:
    """``swarm.json``, parsed and checked once (docs/export.md section 1 is the schema).

    ``Manifest.parse(raw, where)`` raises ``BundleError`` naming the file and the
    field; ``to_dict()`` is what ``marl-export`` writes (same keys, same values).
    """

    format: str
    format_version: int
    created: str
    marl_edge_version: str
    versions: dict[str, Any]
    env: EnvRef
    env_spec: EnvSpec
    algo: str
    comm: str
    topology: dict[str, Any] | None
    msg_dim: int
    k_max: int
    recurrent: bool
    hidden_dim: int
    opset: int
    quantize: str
    inputs: tuple[IOSpec, ...]
    outputs: tuple[IOSpec, ...]
    parameters_per_agent: int | tuple[int, ...]
    agents: tuple[AgentRecord, ...]
    source: Source
    verification: dict[str, Any] | None = None  # absent until the export's checks have passed
    seat: TeamSeat | None = None  # a one-team bundle's team in its two-team game (None: not one, or written before the field)
    # agent slots: the bundle holds one graph per slot and runs any team of n <= max_agents of a
    # resizable env (docs/team-size.md); 0 (bundles written before the key): env_spec.n_agents
    max_agents: int = 0
    # the id of the trusted key whose signature over these exact bytes verified (runtime.signing);
    # None when no --trusted-key was given. Not part of swarm.json (the signature is a file beside it).
    signer: str | None = dataclasses.field(default=None, compare=False)

    # ---- views ------------------------------------------------------------------------------
    @property
    def n_agents(self) -> int:
        return self.env_spec.n_agents

    @property
    def slots(self) -> int:
        """How many agent graphs the bundle holds: the largest team it runs."""
        return self.max_agents or self.env_spec.n_agents

    @property
    def communicates(self) -> bool:
        return self.topology is not None

    @property
    def input_names(self) -> list[str]:
        return [x.name for x in self.inputs]

    @property
    def output_names(self) -> list[str]:
        return [x.name for x in self.outputs]

    # ---- reading and writing ---------------------------------------------------------------
    @classmethod
    def parse(cls, raw: Any, where: Path | str) -> "Manifest":
        f = _Fields(where)
        if not isinstance(raw, dict):
            raise BundleError(f"{where} is corrupt (not a JSON object); {REEXPORT}")
        fmt = raw.get("format")
        if fmt != FORMAT:
            raise BundleError(f"{where}: not a marl-edge bundle manifest (format {fmt!r})")
        v = raw.get("format_version")
        if v != FORMAT_VERSION or isinstance(v, bool):
            raise BundleError(f"{where}: bundle format version {v} is not supported by this runtime (it reads version {FORMAT_VERSION})")
        g = lambda key: f.get(raw, key, "")  # noqa: E731
        env = f.map(g("env"), "env")
        env_ref = EnvRef(f.str(f.get(env, "name", "env"), "env.name"), f.map(f.get(env, "options", "env"), "env.options"))
        spec = _parse_env_spec(g("env_spec"), f)
        n = spec.n_agents
        msg_dim, k_max = f.int(g("msg_dim"), "msg_dim", 0), f.int(g("k_max"), "k_max", 0)
        comm = f.str(g("comm"), "comm", COMMS)
        topo = g("topology")
        if topo is not None:
            topo = f.map(topo, "topology")
            _check_topology(topo, n, k_max, f)
        if (topo is None) != (comm == "none"):
            f.fail("comm", f"comm {comm!r} {'needs a topology' if topo is None else 'has no messages, yet a topology is recorded'}")
        if (topo is None) != (msg_dim == 0):
            f.fail("msg_dim", f"expected {'0 without a topology' if topo is None else '>= 1 with a topology'}, got {msg_dim}")
        if (topo is None) != (k_max == 0):
            f.fail("k_max", f"expected {'0 without a topology' if topo is None else '>= 1 with a topology'}, got {k_max}")
        slots = n if raw.get("max_agents") is None else f.int(raw["max_agents"], "max_agents", n)
        ppa = g("parameters_per_agent")
        if isinstance(ppa, list):
            if len(ppa) != slots:
                f.fail("parameters_per_agent", f"expected one count per agent ({slots}), got {len(ppa)}")
            ppa = tuple(f.int(x, f"parameters_per_agent[{j}]", 1) for j, x in enumerate(ppa))
        else:
            ppa = f.int(ppa, "parameters_per_agent", 1)
        agents = tuple(_parse_agent(x, j, f) for j, x in enumerate(f.list(g("agents"), "agents")))
        if len(agents) != slots:
            says = "env_spec.n_agents" if slots == n else "max_agents"
            f.fail("agents", f"the manifest lists {len(agents)} agents, {says} says {slots}")
        src = f.map(g("source"), "source")
        source = Source(
            f.str(f.get(src, "run_dir", "source"), "source.run_dir"),
            f.int(f.get(src, "checkpoint_step", "source"), "source.checkpoint_step", 0),
            f.int(f.get(src, "seed", "source"), "source.seed"),
            f.map(f.get(src, "git", "source"), "source.git"),
        )
        ver = raw.get("verification")
        seat = raw.get("seat")
        m = cls(
            format=FORMAT,
            format_version=FORMAT_VERSION,
            created=f.str(g("created"), "created"),
            marl_edge_version=f.str(g("marl_edge_version"), "marl_edge_version"),
            versions=f.map(g("versions"), "versions"),
            env=env_ref,
            env_spec=spec,
            algo=f.str(g("algo"), "algo"),
            comm=comm,
            topology=topo,
            msg_dim=msg_dim,
            k_max=k_max,
            recurrent=f.bool(g("recurrent"), "recurrent"),
            hidden_dim=f.int(g("hidden_dim"), "hidden_dim", 1),
            opset=f.int(g("opset"), "opset", 1),
            quantize=f.str(g("quantize"), "quantize", QUANTIZE),
            inputs=_parse_io(g("inputs"), f, "inputs"),
            outputs=_parse_io(g("outputs"), f, "outputs"),
            parameters_per_agent=ppa,
            agents=agents,
            source=source,
            verification=None if ver is None else f.map(ver, "verification"),
            seat=None if seat is None else _parse_seat(seat, n, f),
            max_agents=0 if raw.get("max_agents") is None else slots,
        )
        _check_io(m, f)
        return m

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {
            "format": self.format,
            "format_version": self.format_version,
            "created": self.created,
            "marl_edge_version": self.marl_edge_version,
            "versions": self.versions,
            "env": self.env.to_dict(),
            "env_spec": self.env_spec.to_dict(),
            "algo": self.algo,
            "comm": self.comm,
            "topology": self.topology,
            "msg_dim": self.msg_dim,
            "k_max": self.k_max,
            "recurrent": self.recurrent,
            "hidden_dim": self.hidden_dim,
            "opset": self.opset,
            "quantize": self.quantize,
            "inputs": [x.to_dict() for x in self.inputs],
            "outputs": [x.to_dict() for x in self.outputs],
            "parameters_per_agent": list(self.parameters_per_agent) if isinstance(self.parameters_per_agent, tuple) else self.parameters_per_agent,
            "agents": [a.to_dict() for a in self.agents],
            "source": self.source.to_dict(),
        }
        if self.seat is not None:
            d["seat"] = self.seat.to_dict()
        if self.max_agents:
            d["max_agents"] = self.max_agents
        if self.verification is not None:
            d["verification"] = self.verification
        return d

    def replace(self, **changes: Any) -> "Manifest":
        return dataclasses.replace(self, **changes)


def _check_topology(topo: dict[str, Any], n: int, k_max: int, f: _Fields) -> None:
    from ..envs.topology import Topology

    f.str(f.get(topo, "spec", "topology"), "topology.spec")
    if f.int(f.get(topo, "n_agents", "topology"), "topology.n_agents", 1) != n:
        f.fail("topology.n_agents", f"expected env_spec.n_agents ({n}), got {topo['n_agents']}")
    if f.int(f.get(topo, "k_max", "topology"), "topology.k_max", 1) != k_max:
        f.fail("topology.k_max", f"expected the manifest's k_max ({k_max}), got {topo['k_max']}")
    try:
        Topology.from_dict(topo)
    except EnvError as e:
        f.fail("topology", str(e))


def _parse_agent(raw: Any, j: int, f: _Fields) -> AgentRecord:
    path = f"agents[{j}]"
    d = f.map(raw, path)
    i = f.int(f.get(d, "id", path), f"{path}.id", 0)
    if i != j:
        f.fail(f"{path}.id", f"expected {j} (entry j is agent j), got {i}")
    folder = f.str(f.get(d, "dir", path), f"{path}.dir")
    if folder in (".", "..") or "/" in folder or "\\" in folder:
        why = (" (an absolute path)" if folder.startswith(("/", "\\")) or re.match(r"[A-Za-z]:", folder)
               else " (it climbs out with '..')" if ".." in re.split(r"[/\\]", folder) else "")
        f.fail(f"{path}.dir", f"expected a folder name inside the bundle (agent_{j}), got {folder!r}{why}")
    files = f.map(f.get(d, "files", path), f"{path}.files")
    for name in (POLICY_FILE, AGENT_CARD):
        if name not in files:
            f.fail(f"{path}.files", f"{name!r} is not listed")
    for name, sha in files.items():
        if name in (".", "..") or "/" in name or "\\" in name:
            f.fail(f"{path}.files", f"expected file names inside the agent folder, got {name!r}")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            f.fail(f"{path}.files[{name!r}]", f"expected a sha256 of 64 hex characters, got {_show(sha)}")
    return AgentRecord(i, folder, dict(files))


@dataclass(frozen=True)
class AgentCard:
    """``agent_<i>/agent.json``: the agent's id, its policy file and sha256, copies of the manifest's sizes."""

    agent: int
    format_version: int
    policy: str
    policy_sha256: str
    n_agents: int
    inputs: tuple[IOSpec, ...]
    outputs: tuple[IOSpec, ...]
    recurrent: bool
    hidden_dim: int
    msg_dim: int
    k_max: int
    quantize: str

    COPIES = ("n_agents", "inputs", "outputs", "recurrent", "hidden_dim", "msg_dim", "k_max", "quantize")  # must equal the manifest's

    @classmethod
    def parse(cls, raw: Any, where: Path | str) -> "AgentCard":
        f = _Fields(where)
        if not isinstance(raw, dict):
            raise BundleError(f"{where} is corrupt (not a JSON object); {REEXPORT}")
        g = lambda key: f.get(raw, key, "")  # noqa: E731
        policy = f.str(g("policy"), "policy")
        if policy in (".", "..") or "/" in policy or "\\" in policy:
            f.fail("policy", f"expected a file name inside the agent folder, got {policy!r}")
        sha = g("policy_sha256")
        if not isinstance(sha, str) or not _SHA256.fullmatch(sha):
            f.fail("policy_sha256", f"expected a sha256 of 64 hex characters, got {_show(sha)}")
        return cls(
            agent=f.int(g("agent"), "agent", 0),
            format_version=f.int(g("format_version"), "format_version"),
            policy=policy,
            policy_sha256=sha,
            n_agents=f.int(g("n_agents"), "n_agents", 1),
            inputs=_parse_io(g("inputs"), f, "inputs"),
            outputs=_parse_io(g("outputs"), f, "outputs"),
            recurrent=f.bool(g("recurrent"), "recurrent"),
            hidden_dim=f.int(g("hidden_dim"), "hidden_dim", 1),
            msg_dim=f.int(g("msg_dim"), "msg_dim", 0),
            k_max=f.int(g("k_max"), "k_max", 0),
            quantize=f.str(g("quantize"), "quantize", QUANTIZE),
        )

    @classmethod
    def for_agent(cls, m: Manifest, i: int, policy_sha256: str) -> "AgentCard":
        """Agent ``i``'s card for manifest ``m`` (what ``marl-export`` writes)."""
        return cls(i, m.format_version, POLICY_FILE, policy_sha256, m.n_agents, m.inputs, m.outputs, m.recurrent, m.hidden_dim,
                   m.msg_dim, m.k_max, m.quantize)

    def to_dict(self) -> dict[str, Any]:
        return {
            "agent": self.agent,
            "format_version": self.format_version,
            "policy": self.policy,
            "policy_sha256": self.policy_sha256,
            "n_agents": self.n_agents,
            "inputs": [x.to_dict() for x in self.inputs],
            "outputs": [x.to_dict() for x in self.outputs],
            "recurrent": self.recurrent,
            "hidden_dim": self.hidden_dim,
            "msg_dim": self.msg_dim,
            "k_max": self.k_max,
            "quantize": self.quantize,
        }


# ---- bundles and agent folders --------------------------------------------------------------


@dataclass(frozen=True)
class AgentEntry:
    id: int
    dir: Path
    card: AgentCard

    @property
    def policy_path(self) -> Path:
        return self.dir / self.card.policy


@dataclass(frozen=True)
class Bundle:
    path: Path
    manifest: Manifest
    team_size: int | None = None  # run as a team of this many agents (``at_team_size``); None: the manifest's n

    # ---- convenience views ----------------------------------------------------
    @property
    def n_agents(self) -> int:
        """The team this bundle runs as: the trained n, or the size given to ``at_team_size``."""
        return self.team_size or self.manifest.n_agents

    @property
    def slots(self) -> int:
        return self.manifest.slots

    def at_team_size(self, n: int) -> "Bundle":
        """This bundle run as a team of ``n`` agents: agents 0..n-1 (slot i is agent i), in the
        env rebuilt at n. One ``UserError`` line when the bundle has fewer slots, the env cannot
        change its size, or the team communicates (its topology is recorded for the trained n)."""
        if n == self.manifest.n_agents:
            return Bundle(self.path, self.manifest)
        if self.communicates:
            raise BundleError(f"{self.path}: a communicating team runs at its trained size ({self.manifest.n_agents}); "
                              "its recorded topology fixes n")
        from ..envs import make_sized

        make_sized(self.manifest.env.name, n, 1, self.manifest.env.options).close()  # an env that cannot resize says so
        if not 1 <= n <= self.slots:
            raise BundleError(f"{self.path}: the bundle runs teams of 1..{self.slots} agents (max_agents {self.slots}), not {n}; "
                              "export a run trained with a larger max_agents")
        return Bundle(self.path, self.manifest, n)

    @property
    def communicates(self) -> bool:
        return self.manifest.communicates

    @property
    def msg_dim(self) -> int:
        return self.manifest.msg_dim

    @property
    def k_max(self) -> int:
        return self.manifest.k_max

    @property
    def hidden_dim(self) -> int:
        return self.manifest.hidden_dim

    @property
    def recurrent(self) -> bool:
        """Whether the policies carry a hidden state (a ``hidden`` input); feed-forward ones do not."""
        return self.manifest.recurrent

    @property
    def inputs(self) -> tuple[IOSpec, ...]:
        return self.manifest.inputs

    @property
    def outputs(self) -> tuple[IOSpec, ...]:
        return self.manifest.outputs

    @property
    def signer(self) -> str | None:
        """The id of the trusted key the manifest's signature verified with (None: not checked)."""
        return self.manifest.signer

    def agent(self, i: int) -> AgentEntry:
        if not 0 <= i < self.slots:
            raise BundleError(f"{self.path}: no agent {i}; the bundle has agents 0..{self.slots - 1}")
        return load_agent_dir(agent_folder(self.path, self.manifest, i), self.manifest)

    def topology(self) -> Any:
        """The recorded topology as an ``envs.topology.Topology`` (None without messages)."""
        if self.manifest.topology is None:
            return None
        from ..envs.topology import Topology

        return Topology.from_dict(self.manifest.topology)

    def make_env(self, n_envs: int = 1) -> Any:
        """The env the bundle was trained in, at its team size (``n_agents``)."""
        from ..envs import make_sized

        return make_sized(self.manifest.env.name, self.n_agents, n_envs, self.manifest.env.options)


def _read_bytes(path: Path, what: str) -> bytes:
    try:
        return path.read_bytes()
    except FileNotFoundError:
        raise BundleError(f"{path} is missing: {what}") from None
    except OSError as e:
        raise BundleError(f"{path} is corrupt ({e}); {REEXPORT}") from None


def _parse_json(data: bytes, path: Path) -> dict[str, Any]:
    try:
        d = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} is corrupt ({e}); {REEXPORT}") from None
    if not isinstance(d, dict):
        raise BundleError(f"{path} is corrupt (not a JSON object); {REEXPORT}")
    return d


def _read_json(path: Path, what: str) -> dict[str, Any]:
    return _parse_json(_read_bytes(path, what), path)


def read_manifest(path: Path | str, what: str = "the bundle manifest", trusted_keys: Any = None) -> Manifest:
    """Read and check a ``swarm.json`` (every field; see ``Manifest.parse``).

    With ``trusted_keys`` (public-key files or a ``runtime.signing.TrustedKeys``) the
    manifest must carry a signature (``swarm.json.sig`` beside it) by one of them; the
    bytes that verified are the bytes parsed. ``cryptography`` is imported only then."""
    path = Path(path)
    data = _read_bytes(path, what)
    signer = None
    if trusted_keys is not None:
        from .signing import TrustedKeys, verify_manifest

        trusted = TrustedKeys.of(trusted_keys)
        if trusted is not None:
            signer = verify_manifest(data, path, trusted)
    m = Manifest.parse(_parse_json(data, path), path)
    return m if signer is None else m.replace(signer=signer)


def agent_folder(bundle_dir: Path | str, manifest: Manifest, i: int) -> Path:
    """Agent ``i``'s folder as the manifest names it, refused unless it is inside ``bundle_dir``
    (a name with ``/`` or ``..`` is refused when the manifest is parsed; a symlink to elsewhere here)."""
    bundle_dir = Path(bundle_dir)
    name = manifest.agents[i].dir
    folder = bundle_dir / name
    if Path(name).is_absolute() or ".." in Path(name).parts:  # Manifest.parse refuses these already; never trust one caller
        raise BundleError(f"{bundle_dir}: agents[{i}].dir {name!r} is not a folder inside the bundle")
    if folder.exists() or folder.is_symlink():
        root, real = bundle_dir.resolve(), folder.resolve()
        if real == root or root not in real.parents:
            raise BundleError(f"{folder} resolves to {real}, outside the bundle {root}; agent folders must be inside the bundle folder")
    return folder


def load_bundle(path: Path | str, verify_files: bool = True, trusted_keys: Any = None) -> Bundle:
    """Read ``path/swarm.json`` and check every agent folder (inside the bundle, sha256, cards).

    With ``trusted_keys`` the manifest's signature is checked first (``read_manifest``),
    so every file is checked against hashes a trusted key signed."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path} is not a directory; pass a bundle folder written by marl-export")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{path} is not a bundle (no {MANIFEST}); write one with marl-export RUN_DIR --out {path}")
    m = read_manifest(manifest_path, trusted_keys=trusted_keys)
    for i in range(len(m.agents)):
        folder = agent_folder(path, m, i)
        if verify_files:
            load_agent_dir(folder, m)
    return Bundle(path, m)


def load_agent_dir(agent_dir: Path | str, manifest: Manifest) -> AgentEntry:
    """One agent's folder, checked against the manifest: card, ids, sha256 of every file."""
    agent_dir = Path(agent_dir)
    if not agent_dir.is_dir():
        raise BundleError(f"{agent_dir} is not a directory; pass an agent folder of a bundle (agent_<i>)")
    card_path = agent_dir / AGENT_CARD
    raw = _read_json(card_path, "the agent card")
    i = raw.get("agent")
    if isinstance(i, bool) or not isinstance(i, int) or not 0 <= i < len(manifest.agents):
        raise BundleError(f"{card_path}: agent id {i!r} is not in this bundle (0..{len(manifest.agents) - 1})")
    if raw.get("format_version") != manifest.format_version:
        raise BundleError(f"{agent_dir}: agent card version {raw.get('format_version')} != bundle version {manifest.format_version}")
    entry = manifest.agents[i]
    which = "the signed manifest's" if manifest.signer else "the manifest's"
    for name, want in entry.files.items():  # first: a changed file is reported as changed, whatever it holds
        f = agent_dir / name
        if not f.is_file():
            raise BundleError(f"{f} is missing (agent {i})")
        real = f.resolve()
        if agent_dir.resolve() not in real.parents:
            raise BundleError(f"{f} resolves to {real}, outside its agent folder (agent {i}); a bundle's files must be inside it")
        got = sha256_file(f)
        if got != want:
            raise BundleError(f"{f}: sha256 {got[:12]}… does not match {which} {want[:12]}… (agent {i}); the file was changed or corrupted")
    card = AgentCard.parse(raw, card_path)
    for key in AgentCard.COPIES:
        if getattr(card, key) != getattr(manifest, key):
            raise BundleError(f"{card_path}: its {key} do not match swarm.json's (agent {i})")
    if card.policy not in entry.files or card.policy_sha256 != entry.files[card.policy]:
        raise BundleError(f"{card_path}: policy {card.policy!r} with sha256 {card.policy_sha256[:12]}… is not what swarm.json lists (agent {i})")
    return AgentEntry(i, agent_dir, card)
