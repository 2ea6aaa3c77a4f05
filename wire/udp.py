"""The UDP robot link's datagram format: encoders, the validating decoder and
the ``udp://HOST:PORT`` address helpers. numpy + stdlib only (no torch, no
onnx, no zmq).

Both ends use it: the agent's adapter ``robots.udp.UdpRobot`` and the
testbed device ``runtime.udp_world`` (the world simulator over a UDP socket).

The datagram format (version 1), every integer little-endian, no padding.
A 16-byte header::

    offset size  type     field
    0      2     char[2]  magic "ME" (0x4D 0x45)
    2      1     u8       version (1)
    3      1     u8       kind (below)
    4      2     u16      agent id: the sender (agent -> device) or the recipient (device -> agent)
    6      2     u16      flags: bit 0 FIRST (OBS only: a new episode or a rejoin); other bits 0
    8      4     u32      episode
    12     4     u32      step within the episode

then the body of the kind; the datagram is exactly header + body long::

    agent -> device
    0x01 HELLO, 0x02 HEARTBEAT   u32 pid, u16 addr_len, u16 swarm_len,
                                 u8 addr[addr_len] (the agent's message inbox, UTF-8),
                                 u8 swarm[swarm_len] (the swarm id, UTF-8)
    0x03 ACT                     u16 action_dim (0: discrete), u16 0,
                                 then i32 action (discrete) or f32 action[action_dim]
    0x04 BYE                     u16 len, u16 0, u8 metrics[len] (a UTF-8 JSON object)
    device -> agent
    0x11 OBS                     u16 obs_dim, u16 n_avail, u16 n_in, u16 n_to,
                                 f32 obs[obs_dim], u16 in[n_in], u16 to[n_to], u8 avail[n_avail]
    0x12 PEERS                   u16 count, u16 0, then count x (u16 id, u16 len, u8 addr[len])
    0x13 STOP                    u16 len, u16 0, u8 reason[len] (UTF-8)

ACT, OBS: the episode and step of the observation acted on. ``in`` lists the
agents whose previous-step messages this agent hears now (slot order), ``to``
the agents that hear what it emits now (docs/design.md contracts 2-3); ``avail``
is one 0/1 byte per discrete action (at least one 1), none for a continuous
box. A HEARTBEAT carries the same body as HELLO, so a device that lost an
agent (or its HELLO) can take the agent back from its next heartbeat.

Every received datagram is validated -- size, magic, version, kind and
direction, recipient, flags, zero reserved fields, sane episode and step,
shapes against the bundle, distinct ids in range, finite floats, 0/1 avail,
UTF-8 text, and the sender's address -- and a bad one is counted
(``invalid_frames``, with a reason) and dropped; decoding never raises.

Authenticated datagrams (optional, both ends hold the same 32-byte link key):
flags bit 15 (AUTH) is set and a 24-byte trailer follows the body::

    u64 counter   the sender's datagram counter (starts at the Unix time in ns, +1 per datagram)
    u8  tag[16]   HMAC-SHA256(key, every byte before the tag), first 16 bytes

A receiver with a key refuses a datagram without AUTH ("no tag"), with a tag
that does not verify ("bad tag"), or whose counter it has seen ("replayed")
or that is 64 or more below the highest one seen from that sender ("too
old"). ``LinkAuth`` seals and opens; ``decode(..., auth=...)`` checks.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import math
import os
import socket
import struct
import time
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

import numpy as np

from ..errors import UserError
from .keyfile import private_file_problem
from .protocol import Counters

MAGIC = b"ME"
VERSION = 1
HEADER = struct.Struct("<2sBBHHII")  # magic, version, kind, agent, flags, episode, step
HEADER_SIZE = HEADER.size  # 16
MAX_DATAGRAM = 65507  # the largest UDP payload over IPv4
MAX_TEXT = 1024  # endpoints, swarm ids, stop reasons

HELLO, HEARTBEAT, ACT, BYE = 0x01, 0x02, 0x03, 0x04  # agent -> device
OBS, PEERS, STOP = 0x11, 0x12, 0x13  # device -> agent
TO_DEVICE = (HELLO, HEARTBEAT, ACT, BYE)
TO_AGENT = (OBS, PEERS, STOP)
KIND_NAMES = {HELLO: "hello", HEARTBEAT: "heartbeat", ACT: "act", BYE: "bye", OBS: "obs", PEERS: "peers", STOP: "stop"}
FLAG_FIRST = 0x0001
FLAG_AUTH = 0x8000  # an authenticated datagram: the counter + tag trailer follows the body
KEY_SIZE = 32  # the link key: 32 random bytes
TAG_SIZE = 16  # HMAC-SHA256 truncated to its first 16 bytes
COUNTER = struct.Struct("<Q")
TRAILER_SIZE = COUNTER.size + TAG_SIZE  # 24
REPLAY_WINDOW = 64

_U16X4 = struct.Struct("<HHHH")
_HELLO = struct.Struct("<IHH")
_ACT = struct.Struct("<HH")
_LEN = struct.Struct("<HH")
_ENTRY = struct.Struct("<HH")
F32 = np.dtype("<f4")
U16 = np.dtype("<u2")


class UdpLinkError(UserError, ValueError):
    """A bad robot link setting (an address that does not parse or resolve)."""


class EncodeError(ValueError):
    """A datagram we are about to send is malformed (a bug, not line noise)."""


@dataclass(frozen=True)
class UdpSpec:
    """What both ends of the link accept: the team size and the vector sizes."""

    n_agents: int
    obs_dim: int
    n_actions: int = 0  # discrete actions (0 for a continuous box)
    action_dim: int = 0  # continuous box: actions are float32[action_dim]
    k_max: int = 0  # the longest inbox (0: no messages, then at most n_agents)
    max_episode: int = 10_000_000
    max_step: int = 1_000_000

    @classmethod
    def from_manifest(cls, manifest: Any) -> "UdpSpec":
        """From a bundle's typed manifest (``runtime.bundle.Manifest``; read by attribute, not imported)."""
        spec = manifest.env_spec
        return cls(spec.n_agents, spec.obs_dim, n_actions=spec.n_actions or 0, action_dim=spec.action_dim or 0, k_max=manifest.k_max)


@dataclass
class Datagram:
    """A decoded, valid datagram. Only the fields of its kind are set."""

    kind: int
    agent: int
    episode: int = 0
    step: int = 0
    first: bool = False
    obs: np.ndarray | None = None
    avail: np.ndarray | None = None
    inbox: list[int] = field(default_factory=list)
    send_to: list[int] = field(default_factory=list)
    action: int | np.ndarray | None = None
    pid: int = 0
    addr: str = ""
    swarm: str = ""
    metrics: dict[str, Any] | None = None
    peers: dict[int, str] | None = None
    reason: str = ""
    counter: int | None = None  # an authenticated datagram's counter


# ---- encoding ----------------------------------------------------------------------


def _header(kind: int, agent: int, episode: int = 0, step: int = 0, flags: int = 0) -> bytes:
    try:
        return HEADER.pack(MAGIC, VERSION, kind, agent, flags, episode, step)
    except struct.error as e:
        raise EncodeError(f"header out of range: {e}") from None


def _text(s: str, what: str) -> bytes:
    b = s.encode()
    if len(b) > MAX_TEXT:
        raise EncodeError(f"{what} is {len(b)} bytes, at most {MAX_TEXT}")
    return b


def _check_size(d: bytes) -> bytes:
    if len(d) > MAX_DATAGRAM:
        raise EncodeError(f"datagram of {len(d)} bytes exceeds {MAX_DATAGRAM}")
    return d


def encode_hello(agent: int, addr: str, swarm: str, pid: int = 0, heartbeat: bool = False) -> bytes:
    a, s = _text(addr, "addr"), _text(swarm, "swarm id")
    return _header(HEARTBEAT if heartbeat else HELLO, agent) + _HELLO.pack(pid & 0xFFFFFFFF, len(a), len(s)) + a + s


def encode_act(agent: int, episode: int, step: int, action: int | np.ndarray) -> bytes:
    if isinstance(action, np.ndarray):
        v = np.ascontiguousarray(action, dtype=F32).reshape(-1)
        if v.size == 0 or v.size > 0xFFFF:
            raise EncodeError(f"a continuous action needs 1..65535 floats, got {v.size}")
        return _check_size(_header(ACT, agent, episode, step) + _ACT.pack(v.size, 0) + v.tobytes())
    return _header(ACT, agent, episode, step) + _ACT.pack(0, 0) + struct.pack("<i", int(action))


def _finite_json(x: Any) -> Any:
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {str(k): _finite_json(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [_finite_json(v) for v in x]
    return x


def encode_bye(agent: int, metrics: dict[str, Any] | None = None) -> bytes:
    """Metrics as strict JSON (non-finite numbers become null); {} if they would not fit."""
    body = json.dumps(_finite_json(metrics or {}), default=str, allow_nan=False).encode()
    if len(body) > MAX_DATAGRAM - HEADER_SIZE - _LEN.size:
        body = b"{}"
    return _header(BYE, agent) + _LEN.pack(len(body), 0) + body


def encode_obs(agent: int, episode: int, step: int, obs: np.ndarray, avail: np.ndarray | bytes | None,
               inbox: list[int], send_to: list[int], first: bool = False) -> bytes:
    o = np.ascontiguousarray(obs, dtype=F32).reshape(-1)
    if avail is None or isinstance(avail, (bytes, bytearray)):
        av = bytes(avail or b"")
    else:
        av = np.asarray(avail).astype(np.uint8).reshape(-1).tobytes()
    try:
        body = _U16X4.pack(o.size, len(av), len(inbox), len(send_to))
        ids = np.asarray(list(inbox) + list(send_to), dtype=np.int64)
        if ids.size and (ids.min() < 0 or ids.max() > 0xFFFF):
            raise EncodeError("agent ids must be in 0..65535")
    except struct.error as e:
        raise EncodeError(f"obs body out of range: {e}") from None
    return _check_size(_header(OBS, agent, episode, step, FLAG_FIRST if first else 0) + body + o.tobytes() + ids.astype(U16).tobytes() + av)


def encode_peers(agent: int, peers: dict[int, str]) -> bytes:
    parts = [_header(PEERS, agent), _LEN.pack(len(peers), 0)]
    for j, a in sorted(peers.items()):
        b = _text(a, "peer address")
        parts.append(_ENTRY.pack(j, len(b)) + b)
    return _check_size(b"".join(parts))


def encode_stop(agent: int, reason: str = "stop") -> bytes:
    b = _text(reason, "stop reason")
    return _header(STOP, agent) + _LEN.pack(len(b), 0) + b


# ---- decoding and validation ------------------------------------------------------------


def _utf8(b: bytes) -> str | None:
    try:
        return b.decode("utf-8")
    except UnicodeDecodeError:
        return None


def _ids(raw: np.ndarray, n: int, limit: int, name: str) -> list[int] | str:
    if raw.size > limit:
        return f"{name}: {raw.size} ids, at most {limit}"
    ids = [int(x) for x in raw]
    if any(x >= n for x in ids) or len(set(ids)) != len(ids):
        return f"{name}: agent ids must be distinct and in 0..{n - 1}"
    return ids


def decode(data: bytes, spec: UdpSpec, to_agent: bool, agent: int | None = None, auth: "LinkAuth | None" = None) -> Datagram | str:
    """A received datagram as a ``Datagram``, or the reason it is invalid.

    ``to_agent``: decoding on the agent's side (device -> agent kinds), else on
    the device's side. ``agent``: the agent id a device -> agent datagram must
    be addressed to. ``auth``: the link key is set; the datagram must carry a
    valid tag and a fresh counter (the replay window is that of the sender:
    the agent in the header on the device's side, the device on the agent's)."""
    if not isinstance(data, (bytes, bytearray, memoryview)):
        return "not bytes"
    data = bytes(data)
    if len(data) > MAX_DATAGRAM:
        return "oversized"
    if len(data) < HEADER_SIZE:
        return "short: no header"
    counter = None
    if auth is not None:
        opened = auth.open(data)
        if isinstance(opened, str):
            return opened
        data, counter = opened
    elif HEADER.unpack_from(data)[4] & FLAG_AUTH and data[:2] == MAGIC:
        return "authenticated (no link key here)"
    magic, version, kind, who, flags, episode, step = HEADER.unpack_from(data)
    if magic != MAGIC:
        return "bad magic"
    if version != VERSION:
        return f"version {version}"
    if kind not in KIND_NAMES:
        return "unknown kind"
    if kind not in (TO_AGENT if to_agent else TO_DEVICE):
        return f"wrong direction: {KIND_NAMES[kind]}"
    if who >= spec.n_agents:
        return "unknown agent"
    if agent is not None and who != agent:
        return "addressed to another agent"
    if flags & ~FLAG_FIRST or (flags and kind != OBS):
        return "unknown flags"
    if episode > spec.max_episode or step > spec.max_step:
        return "insane step"
    d = Datagram(kind, who, episode, step, first=bool(flags & FLAG_FIRST))
    body = memoryview(data)[HEADER_SIZE:]
    r = _BODY[kind](d, body, spec)
    if r is not None:
        return r
    if auth is not None:  # valid and authentic: now (and only now) the counter moves the sender's window
        assert counter is not None
        stale = auth.accept((to_agent, who), counter)
        if stale is not None:
            return stale
        d.counter = counter
    return d


def _body_hello(d: Datagram, body: memoryview, spec: UdpSpec) -> str | None:
    if len(body) < _HELLO.size:
        return "hello: short"
    pid, na, ns = _HELLO.unpack_from(body)
    if na > MAX_TEXT or ns > MAX_TEXT:
        return "hello: text too long"
    if len(body) != _HELLO.size + na + ns:
        return f"hello: {len(body)} body bytes, want {_HELLO.size + na + ns}"
    addr = _utf8(bytes(body[_HELLO.size : _HELLO.size + na]))
    swarm = _utf8(bytes(body[_HELLO.size + na :]))
    if addr is None or swarm is None:
        return "hello: not UTF-8"
    d.pid, d.addr, d.swarm = pid, addr, swarm
    return None


def _body_act(d: Datagram, body: memoryview, spec: UdpSpec) -> str | None:
    if len(body) < _ACT.size:
        return "act: short"
    dim, zero = _ACT.unpack_from(body)
    if zero:
        return "act: reserved field not 0"
    if dim != spec.action_dim:
        return f"act: action_dim {dim}, want {spec.action_dim}"
    want = _ACT.size + (4 * dim if dim else 4)
    if len(body) != want:
        return f"act: {len(body)} body bytes, want {want}"
    if dim:
        v = np.frombuffer(body, dtype=F32, offset=_ACT.size).copy()
        if not np.isfinite(v).all():
            return "act: non-finite values"
        d.action = v
    else:
        (a,) = struct.unpack_from("<i", body, _ACT.size)
        if not 0 <= a < max(1, spec.n_actions):
            return "act: action out of range"
        d.action = a
    return None


def _body_bye(d: Datagram, body: memoryview, spec: UdpSpec) -> str | None:
    if len(body) < _LEN.size:
        return "bye: short"
    n, zero = _LEN.unpack_from(body)
    if zero:
        return "bye: reserved field not 0"
    if len(body) != _LEN.size + n:
        return f"bye: {len(body)} body bytes, want {_LEN.size + n}"
    try:
        m = json.loads(bytes(body[_LEN.size :]).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "bye: metrics are not UTF-8 JSON"
    if not isinstance(m, dict):
        return "bye: metrics are not a JSON object"
    d.metrics = m
    return None


def _body_obs(d: Datagram, body: memoryview, spec: UdpSpec) -> str | None:
    if len(body) < _U16X4.size:
        return "obs: short"
    od, na, ni, nt = _U16X4.unpack_from(body)
    if od != spec.obs_dim:
        return f"obs: obs_dim {od}, want {spec.obs_dim}"
    if na != spec.n_actions:
        return f"obs: {na} avail bytes, want {spec.n_actions}"
    want = _U16X4.size + 4 * od + 2 * (ni + nt) + na
    if len(body) != want:
        return f"obs: {len(body)} body bytes, want {want}"
    off = _U16X4.size
    obs = np.frombuffer(body, dtype=F32, count=od, offset=off).copy()
    if not np.isfinite(obs).all():
        return "obs: non-finite values"
    off += 4 * od
    ids = np.frombuffer(body, dtype=U16, count=ni + nt, offset=off)
    off += 2 * (ni + nt)
    inbox = _ids(ids[:ni], spec.n_agents, spec.k_max or spec.n_agents, "in")
    if isinstance(inbox, str):
        return inbox
    send_to = _ids(ids[ni:], spec.n_agents, spec.n_agents, "to")
    if isinstance(send_to, str):
        return send_to
    av = np.frombuffer(body, dtype=np.uint8, count=na, offset=off)
    if na and ((av > 1).any() or not av.any()):
        return "obs: avail wants n_actions bytes of 0/1 with at least one 1"
    d.obs, d.avail, d.inbox, d.send_to = obs, av.astype(bool), inbox, send_to
    return None


def _body_peers(d: Datagram, body: memoryview, spec: UdpSpec) -> str | None:
    if len(body) < _LEN.size:
        return "peers: short"
    count, zero = _LEN.unpack_from(body)
    if zero:
        return "peers: reserved field not 0"
    if count > spec.n_agents:
        return "peers: more entries than agents"
    off, peers = _LEN.size, {}
    for _ in range(count):
        if off + _ENTRY.size > len(body):
            return "peers: truncated"
        j, n = _ENTRY.unpack_from(body, off)
        off += _ENTRY.size
        if j >= spec.n_agents or j in peers:
            return "peers: agent ids must be distinct and in range"
        if n > MAX_TEXT or off + n > len(body):
            return "peers: truncated"
        a = _utf8(bytes(body[off : off + n]))
        if a is None:
            return "peers: not UTF-8"
        peers[j] = a
        off += n
    if off != len(body):
        return f"peers: {len(body) - off} trailing bytes"
    d.peers = peers
    return None


def _body_stop(d: Datagram, body: memoryview, spec: UdpSpec) -> str | None:
    if len(body) < _LEN.size:
        return "stop: short"
    n, zero = _LEN.unpack_from(body)
    if zero:
        return "stop: reserved field not 0"
    if n > MAX_TEXT or len(body) != _LEN.size + n:
        return f"stop: {len(body)} body bytes, want {_LEN.size + n}"
    r = _utf8(bytes(body[_LEN.size :]))
    if r is None:
        return "stop: not UTF-8"
    d.reason = r or "stop"
    return None


_BODY = {HELLO: _body_hello, HEARTBEAT: _body_hello, ACT: _body_act, BYE: _body_bye, OBS: _body_obs, PEERS: _body_peers, STOP: _body_stop}


# ---- authentication: the link key, the tag, the replay window ----------------------------------


class ReplayWindow:
    """The counters seen from one sender: the highest one and a bitmap of the
    ``size`` below it (bit k: highest - k was seen), as in IPsec/DTLS."""

    __slots__ = ("size", "top", "seen")

    def __init__(self, size: int = REPLAY_WINDOW) -> None:
        self.size, self.top, self.seen = size, -1, 0

    def check(self, n: int) -> str | None:
        """None if ``n`` is fresh, else "replayed" or "too old"."""
        if n > self.top:
            return None
        back = self.top - n
        if back >= self.size:
            return "too old"
        return "replayed" if self.seen >> back & 1 else None

    def update(self, n: int) -> None:
        if n > self.top:
            shift = n - self.top
            self.seen = ((self.seen << shift) | 1) & ((1 << self.size) - 1) if shift < self.size else 1
            self.top = n
        else:
            self.seen |= 1 << (self.top - n)


class LinkAuth:
    """One end of an authenticated link: seals what it sends (AUTH flag,
    counter, tag) and opens what it receives (tag, then the sender's replay
    window). The counter starts at the Unix time in nanoseconds, so a
    restarted sender carries on above what its peers have seen."""

    def __init__(self, key: bytes, window: int = REPLAY_WINDOW, counter: int | None = None) -> None:
        if len(key) != KEY_SIZE:
            raise UdpLinkError(f"a link key is {KEY_SIZE} bytes, got {len(key)}")
        self.key = bytes(key)
        self.window = window
        self.counter = time.time_ns() if counter is None else int(counter)
        self.windows: dict[Any, ReplayWindow] = {}

    def tag(self, signed: bytes) -> bytes:
        return hmac.digest(self.key, signed, "sha256")[:TAG_SIZE]

    def seal(self, datagram: bytes) -> bytes:
        """An unauthenticated datagram (from the encoders) -> its authenticated form."""
        if len(datagram) < HEADER_SIZE or len(datagram) + TRAILER_SIZE > MAX_DATAGRAM:
            raise EncodeError(f"cannot seal a datagram of {len(datagram)} bytes")
        self.counter = (self.counter + 1) & 0xFFFFFFFFFFFFFFFF
        flags = struct.unpack_from("<H", datagram, 6)[0] | FLAG_AUTH
        signed = b"".join((datagram[:6], struct.pack("<H", flags), datagram[8:], COUNTER.pack(self.counter)))
        return signed + self.tag(signed)

    def open(self, data: bytes) -> tuple[bytes, int] | str:
        """(the datagram without AUTH and trailer, its counter), or "no tag" / "bad tag"."""
        flags = struct.unpack_from("<H", data, 6)[0]
        if not flags & FLAG_AUTH or len(data) < HEADER_SIZE + TRAILER_SIZE:
            return "no tag"
        signed, tag = data[:-TAG_SIZE], data[-TAG_SIZE:]
        if not hmac.compare_digest(self.tag(signed), tag):
            return "bad tag"
        (counter,) = COUNTER.unpack_from(signed, len(signed) - COUNTER.size)
        plain = b"".join((signed[:6], struct.pack("<H", flags & ~FLAG_AUTH), signed[8 : -COUNTER.size]))
        return plain, counter

    def accept(self, sender: Any, counter: int) -> str | None:
        """None (and the window moves) if ``counter`` is fresh for ``sender``, else why not."""
        w = self.windows.get(sender)
        if w is None:
            w = self.windows[sender] = ReplayWindow(self.window)
        why = w.check(counter)
        if why is None:
            w.update(counter)
        return why


def new_link_key() -> bytes:
    return os.urandom(KEY_SIZE)


def write_link_key(out: str | os.PathLike, force: bool = False) -> str:
    """Write a new link key to ``out`` as 64 hex digits and a newline, mode 0600
    (created so from the start); returns the path."""
    path = os.fspath(out)
    if os.path.exists(path) and not force:
        raise UdpLinkError(f"{path} exists; pass --force to replace it")
    parent = os.path.dirname(path)
    if parent:
        os.makedirs(parent, mode=0o700, exist_ok=True)  # a new key folder: private to its owner
    tmp = f"{path}.tmp{os.getpid()}"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "w") as f:
            f.write(new_link_key().hex() + "\n")
        os.chmod(tmp, 0o600)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise
    return path


def read_link_key(path: str | os.PathLike) -> bytes:
    """A link key file: 32 bytes as hex (64 digits) or base64 text, a regular
    file only its owner can read (like ssh, a group/other-readable one is refused)."""
    p = os.fspath(path)
    problem = private_file_problem(p)
    if problem:
        raise UdpLinkError(f"link key {p}: {problem}")
    try:
        with open(p, "rb") as f:
            text = f.read(4096).strip()
    except OSError as e:
        raise UdpLinkError(f"link key {p}: cannot read it ({e.strerror or e})") from None
    key = None
    try:
        key = bytes.fromhex(text.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError):
            pass
    if key is None or len(key) != KEY_SIZE:
        raise UdpLinkError(f"link key {p}: want {KEY_SIZE} bytes as hex or base64 text (marl-keys link OUT writes one)")
    return key


def link_auth(path: str | os.PathLike | None) -> LinkAuth | None:
    """The ``LinkAuth`` of a key file, or None without one."""
    return None if path is None else LinkAuth(read_link_key(path))


# ---- addresses ----------------------------------------------------------------------------


def parse_udp_url(text: str) -> tuple[str, int]:
    """``udp://HOST:PORT`` (``udp://[::1]:PORT`` for IPv6) -> (host, port); UdpLinkError says what is wrong."""
    try:
        u = urlsplit(text)
        port = u.port
    except ValueError as e:
        raise UdpLinkError(f"{text!r} is not udp://HOST:PORT ({e})") from None
    if u.scheme != "udp":
        raise UdpLinkError(f"{text!r}: the scheme must be udp://, e.g. udp://127.0.0.1:9000")
    if not u.hostname or port is None or u.path not in ("", "/") or u.query or u.fragment or u.username:
        raise UdpLinkError(f"{text!r} is not udp://HOST:PORT, e.g. udp://127.0.0.1:9000")
    if not 1 <= port <= 65535:
        raise UdpLinkError(f"{text!r}: port must be in 1..65535")
    return u.hostname, port


def resolve(host: str, port: int) -> tuple[int, tuple[Any, ...]]:
    """(address family, socket address) of a UDP host and port."""
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_DGRAM)
    except (socket.gaierror, UnicodeError) as e:
        raise UdpLinkError(f"cannot resolve {host}:{port} ({e})") from None
    infos.sort(key=lambda i: i[0] != socket.AF_INET)  # IPv4 first: "localhost" means 127.0.0.1 here
    fam, _, _, _, sa = infos[0]
    return fam, sa


def same_addr(a: tuple[Any, ...], b: tuple[Any, ...]) -> bool:
    return a[0] == b[0] and a[1] == b[1]


@dataclass
class LinkCounters(Counters):
    """The frame counters of ``wire.protocol``, plus datagrams the OS refused to send."""

    send_errors: int = 0


__all__ = [
    "UdpSpec", "Datagram", "decode", "encode_hello", "encode_act", "encode_bye", "encode_obs", "encode_peers", "encode_stop",
    "parse_udp_url", "resolve", "same_addr", "LinkCounters", "UdpLinkError", "EncodeError", "MAGIC", "VERSION", "HEADER_SIZE",
    "MAX_DATAGRAM", "LinkAuth", "ReplayWindow", "read_link_key", "write_link_key", "new_link_key", "link_auth", "FLAG_AUTH",
    "TRAILER_SIZE", "TAG_SIZE", "KEY_SIZE",
]
