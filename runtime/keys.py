"""The swarm's CURVE keys: one key pair per agent and one for the world.
torch-free; pure library functions (the CLIs call them).

On disk (docs/protocol.md, "Trust model and CURVE"):

    <name>.key_secret   one member's key pair in pyzmq's certificate format
                        (``zmq.auth.create_certificates``); mode 0600, and it
                        stays on that member's host
    public_keys.json    {"world": "<Z85>", "agent-0": "<Z85>", ...}: every
                        member's public key by its user id; not secret

A member's user id is ``world`` or ``agent-<i>``. The world and every agent
inbox admit exactly the public keys in ``public_keys.json`` (a ZAP handler,
``runtime.transport.start_auth``) and name each connection by the user id of
its key; a frame whose claimed sender is not that user id is refused.
"""

from __future__ import annotations

import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from ..wire.keyfile import private_file_problem
from .bundle import BundleError

WORLD_USER = "world"
PUBLIC_KEYS = "public_keys.json"


def agent_user(i: int) -> str:
    """Agent ``i``'s user id: what its key is called and what its frames must claim."""
    return f"agent-{i}"


def secret_name(user: str) -> str:
    """The secret key file of ``user``: ``world.key_secret``, ``agent_3.key_secret``."""
    return user.replace("-", "_") + ".key_secret"


@dataclass(frozen=True)
class SwarmKeys:
    """One member's key pair and every member's public key (all Z85 bytes)."""

    me: str  # this member's user id
    public: bytes
    secret: bytes
    publics: dict[str, bytes]  # user id -> public key

    def public_of(self, user: str) -> bytes:
        try:
            return self.publics[user]
        except KeyError:
            raise BundleError(f"the swarm's public keys have none for {user}") from None

    def users(self) -> dict[bytes, str]:
        """Public key -> user id: what the ZAP handler admits."""
        return {k: u for u, k in self.publics.items()}


def _valid_z85_key(k: object) -> bool:
    if not isinstance(k, str) or len(k) != 40:
        return False
    try:
        return len(z85.decode(k.encode("ascii"))) == 32
    except (ValueError, UnicodeEncodeError, KeyError):
        return False


def generate_swarm_keys(out: Path, n_agents: int) -> dict[str, Path]:
    """Fresh key pairs for the world and ``n_agents`` agents in ``out`` (created
    0700 if new): ``<user>.key_secret`` files (0600) and ``public_keys.json``.
    Existing files of those names are replaced. Returns user id -> secret key
    file, plus ``"public"`` -> the public keys file."""
    out = Path(out)
    if not out.exists():
        out.mkdir(parents=True, mode=0o700)
    users = [WORLD_USER] + [agent_user(i) for i in range(n_agents)]
    paths: dict[str, Path] = {}
    publics: dict[str, str] = {}
    # pyzmq writes the files with the process umask: write them in a private folder first
    with tempfile.TemporaryDirectory(dir=out, prefix=".keys-") as tmp:
        for u in users:
            pub_file, sec_file = zmq.auth.create_certificates(tmp, u)
            os.chmod(sec_file, 0o600)
            pub, _ = zmq.auth.load_certificate(sec_file)
            publics[u] = pub.decode("ascii")
            dest = out / secret_name(u)
            os.replace(sec_file, dest)
            paths[u] = dest
    pub_path = out / PUBLIC_KEYS
    tmp_pub = out / (PUBLIC_KEYS + ".tmp")
    tmp_pub.write_text(json.dumps(publics, indent=2) + "\n")
    os.chmod(tmp_pub, 0o644)
    os.replace(tmp_pub, pub_path)
    paths["public"] = pub_path
    return paths


def check_private(path: Path) -> None:
    """A secret key file must be a regular file that only its owner can read."""
    problem = private_file_problem(path)
    if problem:
        raise BundleError(f"secret key {path}: {problem}")


def load_public_keys(path: Path) -> dict[str, bytes]:
    """``public_keys.json``: user id -> Z85 public key."""
    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"public keys {path}: cannot read them ({e})") from None
    if not isinstance(d, dict) or WORLD_USER not in d:
        raise BundleError(f'public keys {path}: want a JSON object {{"world": KEY, "agent-0": KEY, ...}}')
    out = {}
    for u, k in d.items():
        if not _valid_z85_key(k):
            raise BundleError(f"public keys {path}: {u}'s key is not a 40-character Z85 CURVE key")
        out[str(u)] = k.encode("ascii")
    if len(set(out.values())) != len(out):
        raise BundleError(f"public keys {path}: two members share a key")
    return out


def load_keys(secret_file: Path, public_file: Path, me: str | None = None) -> SwarmKeys:
    """One member's keys: its secret key file (checked to be private) and the
    swarm's public keys. The member is the one whose public key the secret
    file holds; ``me`` (e.g. ``agent-3``) must be that member if given."""
    check_private(secret_file)
    try:
        pub, sec = zmq.auth.load_certificate(secret_file)
    except (OSError, ValueError) as e:
        raise BundleError(f"secret key {secret_file}: {e}") from None
    if sec is None or not _valid_z85_key(sec.decode("ascii", "replace")) or not _valid_z85_key(pub.decode("ascii", "replace")):
        raise BundleError(f"secret key {secret_file}: no CURVE secret key in it")
    if zmq.curve_public(sec) != pub:
        raise BundleError(f"secret key {secret_file}: its public key does not belong to its secret key")
    publics = load_public_keys(public_file)
    owner = next((u for u, k in publics.items() if k == pub), None)
    if owner is None:
        raise BundleError(f"secret key {secret_file} is not one of the swarm's keys in {public_file}")
    if me is not None and owner != me:
        raise BundleError(f"secret key {secret_file} is {owner}'s, not {me}'s")
    return SwarmKeys(owner, pub, sec, publics)


def inside(path: Path, folder: Path) -> bool:
    """``path`` is ``folder`` or lies under it (both resolved)."""
    p, f = Path(path).resolve(), Path(folder).resolve()
    return p == f or f in p.parents


__all__ = ["SwarmKeys", "WORLD_USER", "PUBLIC_KEYS", "agent_user", "secret_name", "generate_swarm_keys", "check_private",
           "load_public_keys", "load_keys", "inside"]
