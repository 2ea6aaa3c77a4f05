"""The simulated robot: a ``RobotAdapter`` that talks to the world simulator
(``runtime.world``) over a ZeroMQ DEALER socket. torch-free."""

from __future__ import annotations

from typing import Any

import numpy as np
import zmq

from ..runtime import protocol as P
from .base import Observation, RobotAdapter, Stop


class SimRobot(RobotAdapter):
    def __init__(self, world: str, expect: P.Expect, ctx: zmq.Context | None = None) -> None:
        self.world, self.ex = world, expect
        self.ctx = ctx or zmq.Context.instance()
        self.sock: zmq.Socket | None = None
        self.agent_id = -1
        self.counters = P.Counters()

    def connect(self, agent_id: int, hello: dict[str, Any]) -> None:
        self.agent_id = agent_id
        s = self.ctx.socket(zmq.DEALER)
        s.setsockopt(zmq.LINGER, 200)
        s.setsockopt(zmq.IDENTITY, f"agent-{agent_id}".encode())
        s.connect(self.world)
        self.sock = s
        self._send("hello", **hello)

    def _send(self, kind: str, ep: int = 0, t: int = 0, **fields: Any) -> None:
        assert self.sock is not None
        self.sock.send(P.encode(self.ex.swarm, self.agent_id, kind, ep, t, **fields))

    def observe(self, timeout_s: float) -> Observation | Stop | None:
        assert self.sock is not None
        if not self.sock.poll(int(timeout_s * 1000)):
            return None
        while True:
            frame = self.sock.recv()
            env = P.decode(frame, self.ex)
            if isinstance(env, str):
                self.counters.bad(env)
            elif env["from"] != P.WORLD:
                self.counters.bad("not from the world")
            elif env["k"] == "stop":
                return Stop(str(env.get("why", "stop")))
            elif env["k"] == "obs":
                peers = None
                if isinstance(env.get("peers"), list):
                    peers = {int(i): str(a) for i, a in env["peers"] if isinstance(i, int) and isinstance(a, str)}
                return Observation(env["ep"], env["t"], env["o"], env["av"], env["in"], env["to"], bool(env.get("first")), peers)
            else:
                self.counters.bad("unexpected kind from the world")
            if not self.sock.poll(0):
                return None

    def apply(self, ob: Observation, action: int | np.ndarray) -> None:
        a = np.asarray(action, dtype=np.float32) if isinstance(action, np.ndarray) else int(action)
        self._send("act", ob.episode, ob.step, a=a)

    def heartbeat(self) -> None:
        self._send("hb")

    def goodbye(self, metrics: dict[str, Any]) -> None:
        self._send("bye", m=metrics)

    def close(self) -> None:
        if self.sock is not None:
            self.sock.close(linger=200)
            self.sock = None

    @property
    def invalid_frames(self) -> int:
        return self.counters.invalid
