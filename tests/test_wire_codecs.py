"""The per-step codecs of wire.protocol (MsgCodec, ObsCodec, ActCodec) against
the reference validator ``decode``.

(a) Round trips: what a codec writes, its ``parse`` reads back with the same
values, and ``decode`` agrees; specific rejections.
(b) A differential test: on many random and mutated frames of each kind, a
codec's ``parse`` accepts a frame only if ``decode`` accepts it, with the
same values; it rejects (a reason string, MsgCodec) only frames ``decode``
rejects; and it accepts every valid frame written in its own layout. The
mutations: byte flips, bit flips, truncation, extension, splices, fields set
out of range through the codec itself (ids, steps, senders, actions, NaN/inf,
avail bytes, list lengths), generic msgpack re-encodings of the same content
(other widths), fields replaced by wrong types, removed keys, foreign swarms.
"""

from __future__ import annotations

import math

import msgpack
import numpy as np
import pytest

from marl_edge.wire import protocol as P

SW = "b0123456789ab-42"


# ---- comparing a fast parse with decode ---------------------------------------------------------


def _same_msg(r: tuple, env: dict) -> bool:
    sender, ep, t, p = r
    return env["k"] == "msg" and (env["from"], env["ep"], env["t"]) == (sender, ep, t) and env["p"].tobytes() == bytes(p)


def _same_obs(r: tuple, env: dict) -> bool:
    ep, t, first, o, av, inbox, to = r
    return (env["k"] == "obs" and env["from"] == P.WORLD and (env["ep"], env["t"]) == (ep, t) and env.get("first") is first
            and env["o"].tobytes() == o and env["av"].tobytes() == av and env["in"] == inbox and env["to"] == to
            and "peers" not in env)


def _same_act(r: tuple, env: dict) -> bool:
    sender, ep, t, a = r
    if env["k"] != "act" or (env["from"], env["ep"], env["t"]) != (sender, ep, t):
        return False
    if isinstance(a, np.ndarray):
        return isinstance(env["a"], np.ndarray) and env["a"].dtype == a.dtype and env["a"].tobytes() == a.tobytes()
    return type(env["a"]) is int and env["a"] == a


SAME = {"msg": _same_msg, "obs": _same_obs, "act": _same_act}


def agree(kind: str, codec, ex: P.Expect, frame: bytes) -> str | None:
    """Why ``codec.parse`` and ``decode`` disagree on ``frame`` (None: they agree)."""
    r = codec.parse(frame)
    env = P.decode(frame, ex)
    if isinstance(r, tuple):
        if isinstance(env, str):
            return f"parse accepts, decode says {env!r}"
        if not SAME[kind](r, env):
            return f"different values: parse {r!r}, decode {env!r}"
    elif isinstance(r, str) and not isinstance(env, str):
        return f"parse says {r!r}, decode accepts"
    return None


# ---- (a) round trips and rejections ---------------------------------------------------------------


@pytest.mark.parametrize("d", [1, 2, 8, 63])
@pytest.mark.parametrize("swarm", [SW, "¤from¢ep¡t", "x" * 255])
def test_msg_codec_round_trip(d, swarm):
    ex = P.Expect(swarm, 7, msg_dim=d)
    codec = P.MsgCodec(swarm, d, ex)
    rng = np.random.default_rng(d)
    for sender, ep, t in [(0, 0, 0), (6, ex.max_episode, ex.max_step), (3, 17, 4)]:
        x = rng.standard_normal(d).astype(np.float32)
        f = codec.encode(sender, ep, t, x)
        assert len(f) == codec.size == P.frame_size(d, swarm)
        r = codec.parse(f)
        assert r == (sender, ep, t, x.tobytes())
        assert agree("msg", codec, ex, f) is None
        env = codec.decode(f)
        assert (env["from"], env["ep"], env["t"]) == (sender, ep, t) and env["p"].tobytes() == x.tobytes()
    # a float64 or [1, d] payload is written as its d float32 values
    assert codec.encode(1, 0, 0, np.ones((1, d))) == codec.encode(1, 0, 0, np.ones(d, np.float32))


def test_msg_codec_rejections():
    ex = P.Expect(SW, 4, msg_dim=3)
    codec = P.MsgCodec(SW, 3, ex)
    assert codec.parse(codec.encode(4, 0, 0, np.zeros(3, np.float32))) == "unknown sender"
    assert codec.parse(codec.encode(1, ex.max_episode + 1, 0, np.zeros(3, np.float32))) == "insane step"
    assert codec.parse(codec.encode(1, 0, ex.max_step + 1, np.zeros(3, np.float32))) == "insane step"
    assert codec.parse(codec.encode(1, 0, 0, np.array([0, np.nan, 0], np.float32))) == "payload: non-finite values"
    assert codec.parse(codec.encode(1, 0, 0, np.zeros(3, np.float32))[:-1]) is None  # not this layout: decode decides
    with pytest.raises(P.ProtocolError):
        codec.encode(1, 0, 0, np.zeros(4, np.float32))  # another size
    assert len(codec.encode(1, 0, 0, np.zeros(3, np.float32))) == codec.size  # (the template is unharmed)
    with pytest.raises(P.ProtocolError):
        codec.encode(-1, 0, 0, np.zeros(3, np.float32))
    with pytest.raises(P.ProtocolError):
        P.MsgCodec(SW, 64)  # 256 bytes: more than bin8
    with pytest.raises(P.ProtocolError):
        P.encode(SW, 1, "msg", p=np.zeros(3, np.float32))  # one encoder per per-step kind


OBS_SHAPES = [  # obs_dim, n_actions, n_agents, k_max
    (5, 3, 6, 2),
    (0, 1, 1, 0),
    (3, 0, 4, None),  # a continuous box: no avail
    (64, 5, 4, 3),
    (65, 300, 10, 4),  # past the small-vector path; a bin16 avail
    (100, 2, 40, 40),
]


@pytest.mark.parametrize("shape", OBS_SHAPES)
def test_obs_codec_round_trip(shape):
    od, na, n, k = shape
    ex = P.Expect(SW, n, obs_dim=od, n_actions=na, k_max=k)
    codec = P.ObsCodec(ex)
    rng = np.random.default_rng(od + na)
    k_eff = n if k is None else k
    for trial in range(20):
        o = rng.standard_normal(od).astype(np.float32)
        av = rng.random(na) < 0.5
        if na:
            av[rng.integers(na)] = True
        inbox = rng.permutation(n)[: rng.integers(0, min(k_eff, n) + 1)].tolist()
        to = rng.permutation(n)[: rng.integers(0, n + 1)].tolist()
        first = bool(trial % 2)
        ep, t = int(rng.integers(0, ex.max_episode + 1)), int(rng.integers(0, ex.max_step + 1))
        f = codec.encode(ep, t, o, av if na else b"", first, to, inbox)
        assert codec.parse(f) == (ep, t, first, o.tobytes(), av.tobytes() if na else b"", inbox, to)
        assert agree("obs", codec, ex, f) is None
        # with peers: one more key; the fast parse leaves it to decode, which reads everything
        peers = [[j, f"tcp://10.0.0.{j}:5600"] for j in range(n)]
        fp = codec.encode(ep, t, o, av if na else b"", first, to, inbox, peers)
        assert codec.parse(fp) is None
        env = P.decode(fp, ex)
        assert isinstance(env, dict) and env["peers"] == peers and env["in"] == inbox and env["to"] == to
        assert env["o"].tobytes() == o.tobytes() and env["first"] is first


def test_obs_codec_rejections():
    ex = P.Expect(SW, 4, obs_dim=2, n_actions=3, k_max=2)
    codec = P.ObsCodec(ex)
    o, av = np.zeros(2, np.float32), np.array([1, 0, 1], bool)
    good = codec.encode(1, 2, o, av, False, [0, 3], [2])
    assert codec.parse(good) is not None
    bad = {
        "insane step": codec.encode(ex.max_episode + 1, 2, o, av, False, [], []),
        "obs: non-finite values": codec.encode(1, 2, np.array([np.inf, 0], np.float32), av, False, [], []),
        "avail: want n_actions bytes of 0/1 with at least one 1": codec.encode(1, 2, o, np.zeros(3, bool), False, [], []),
        "avail: want n_actions bytes of 0/1 with at least one 1 ": codec.encode(1, 2, o, bytes([1, 2, 0]), False, [], []),
        "in: not a list of at most 2 agent ids": codec.encode(1, 2, o, av, False, [], [0, 1, 2]),
        "in: agent ids must be distinct ints in 0..3": codec.encode(1, 2, o, av, False, [], [1, 1]),
        "to: agent ids must be distinct ints in 0..3": codec.encode(1, 2, o, av, False, [4], []),
    }
    for reason, f in bad.items():
        assert codec.parse(f) is None, reason
        assert P.decode(f, ex) == reason.strip()
    with pytest.raises(P.ProtocolError):
        codec.encode(1, 2, np.zeros(3, np.float32), av, False, [], [])  # obs_dim 3, not 2
    with pytest.raises(P.ProtocolError):
        codec.encode(1, 2, o, np.ones(4, bool), False, [], [])
    with pytest.raises(P.ProtocolError):
        codec.encode(-1, 2, o, av, False, [], [])
    with pytest.raises(P.ProtocolError):
        codec.encode(1, 2, o, av, False, [70000], [])


@pytest.mark.parametrize("n_actions,action_dim", [(5, 0), (1, 0), (70000, 0), (0, 1), (0, 2), (0, 70)])
def test_act_codec_round_trip(n_actions, action_dim):
    ex = P.Expect(SW, 6, obs_dim=3, n_actions=n_actions, action_dim=action_dim)
    codec = P.ActCodec(ex)
    rng = np.random.default_rng(n_actions + action_dim)
    for _ in range(20):
        sender, ep, t = int(rng.integers(0, 6)), int(rng.integers(0, ex.max_episode + 1)), int(rng.integers(0, ex.max_step + 1))
        a = rng.standard_normal(action_dim).astype(np.float32) if action_dim else int(rng.integers(0, n_actions))
        f = codec.encode(sender, ep, t, a)
        assert len(f) == codec.size
        r = codec.parse(f)
        assert r is not None and r[:3] == (sender, ep, t)
        assert (r[3].tobytes() == a.tobytes() and r[3].dtype == np.float32) if action_dim else r[3] == a
        assert agree("act", codec, ex, f) is None


def test_act_codec_rejections():
    ex = P.Expect(SW, 4, n_actions=3)
    codec = P.ActCodec(ex)
    for f, reason in [(codec.encode(4, 0, 0, 1), "unknown sender"), (codec.encode(1, 0, 0, 3), "action out of range"),
                      (codec.encode(1, 0, ex.max_step + 1, 0), "insane step")]:
        assert codec.parse(f) is None and P.decode(f, ex) == reason
    with pytest.raises(P.ProtocolError):
        codec.encode(1, 0, 0, np.zeros(2, np.float32))  # a vector to a discrete team
    with pytest.raises(P.ProtocolError):
        codec.encode(1, 0, 0, 1 << 16)
    exc = P.Expect(SW, 4, action_dim=2)
    cc = P.ActCodec(exc)
    f = cc.encode(1, 0, 0, np.array([np.nan, 0], np.float32))
    assert cc.parse(f) is None and P.decode(f, exc) == "action: non-finite values"
    with pytest.raises(P.ProtocolError):
        cc.encode(1, 0, 0, np.zeros(3, np.float32))


# ---- (b) the differential test ---------------------------------------------------------------------

FRAMES_PER_KIND = 12_000
NAN, INF = float("nan"), float("inf")


def _weird(rng: np.random.Generator, ex: P.Expect) -> object:
    n = ex.n_agents
    choices = [
        0, 1, -1, 2, n, n - 1, 255, 256, 65535, 65536, 2**32 - 1, 2**32, 2**63 - 1, -(2**63), ex.max_step, ex.max_step + 1,
        ex.max_episode, ex.max_episode + 1, 1.0, 0.5, NAN, INF, True, False, None, "", "x", "msg", "obs", "act", "hb", SW, "other",
        b"", b"\x00", b"\x01" * max(1, ex.n_actions), b"\x00\x00\x80\x7f", b"\x00\x00\xc0\x7f" * 3, bytes(4 * ex.obs_dim),
        bytes(4 * ex.msg_dim), np.full(max(1, ex.msg_dim), NAN, np.float32).tobytes(), [], [0], [0, 0], [n], [-1], list(range(n)),
        list(range(n + 1)), [True], [1.0], ["0"], {"a": 1}, [[0, "tcp://x:1"]],
    ]
    return choices[int(rng.integers(len(choices)))]


def mutate(rng: np.random.Generator, frame: bytes, others: list[bytes], ex: P.Expect) -> bytes:
    m = int(rng.integers(9))
    if m == 0:  # flip a few bytes
        b = bytearray(frame)
        for _ in range(int(rng.integers(1, 4))):
            b[int(rng.integers(len(b)))] = int(rng.integers(256))
        return bytes(b)
    if m == 1:  # one bit
        b = bytearray(frame)
        b[int(rng.integers(len(b)))] ^= 1 << int(rng.integers(8))
        return bytes(b)
    if m == 2:  # truncated
        return frame[: int(rng.integers(0, len(frame)))]
    if m == 3:  # extended
        return frame + (rng.bytes(int(rng.integers(1, 9))) if rng.random() < 0.7 else b"\xc0")
    if m == 4:  # a splice of another frame
        o = others[int(rng.integers(len(others)))]
        i = int(rng.integers(len(frame)))
        return frame[:i] + o[i : i + int(rng.integers(1, 16))] + frame[i + int(rng.integers(1, 16)) :]
    env = msgpack.unpackb(frame, raw=False)
    if m == 5:  # the same content with msgpack's smallest widths
        pass
    elif m == 6:  # a field of another type or value
        keys = list(env) + ["extra"]
        env[keys[int(rng.integers(len(keys)))]] = _weird(rng, ex)
    elif m == 7:  # a field missing
        del env[list(env)[int(rng.integers(len(env)))]]
    else:  # another swarm, or the keys in another order
        if rng.random() < 0.5:
            env["sw"] = ["other", SW + "x", SW[:-1], ""][int(rng.integers(4))]
        else:
            items = list(env.items())
            rng.shuffle(items)
            env = dict(items)
    return msgpack.packb(env, use_bin_type=True)


# Half of the generated frames are valid; the others hold one or more bad values (before any mutation).


def _steps(rng: np.random.Generator, ex: P.Expect, valid: bool) -> tuple[int, int]:
    def one(mx: int) -> int:
        if valid:
            return int([0, mx, rng.integers(0, mx + 1)][int(rng.integers(3))])
        return int([0, 1, mx, mx + 1, 2**32 - 1, rng.integers(0, mx + 1)][int(rng.integers(6))])

    return one(ex.max_episode), one(ex.max_step)


def _floats(rng: np.random.Generator, n: int, valid: bool) -> np.ndarray:
    x = rng.standard_normal(n).astype(np.float32)
    if n and not valid and rng.random() < 0.3:
        x[int(rng.integers(n))] = [NAN, INF, -INF][int(rng.integers(3))]
    return x


def _ids(rng: np.random.Generator, n: int, most: int, valid: bool) -> list[int]:
    if valid:
        return [int(j) for j in rng.permutation(n)[: int(rng.integers(0, min(most, n) + 1))]]
    m = int(rng.integers(0, most + 2))
    ids = rng.permutation(n + 1)[:m].tolist() if rng.random() < 0.9 else rng.integers(0, n + 2, m).tolist()  # n: out of range
    return [int(j) for j in ids]


def _msg_frames(rng, ex: P.Expect, codec: P.MsgCodec):
    while True:
        ok = rng.random() < 0.5
        ep, t = _steps(rng, ex, ok)
        yield codec.encode(int(rng.integers(0, ex.n_agents + (0 if ok else 2))), ep, t, _floats(rng, ex.msg_dim, ok))


def _obs_frames(rng, ex: P.Expect, codec: P.ObsCodec):
    n = ex.n_agents
    k = n if ex.k_max is None else ex.k_max
    while True:
        ok = rng.random() < 0.5
        ep, t = _steps(rng, ex, ok)
        na = ex.n_actions
        av: object = b""
        if na:
            av = rng.random(na) < 0.6
            if ok:
                av[int(rng.integers(na))] = True
            elif rng.random() < 0.2:  # a byte that is not 0/1
                av = bytes(int(x) for x in av)[:-1] + bytes([int(rng.integers(2, 256))])
        peers = [[j, f"ipc:///tmp/a{j}.sock"] for j in range(n)] if rng.random() < 0.05 else None
        yield codec.encode(ep, t, _floats(rng, ex.obs_dim, ok), av, bool(rng.random() < 0.5), _ids(rng, n, n, ok), _ids(rng, n, k, ok),
                           peers)


def _act_frames(rng, ex: P.Expect, codec: P.ActCodec):
    while True:
        ok = rng.random() < 0.5
        ep, t = _steps(rng, ex, ok)
        a = _floats(rng, ex.action_dim, ok) if ex.action_dim else int(rng.integers(0, max(1, ex.n_actions) + (0 if ok else 2)))
        yield codec.encode(int(rng.integers(0, ex.n_agents + (0 if ok else 2))), ep, t, a)


CASES = {  # kind -> [(Expect, codec factory, frame generator)]
    "msg": [
        (P.Expect(SW, 5, msg_dim=8, max_step=50, max_episode=9), lambda ex: P.MsgCodec(ex.swarm, ex.msg_dim, ex), _msg_frames),
        (P.Expect("¤from¢ep¡t", 3, msg_dim=1), lambda ex: P.MsgCodec(ex.swarm, ex.msg_dim, ex), _msg_frames),
    ],
    "obs": [
        (P.Expect(SW, 6, obs_dim=5, n_actions=3, k_max=2, max_step=50, max_episode=9), P.ObsCodec, _obs_frames),
        (P.Expect(SW, 4, obs_dim=3, action_dim=2, k_max=None), P.ObsCodec, _obs_frames),  # continuous: no avail
        (P.Expect(SW, 3, obs_dim=66, n_actions=1, k_max=0), P.ObsCodec, _obs_frames),
    ],
    "act": [
        (P.Expect(SW, 5, n_actions=4, max_step=50, max_episode=9), P.ActCodec, _act_frames),
        (P.Expect(SW, 4, action_dim=2), P.ActCodec, _act_frames),
        (P.Expect(SW, 2, action_dim=65), P.ActCodec, _act_frames),
    ],
}


def _layout_of(kind: str, codec, env: dict) -> bytes | None:
    """``env`` (valid, from decode) written by the codec, or None if it cannot be."""
    try:
        if kind == "msg":
            return codec.encode(env["from"], env["ep"], env["t"], env["p"])
        if kind == "act":
            return codec.encode(env["from"], env["ep"], env["t"], env["a"])
        if type(env.get("first", False)) is not bool or set(env) - {"v", "sw", "from", "k", "ep", "t", "o", "av", "first", "to", "in"}:
            return None
        return codec.encode(env["ep"], env["t"], env["o"], env["av"], env.get("first", False), env["to"], env["in"])
    except P.ProtocolError:
        return None


@pytest.mark.parametrize("kind", list(CASES))
def test_fast_parse_accepts_exactly_what_decode_accepts(kind):
    rng = np.random.default_rng({"msg": 11, "obs": 12, "act": 13}[kind])
    cases = CASES[kind]
    per_case = math.ceil(FRAMES_PER_KIND / len(cases))
    tally = {"frames": 0, "fast_accepts": 0, "fast_rejects": 0, "decode_accepts": 0}
    problems: list[str] = []
    for ex, make, frames in cases:
        codec = make(ex)
        gen = frames(rng, ex, codec)
        pool = [next(gen) for _ in range(64)]
        for i in range(per_case):
            base = next(gen)
            f = base if i % 4 == 0 else mutate(rng, base, pool, ex)
            if i % 50 == 0:
                pool[int(rng.integers(len(pool)))] = f
            tally["frames"] += 1
            why = agree(kind, codec, ex, f)
            if why is not None:
                problems.append(f"{why} -- frame {f.hex()}")
                continue
            r, env = codec.parse(f), P.decode(f, ex)
            tally["fast_accepts"] += isinstance(r, tuple)
            tally["fast_rejects"] += isinstance(r, str)
            if isinstance(env, dict):
                tally["decode_accepts"] += 1
                if env["k"] == kind and _layout_of(kind, codec, env) == f and not isinstance(r, tuple):
                    problems.append(f"a valid frame in the codec's own layout is left to decode -- frame {f.hex()}")
    print(kind, tally)  # (pytest -s shows the mix)
    assert not problems, f"{len(problems)} disagreements, e.g.:\n" + "\n".join(problems[:5])
    assert tally["frames"] >= FRAMES_PER_KIND
    # the mix exercised both sides: valid frames the fast path took, and plenty decode refused
    assert tally["fast_accepts"] > FRAMES_PER_KIND // 20, tally
    assert FRAMES_PER_KIND // 20 < tally["decode_accepts"] < tally["frames"] - FRAMES_PER_KIND // 4, tally
