"""How the world simulator reaches its robots: a small transport interface
handed to ``World(...)``. torch-free.

The world (``runtime.world``) steps the env, keeps liveness and collects
actions; a transport owns the socket. It delivers every valid frame it
receives to the world as an envelope dict (``Receiver.accept``), counts and
drops the rest, and sends the world's per-step observations and its stop.

    ZmqTransport   the ZeroMQ ROUTER the simulated robots (``robots.sim``) and
                   any client of docs/protocol.md connect to; its frames are
                   ``wire.protocol``'s
    UdpTransport   one UDP socket speaking ``wire.udp``'s datagrams (the
                   testbed device of ``runtime.udp_world``)

The runtime's ZeroMQ sockets are set up here, in one place: the world's
ROUTER (``router_socket``) and an agent's message inbox and its links to its
peers (``inbox_socket``, ``peer_socket``). Given a member's keys
(``runtime.keys``) they are CURVE servers and clients, and ``start_auth`` runs
the ZAP handler that admits only the swarm's keys and names each connection
by its key's user id (docs/protocol.md, "Trust model and CURVE"). (The
simulated robot's DEALER is ``robots.sim``'s: robots do not import the runtime.)
"""

from __future__ import annotations

import select
import socket
import threading
from abc import ABC, abstractmethod
from typing import Any, Protocol

import numpy as np
import zmq
from zmq.utils import z85

from ..wire import protocol as P
from ..wire import udp as U
from .bundle import BundleError
from .keys import SwarmKeys, agent_user

POLLIN, NOBLOCK, SNDMORE = int(zmq.POLLIN), int(zmq.NOBLOCK), int(zmq.SNDMORE)  # plain ints: no enum arithmetic per call


class Receiver(Protocol):
    """What a transport sees of the world it serves."""

    swarm: str
    ex: P.Expect
    counters: P.Counters
    live: np.ndarray  # [n] bool: who is here
    finished: bool  # the last episode is over
    bye: dict[int, dict[str, Any]]  # who said goodbye

    def accept(self, i: int, env: dict[str, Any]) -> None:
        """A valid envelope from agent ``i`` (``k``: hello, bye, hb or act)."""


class Transport(ABC):
    """One world's link to its robots. Single-threaded: the world calls it."""

    endpoint: str = ""  # where the robots reach the world (after ``open``)

    @abstractmethod
    def open(self, world: Receiver) -> str:
        """Start listening for ``world``'s robots; the bound endpoint."""

    @abstractmethod
    def poll(self, timeout_ms: int) -> None:
        """Handle every frame waiting, waiting up to ``timeout_ms`` for the first."""

    def poll_one(self, timeout_ms: int) -> None:
        """The lock-step wait: handle the next frame, waiting up to ``timeout_ms``
        (more than one is fine)."""
        self.poll(timeout_ms)

    @abstractmethod
    def send_obs(self, i: int, ep: int, t: int, o: np.ndarray, av: Any, first: bool, to: list[int], inbox: list[int],
                 peers: list[list[Any]] | None = None) -> None:
        """Agent ``i``'s observation for step ``t`` of episode ``ep``; ``peers``
        ([[agent, endpoint], ...]) when the directory changed since its last one."""

    @abstractmethod
    def send_stop(self, i: int, why: str) -> None:
        """Tell agent ``i`` to stop."""

    def send_hb(self, i: int) -> None:
        """Answer live agent ``i``'s heartbeat: the world is there. (A link
        without such a frame sends nothing.)"""

    def send_absent(self, i: int, why: str) -> None:
        """Tell agent ``i`` that the world counts it absent (``why``): it says
        hello again to rejoin. (A link without such a frame sends nothing:
        UDP takes a heartbeat from an absent agent as its rejoin.)"""

    @abstractmethod
    def close(self) -> None:
        pass


# ---- ZeroMQ -------------------------------------------------------------------------------------


def router_socket(ctx: zmq.Context, endpoint: str, keys: SwarmKeys | None = None, max_msg: int = P.MAX_FRAME) -> tuple[zmq.Socket, str]:
    """The world's ROUTER socket bound at ``endpoint``, and the bound address.
    With ``keys``: a CURVE server with the world's key pair (``start_auth`` must
    run on ``ctx`` first), and no identity handover. ``max_msg``: the largest
    frame libzmq accepts (``P.max_message_size``)."""
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg)  # larger: dropped (with its connection) before it is allocated
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
    if keys is None:
        # a restarted robot takes its identity over from a connection that is still half-open
        sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
    else:
        # an identity held by a live connection cannot be taken by another (a killed
        # robot's connection closes with it, so its restart gets the identity back) ...
        sock.setsockopt(zmq.ROUTER_HANDOVER, 0)
        # ... and one that went silent without closing (power loss, a cut link) is dropped
        # after 3 s without ZMTP pongs, so the robot's restart is not locked out
        sock.setsockopt(zmq.HEARTBEAT_IVL, 1000)
        sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, 3000)
        curve_server(sock, keys)
    sock.setsockopt(zmq.RCVHWM, 100_000)  # a burst of junk must not stall the agents' frames
    sock.bind(endpoint)
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


def inbox_socket(ctx: zmq.Context, endpoint: str, keys: SwarmKeys | None = None, max_msg: int = P.MAX_FRAME) -> tuple[zmq.Socket, str]:
    """An agent's message inbox (PULL) bound at ``endpoint``, and the bound
    address; a CURVE server with the agent's key pair if ``keys``. Raises
    ``zmq.ZMQError`` if it cannot bind."""
    sock = ctx.socket(zmq.PULL)
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.RCVHWM, 100_000)
    if keys is not None:
        curve_server(sock, keys)
    try:
        sock.bind(endpoint)
    except zmq.ZMQError:
        sock.close(linger=0)
        raise
    return sock, sock.getsockopt_string(zmq.LAST_ENDPOINT)


def peer_socket(ctx: zmq.Context, endpoint: str, keys: SwarmKeys | None = None, peer: str = "", max_msg: int = P.MAX_FRAME) -> zmq.Socket:
    """An agent's link (PUSH) to a peer's inbox at ``endpoint``; with ``keys``, a
    CURVE client with this agent's key pair that accepts only ``peer``'s key
    (a user id, e.g. ``agent-2``) at the other end."""
    sock = ctx.socket(zmq.PUSH)
    sock.setsockopt(zmq.MAXMSGSIZE, max_msg)  # a PUSH reads nothing; set anyway, for every socket alike
    sock.setsockopt(zmq.LINGER, 100)
    sock.setsockopt(zmq.SNDHWM, 10_000)
    sock.setsockopt(zmq.IMMEDIATE, 0)
    if keys is not None:
        curve_client(sock, keys, keys.public_of(peer))
    sock.connect(endpoint)
    return sock


# ---- CURVE (runtime.keys holds the keys; docs/protocol.md, "Trust model and CURVE") ----------


def curve_server(sock: zmq.Socket, keys: SwarmKeys) -> None:
    """Make ``sock`` (before it binds) a CURVE server with this member's key pair."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_server = True


def curve_client(sock: zmq.Socket, keys: SwarmKeys, server_key: bytes) -> None:
    """Make ``sock`` (before it connects) a CURVE client with this member's key
    pair that talks only to the server holding ``server_key``."""
    sock.curve_secretkey = keys.secret
    sock.curve_publickey = keys.public
    sock.curve_serverkey = server_key


ZAP_ENDPOINT = "inproc://zeromq.zap.01"  # where libzmq asks a context's ZAP handler (RFC 27)


class SwarmAuthenticator:
    """The ZAP handler of one context: admits a CURVE client only if its public
    key is one of the swarm's, and names the connection by that key's user id
    (``world``, ``agent-<i>``). Every frame received over it carries that name
    as its ``User-Id`` property.

    libzmq asks it once per connection, during the handshake; frames never
    reach it. It is one thread blocked in ``zmq_poll`` (the GIL released)
    between handshakes, answering from a dict of raw keys. pyzmq's
    ``ThreadAuthenticator`` runs an asyncio loop and a generic policy per
    request: about 0.6 ms of CPU per handshake on a loaded 2-core host against
    0.15 ms here, which counts at n = 64, where agents keep meeting new
    neighbours and so keep opening CURVE connections (benchmarks/README.md,
    ``curve.py``)."""

    def __init__(self, ctx: zmq.Context, keys: SwarmKeys) -> None:
        self.admitted = {z85.decode(k): u.encode() for u, k in keys.publics.items()}  # raw public key -> user id
        self.requests = 0  # ZAP requests answered (one per handshake), and how many were refused
        self.refused = 0
        self.zap = ctx.socket(zmq.REP)
        self.zap.setsockopt(zmq.LINGER, 0)
        try:
            self.zap.bind(ZAP_ENDPOINT)  # fails if the context has a handler already: one per context
        except zmq.ZMQError:
            self.zap.close(linger=0)
            raise
        # stop() wakes the thread over an inproc pair (a socket is used by one thread at a time)
        wake = f"inproc://marl-zap-stop-{id(self):x}"
        self._wake_rx = ctx.socket(zmq.PAIR)
        self._wake_rx.bind(wake)
        self._wake_tx = ctx.socket(zmq.PAIR)
        self._wake_tx.setsockopt(zmq.LINGER, 0)
        self._wake_tx.connect(wake)
        self._thread = threading.Thread(target=self._serve, name="marl-zap", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def stop(self) -> None:
        if self._thread.is_alive():
            self._wake_tx.send(b"")
            self._thread.join(timeout=5)
        self._wake_tx.close(linger=0)

    def _serve(self) -> None:
        zap, wake = self.zap, self._wake_rx
        pollset = [(zap, POLLIN), (wake, POLLIN)]
        try:
            while True:
                ready = dict(zmq.zmq_poll(pollset, -1))
                if wake in ready:
                    return
                if zap in ready:
                    zap.send_multipart(self.answer(zap.recv_multipart()))
        finally:
            zap.close(linger=0)
            wake.close(linger=0)

    def answer(self, request: list[bytes]) -> list[bytes]:
        """The ZAP reply to one request: 200 with the user id for a swarm key
        over CURVE, 400 for anything else, 500 for a malformed request."""
        self.requests += 1
        if len(request) < 6 or request[0] != b"1.0":
            self.refused += 1
            return [b"1.0", request[1] if len(request) > 1 else b"", b"500", b"malformed ZAP request", b"", b""]
        request_id, mechanism, credentials = request[1], request[5], request[6:]
        user = self.admitted.get(credentials[0]) if mechanism == b"CURVE" and len(credentials) == 1 else None
        if user is None:
            self.refused += 1
            return [b"1.0", request_id, b"400", b"not a key of this swarm", b"", b""]
        return [b"1.0", request_id, b"200", b"OK", user, b""]


def start_auth(ctx: zmq.Context, keys: SwarmKeys) -> SwarmAuthenticator:
    """Start ``ctx``'s ZAP handler for the swarm's keys; call before a CURVE
    server socket binds (without a handler, libzmq would admit any key)."""
    auth = SwarmAuthenticator(ctx, keys)
    auth.start()
    return auth


class ZmqTransport(Transport):
    """A ROUTER at ``endpoint``; robot ``i`` connects as ``agent-<i>``. Frames are
    ``wire.protocol``'s (docs/protocol.md).

    With ``keys`` (the world's, ``runtime.keys``) the ROUTER is a CURVE server
    on a context of its own with its own ZAP handler: only the swarm's keys
    connect, and a frame is accepted only if its claimed sender is the agent
    whose key the connection authenticated with."""

    _rcvtimeo = -1  # the socket's ZMQ_RCVTIMEO (ms) for poll_one, set only when it changes

    def __init__(self, endpoint: str, ctx: zmq.Context | None = None, keys: SwarmKeys | None = None) -> None:
        self.bind_endpoint = endpoint
        self.keys = keys
        self.own_ctx = keys is not None and ctx is None  # one ZAP handler per context: a world gets its own
        self.ctx = zmq.Context() if self.own_ctx else (ctx or zmq.Context.instance())
        self.auth: SwarmAuthenticator | None = None
        self.sock: zmq.Socket | None = None

    def open(self, world: Receiver) -> str:
        self.world, self.ex, self.swarm = world, world.ex, world.swarm
        self.counters = world.counters
        self.obs_codec, self.act_codec = P.ObsCodec(world.ex), P.ActCodec(world.ex)  # the per-step frames
        if self.keys is not None:
            self.auth = start_auth(self.ctx, self.keys)
            self.users = [agent_user(i) for i in range(world.ex.n_agents)]  # the User-Id agent i's frames carry
        try:
            self.sock, self.endpoint = router_socket(self.ctx, self.bind_endpoint, self.keys, P.max_message_size(world.ex))
        except zmq.ZMQError as e:
            raise BundleError(f"the world cannot listen on {self.bind_endpoint}: {e}") from None
        return self.endpoint

    # ---- receiving -------------------------------------------------------------------
    def poll(self, timeout_ms: int) -> None:
        sock = self.sock
        pollset = [(sock, POLLIN)]
        if not zmq.zmq_poll(pollset, timeout_ms):
            return
        secure = self.keys is not None
        while True:
            try:
                parts = sock.recv_multipart(NOBLOCK, copy=not secure)
            except zmq.Again:
                return
            if secure:  # with the User-Id of the key that sent it
                self._handle([p.bytes for p in parts], parts[-1].get("User-Id"))
            else:
                self._handle(parts)
            if not zmq.zmq_poll(pollset, 0):  # drained (cheaper than a failing recv)
                return

    def poll_one(self, timeout_ms: int) -> None:
        """One blocking receive per frame, as the actions come in: no "anything
        else?" probe after each (a system call), since the wait loop asks again anyway."""
        sock = self.sock
        if timeout_ms != self._rcvtimeo:
            sock.setsockopt(zmq.RCVTIMEO, timeout_ms)
            self._rcvtimeo = timeout_ms
        try:
            ident = sock.recv()
        except zmq.Again:
            return
        part = sock.recv(copy=False)  # a ROUTER gives the sender's identity, then at least one part
        parts = [ident, part.bytes]
        while part.more:  # a multipart message: not ours (counted as bad by _handle)
            part = sock.recv(copy=False)
            parts.append(part.bytes)
        if self.keys is not None:  # with the User-Id of the key that sent it
            self._handle(parts, part.get("User-Id"))
        else:
            self._handle(parts)

    def _handle(self, parts: list[bytes], user: str | None = None) -> None:
        """One received message; ``user``: its connection's authenticated user id
        (CURVE), None without authentication."""
        c = self.counters
        c.received += 1
        if len(parts) != 2:
            c.bad("not one frame")
            return
        ident, frame = parts
        c.received_bytes += len(frame)
        r = self.act_codec.parse(frame)
        if r is not None:  # a valid fixed-width act (the per-step frame)
            env: dict[str, Any] | str = {"k": "act", "from": r[0], "ep": r[1], "t": r[2], "a": r[3]}
        else:
            env = P.decode(frame, self.ex)
        if isinstance(env, str):
            c.bad(env)
            return
        i = env["from"]
        if i == P.WORLD or ident != b"agent-%d" % i:
            c.bad("sender does not match its connection")
            return
        if self.keys is not None and user != self.users[i]:
            c.bad("sender does not match its key")
            return
        self.world.accept(i, env)

    # ---- sending -------------------------------------------------------------------------
    def send_obs(self, i: int, ep: int, t: int, o: np.ndarray, av: Any, first: bool, to: list[int], inbox: list[int],
                 peers: list[list[Any]] | None = None) -> None:
        self._send_frame(i, self.obs_codec.encode(ep, t, o, av, first, to, inbox, peers))

    def send_stop(self, i: int, why: str) -> None:
        self._send_frame(i, P.encode(self.swarm, P.WORLD, "stop", why=why))

    def send_hb(self, i: int) -> None:
        self._send_frame(i, P.encode(self.swarm, P.WORLD, "hb"))

    def send_absent(self, i: int, why: str) -> None:
        self._send_frame(i, P.encode(self.swarm, P.WORLD, "absent", why=why))

    def _send_frame(self, i: int, frame: bytes) -> None:
        c = self.counters
        c.sent += 1
        c.sent_bytes += len(frame)
        self.sock.send(b"agent-%d" % i, SNDMORE)
        self.sock.send(frame)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=0)
            self.sock = None
        if self.auth is not None:
            self.auth.stop()
            self.auth = None
        if self.own_ctx:
            self.own_ctx = False
            self.ctx.term()


# ---- UDP ----------------------------------------------------------------------------------------


class UdpTransport(Transport):
    """One UDP socket bound at ``host:port`` (0: any free port) speaking
    ``wire.udp``'s datagrams, checked against ``spec``.

    An agent is known by the source address of its HELLO; any other datagram
    claiming to be agent i must come from that address. A HEARTBEAT from an
    agent that is not live (its HELLO was lost, or it missed a lock-step
    deadline because a datagram was lost) takes it back, like a HELLO: it
    rejoins with a fresh recurrent state. After the last episode, a HEARTBEAT
    or ACT is answered with STOP again (in case the first was lost). The
    peers' message endpoints go out in PEERS datagrams. With ``auth`` (a
    shared link key) every datagram is sealed, and a received one without a
    valid tag or with a replayed counter is counted and dropped, and an
    agent's authentic, fresh datagram from a new address moves its address
    there (roaming)."""

    def __init__(self, spec: U.UdpSpec, host: str = "127.0.0.1", port: int = 0, auth: U.LinkAuth | None = None) -> None:
        self.spec = spec
        self.auth = auth
        self.bind_host, self.bind_port = host, port
        self.udp_addr: dict[int, tuple[Any, ...]] = {}  # agent -> its link's address (from its HELLO)
        self.link = U.LinkCounters()  # only send_errors is used: the frames are counted in the world's counters
        self.sock: socket.socket | None = None
        self.port = 0

    def open(self, world: Receiver) -> str:
        self.world, self.counters = world, world.counters
        fam, sa = U.resolve(self.bind_host, self.bind_port)
        s = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # capped by net.core.rmem_max
            s.bind(sa)
        except OSError as e:
            s.close()
            raise BundleError(f"cannot listen on udp://{self.bind_host}:{self.bind_port}: {e.strerror or e}; pick another --port") from None
        s.setblocking(False)
        self.sock = s
        host, port = s.getsockname()[:2]
        self.endpoint = f"udp://[{host}]:{port}" if fam == socket.AF_INET6 else f"udp://{host}:{port}"
        self.port = port
        return self.endpoint

    # ---- receiving -------------------------------------------------------------------
    def poll(self, timeout_ms: int) -> None:
        try:
            ready, _, _ = select.select([self.sock], [], [], max(0, timeout_ms) / 1000)
        except InterruptedError:
            return
        if not ready:
            return
        while True:
            try:
                data, src = self.sock.recvfrom(U.MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error for something we sent earlier: not a datagram
                self.link.send_errors += 1
                continue
            self._datagram(data, src)

    def _datagram(self, data: bytes, src: tuple[Any, ...]) -> None:
        c, w = self.counters, self.world
        c.received += 1
        c.received_bytes += len(data)
        d = U.decode(data, self.spec, to_agent=False, auth=self.auth)
        if isinstance(d, str):
            c.bad(d)
            return
        i = d.agent
        known = self.udp_addr.get(i)
        from_known = known is not None and U.same_addr(src, known)
        if d.kind in (U.HELLO, U.HEARTBEAT):
            if d.swarm != w.swarm:
                c.bad("foreign swarm")
                return
            if w.finished:
                if i not in w.bye:
                    self._sendto(src, U.encode_stop(i, "done"))  # its STOP may have been lost
                return
            if d.kind == U.HELLO or not w.live[i]:  # a hello, or a heartbeat of one we lost: (re)join
                self.udp_addr[i] = src
                w.accept(i, {"k": "hello", "from": i, "ep": 0, "t": 0, "addr": d.addr, "pid": d.pid})
                return
        if not from_known and known is not None and self.auth is not None:
            # authentic and fresh: it is agent i (a key holder), wherever it now sends from (roaming, as WireGuard
            # does); this also undoes a HELLO an attacker recorded and replayed to a restarted device
            self.udp_addr[i] = src
            from_known = True
        if not from_known:
            c.bad("sender does not match its address")
            return
        if d.kind == U.HEARTBEAT:
            w.accept(i, {"k": "hb", "from": i, "ep": d.episode, "t": d.step})
        elif d.kind == U.ACT:
            if w.finished and i not in w.bye:
                self._sendto(src, U.encode_stop(i, "done"))
            w.accept(i, {"k": "act", "from": i, "ep": d.episode, "t": d.step, "a": d.action})
        else:  # BYE
            w.accept(i, {"k": "bye", "from": i, "ep": d.episode, "t": d.step, "m": d.metrics or {}})

    # ---- sending -------------------------------------------------------------------------
    def _sendto(self, addr: tuple[Any, ...], data: bytes) -> None:
        if self.auth is not None:
            data = self.auth.seal(data)
        try:
            self.sock.sendto(data, addr)
            self.counters.sent += 1
            self.counters.sent_bytes += len(data)
        except OSError:  # a full buffer or a vanished route: the agent's deadline and heartbeat recover
            self.link.send_errors += 1

    def send_obs(self, i: int, ep: int, t: int, o: np.ndarray, av: Any, first: bool, to: list[int], inbox: list[int],
                 peers: list[list[Any]] | None = None) -> None:
        addr = self.udp_addr.get(i)
        if addr is None:
            return
        if peers is not None:
            self._sendto(addr, U.encode_peers(i, {int(j): str(a) for j, a in peers}))
        self._sendto(addr, U.encode_obs(i, ep, t, o, av if self.spec.n_actions else None, inbox, to, bool(first)))

    def send_stop(self, i: int, why: str) -> None:
        addr = self.udp_addr.get(i)
        if addr is not None:
            self._sendto(addr, U.encode_stop(i, why))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
