"""The swarm's ZAP handler (runtime.transport.SwarmAuthenticator) does its work
once per connection and nothing per frame, admits only the swarm's keys, and
leaves nothing running when stopped. Why it matters: at n = 64 agents keep
meeting new neighbours, so CURVE connections are opened all run long, and a
handler that cost more per handshake (or ran per frame) showed up directly in
the swarm's steps/s (benchmarks/README.md, ``curve.py``). Loopback only;
every socket and context a test opens is closed in a ``finally``."""

from __future__ import annotations

import threading

import pytest
import zmq

from marl_edge.runtime.keys import SwarmKeys
from marl_edge.runtime.transport import inbox_socket, peer_socket, start_auth


def member_keys(n: int) -> dict[str, SwarmKeys]:
    """Fresh key pairs for ``world`` and ``agent-0`` .. ``agent-<n-1>``, each knowing every public key."""
    pairs = {u: zmq.curve_keypair() for u in ["world"] + [f"agent-{i}" for i in range(n)]}
    publics = {u: pub for u, (pub, _) in pairs.items()}
    return {u: SwarmKeys(u, pub, sec, publics) for u, (pub, sec) in pairs.items()}


def stranger_keys(server: SwarmKeys) -> SwarmKeys:
    """A key pair the swarm does not know, that knows the server's public key."""
    pub, sec = zmq.curve_keypair()
    return SwarmKeys("agent-9", pub, sec, {**server.publics, "agent-9": pub})


def test_one_zap_request_per_connection_not_per_frame():
    keys = member_keys(2)
    ctx = zmq.Context()
    auth = start_auth(ctx, keys["agent-0"])
    inbox = push = None
    try:
        inbox, addr = inbox_socket(ctx, "tcp://127.0.0.1:*", keys["agent-0"])
        inbox.setsockopt(zmq.RCVTIMEO, 5000)
        push = peer_socket(ctx, addr, keys["agent-1"], "agent-0")
        users = set()
        for k in range(500):
            push.send(b"frame %d" % k)
            f = inbox.recv(copy=False)
            assert f.bytes == b"frame %d" % k
            users.add(f.get("User-Id"))
        assert users == {"agent-1"}  # the key decides who a frame is from
        assert (auth.requests, auth.refused) == (1, 0)  # the handshake only
    finally:
        for s in (push, inbox):
            if s is not None:
                s.close(linger=0)
        auth.stop()
        ctx.term()


def test_a_stranger_never_gets_a_frame_through():
    keys = member_keys(1)
    ctx = zmq.Context()
    auth = start_auth(ctx, keys["agent-0"])
    inbox = push = None
    try:
        inbox, addr = inbox_socket(ctx, "tcp://127.0.0.1:*", keys["agent-0"])
        push = peer_socket(ctx, addr, stranger_keys(keys["agent-0"]), "agent-0")
        push.send(b"let me in", zmq.NOBLOCK)
        assert inbox.poll(1500) == 0  # refused at the handshake: nothing reaches the application
        assert auth.refused >= 1 and auth.refused == auth.requests  # libzmq may retry: refused each time
    finally:
        for s in (push, inbox):
            if s is not None:
                s.close(linger=0)
        auth.stop()
        ctx.term()


def test_the_handler_answers_every_request_and_admits_only_curve_swarm_keys():
    keys = member_keys(1)
    ctx = zmq.Context()
    auth = start_auth(ctx, keys["world"])
    try:
        raw = zmq.utils.z85.decode(keys["agent-0"].public)
        req = [b"1.0", b"7", b"", b"127.0.0.1", b"", b"CURVE", raw]
        assert auth.answer(req) == [b"1.0", b"7", b"200", b"OK", b"agent-0", b""]
        assert auth.answer(req[:6] + [bytes(32)])[2] == b"400"  # not a swarm key
        assert auth.answer([b"1.0", b"8", b"", b"127.0.0.1", b"", b"NULL"])[2] == b"400"  # no key at all
        assert auth.answer([b"1.0", b"8", b"", b"127.0.0.1", b"", b"PLAIN", b"agent-0", b"pw"])[2] == b"400"
        assert auth.answer([b"2.0", b"9", b"", b"", b"", b"CURVE", raw])[:3] == [b"1.0", b"9", b"500"]  # unknown version
        assert auth.answer([b"x"])[2] == b"500"  # malformed: still answered (a REP must reply)
        assert (auth.requests, auth.refused) == (6, 5)
    finally:
        auth.stop()
        ctx.term()


def test_one_handler_per_context_and_stop_leaves_nothing_running():
    keys = member_keys(1)
    ctx = zmq.Context()
    before = threading.active_count()
    auth = start_auth(ctx, keys["world"])
    try:
        assert threading.active_count() == before + 1  # one thread, whatever the number of connections
        with pytest.raises(zmq.ZMQError):
            start_auth(ctx, keys["world"])  # a second handler on the same context is refused
    finally:
        auth.stop()
    assert threading.active_count() == before
    done = threading.Event()
    threading.Thread(target=lambda: (ctx.term(), done.set()), daemon=True).start()
    assert done.wait(5), "a socket of the handler was left open: the context cannot terminate"
