"""Wire protocol v1: fixed-width message frames, and a reason for every bad frame."""

from __future__ import annotations

import msgpack
import numpy as np
import pytest

from frames import envelope
from marl_edge.wire import protocol as P

SW = "b0123456789ab-42"
EX = P.Expect(SW, 6, msg_dim=8, obs_dim=5, n_actions=3, k_max=2)


def test_msg_frames_have_one_size_whatever_the_step():
    codec = P.MsgCodec(SW, 8)
    sizes = {len(codec.encode(s, e, t, np.ones(8, np.float32))) for s, e, t in [(0, 0, 0), (5, 9, 300), (65535, 2**32 - 1, 2**32 - 1)]}
    assert sizes == {P.frame_size(8, SW)}
    env = msgpack.unpackb(codec.encode(3, 1, 2, np.arange(8, dtype=np.float32)))  # any msgpack decoder reads it
    assert env["from"] == 3 and env["k"] == "msg" and np.frombuffer(env["p"], "<f4").tolist() == list(range(8))


def test_codec_fast_path_is_the_generic_encoding_and_decoding():
    codec = P.MsgCodec(SW, 8, EX)
    x = np.linspace(-1, 1, 8, dtype=np.float32)
    f = codec.encode(4, 2, 17, x)
    assert msgpack.unpackb(f) == {"v": 1, "sw": SW, "from": 4, "k": "msg", "ep": 2, "t": 17, "p": x.tobytes()}
    fast, slow = codec.decode(f), P.decode(f, EX)
    assert {k: v for k, v in fast.items() if k != "p"} == {k: v for k, v in slow.items() if k != "p"}
    assert np.array_equal(fast["p"], slow["p"])
    # another encoder's widths (msgpack picks the smallest ints): still accepted through the generic path
    other = msgpack.packb({"v": 1, "sw": SW, "from": 4, "k": "msg", "ep": 2, "t": 17, "p": x.tobytes()})
    assert other != f and codec.decode(other)["t"] == 17


BAD = {
    "undecodable": b"\xc1\xc1",
    "not a map": msgpack.packb([1, 2]),
    "version 2": msgpack.packb({"v": 2, "sw": SW, "from": 0, "k": "hb", "ep": 0, "t": 0}),
    "foreign swarm": envelope("other", 0, "hb"),
    "unknown kind": msgpack.packb({"v": 1, "sw": SW, "from": 0, "k": "shout", "ep": 0, "t": 0}),
    "unknown sender": P.MsgCodec(SW, 8).encode(6, 0, 0, np.zeros(8, np.float32)),
    "insane step": envelope(SW, 0, "hb", -1, 0),
    "payload: 36 bytes, want 32": P.MsgCodec(SW, 9).encode(1, 0, 0, np.zeros(9, np.float32)),
    "payload: non-finite values": P.MsgCodec(SW, 8).encode(1, 0, 0, np.full(8, np.inf, np.float32)),
    "msg from the world": envelope(SW, -1, "msg", p=np.zeros(8, np.float32)),
    "obs not from the world": envelope(SW, 1, "obs", o=np.zeros(5, np.float32), av=np.ones(3, bool)),
    "avail: want n_actions bytes of 0/1 with at least one 1": envelope(SW, -1, "obs", o=np.zeros(5, np.float32), av=np.zeros(3, bool)),
    "in: not a list of at most 2 agent ids": envelope(SW, -1, "obs", o=np.zeros(5, np.float32), av=np.ones(3, bool), **{"in": [1, 2, 3]}),
    "to: agent ids must be distinct ints in 0..5": envelope(SW, -1, "obs", o=np.zeros(5, np.float32), av=np.ones(3, bool), to=[1, 1]),
    "action out of range": envelope(SW, 2, "act", a=3),
    "hello: bad address": envelope(SW, 2, "hello", addr=5),
    "absent not from the world": envelope(SW, 2, "absent", why="silent"),
    "oversized": b"\x00" * (P.MAX_FRAME + 1),
}


@pytest.mark.parametrize("reason", list(BAD))
def test_every_bad_frame_has_a_reason(reason):
    assert P.decode(BAD[reason], EX) == reason


def test_a_good_obs_frame_decodes_to_arrays():
    f = envelope(SW, -1, "obs", 1, 2, o=np.arange(5, dtype=np.float32), av=np.array([1, 0, 1], bool), first=True, to=[0, 3], **{"in": [4]})
    env = P.decode(f, EX)
    assert env["o"].tolist() == [0, 1, 2, 3, 4] and env["av"].tolist() == [True, False, True]
    assert env["in"] == [4] and env["to"] == [0, 3] and env["first"] is True


def test_the_worlds_answers_to_a_heartbeat_decode():
    """docs/protocol.md §7: the world answers an hb with hb, absent or stop (from -1)."""
    assert P.decode(P.encode(SW, P.WORLD, "hb"), EX)["k"] == "hb"
    env = P.decode(P.encode(SW, P.WORLD, "absent", why="silent"), EX)
    assert env["k"] == "absent" and env["from"] == -1 and env["why"] == "silent"


def test_counters_group_reasons():
    c = P.Counters()
    for r in ("payload: 4 bytes, want 32", "payload: non-finite values", "undecodable"):
        c.bad(r)
    assert c.invalid == 3 and c.invalid_reasons == {"payload": 2, "undecodable": 1}


@pytest.mark.parametrize("swarm", ["¤from¢ep¡t", "x" * 40, "ünïcødé-swarm"])
def test_msg_codec_writes_the_msg_frame_for_any_swarm_id(swarm):
    """The fast codec finds its fields after the swarm id, so an id holding a key's bytes cannot move them."""
    d = 8
    codec = P.MsgCodec(swarm, d, P.Expect(swarm=swarm, n_agents=4, msg_dim=d))
    x = np.linspace(-1, 1, d, dtype=np.float32)
    frame = codec.encode(3, 7, 11, x)
    assert msgpack.unpackb(frame) == {"v": 1, "sw": swarm, "from": 3, "k": "msg", "ep": 7, "t": 11, "p": x.tobytes()}
    assert len(frame) == P.frame_size(d, swarm)
    sender, ep, t, payload = codec.parse(frame)
    assert (sender, ep, t) == (3, 7, 11) and np.array_equal(np.frombuffer(payload, "<f4"), x)
