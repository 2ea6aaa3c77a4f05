"""The simulated robot: a ``RobotAdapter`` that talks to the world simulator
(``runtime.world``) over a ZeroMQ DEALER socket. torch-free.

The world answers every heartbeat (docs/protocol.md §7): ``hb`` (it is there;
``last_heard``), ``absent`` (it counts this agent absent: ``observe`` returns
``Absent`` and the agent calls ``rejoin``, which says hello again) or ``stop``."""

from __future__ import annotations

import time
from typing import Any

import numpy as np
import zmq

from ..wire import protocol as P
from .base import Absent, Observation, RobotAdapter, Stop

POLLIN, NOBLOCK = int(zmq.POLLIN), int(zmq.NOBLOCK)  # plain ints: no enum arithmetic per call
WORLD = P.WORLD


class SimRobot(RobotAdapter):
    """``observe`` returns the observation and availability as views of the
    adapter's own buffers (no allocation per step): they hold until the next
    ``observe``; copy them to keep them longer.

    ``curve``: (public key, secret key, the world's public key), Z85: the
    DEALER is then a CURVE client that talks only to the world holding that
    key (docs/protocol.md, "Trust model and CURVE")."""

    def __init__(self, world: str, expect: P.Expect, ctx: zmq.Context | None = None,
                 curve: tuple[bytes, bytes, bytes] | None = None) -> None:
        self.world, self.ex = world, expect
        self.curve = curve
        self.ctx = ctx or zmq.Context.instance()
        self.sock: zmq.Socket | None = None
        self.agent_id = -1
        self.counters = P.Counters()
        self.rcvtimeo = -1  # ms; set on the socket only when observe's timeout changes
        self.timeout_s = -1.0
        # the per-step frames (an obs frame in another layout goes through the generic decoder)
        self.obs_codec, self.act_codec = P.ObsCodec(expect), P.ActCodec(expect)
        self.obs_bytes, self.avail_bytes = bytearray(4 * expect.obs_dim), bytearray(expect.n_actions)
        self.obs = np.frombuffer(self.obs_bytes, dtype=np.float32)  # what observe returns, refilled in place
        self.avail = np.frombuffer(self.avail_bytes, dtype=np.bool_)
        self.hello: dict[str, Any] = {}
        self._heard = 0.0  # time.monotonic() of the world's last hb or absent

    def connect(self, agent_id: int, hello: dict[str, Any]) -> None:
        self.agent_id = agent_id
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 200)
        s.setsockopt(zmq.MAXMSGSIZE, P.max_message_size(self.ex))  # a larger frame is dropped by libzmq, never allocated
        s.setsockopt(zmq.IDENTITY, f"agent-{agent_id}".encode())
        if self.curve is not None:
            s.curve_publickey, s.curve_secretkey, s.curve_serverkey = self.curve
        s.connect(self.world)
        self.sock = s
        self.pollset = [(s, POLLIN)]
        self.hello = dict(hello)
        self._send("hello", **hello)

    def rejoin(self) -> None:
        self._send("hello", **self.hello)

    @property
    def last_heard(self) -> float:
        return self._heard

    def _send(self, kind: str, ep: int = 0, t: int = 0, **fields: Any) -> None:
        assert self.sock is not None
        self.sock.send(P.encode(self.ex.swarm, self.agent_id, kind, ep, t, **fields))

    def observe(self, timeout_s: float) -> Observation | Stop | None:
        sock = self.sock
        assert sock is not None
        if timeout_s != self.timeout_s:
            self.timeout_s = timeout_s
            ms = max(0, int(timeout_s * 1000))
            if ms != self.rcvtimeo:
                sock.setsockopt(zmq.RCVTIMEO, ms)
                self.rcvtimeo = ms
        try:
            frame = sock.recv()  # waits up to the timeout: no separate poll per step
        except zmq.Again:
            return None
        while True:
            r = self.obs_codec.parse(frame)
            if r is not None:  # a valid fixed-width obs frame
                self.obs_bytes[:] = r[3]
                self.avail_bytes[:] = r[4]
                return Observation(r[0], r[1], self.obs, self.avail, r[5], r[6], r[2], None)
            env = P.decode(frame, self.ex)
            if type(env) is str:
                self.counters.bad(env)
            elif env["from"] != WORLD:
                self.counters.bad("not from the world")
            elif env["k"] == "obs":
                peers = env.get("peers")
                if peers is not None:
                    peers = {p[0]: p[1] for p in peers if isinstance(p, list) and len(p) == 2 and P._int(p[0]) and isinstance(p[1], str)} \
                        if isinstance(peers, list) else None
                return Observation(env["ep"], env["t"], env["o"], env["av"], env["in"], env["to"], bool(env.get("first")), peers)
            elif env["k"] == "stop":
                return Stop(str(env.get("why", "stop")))
            elif env["k"] == "absent":
                self._heard = time.monotonic()
                return Absent(str(env.get("why", "absent")))
            elif env["k"] == "hb":  # the world answered a heartbeat: it is there; wait on as if nothing had come
                self._heard = time.monotonic()
                if not zmq.zmq_poll(self.pollset, self.rcvtimeo):
                    return None
                try:
                    frame = sock.recv(NOBLOCK)
                except zmq.Again:
                    return None
                continue
            else:
                self.counters.bad("unexpected kind from the world")
            if not zmq.zmq_poll(self.pollset, 0):
                return None
            try:
                frame = sock.recv(NOBLOCK)
            except zmq.Again:
                return None

    def apply(self, ob: Observation, action: int | np.ndarray) -> None:
        assert self.sock is not None
        self.sock.send(self.act_codec.encode(self.agent_id, ob.episode, ob.step, action))

    def heartbeat(self) -> None:
        self._send("hb")

    def report(self, status: dict[str, Any]) -> None:
        self._send("status", m=status)

    def goodbye(self, metrics: dict[str, Any]) -> None:
        self._send("bye", m=metrics)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=200)
            self.sock = None

    @property
    def invalid_frames(self) -> int:
        return self.counters.invalid
