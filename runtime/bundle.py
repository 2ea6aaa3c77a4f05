"""Reading and checking a bundle (docs/design.md contract 5). torch-free.

A bundle is a folder::

    swarm.json              the manifest (below)
    agent_0/policy.onnx     agent 0's policy graph (contract 4)
    agent_0/agent.json      agent 0's card: its id, its files' sha256, its I/O
    agent_1/...

``swarm.json`` holds ``format`` ("marl-edge-bundle"), ``format_version``, the
env spec and options, the topology (as ``Topology.to_dict``), the message
size, whether the policies are recurrent (``recurrent``: a ``hidden`` input
and ``hidden_out`` output; feed-forward ones have neither), the policy's
inputs and outputs with shapes (``null`` = the dynamic batch), the agents with each file's sha256, the source run and checkpoint,
and the export's verification results. The runtime refuses a bundle whose
checksum, version or shapes do not match, with a message that names the
mismatch.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from ..errors import UserError

FORMAT = "marl-edge-bundle"
FORMAT_VERSION = 1
MANIFEST = "swarm.json"
AGENT_CARD = "agent.json"
POLICY_FILE = "policy.onnx"


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


@dataclass
class AgentEntry:
    id: int
    dir: Path
    card: dict[str, Any]

    @property
    def policy_path(self) -> Path:
        return self.dir / self.card.get("policy", POLICY_FILE)


@dataclass
class Bundle:
    path: Path
    manifest: dict[str, Any]

    # ---- convenience views ----------------------------------------------------
    @property
    def n_agents(self) -> int:
        return int(self.manifest["env_spec"]["n_agents"])

    @property
    def communicates(self) -> bool:
        return self.manifest.get("topology") is not None

    @property
    def msg_dim(self) -> int:
        return int(self.manifest.get("msg_dim") or 0)

    @property
    def k_max(self) -> int:
        return int(self.manifest.get("k_max") or 0)

    @property
    def hidden_dim(self) -> int:
        return int(self.manifest["hidden_dim"])

    @property
    def recurrent(self) -> bool:
        """Whether the policies carry a hidden state (a ``hidden`` input); feed-forward ones do not."""
        return any(x["name"] == "hidden" for x in self.manifest["inputs"])

    @property
    def inputs(self) -> list[dict[str, Any]]:
        return self.manifest["inputs"]

    @property
    def outputs(self) -> list[dict[str, Any]]:
        return self.manifest["outputs"]

    def agent(self, i: int) -> AgentEntry:
        if not 0 <= i < self.n_agents:
            raise BundleError(f"{self.path}: no agent {i}; the bundle has agents 0..{self.n_agents - 1}")
        return load_agent_dir(self.path / self.manifest["agents"][i]["dir"], self.manifest)

    def topology(self) -> Any:
        """The recorded topology as an ``envs.topology.Topology`` (None without messages)."""
        if not self.communicates:
            return None
        from ..envs.topology import Topology

        return Topology.from_dict(self.manifest["topology"])

    def make_env(self, n_envs: int = 1) -> Any:
        from ..envs import make

        env = self.manifest["env"]
        return make(env["name"], n_envs=n_envs, **env.get("options", {}))


def _read_json(path: Path, what: str) -> dict[str, Any]:
    try:
        d = json.loads(path.read_text())
    except FileNotFoundError:
        raise BundleError(f"{path} is missing: {what}") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as e:
        raise BundleError(f"{path} is corrupt ({e}); re-export the bundle with marl-export") from None
    if not isinstance(d, dict):
        raise BundleError(f"{path} is corrupt (not a JSON object); re-export the bundle with marl-export")
    return d


def check_manifest(m: dict[str, Any], where: Path) -> None:
    if m.get("format") != FORMAT:
        raise BundleError(f"{where}: not a marl-edge bundle manifest (format {m.get('format')!r})")
    v = m.get("format_version")
    if v != FORMAT_VERSION:
        raise BundleError(f"{where}: bundle format version {v} is not supported by this runtime (it reads version {FORMAT_VERSION})")
    for key in ("env", "env_spec", "agents", "inputs", "outputs", "hidden_dim"):
        if key not in m:
            raise BundleError(f"{where}: manifest lacks {key!r}; re-export the bundle with marl-export")
    has_hidden = isinstance(m["inputs"], list) and any(isinstance(x, dict) and x.get("name") == "hidden" for x in m["inputs"])
    if "recurrent" in m and bool(m["recurrent"]) != has_hidden:
        raise BundleError(f"{where}: manifest says recurrent={m['recurrent']} but the policy inputs {'have' if has_hidden else 'lack'} 'hidden'; "
                          "re-export the bundle with marl-export")
    n = m["env_spec"].get("n_agents")
    if not isinstance(m["agents"], list) or len(m["agents"]) != n:
        raise BundleError(f"{where}: manifest lists {len(m['agents']) if isinstance(m['agents'], list) else '?'} agents, env spec says {n}")


def load_bundle(path: Path | str, verify_files: bool = True) -> Bundle:
    """Read ``path/swarm.json`` and check every agent folder (sha256, cards)."""
    path = Path(path)
    if not path.is_dir():
        raise BundleError(f"{path} is not a directory; pass a bundle folder written by marl-export")
    manifest_path = path / MANIFEST
    if not manifest_path.is_file():
        raise BundleError(f"{path} is not a bundle (no {MANIFEST}); write one with marl-export RUN_DIR --out {path}")
    m = _read_json(manifest_path, "the bundle manifest")
    check_manifest(m, manifest_path)
    b = Bundle(path, m)
    if verify_files:
        for i, entry in enumerate(m["agents"]):
            if entry.get("id") != i:
                raise BundleError(f"{manifest_path}: agent entry {i} has id {entry.get('id')}")
            load_agent_dir(path / entry["dir"], m)
    return b


def load_agent_dir(agent_dir: Path | str, manifest: dict[str, Any]) -> AgentEntry:
    """One agent's folder, checked against the manifest: card, ids, sha256 of every file."""
    agent_dir = Path(agent_dir)
    if not agent_dir.is_dir():
        raise BundleError(f"{agent_dir} is not a directory; pass an agent folder of a bundle (agent_<i>)")
    card = _read_json(agent_dir / AGENT_CARD, "the agent card")
    i = card.get("agent")
    if not isinstance(i, int) or not 0 <= i < len(manifest["agents"]):
        raise BundleError(f"{agent_dir / AGENT_CARD}: agent id {i!r} is not in this bundle (0..{len(manifest['agents']) - 1})")
    if card.get("format_version") != manifest["format_version"]:
        raise BundleError(f"{agent_dir}: agent card version {card.get('format_version')} != bundle version {manifest['format_version']}")
    entry = manifest["agents"][i]
    for name, want in entry["files"].items():
        f = agent_dir / name
        if not f.is_file():
            raise BundleError(f"{f} is missing (agent {i})")
        got = sha256_file(f)
        if got != want:
            raise BundleError(f"{f}: sha256 {got[:12]}… does not match the manifest's {want[:12]}… (agent {i}); the file was changed or corrupted")
    for key in ("inputs", "outputs"):
        if card.get(key) != manifest[key]:
            raise BundleError(f"{agent_dir / AGENT_CARD}: its {key} do not match swarm.json's (agent {i})")
    return AgentEntry(i, agent_dir, card)
