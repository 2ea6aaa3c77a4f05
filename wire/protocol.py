"""Wire protocol v1 (docs/design.md contract 6; described for other languages in
docs/protocol.md). torch-free: numpy, msgpack and the standard library only.

Every frame is one msgpack map ("envelope") with string keys:

    v     int     protocol version (1)
    sw    str     swarm id (a frame from another swarm is invalid)
    from  int     sender: agent id 0..n-1, or -1 for the world
    k     str     kind: msg | hello | obs | act | hb | stop | bye | absent | status
    ep    int     episode index (>= 0)
    t     int     step within the episode (>= 0)
    ...           kind-specific fields (below); float vectors are raw
                  little-endian float32 bytes (msgpack bin), never lists

Each per-step kind has one encoder, its codec, which writes fixed widths:
data-plane ``msg`` frames (agent -> agent, direct; ``MsgCodec``: ``from``
uint16, ``ep`` and ``t`` uint32, ``p`` bin8), so every message of a swarm has
the same size on the wire: ``frame_size(d, swarm)``; ``obs`` (``ObsCodec``:
``ep``/``t`` uint32, ids uint16 in array16, ``peers`` appended when sent) and
``act`` (``ActCodec``: ``from`` uint16, ``ep``/``t`` uint32, a discrete ``a``
uint16, a continuous one bin). The other kinds (``encode``) use msgpack's
smallest widths. Any msgpack decoder reads them all as ordinary maps, and
every receiver accepts any width: a fixed layout only lets it read the frame
with ``struct``.

Validation never raises into the caller's loop: ``decode`` returns either a
dict or an error reason string, and the caller counts and drops bad frames.
``decode`` is the reference: a codec's ``parse`` accepts only frames that
``decode`` accepts, with the same values (``tests/test_wire_codecs.py``
checks that on mutated frames).
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
# absent: world -> agent, "say hello again"; status: agent -> world, its counters now and then (optional)
KINDS = ("msg", "hello", "obs", "act", "hb", "stop", "bye", "absent", "status")
BYE_BUDGET = 64 << 10  # bytes for a bye's metrics map (the reference agent's is about 2 KB) or a hello
ADDR_BYTES = 4 * 512 + 5  # an endpoint: at most 512 chars of at most 4 UTF-8 bytes, and its str header
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


def _bin_header(n: int) -> bytes:
    """msgpack's bin header for ``n`` bytes (bin8, bin16 or bin32)."""
    if n < 256:
        return b"\xc4" + bytes([n])
    if n < 65536:
        return b"\xc5" + struct.pack(">H", n)
    return b"\xc6" + struct.pack(">I", n)


class MsgCodec:
    """One swarm's ``msg`` frames with ``d`` floats (the per-step hot path):
    the only encoder of ``msg`` frames.

    ``encode`` fills a precomputed fixed-width template. ``parse`` reads a frame of exactly that layout with one ``struct`` call
    and validates it (sender, step, finite payload); ``decode`` does the same
    and returns the envelope as ``decode`` would. A frame of any other layout
    (e.g. another language's msgpack encoder choosing other int widths) goes
    through the generic ``decode``.
    """

    def __init__(self, swarm: str, d: int, ex: "Expect | None" = None) -> None:
        self.swarm, self.d, self.ex = swarm, d, ex
        if not 0 <= 4 * d <= 255:
            raise ProtocolError(f"message payload of {4 * d} bytes exceeds the 255-byte msg frame; use msg_dim <= 63")
        head = b"".join(
            [
                b"\x87",  # fixmap, 7 entries
                _str("v"), bytes([VERSION]),
                _str("sw"), _str(swarm),
                _str("from"), b"\xcd\x00\x00",  # uint16
                _str("k"), _str("msg"),
                _str("ep"), b"\xce" + bytes(4),  # uint32
                _str("t"), b"\xce" + bytes(4),  # uint32
                _str("p"), b"\xc4" + bytes([4 * d]) + bytes(4 * d),  # bin8
            ]
        )
        self.template = bytearray(head)
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
        """The frame of ``sender``'s message at step ``t`` of episode ``ep``: ``d`` float32 values."""
        buf = self.template
        g = self.gaps
        try:
            self.mid.pack_into(buf, self.off_from, sender, g[0], ep, g[1], t, g[2])
        except struct.error as e:
            raise ProtocolError(f"msg frame: sender, episode or step out of range ({e})") from None
        if type(payload) is not np.ndarray or payload.dtype != F32:
            payload = np.asarray(payload, dtype=F32)
        p = payload.tobytes()  # (C order whatever the layout)
        if len(p) != 4 * self.d:
            raise ProtocolError(f"msg frame: {len(p) // 4} floats, the swarm's messages have {self.d}")
        buf[self.off_p :] = p
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


def max_message_size(ex: "Expect") -> int:
    """The largest frame any receiver of this swarm reads (``ZMQ_MAXMSGSIZE`` on
    every socket: libzmq drops a larger one, and the connection it came on,
    before allocating it). Twice the largest legitimate frame -- an ``obs``
    with the whole ``peers`` directory (every endpoint at its 512-char
    limit), a ``hello`` or a ``bye`` with metrics (``BYE_BUDGET``) -- and at
    most ``MAX_FRAME``, above which ``decode`` refuses a frame anyway."""
    n, sw = ex.n_agents, len(ex.swarm.encode())
    ids = 3 * ((ex.k_max or n) + n)  # "in" and "to" as uint16 each
    obs = 128 + sw + 5 + 4 * max(ex.obs_dim, 0) + 5 + max(ex.n_actions, 0) + ids + 8 + n * (4 + ADDR_BYTES)
    return min(MAX_FRAME, 2 * max(obs, BYE_BUDGET))


def frame_size(d: int, swarm: str) -> int:
    """Bytes on the wire of one ``msg`` frame with ``d`` floats."""
    return MsgCodec(swarm, d).size


PER_STEP = {"msg": "MsgCodec", "obs": "ObsCodec", "act": "ActCodec"}


def encode(swarm: str, sender: int, kind: str, ep: int = 0, t: int = 0, **fields: Any) -> bytes:
    """A control frame (hello, hb, stop, bye, absent, status) with msgpack's smallest widths.
    numpy arrays become raw float32 / uint8 bytes. The per-step kinds have
    their codecs (``PER_STEP``)."""
    if kind not in KINDS:
        raise ProtocolError(f"unknown kind {kind!r}")
    if kind in PER_STEP:
        raise ProtocolError(f"{kind} frames are written by {PER_STEP[kind]}")
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
    v = env.get("v")
    if type(v) is not int or v != VERSION:  # an int: not true, not 1.0
        return f"version {v!r}"
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
    elif kind == "absent":
        if sender != WORLD:
            return "absent not from the world"
    elif kind == "status":
        if sender == WORLD:
            return "status from the world"
        if not isinstance(env.get("m"), dict):
            return "status: m is not a map"
    return env


# ---- fixed-width control frames: obs (world -> agent) and act (agent -> world) ----------------
#
# Like msg frames, the per-step control frames are written with fixed widths
# (``ep`` and ``t`` uint32, ids and discrete actions uint16, arrays as array16)
# so the receiver can check and read them with ``struct`` instead of building
# an envelope dict. They stay ordinary msgpack maps: any decoder reads them,
# and a receiver given any other layout (another encoder's widths, extra keys
# such as ``peers``) hands it to the generic ``decode``. A codec's ``parse``
# accepts only what ``decode`` accepts, with the same values; for anything it
# does not accept it returns None and the caller asks ``decode`` (which also
# names the reason).


class ObsCodec:
    """The world's ``obs`` frames of one swarm: ``encode`` (world) and ``parse``
    (agent; frames without ``peers``). ``ex`` gives the sizes (obs_dim,
    n_actions, k_max)."""

    def __init__(self, ex: "Expect") -> None:
        self.ex = ex
        od, na = ex.obs_dim, ex.n_actions
        self.obs_dim, self.n_actions = od, na
        if ex.n_agents > 65536:
            raise ProtocolError("obs frames carry agent ids as uint16: at most 65536 agents")
        self.head = b"".join([b"\x8b", _str("v"), bytes([VERSION]), _str("sw"), _str(ex.swarm), _str("from"), b"\xff",
                              _str("k"), _str("obs"), _str("ep"), b"\xce"])
        o_len, av_len = 4 * od, na
        # after ep: t, first, o, av, then the head of "in"
        self.gaps = (_str("t") + b"\xce", _str("first"), _str("o") + _bin_header(o_len), _str("av") + _bin_header(av_len),
                     _str("in") + b"\xdc")
        g = self.gaps
        self.mid = struct.Struct(f">I{len(g[0])}sI{len(g[1])}sB{len(g[2])}s{o_len}s{len(g[3])}s{av_len}s{len(g[4])}sH")
        self.fixed = len(self.head) + self.mid.size
        self.to_head = _str("to") + b"\xdc"
        self.peers_key = _str("peers")
        self.id_bytes: dict[int, bytes] = {}
        self.ids_structs: dict[int, struct.Struct] = {}
        self.o_floats = struct.Struct(f"<{od}f") if od <= 64 else None

    def _ids(self, ids: list[int]) -> bytes:
        tab = self.id_bytes
        out = []
        for j in ids:
            b = tab.get(j)
            if b is None:
                if not 0 <= j < 65536:
                    raise ProtocolError(f"obs frame: agent id {j} is not a uint16")
                b = tab[j] = b"\xcd" + struct.pack(">H", j)
            out.append(b)
        return b"".join(out)

    def encode(self, ep: int, t: int, o: Any, av: Any, first: bool, to: list[int], inbox: list[int],
               peers: list[list[Any]] | None = None) -> bytes:
        """The ``obs`` frame of step ``t`` of episode ``ep``: observation ``o``
        (float32[obs_dim]), available actions ``av`` (bool[n_actions]; b"" for a
        continuous box), the ``first`` flag, the ``to`` and ``in`` id lists and,
        when given, ``peers`` ([[agent, endpoint], ...])."""
        g = self.gaps
        o = o.tobytes() if type(o) is np.ndarray and o.dtype == F32 else _raw(o)
        av = av.tobytes() if type(av) is np.ndarray and av.dtype == np.bool_ else _raw(av)
        if len(o) != 4 * self.obs_dim or len(av) != self.n_actions:
            raise ProtocolError(f"obs frame: {len(o)} obs bytes and {len(av)} avail bytes, want {4 * self.obs_dim} and {self.n_actions}")
        try:
            mid = self.mid.pack(ep, g[0], t, g[1], 0xC3 if first else 0xC2, g[2], o, g[3], av, g[4], len(inbox))
            n_to = struct.pack(">H", len(to))
        except struct.error as e:
            raise ProtocolError(f"obs frame: episode, step or list length out of range ({e})") from None
        frame = b"".join([self.head, mid, self._ids(inbox), self.to_head, n_to, self._ids(to)])
        if peers is None:
            return frame
        # one more entry (a map of 12): the receiver's decode reads it
        return b"\x8c" + frame[1:] + self.peers_key + msgpack.packb(peers, use_bin_type=True)

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
        layout (without ``peers``), obs and avail as their raw bytes (float32,
        0/1); None for anything else (valid or not: ask ``decode``)."""
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
    """An agent's ``act`` frames: ``encode`` (agent) and ``parse`` (world). A
    discrete action is a uint16 (uint32 beyond 65536 actions); a continuous
    one (``ex.action_dim`` > 0) float32[action_dim] as bin."""

    def __init__(self, ex: "Expect") -> None:
        self.ex = ex
        if ex.n_agents > 65536:
            raise ProtocolError("act frames carry the sender as uint16: at most 65536 agents")
        self.head = b"".join([b"\x87", _str("v"), bytes([VERSION]), _str("sw"), _str(ex.swarm), _str("from"), b"\xcd"])
        self.action_dim = ad = ex.action_dim
        if ad:
            a_hdr, a_fmt = _bin_header(4 * ad), f"{4 * ad}s"
        elif max(1, ex.n_actions) <= 65536:
            a_hdr, a_fmt = b"\xcd", "H"
        else:
            a_hdr, a_fmt = b"\xce", "I"
        self.gaps = (_str("k") + _str("act") + _str("ep") + b"\xce", _str("t") + b"\xce", _str("a") + a_hdr)
        g = self.gaps
        self.mid = struct.Struct(f">H{len(g[0])}sI{len(g[1])}sI{len(g[2])}s{a_fmt}")
        self.size = len(self.head) + self.mid.size
        self.floats = struct.Struct(f"<{ad}f") if 0 < ad <= 64 else None

    def encode(self, sender: int, ep: int, t: int, a: Any) -> bytes:
        """``sender``'s action for step ``t`` of episode ``ep``: an int, or a float32 vector."""
        g = self.gaps
        if self.action_dim:
            a = a.tobytes() if type(a) is np.ndarray and a.dtype == F32 else np.ascontiguousarray(a, dtype=F32).tobytes()
            if len(a) != 4 * self.action_dim:
                raise ProtocolError(f"act frame: {len(a) // 4} floats, the swarm's actions have {self.action_dim}")
        elif isinstance(a, np.ndarray) or isinstance(a, bool):
            raise ProtocolError("act frame: a discrete action is an int")
        try:
            return self.head + self.mid.pack(sender, g[0], ep, g[1], t, g[2], a)
        except struct.error as e:
            raise ProtocolError(f"act frame: sender, episode, step or action out of range ({e})") from None

    def parse(self, frame: bytes) -> tuple[int, int, int, Any] | None:
        """``(sender, ep, t, action)`` of a valid frame in this layout (a
        continuous action as a float32 array); None for anything else."""
        if type(frame) is not bytes or len(frame) != self.size or not frame.startswith(self.head):
            return None
        sender, g0, ep, g1, t, g2, a = self.mid.unpack_from(frame, len(self.head))
        ex = self.ex
        if (g0, g1, g2) != self.gaps or sender >= ex.n_agents or ep > ex.max_episode or t > ex.max_step:
            return None
        ad = self.action_dim
        if ad:
            fl = self.floats
            if not (math.isfinite(sum(fl.unpack(a))) if fl is not None else finite_f32(a, ad)):
                return None
            return sender, ep, t, np.frombuffer(a, dtype=F32)
        if a >= max(1, ex.n_actions):
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

    MAX_REASONS = 32  # distinct reasons kept; a reason can quote the sender (e.g. "version 'junk'"): the rest are "other"

    def bad(self, reason: str) -> None:
        self.invalid += 1
        key = reason.split(":")[0][:80]
        reasons = self.invalid_reasons
        if key not in reasons and len(reasons) >= self.MAX_REASONS:
            key = "other"
        reasons[key] = reasons.get(key, 0) + 1

    def as_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("sent", "sent_bytes", "received", "received_bytes", "dropped", "stale", "invalid")} | {
            "invalid_reasons": dict(self.invalid_reasons)
        }
