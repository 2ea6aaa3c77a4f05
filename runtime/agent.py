"""One agent process: an exported policy, its robot, its peers. torch-free.

Each step (DESIGN.md contract 3): take the observation and the neighbour
lists from the robot adapter; take from the inbox the messages the listed
senders emitted at the previous step (lock-step: wait for them, up to a
deadline; missing ones are masked, never invented); act; send ``msg_out``
straight to this step's receivers (PUSH sockets to each peer: no broker on
the message path); hand the action to the robot.

Every received frame is validated (``runtime.protocol``); bad ones are
counted and dropped. SIGINT/SIGTERM end the loop cleanly: sockets closed,
metrics written.
"""

from __future__ import annotations

import json
import os
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from ..robots.base import Observation, RobotAdapter, Stop
from . import protocol as P
from .bundle import MANIFEST, BundleError, _read_json, check_manifest, load_agent_dir
from .policy import OrtPolicy


@dataclass
class AgentOptions:
    bind: str = "tcp://127.0.0.1:*"  # where this agent's inbox listens
    mode: str = "lockstep"
    hz: float = 20.0
    drop: float = 0.0  # fault injection: each heard message lost with this probability
    delay_steps: int = 0  # fault injection: every message arrives this many steps late, i.e. stale (masked)
    seed: int = 0
    msg_timeout_s: float = 2.0  # lock-step: longest wait for a listed sender's message
    heartbeat_s: float = 0.2
    metrics_path: str | None = None
    peers: dict[int, str] | None = None  # static peer endpoints (real robots); the world sends them otherwise


class AgentProcess:
    def __init__(self, agent_dir: Path, manifest_path: Path, robot: RobotAdapter, swarm: str | None, opts: AgentOptions) -> None:
        manifest = _read_json(Path(manifest_path), "the bundle manifest")
        check_manifest(manifest, Path(manifest_path))
        self.entry = load_agent_dir(agent_dir, manifest)  # sha256, version, cards
        self.id = self.entry.id
        self.manifest = manifest
        self.policy = OrtPolicy(self.entry.policy_path, manifest["inputs"], manifest["outputs"], batch=1, where=str(self.entry.policy_path))
        if opts.mode not in ("lockstep", "realtime"):
            raise BundleError(f"mode must be lockstep or realtime, got {opts.mode!r}")
        self.opts = opts
        self.robot = robot
        spec = manifest["env_spec"]
        self.n = int(spec["n_agents"])
        self.d = int(manifest.get("msg_dim") or 0)
        self.k_max = int(manifest.get("k_max") or 0)
        self.swarm = swarm or bundle_id(Path(manifest_path))
        self.ex = P.Expect.for_bundle(manifest, self.swarm)
        self.continuous = not spec.get("n_actions")
        self.codec = P.MsgCodec(self.swarm, self.d, self.ex) if self.d else None
        self.ctx = zmq.Context.instance()
        self.inbox_sock: zmq.Socket | None = None
        self.push: dict[int, zmq.Socket] = {}
        self.peers: dict[int, str] = dict(opts.peers or {})
        self.store: dict[tuple[int, int, int], np.ndarray] = {}  # (sender, ep, t) -> message
        self.rng = np.random.default_rng([opts.seed, 1000 + self.id])
        self.c = P.Counters()
        self.act_us: list[float] = []
        self.step_us: list[float] = []
        self.wait_us: list[float] = []
        self.steps = 0
        self.prev_action = np.zeros(int(spec.get("n_actions") or 1), dtype=np.float32)
        self.cur = (-1, 0)  # (episode, step) being acted on
        self._stop = False

    # ---- lifecycle ------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop = True

    def run(self) -> dict[str, Any]:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        s = self.ctx.socket(zmq.PULL)
        s.setsockopt(zmq.LINGER, 0)
        s.setsockopt(zmq.RCVHWM, 100_000)
        try:
            s.bind(self.opts.bind)
        except zmq.ZMQError as e:
            raise BundleError(f"agent {self.id}: cannot listen on {self.opts.bind}: {e}") from None
        self.inbox_sock = s
        addr = s.getsockopt_string(zmq.LAST_ENDPOINT)
        self.robot.connect(self.id, {"addr": addr, "pid": os.getpid(), "bundle": self.swarm})
        reason = "signal"
        try:
            while not self._stop:
                ob = self.robot.observe(self.opts.heartbeat_s)
                self._drain(0)
                if ob is None:
                    self.robot.heartbeat()
                    continue
                if isinstance(ob, Stop):
                    reason = ob.reason
                    break
                self._step(ob)
        finally:
            metrics = self.metrics(reason)
            try:
                self.robot.goodbye(metrics)
            finally:
                self._close()
            if self.opts.metrics_path:
                with open(self.opts.metrics_path, "a") as f:
                    f.write(json.dumps(metrics) + "\n")
        return metrics

    def _close(self) -> None:
        for p in self.push.values():
            p.close(linger=100)
        self.push.clear()
        if self.inbox_sock is not None:
            self.inbox_sock.close(linger=0)
        self.robot.close()

    # ---- one step ---------------------------------------------------------------------
    def _step(self, ob: Observation) -> None:
        t0 = time.perf_counter_ns()
        self.cur = (ob.episode, ob.step)
        if ob.peers:  # the world's directory; a profile's static peers win (an agent bound to * reports 0.0.0.0)
            static = self.opts.peers or {}
            for j, a in ob.peers.items():
                if j not in static and self.peers.get(j) != a:
                    self.peers[j] = a
                    old = self.push.pop(j, None)
                    if old is not None:  # it moved (a restart on tcp gets a new port): reconnect
                        old.close(linger=0)
        if ob.first:
            self.policy.reset()
            self.prev_action[:] = 0.0
            self.store = {k: v for k, v in self.store.items() if k[1] >= ob.episode and not (k[1] == ob.episode and k[2] < ob.step - 1)}
        msg_in = msg_mask = None
        if self.d:
            msg_in, msg_mask = self._inbox(ob)
        t1 = time.perf_counter_ns()
        a, m, _ = self.policy.act(ob.obs[None], None if self.continuous else ob.avail[None], msg_in, msg_mask, self.prev_action[None])
        t2 = time.perf_counter_ns()
        action = a[0].copy() if self.continuous else int(a[0])
        if self.d and m is not None:
            frame = self.codec.encode(self.id, ob.episode, ob.step, m[0])
            for j in ob.send_to:
                if j != self.id:
                    self._send_to(j, frame)
        self.robot.apply(ob, action)
        if self.policy.takes_prev_action and not self.continuous:
            self.prev_action[:] = 0.0
            self.prev_action[action] = 1.0
        t3 = time.perf_counter_ns()
        self.act_us.append((t2 - t1) / 1e3)
        self.wait_us.append((t1 - t0) / 1e3)
        self.step_us.append((t3 - t0) / 1e3)
        self.steps += 1
        # forget what can no longer be heard
        if len(self.store) > 4 * self.n:
            self.store = {k: v for k, v in self.store.items() if (k[1], k[2]) >= (ob.episode, ob.step - 1)}

    def _send_to(self, j: int, frame: bytes) -> None:
        sock = self.push.get(j)
        if sock is None:
            addr = self.peers.get(j)
            if addr is None:
                self.c.dropped += 1  # nobody told us where agent j listens
                return
            sock = self.ctx.socket(zmq.PUSH)
            sock.setsockopt(zmq.LINGER, 100)
            sock.setsockopt(zmq.SNDHWM, 10_000)
            sock.setsockopt(zmq.IMMEDIATE, 0)
            sock.connect(addr)
            self.push[j] = sock
        try:
            sock.send(frame, zmq.NOBLOCK)
            self.c.sent += 1
            self.c.sent_bytes += len(frame)
        except zmq.Again:
            self.c.dropped += 1

    def _inbox(self, ob: Observation) -> tuple[np.ndarray, np.ndarray]:
        k = self.k_max
        msg_in = np.zeros((1, k, self.d), dtype=np.float32)
        mask = np.zeros((1, k), dtype=bool)
        want = [(j, ob.episode, ob.step - 1) for j in ob.inbox[:k]]
        if self.opts.mode == "lockstep" and ob.step > 0 and want:
            deadline = time.perf_counter() + self.opts.msg_timeout_s
            next_hb = time.perf_counter() + self.opts.heartbeat_s
            while any(w not in self.store for w in want) and not self._stop:
                now = time.perf_counter()
                left = deadline - now
                if left <= 0:
                    break
                if now >= next_hb:  # still here, only waiting
                    self.robot.heartbeat()
                    next_hb = now + self.opts.heartbeat_s
                self._drain(int(min(left, self.opts.heartbeat_s) * 1000) + 1)
        for slot, key in enumerate(want):
            m = self.store.get(key)
            if m is None:
                if self.opts.mode == "realtime":
                    self.c.stale += 1  # not here in time: masked
                continue
            if self.opts.drop > 0 and self.rng.random() < self.opts.drop:
                self.c.dropped += 1
                continue
            msg_in[0, slot] = m
            mask[0, slot] = True
        return msg_in, mask

    def _drain(self, timeout_ms: int) -> None:
        """Read every waiting frame (waiting up to ``timeout_ms`` for the first)."""
        s = self.inbox_sock
        if s is None or not s.poll(timeout_ms):
            return
        while True:
            try:
                frame = s.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            self.c.received += 1
            self.c.received_bytes += len(frame)
            env = self.codec.decode(frame) if self.codec is not None else P.decode(frame, self.ex)
            if isinstance(env, str):
                self.c.bad(env)
                continue
            if env["k"] != "msg":
                self.c.bad("not a msg on the message socket")
                continue
            if env["from"] == self.id:
                self.c.bad("own message")
                continue
            if self.opts.delay_steps > 0 or (env["ep"], env["t"]) < (self.cur[0], self.cur[1] - 1):
                # too late to be heard: a message is heard at the next step only (contract 3);
                # one delayed by D >= 1 steps always misses it
                self.c.stale += 1
                continue
            self.store[(env["from"], env["ep"], env["t"])] = env["p"]

    def metrics(self, reason: str = "") -> dict[str, Any]:
        return {
            "agent": self.id,
            "pid": os.getpid(),
            "steps": self.steps,
            "stopped": reason,
            "act_us": P.percentiles(self.act_us),
            "step_us": P.percentiles(self.step_us),
            "wait_us": P.percentiles(self.wait_us),
            "messages": self.c.as_dict(),
            "robot_invalid_frames": self.robot.invalid_frames,
            "torch_loaded": "torch" in sys.modules,  # the edge never imports it
        }


def bundle_id(manifest_path: Path) -> str:
    """A short id of a bundle: the first 12 hex digits of its manifest's sha256."""
    from .bundle import sha256_file

    return "b" + sha256_file(Path(manifest_path))[:12]


__all__ = ["AgentProcess", "AgentOptions", "bundle_id", "MANIFEST"]
