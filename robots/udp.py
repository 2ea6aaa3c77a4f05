"""A robot behind a UDP datagram link: the worked example of a real-robot
adapter (``docs/robots.md``). numpy + stdlib only (no torch, no onnx, no zmq).

Many small robots expose their drivers through a bridge -- a microcontroller
or a driver process -- that speaks fixed binary datagrams over a local UDP
link. ``UdpRobot`` is the agent's side of such a link: it announces itself,
receives an observation datagram per step, answers with an action datagram.
The peer-to-peer messages between agents still travel over ZeroMQ
(``runtime.agent``); only the robot link is UDP. The datagram format (and
its validating decoder) is ``wire.udp``; ``runtime.udp_world`` is a device
that speaks it, serving a built-in env (a testbed).
"""

from __future__ import annotations

import os
import select
import socket
from typing import Any

import numpy as np

from ..wire.udp import (
    F32, MAX_DATAGRAM, PEERS, STOP, EncodeError, LinkAuth, LinkCounters, UdpLinkError, UdpSpec, decode, encode_act, encode_bye,
    encode_hello, parse_udp_url, resolve, same_addr,
)
from .base import Observation, RobotAdapter, Stop


class UdpRobot(RobotAdapter):
    """The agent's end of a UDP link to a robot's bridge at ``device``
    (``"udp://HOST:PORT"`` or ``(host, port)``). The local socket binds
    ``bind`` (default: any address, an ephemeral port); the device learns
    where to answer from the HELLO's source address.

    Datagrams not from the device's address, and malformed ones, are counted
    and dropped. A PEERS datagram is handed to the agent with the next
    observation. The agent's heartbeat is a HEARTBEAT datagram (it carries
    the hello's fields: a device may take the agent back from it). With
    ``auth`` (a shared link key) every datagram is sealed and every received
    one must carry a valid tag and a fresh counter."""

    def __init__(self, device: str | tuple[str, int], spec: UdpSpec, bind: tuple[str, int] | None = None, rcvbuf: int = 1 << 20,
                 auth: LinkAuth | None = None) -> None:
        host, port = parse_udp_url(device) if isinstance(device, str) else device
        self.family, self.device = resolve(host, port)
        self.spec = spec
        self.bind_addr = bind
        self.rcvbuf = rcvbuf
        self.sock: socket.socket | None = None
        self.agent_id = -1
        self.hello: dict[str, Any] = {}
        self.counters = LinkCounters()
        self._peers: dict[int, str] | None = None
        self.auth = auth  # a link key: every datagram is sealed, and only authentic, fresh ones are taken

    # ---- sending ----
    def _send(self, data: bytes) -> None:
        assert self.sock is not None, "connect first"
        if self.auth is not None:
            data = self.auth.seal(data)
        try:
            self.sock.sendto(data, self.device)
            self.counters.sent += 1
            self.counters.sent_bytes += len(data)
        except OSError:  # the link is down for now (no route, no buffer): the device's deadline decides
            self.counters.send_errors += 1

    def connect(self, agent_id: int, hello: dict[str, Any]) -> None:
        if not 0 <= agent_id < self.spec.n_agents:
            raise UdpLinkError(f"agent id {agent_id} is not in 0..{self.spec.n_agents - 1}")
        self.agent_id = agent_id
        self.hello = {"addr": str(hello.get("addr", "")), "swarm": str(hello.get("bundle", "")), "pid": int(hello.get("pid", os.getpid()))}
        s = socket.socket(self.family, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, self.rcvbuf)
            if self.bind_addr is not None:
                s.bind(self.bind_addr)
        except OSError as e:
            s.close()
            raise UdpLinkError(f"agent {agent_id}: cannot bind the UDP link at {self.bind_addr}: {e}") from None
        s.setblocking(False)
        self.sock = s
        self._send(encode_hello(agent_id, self.hello["addr"], self.hello["swarm"], self.hello["pid"]))

    # ---- receiving ----
    def _recv(self) -> tuple[bytes, Any] | None:
        assert self.sock is not None
        try:
            return self.sock.recvfrom(MAX_DATAGRAM + 1)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:  # e.g. an ICMP error queued on the socket: not a datagram
            self.counters.send_errors += 1
            return None

    def observe(self, timeout_s: float) -> Observation | Stop | None:
        assert self.sock is not None, "connect first"
        try:
            ready, _, _ = select.select([self.sock], [], [], max(0.0, timeout_s))
        except InterruptedError:
            return None
        if not ready:
            return None
        while True:
            got = self._recv()
            if got is None:
                return None
            data, src = got
            c = self.counters
            c.received += 1
            c.received_bytes += len(data)
            if not same_addr(src, self.device):
                c.bad("not from the device")
                continue
            d = decode(data, self.spec, to_agent=True, agent=self.agent_id, auth=self.auth)
            if isinstance(d, str):
                c.bad(d)
            elif d.kind == STOP:
                return Stop(d.reason)
            elif d.kind == PEERS:
                self._peers = d.peers  # handed over with the next observation
            else:  # OBS
                assert d.obs is not None and d.avail is not None
                peers, self._peers = self._peers, None
                return Observation(d.episode, d.step, d.obs, d.avail, d.inbox, d.send_to, d.first, peers)

    # ---- acting ----
    def apply(self, ob: Observation, action: int | np.ndarray) -> None:
        if self.spec.action_dim:
            v = np.asarray(action, dtype=F32).reshape(-1)
            if v.size != self.spec.action_dim:
                raise EncodeError(f"action has {v.size} floats, the link carries {self.spec.action_dim}")
            self._send(encode_act(self.agent_id, ob.episode, ob.step, v))
        else:
            self._send(encode_act(self.agent_id, ob.episode, ob.step, int(action)))

    def heartbeat(self) -> None:
        self._send(encode_hello(self.agent_id, self.hello["addr"], self.hello["swarm"], self.hello["pid"], heartbeat=True))

    def rejoin(self) -> None:
        """A HELLO (the device takes the agent back from any HEARTBEAT as well)."""
        self._send(encode_hello(self.agent_id, self.hello["addr"], self.hello["swarm"], self.hello["pid"]))

    def goodbye(self, metrics: dict[str, Any]) -> None:
        if self.sock is not None:
            self._send(encode_bye(self.agent_id, metrics))

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    @property
    def invalid_frames(self) -> int:
        return self.counters.invalid

    @property
    def local_address(self) -> tuple[Any, ...] | None:
        return self.sock.getsockname() if self.sock is not None else None


__all__ = ["UdpRobot"]
