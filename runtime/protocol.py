"""Wire protocol v1 (docs/design.md contract 6; described for other languages in
docs/protocol.md). torch-free.

Every frame is one msgpack map ("envelope") with string keys:

    v     int     protocol version (1)
    sw    str     swarm id (a frame from another swarm is invalid)
    from  int     sender: agent id 0..n-1, or -1 for the world
    k     str     kind: msg | hello | obs | act | hb | stop | bye
    ep    int     episode index (>= 0)
    t     int     step within the episode (>= 0)
    ...           kind-specific fields (below); float vectors are raw
                  little-endian float32 bytes (msgpack bin), never lists

Data-plane ``msg`` frames (agent -> agent, direct) are written with fixed
widths (``from`` uint16, ``ep`` and ``t`` uint32, ``p`` bin8), so every
message of a swarm has the same size on the wire: ``frame_size(d, swarm)``.
The per-step control frames are written with fixed widths too: ``obs``
(``ObsCodec``: ``ep``/``t`` uint32, ids uint16 in array16, without ``peers``)
and discrete ``act`` (``ActCodec``: ``from`` and ``a`` uint16, ``ep``/``t``
uint32); every other frame with msgpack's smallest widths. Any msgpack
decoder reads them all as ordinary maps, and every receiver accepts any
width: a fixed layout only lets it read the frame with ``struct``.

Validation never raises into the caller's loop: ``decode`` returns either a
dict or an error reason string, and the caller counts and drops bad frames.
"""

from __future__ import annotations

import math
import struct
from dataclasses import dataclass, field
from typing import Any

import msgpack
import numpy as np

VERSION = 1
WORLD = -1
MAX_FRAME = 1 << 20  # 1 MiB: anything larger is invalid before decoding
KINDS = ("msg", "hello", "obs", "act", "hb", "stop", "bye")
F32 = np.dtype("<f4")


class ProtocolError(ValueError):
    """A frame we are about to send is malformed (a bug, not line noise)."""


_F32_STRUCTS: dict[int, struct.Struct] = {}


def finite_f32(buf: Any, n: int, offset: int = 0) -> bool:
    """Whether the ``n`` little-endian float32 values at ``buf[offset:]`` are all finite.

    Small vectors (the per-step frames) are summed as Python floats: an inf
    or NaN makes the sum non-finite (inf - inf is NaN), and 64 finite float32
    values cannot overflow a double. That is one C call instead of three
    numpy calls. Larger vectors use numpy."""
    if n <= 64:
        s = _F32_STRUCTS.get(n)
        if s is None:
            s = _F32_STRUCTS[n] = struct.Struct(f"<{n}f")
        return math.isfinite(sum(s.unpack_from(buf, offset)))
    return bool(np.isfinite(np.frombuffer(buf, dtype=F32, count=n, offset=offset)).all())


# ---- encoding ----------------------------------------------------------------------


def _str(s: str) -> bytes:
    b = s.encode()
    if len(b) < 32:
        return bytes([0xA0 | len(b)]) + b
    if len(b) < 256:
        return b"\xd9" + bytes([len(b)]) + b
    raise ProtocolError("strings in msg frames are at most 255 bytes")


def encode_msg(swarm: str, sender: int, ep: int, t: int, payload: np.ndarray) -> bytes:
    """A fixed-width data-plane frame carrying one float32 message."""
    p = np.ascontiguousarray(payload, dtype=F32).tobytes()
    if len(p) > 255:
        raise ProtocolError(f"message payload of {len(p)} bytes exceeds the 255-byte msg frame; use msg_dim <= 63")
    return b"".join(
        [
            b"\x87",  # fixmap, 7 entries
            _str("v"), bytes([VERSION]),
            _str("sw"), _str(swarm),
            _str("from"), b"\xcd" + struct.pack(">H", sender),
            _str("k"), _str("msg"),
            _str("ep"), b"\xce" + struct.pack(">I", ep),
            _str("t"), b"\xce" + struct.pack(">I", t),
            _str("p"), b"\xc4" + bytes([len(p)]) + p,
        ]
    )


class MsgCodec:
    """Fast path for one swarm's ``msg`` frames (the per-step hot path).

    ``encode`` fills a precomputed template (the same bytes as ``encode_msg``).
    ``parse`` reads a frame of exactly that layout with one ``struct`` call
    and validates it (sender, step, finite payload); ``decode`` does the same
    and returns the envelope as ``decode`` would. A frame of any other layout
    (e.g. another language's msgpack encoder choosing other int widths) goes
    through the generic ``decode``.
    """

    def __init__(self, swarm: str, d: int, ex: "Expect | None" = None) -> None:
        self.swarm, self.d, self.ex = swarm, d, ex
        self.template = bytearray(encode_msg(swarm, 0, 0, 0, np.zeros(d, dtype=np.float32)))
        head = bytes(self.template)
        self.size = len(head)
        # search for the keys only after the swarm id: an id may contain their bytes (e.g. "¤from")
        after_id = 1 + len(_str("v")) + 1 + len(_str("sw")) + len(_str(swarm))
        self.off_from = head.index(b"\xa4from", after_id) + 5 + 1
        self.off_ep = head.index(b"\xa2ep", self.off_from) + 3 + 1
        self.off_t = head.index(b"\xa1t\xce", self.off_ep) + 2 + 1
        self.off_p = self.size - 4 * d
        # everything but sender, ep, t and payload never changes (type markers included)
        self.head = head[: self.off_from]
        gaps = (head[self.off_from + 2 : self.off_ep], head[self.off_ep + 4 : self.off_t], head[self.off_t + 4 : self.off_p])
        self.gaps = gaps
        self.mid = struct.Struct(f">H{len(gaps[0])}sI{len(gaps[1])}sI{len(gaps[2])}s")
        assert self.off_from + self.mid.size == self.off_p
        self.floats = struct.Struct(f"<{d}f")  # the payload (d <= 63: see finite_f32)

    def encode(self, sender: int, ep: int, t: int, payload: np.ndarray) -> bytes:
        buf = self.template
        g = self.gaps
        self.mid.pack_into(buf, self.off_from, sender, g[0], ep, g[1], t, g[2])
        if payload.dtype != F32:
            payload = payload.astype(F32)
        buf[self.off_p :] = payload.tobytes()  # (C order whatever the layout)
        return bytes(buf)

    def parse(self, frame: bytes) -> tuple[int, int, int, bytes] | str | None:
        """``(sender, ep, t, payload)`` of a valid frame in this layout (the
        payload as its raw float32 bytes), the reason a frame in this layout is
        invalid, or None: another layout."""
        if len(frame) != self.size or frame[: self.off_from] != self.head:
            return None
        sender, g0, ep, g1, t, g2 = self.mid.unpack_from(frame, self.off_from)
        if (g0, g1, g2) != self.gaps:
            return None
        ex = self.ex
        assert ex is not None
        if sender >= ex.n_agents:
            return "unknown sender"
        if ep > ex.max_episode or t > ex.max_step:
            return "insane step"
        off = self.off_p
        if not math.isfinite(sum(self.floats.unpack_from(frame, off))):  # as finite_f32
            return "payload: non-finite values"
        return sender, ep, t, frame[off:]

    def decode(self, frame: bytes) -> dict[str, Any] | str:
        ex = self.ex
        assert ex is not None
        r = self.parse(frame)
        if r is None:
            return decode(frame, ex)  # not our layout: the general path decides
        if isinstance(r, str):
            return r
        sender, ep, t, p = r
        return {"v": VERSION, "sw": self.swarm, "from": sender, "k": "msg", "ep": ep, "t": t, "p": np.frombuffer(p, dtype=F32)}


def frame_size(d: int, swarm: str) -> int:
    """Bytes on the wire of one ``msg`` frame with ``d`` floats."""
    return len(encode_msg(swarm, 0, 0, 0, np.zeros(d, dtype=np.float32)))


def encode(swarm: str, sender: int, kind: str, ep: int = 0, t: int = 0, **fields: Any) -> bytes:
    """Any other frame. numpy arrays become raw float32 / uint8 bytes."""
    if kind not in KINDS:
        raise ProtocolError(f"unknown kind {kind!r}")
    env: dict[str, Any] = {"v": VERSION, "sw": swarm, "from": int(sender), "k": kind, "ep": int(ep), "t": int(t)}
    for k, v in fields.items():
        if isinstance(v, np.ndarray):
            v = np.ascontiguousarray(v, dtype=np.uint8 if v.dtype == bool else F32).tobytes()
        env[k] = v
    return msgpack.packb(env, use_bin_type=True)


def _raw(v: Any) -> Any:
    if isinstance(v, np.ndarray):
        if v.dtype == F32 or v.dtype == bool:  # bool bytes are 0/1: the same as uint8
            return v.tobytes()  # (tobytes copies in C order whatever the layout)
        return np.ascontiguousarray(v, dtype=F32).tobytes()
    return v


def encode_obs(swarm: str, ep: int, t: int, o: Any, av: Any, first: bool, to: list[int], inbox: list[int],
               peers: list[list[Any]] | None = None) -> bytes:
    """The world's ``obs`` frame: the same bytes as ``encode(swarm, WORLD, "obs",
    ep, t, o=o, av=av, first=first, to=to, in=inbox[, peers=peers])``, without
    the generic field loop (one per agent per step)."""
    env = {"v": VERSION, "sw": swarm, "from": WORLD, "k": "obs", "ep": int(ep), "t": int(t), "o": _raw(o), "av": _raw(av),
           "first": first, "to": to, "in": inbox}
    if peers is not None:
        env["peers"] = peers
    return msgpack.packb(env, use_bin_type=True)


_ACT_HEAD: dict[tuple[str, int], bytes] = {}
_SMALL = [bytes([i]) for i in range(128)] + [b"\xcc" + bytes([i]) for i in range(128, 256)]  # msgpack's encoding of 0..255


def _uint(x: int) -> bytes:
    if 0 <= x < 256:
        return _SMALL[x]
    if 256 <= x < 65536:
        return b"\xcd" + x.to_bytes(2, "big")
    return msgpack.packb(x)


def encode_act(swarm: str, sender: int, ep: int, t: int, a: Any) -> bytes:
    """An agent's ``act`` frame: the same bytes as ``encode(swarm, sender, "act", ep, t, a=a)``
    (msgpack's smallest widths), from a cached head for a discrete action."""
    if isinstance(a, np.ndarray) or type(a) is not int:
        return msgpack.packb({"v": VERSION, "sw": swarm, "from": int(sender), "k": "act", "ep": int(ep), "t": int(t), "a": _raw(a)},
                             use_bin_type=True)
    head = _ACT_HEAD.get((swarm, sender))
    if head is None:
        whole = msgpack.packb({"v": VERSION, "sw": swarm, "from": int(sender), "k": "act", "ep": 0, "t": 0, "a": 0}, use_bin_type=True)
        tail = b"\xa2ep\x00\xa1t\x00\xa1a\x00"
        assert whole.endswith(tail)
        head = _ACT_HEAD[(swarm, sender)] = whole[: -len(tail)]
    small = _SMALL
    return b"".join((head, b"\xa2ep", small[ep] if 0 <= ep < 256 else _uint(ep), b"\xa1t", small[t] if 0 <= t < 256 else _uint(t),
                     b"\xa1a", small[a] if 0 <= a < 256 else _uint(a)))


# ---- decoding and validation ---------------------------------------------------------


@dataclass
class Expect:
    """What a receiver accepts: its swarm, team size and vector sizes."""

    swarm: str
    n_agents: int
    msg_dim: int = 0
    obs_dim: int = 0
    n_actions: int = 0  # discrete actions (0 for a continuous box)
    k_max: int = 0
    max_step: int = 1_000_000
    max_episode: int = 10_000_000
    action_dim: int = 0  # continuous box: actions are float32[action_dim]

    @classmethod
    def for_bundle(cls, manifest: Any, swarm: str) -> "Expect":
        """From a bundle's ``runtime.bundle.Manifest``."""
        spec = manifest.env_spec
        return cls(swarm, spec.n_agents, msg_dim=manifest.msg_dim, obs_dim=spec.obs_dim,
                   n_actions=spec.n_actions or 0, k_max=manifest.k_max or None,  # type: ignore[arg-type]
                   action_dim=spec.action_dim or 0)


def _vec(b: Any, n: int, name: str) -> np.ndarray | str:
    if not isinstance(b, (bytes, bytearray)):
        return f"{name}: not bytes"
    if len(b) != 4 * n:
        return f"{name}: {len(b)} bytes, want {4 * n}"
    if not finite_f32(b, n):
        return f"{name}: non-finite values"
    return np.frombuffer(b, dtype=F32)


def _int(x: Any) -> bool:
    return isinstance(x, int) and not isinstance(x, bool)


def _ids(x: Any, n: int, k_max: int | None, name: str) -> list[int] | str:
    if type(x) is not list or (m := len(x)) > n or (k_max is not None and m > k_max):
        return f"{name}: not a list of at most {k_max if k_max is not None else n} agent ids"
    for i in x:  # msgpack gives exact ints (bool is its own type)
        if type(i) is not int or not 0 <= i < n:
            return f"{name}: agent ids must be distinct ints in 0..{n - 1}"
    if m > 1 and len(set(x)) != m:
        return f"{name}: agent ids must be distinct ints in 0..{n - 1}"
    return x


def decode(frame: bytes, ex: Expect) -> dict[str, Any] | str:
    """The envelope as a dict (vectors as float32 arrays), or why it is invalid."""
    if not isinstance(frame, (bytes, bytearray, memoryview)):
        return "not bytes"
    if len(frame) > MAX_FRAME:
        return "oversized"
    try:
        env = msgpack.unpackb(frame, raw=False, strict_map_key=True, max_bin_len=MAX_FRAME, max_str_len=4096,
                              max_array_len=4096, max_map_len=64)
    except Exception:  # noqa: BLE001 -- any decoder failure is line noise
        return "undecodable"
    if not isinstance(env, dict):
        return "not a map"
    if env.get("v") != VERSION:
        return f"version {env.get('v')!r}"
    if env.get("sw") != ex.swarm:
        return "foreign swarm"
    kind, sender, ep, t = env.get("k"), env.get("from"), env.get("ep"), env.get("t")
    if kind not in KINDS:
        return "unknown kind"
    # msgpack decodes integers to exact ints (and booleans to bool, its own type)
    if type(sender) is not int or not -1 <= sender < ex.n_agents:
        return "unknown sender"
    if type(ep) is not int or type(t) is not int or not (0 <= ep <= ex.max_episode and 0 <= t <= ex.max_step):
        return "insane step"
    if kind == "msg":
        if sender == WORLD:
            return "msg from the world"
        p = _vec(env.get("p"), ex.msg_dim, "payload")
        if isinstance(p, str):
            return p
        env["p"] = p
    elif kind == "obs":
        if sender != WORLD:
            return "obs not from the world"
        o = env.get("o")
        n = ex.obs_dim
        if type(o) is bytes and len(o) == 4 * n and finite_f32(o, n):  # the usual case, inline
            env["o"] = np.frombuffer(o, dtype=F32)
        else:
            o = _vec(o, n, "obs")
            if isinstance(o, str):
                return o
            env["o"] = o
        av = env.get("av", b"")
        na = ex.n_actions
        if na == 0:  # a continuous box: nothing to mask
            if av not in (b"", None):
                return "avail: a continuous-action swarm sends none"
            env["av"] = np.zeros(0, dtype=bool)
        elif not isinstance(av, (bytes, bytearray)) or len(av) != na or (ones := av.count(1)) == 0 or ones + av.count(0) != na:
            return "avail: want n_actions bytes of 0/1 with at least one 1"
        else:
            env["av"] = np.frombuffer(av, dtype=np.bool_)  # every byte is 0 or 1: a valid bool
        r = _ids(env.get("in", []), ex.n_agents, ex.k_max, "in")
        if isinstance(r, str):
            return r
        env["in"] = r
        r = _ids(env.get("to", []), ex.n_agents, None, "to")
        if isinstance(r, str):
            return r
        env["to"] = r
    elif kind == "act":
        if sender == WORLD:
            return "act from the world"
        a = env.get("a")
        if ex.action_dim:
            v = _vec(a, ex.action_dim, "action")
            if isinstance(v, str):
                return v
            env["a"] = v
        elif type(a) is not int or not 0 <= a < max(1, ex.n_actions):
            return "action out of range"
    elif kind == "hello":
        if sender == WORLD:
            return "hello from the world"
        if not isinstance(env.get("addr"), str) or len(env["addr"]) > 512:
            return "hello: bad address"
    return env


# ---- fixed-width control frames: obs (world -> agent) and act (agent -> world) ----------------
#
# Like msg frames, the per-step control frames are written with fixed widths
# (``ep`` and ``t`` uint32, ids and discrete actions uint16, arrays as array16)
# so the receiver can check and read them with ``struct`` instead of building
# an envelope dict. They stay ordinary msgpack maps: any decoder reads them,
# and a receiver given any other layout (another encoder's widths, extra keys
# such as ``peers``) hands it to the generic ``decode``. The fast paths accept
# exactly what ``decode`` accepts; for anything they do not accept they
# return None and the caller asks ``decode`` (which also names the reason).


class ObsCodec:
    """The world's ``obs`` frames of one swarm without ``peers``: ``encode`` (world)
    and ``parse`` (agent). ``ex`` gives the sizes (obs_dim, n_actions, k_max)."""

    def __init__(self, ex: "Expect") -> None:
        self.ex = ex
        od, na = ex.obs_dim, ex.n_actions
        self.obs_dim, self.n_actions = od, na
        self.head = b"".join([b"\x8b", _str("v"), bytes([VERSION]), _str("sw"), _str(ex.swarm), _str("from"), b"\xff",
                              _str("k"), _str("obs"), _str("ep"), b"\xce"])
        o_len, av_len = 4 * od, na
        o_hdr = (b"\xc4" + bytes([o_len])) if o_len < 256 else (b"\xc5" + struct.pack(">H", o_len))
        if av_len >= 256:
            raise ProtocolError("obs frames carry at most 255 available-action bytes")
        # after ep: t, first, o, av, then the head of "in"
        self.gaps = (_str("t") + b"\xce", _str("first"), _str("o") + o_hdr, _str("av") + b"\xc4" + bytes([av_len]), _str("in") + b"\xdc")
        g = self.gaps
        self.mid = struct.Struct(f">I{len(g[0])}sI{len(g[1])}sB{len(g[2])}s{o_len}s{len(g[3])}s{av_len}s{len(g[4])}sH")
        self.fixed = len(self.head) + self.mid.size
        self.to_head = _str("to") + b"\xdc"
        self.id_bytes: dict[int, bytes] = {}
        self.ids_structs: dict[int, struct.Struct] = {}
        self.o_floats = struct.Struct(f"<{od}f") if od <= 64 else None

    def _ids(self, ids: list[int]) -> bytes:
        tab = self.id_bytes
        out = []
        for j in ids:
            b = tab.get(j)
            if b is None:
                b = tab[j] = b"\xcd" + struct.pack(">H", j)
            out.append(b)
        return b"".join(out)

    def encode(self, ep: int, t: int, o: Any, av: Any, first: bool, to: list[int], inbox: list[int]) -> bytes:
        """The frame ``encode_obs(swarm, ep, t, o, av, first, to, inbox)`` would carry, with fixed widths."""
        g = self.gaps
        o = o.tobytes() if type(o) is np.ndarray and o.dtype == F32 else _raw(o)
        av = av.tobytes() if type(av) is np.ndarray and av.dtype == np.bool_ else _raw(av)
        if len(o) != 4 * self.obs_dim or len(av) != self.n_actions:
            raise ProtocolError(f"obs frame: {len(o)} obs bytes and {len(av)} avail bytes, want {4 * self.obs_dim} and {self.n_actions}")
        return b"".join([self.head, self.mid.pack(ep, g[0], t, g[1], 0xC3 if first else 0xC2, g[2], o, g[3], av, g[4], len(inbox)),
                         self._ids(inbox), self.to_head, struct.pack(">H", len(to)), self._ids(to)])

    def _read_ids(self, frame: bytes, p: int, c: int) -> tuple[int, ...] | None:
        if c == 0:
            return ()
        seg = frame[p : p + 3 * c]
        if len(seg) != 3 * c or seg[::3] != b"\xcd" * c:
            return None
        st = self.ids_structs.get(c)
        if st is None:
            st = self.ids_structs[c] = struct.Struct(">" + "xH" * c)
        return st.unpack(seg)

    def parse(self, frame: bytes) -> tuple[int, int, bool, bytes, bytes, list[int], list[int]] | None:
        """``(ep, t, first, obs, avail, inbox, to)`` of a valid frame in this
        layout, obs and avail as their raw bytes (float32, 0/1); None for
        anything else (valid or not: ask ``decode``)."""
        head = self.head
        if type(frame) is not bytes or not frame.startswith(head) or len(frame) < self.fixed:
            return None
        ep, g0, t, g1, first, g2, o, g3, av, g4, n_in = self.mid.unpack_from(frame, len(head))
        if (g0, g1, g2, g3, g4) != self.gaps or first not in (0xC2, 0xC3):
            return None
        ex = self.ex
        n = ex.n_agents
        if ep > ex.max_episode or t > ex.max_step:
            return None
        fl = self.o_floats
        if not (math.isfinite(sum(fl.unpack(o))) if fl is not None else finite_f32(o, self.obs_dim)):
            return None
        na = self.n_actions
        if na and ((ones := av.count(1)) == 0 or ones + av.count(0) != na):
            return None
        p = self.fixed
        k_max = ex.k_max if ex.k_max is not None else n
        if n_in > k_max or n_in > n:
            return None
        inbox = self._read_ids(frame, p, n_in)
        p += 3 * n_in
        th = self.to_head
        if inbox is None or frame[p : p + len(th)] != th or len(frame) < p + len(th) + 2:
            return None
        (n_to,) = struct.unpack_from(">H", frame, p + len(th))
        p += len(th) + 2
        if n_to > n or len(frame) != p + 3 * n_to:
            return None
        to = self._read_ids(frame, p, n_to)
        if to is None:
            return None
        for ids in (inbox, to):
            for j in ids:
                if j >= n:
                    return None
            if len(ids) > 1 and len(set(ids)) != len(ids):
                return None
        return ep, t, first == 0xC3, o, av, list(inbox), list(to)


class ActCodec:
    """An agent's discrete ``act`` frames: ``encode`` (agent, fixed widths) and
    ``parse`` (world). A continuous action (float32 bin) takes ``encode_act``
    and the generic ``decode``."""

    def __init__(self, ex: "Expect") -> None:
        self.ex = ex
        self.head = b"".join([b"\x87", _str("v"), bytes([VERSION]), _str("sw"), _str(ex.swarm), _str("from"), b"\xcd"])
        self.gaps = (_str("k") + _str("act") + _str("ep") + b"\xce", _str("t") + b"\xce", _str("a") + b"\xcd")
        g = self.gaps
        self.mid = struct.Struct(f">H{len(g[0])}sI{len(g[1])}sI{len(g[2])}sH")
        self.size = len(self.head) + self.mid.size

    def encode(self, sender: int, ep: int, t: int, a: int) -> bytes:
        g = self.gaps
        return self.head + self.mid.pack(sender, g[0], ep, g[1], t, g[2], a)

    def parse(self, frame: bytes) -> tuple[int, int, int, int] | None:
        """``(sender, ep, t, action)`` of a valid frame in this layout; None for anything else."""
        if type(frame) is not bytes or len(frame) != self.size or not frame.startswith(self.head):
            return None
        sender, g0, ep, g1, t, g2, a = self.mid.unpack_from(frame, len(self.head))
        ex = self.ex
        if (g0, g1, g2) != self.gaps or sender >= ex.n_agents or ep > ex.max_episode or t > ex.max_step \
                or ex.action_dim or a >= max(1, ex.n_actions):
            return None
        return sender, ep, t, a


# ---- counters ----------------------------------------------------------------------------


@dataclass
class Counters:
    sent: int = 0
    sent_bytes: int = 0
    received: int = 0
    received_bytes: int = 0
    dropped: int = 0  # lost on purpose (fault injection) or to a dead peer
    stale: int = 0  # valid but too old / for another step
    invalid: int = 0
    invalid_reasons: dict[str, int] = field(default_factory=dict)

    def bad(self, reason: str) -> None:
        self.invalid += 1
        key = reason.split(":")[0]
        self.invalid_reasons[key] = self.invalid_reasons.get(key, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("sent", "sent_bytes", "received", "received_bytes", "dropped", "stale", "invalid")} | {
            "invalid_reasons": dict(self.invalid_reasons)
        }


def percentiles(xs: "list[float] | np.ndarray") -> dict[str, float]:
    if len(xs) == 0:
        return {"p50": math.nan, "p99": math.nan, "n": 0}
    a = np.asarray(xs)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "n": len(xs)}
