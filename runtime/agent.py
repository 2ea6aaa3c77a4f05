"""One agent process: an exported policy, its robot, its peers. torch-free.

Each step (docs/design.md contract 3): take the observation and the neighbour
lists from the robot adapter; take from the inbox the messages the listed
senders emitted at the previous step (lock-step: wait for them, up to a
deadline; missing ones are masked, never invented); act; send ``msg_out``
straight to this step's receivers (PUSH sockets to each peer: no broker on
the message path); hand the action to the robot.

Every received frame is validated (``wire.protocol``); bad ones are
counted and dropped. SIGINT/SIGTERM end the loop cleanly: sockets closed,
metrics written.

Liveness (docs/protocol.md §7): when the world says it counts this agent
absent (``Absent``: it stalled past the heartbeat timeout), the agent starts
over -- policy reset, previous action zeroed, stored messages dropped -- and
says hello again. When nothing comes from the world for ``world_timeout_s``
the agent gives up (``gave_up``: one line; ``marl-agent`` exits 3), or, with
``reconnect``, keeps saying hello until the world is back.

Reporting: the agent logs through Python logging (``marl_edge.agent``;
``marl-agent --log-level``), with a status line of its counters every
``status_every_s``; with ``report_every_s`` it also sends them to the world as
a ``status`` frame (docs/protocol.md §3), which ``marl-swarm --live`` shows.
Both are checked against the clock the loop reads anyway: no cost per step.
"""

from __future__ import annotations

import json
import logging
import math
import os
import resource
import signal
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from ..robots.base import Absent, Observation, RobotAdapter, Stop
from ..wire import protocol as P
from .bundle import MANIFEST, BundleError, load_agent_dir, read_manifest
from .metrics import Latency, Recent
from .policy import OrtPolicy
from .keys import SwarmKeys, agent_user
from .transport import SwarmAuthenticator, inbox_socket, peer_socket, start_auth

log = logging.getLogger("marl_edge.agent")  # marl-agent sets its level and handler (--log-level)

# plain ints: pyzmq's enum flags cost a Python-level enum operation on every use
POLLIN, NOBLOCK = int(zmq.POLLIN), int(zmq.NOBLOCK)
DRAIN_EVERY = 16  # lock-step: read every waiting inbox frame at least this often (steps)
REJOIN_QUIET_S = 1.0  # after a rejoin hello, ``absent`` frames (answers to older frames) are ignored this long, or until an obs
HELLO_EVERY_S = 1.0  # reconnect: say hello this often while the world is silent
AHEAD = 3  # the inbox keeps a sender's messages for at most this many steps after the current one (docs/protocol.md §5)


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
    trusted_keys: Any = None  # public-key files or a signing.TrustedKeys: the manifest must be signed by one of them
    world_timeout_s: float = 10.0  # give up after this long without a frame from the world (0: wait forever)
    reconnect: bool = False  # instead of giving up, keep saying hello until the world is back
    keys: SwarmKeys | None = None  # CURVE: this agent's key pair and the swarm's public keys (runtime.keys)
    status_every_s: float = 10.0  # log a status line (info) this often (0: never)
    report_every_s: float = 0.0  # send the status to the world (a status frame) this often (0: never)


class AgentProcess:
    def __init__(self, agent_dir: Path, manifest_path: Path, robot: RobotAdapter, swarm: str | None, opts: AgentOptions) -> None:
        manifest = read_manifest(manifest_path, trusted_keys=opts.trusted_keys)  # the signature first, when keys are given
        self.entry = load_agent_dir(agent_dir, manifest)  # sha256 (against the signed hashes), version, cards
        self.id = self.entry.id
        self.manifest = manifest
        self.policy = OrtPolicy(self.entry.policy_path, manifest.inputs, manifest.outputs, batch=1, where=str(self.entry.policy_path))
        if opts.mode not in ("lockstep", "realtime"):
            raise BundleError(f"mode must be lockstep or realtime, got {opts.mode!r}")
        self.opts = opts
        self.robot = robot
        spec = manifest.env_spec
        self.n = spec.n_agents
        self.d = manifest.msg_dim
        self.k_max = manifest.k_max
        self.swarm = swarm or bundle_id(Path(manifest_path))
        self.ex = P.Expect.for_bundle(manifest, self.swarm)
        self.continuous = not spec.discrete
        self.lockstep = opts.mode == "lockstep"
        # the policy's message inputs, refilled in place every step (the policy copies them)
        nb = 4 * self.d * self.k_max
        self.msg_bytes, self.heard = bytearray(nb), bytearray(self.k_max)
        self.no_msgs, self.no_heard = bytes(nb), bytes(self.k_max)
        self.msg_in = np.ndarray((1, self.k_max, self.d), dtype=np.float32, buffer=self.msg_bytes)
        self.msg_mask = np.ndarray((1, self.k_max), dtype=np.bool_, buffer=self.heard)
        self.batched: tuple[Any, Any, Any, Any] = (None, None, None, None)  # (obs, avail, obs[None], avail[None]) of the last step
        self.one_hot_prev = self.policy.takes_prev_action and not self.continuous
        self.codec = P.MsgCodec(self.swarm, self.d, self.ex) if self.d else None
        if opts.keys is not None and opts.keys.me != agent_user(self.id):
            raise BundleError(f"agent {self.id}: its secret key is {opts.keys.me}'s")
        # with CURVE, run() starts this context's ZAP handler (one per context: one CURVE agent per process);
        # the process's one context, shared with the robot's socket (one I/O thread, not two)
        self.ctx = zmq.Context.instance()
        self.auth: SwarmAuthenticator | None = None
        self.users = {j: agent_user(j) for j in range(self.n)}  # the User-Id agent j's frames must carry
        self.inbox_sock: zmq.Socket | None = None
        self.rcvtimeo = -1  # the inbox's ZMQ_RCVTIMEO (ms), set only when it changes
        self.push: dict[int, zmq.Socket] = {}
        self.peers: dict[int, str] = dict(opts.peers or {})
        self.store: dict[tuple[int, int, int], np.ndarray] = {}  # (sender, ep, t) -> message
        self.store_peak = 0  # the most messages the store held (bounded: about n x (AHEAD + 3))
        self.max_msg = P.max_message_size(self.ex)  # ZMQ_MAXMSGSIZE of every socket
        self.rng = np.random.default_rng([opts.seed, 1000 + self.id])
        self.c = P.Counters()
        self.act_ns = Latency()  # per step: policy call, inbox wait, whole step (perf_counter_ns), in fixed memory
        self.step_ns = Latency()
        self.wait_ns = Latency()
        self.steps = 0
        self.recent_act = Recent()  # the last few hundred policy calls (ns): the status's p50/p95
        self.heard_msgs = 0  # messages that filled an inbox slot
        self.reconnects = 0  # times the world fell silent and this agent kept saying hello (--reconnect)
        self.cpu0: float | None = None  # process CPU time at the first step (all threads: ours and ZeroMQ's)
        self.prev_action = np.zeros(spec.n_actions or 1, dtype=np.float32)
        self.prev_batched = self.prev_action[None]
        self.cur = (-1, 0)  # (episode, step) being acted on
        self._stop = False
        self.rejoins = 0  # times this agent started over and said hello again
        self.gave_up: str | None = None  # why the agent stopped waiting for a silent world (one line)

    # ---- lifecycle ------------------------------------------------------------------
    def _on_signal(self, signum: int, frame: Any) -> None:
        self._stop = True

    def run(self) -> dict[str, Any]:
        for sig in (signal.SIGINT, signal.SIGTERM):
            signal.signal(sig, self._on_signal)
        try:
            if self.opts.keys is not None:
                self.auth = start_auth(self.ctx, self.opts.keys)
            s, addr = inbox_socket(self.ctx, self.opts.bind, self.opts.keys, self.max_msg)
        except zmq.ZMQError as e:
            raise BundleError(f"agent {self.id}: cannot listen on {self.opts.bind}: {e}") from None
        self.inbox_sock = s
        self.pollset = [(s, POLLIN)]  # for zmq.zmq_poll: one C call, no Poller bookkeeping
        self.robot.connect(self.id, {"addr": addr, "pid": os.getpid(), "bundle": self.swarm})
        reason = "signal"
        robot, mono = self.robot, time.monotonic
        wt = self.opts.world_timeout_s
        # the world's last frame; None until the first one: the silence clock starts when the world is first
        # heard (robots and their agents may be started long before the world, as deployments do)
        heard: float | None = None
        hello_at = -1e9  # when this agent last said hello again
        lost = False  # reconnect: the world fell silent
        self._status_at = self._report_at = mono()
        self._due = self._next_due()
        try:
            realtime = self.opts.mode == "realtime"
            while not self._stop:
                ob = robot.observe(self.opts.heartbeat_s)
                if ob is None:
                    self._drain_ready()
                    robot.heartbeat()
                    now = mono()
                    if now >= self._due:
                        self._periodic(now)
                    if heard is None and robot.last_heard:
                        heard = robot.last_heard  # the world answered a heartbeat: it is up
                    if heard is not None and wt > 0:
                        now = mono()
                        silent = now - max(heard, robot.last_heard)
                        if silent > wt:
                            if not self.opts.reconnect:
                                self.gave_up = f"agent {self.id}: no frame from the world for {wt:.1f} s; giving up"
                                reason = "world silent"
                                break
                            if not lost:
                                lost = True
                                self.reconnects += 1
                                log.warning(f"agent {self.id}: no frame from the world for {wt:.1f} s; saying hello until it is back")
                            if now - hello_at >= HELLO_EVERY_S:
                                self._start_over()
                                robot.rejoin()
                                hello_at = now
                        elif lost:
                            lost = False
                            log.warning(f"agent {self.id}: the world is back")
                    continue
                heard = mono()
                if heard >= self._due:
                    self._periodic(heard)
                if lost:
                    lost = False
                    log.warning(f"agent {self.id}: the world is back")
                if isinstance(ob, Stop):
                    reason = ob.reason
                    break
                if isinstance(ob, Absent):
                    # the world counts this agent absent: start over and say hello again
                    # (once: the answers to frames sent before that hello say absent too)
                    if heard - hello_at >= REJOIN_QUIET_S:
                        log.info(f"agent {self.id}: the world counts it absent ({ob.reason}); starting over and saying hello again")
                        self._start_over()
                        robot.rejoin()
                        hello_at = heard
                        self.rejoins += 1
                    continue
                hello_at = -1e9  # served again: the next absent is news
                # lock-step reads the frames it waits for as it needs them (_inbox); everything
                # else waiting (stale, invalid) is read here every DRAIN_EVERY steps, when idle
                # and at the end: asking "is there more?" costs system calls, so not every step
                if realtime or self.steps % DRAIN_EVERY == 0:
                    self._drain_ready()
                self._step(ob)
        finally:
            try:
                self._drain_ready(final=True)  # count what is still waiting before reporting
            except zmq.ZMQError:
                pass
            metrics = self.metrics(reason)
            try:
                if self.opts.report_every_s > 0:  # the final counters, before the goodbye (a live view's last row)
                    self.robot.report(self.status())
                self.robot.goodbye(metrics)
            finally:
                self._close()
            if self.opts.metrics_path:
                with open(self.opts.metrics_path, "a") as f:
                    f.write(json.dumps(metrics) + "\n")
        return metrics

    # ---- reporting ----------------------------------------------------------------------
    def _next_due(self) -> float:
        """When the next status line or report is due (inf: neither is on)."""
        o = self.opts
        due = math.inf
        if o.status_every_s > 0:
            due = self._status_at + o.status_every_s
        if o.report_every_s > 0:
            due = min(due, self._report_at + o.report_every_s)
        return due

    def _periodic(self, now: float) -> None:
        """Log the status line and/or send the report, whichever is due."""
        o = self.opts
        st = self.status()
        if o.status_every_s > 0 and now >= self._status_at + o.status_every_s:
            self._status_at = now
            log.info(status_line(st))
        if o.report_every_s > 0 and now >= self._report_at + o.report_every_s:
            self._report_at = now
            try:
                self.robot.report(st)
            except zmq.ZMQError as e:  # a report is informative: never a reason to stop acting
                log.debug(f"agent {self.id}: status report not sent ({e})")
        self._due = self._next_due()

    def status(self) -> dict[str, Any]:
        """The counters now: what the status line logs and the ``status`` frame
        carries (docs/protocol.md §3). Latencies over the last few hundred steps."""
        c, act = self.c, self.recent_act.summary(1e-3)
        return {
            "agent": self.id,
            "ep": self.cur[0],
            "t": self.cur[1],
            "steps": self.steps,
            "act_us_p50": act["p50"],
            "act_us_p95": act["p95"],
            "heard": self.heard_msgs,
            "received": c.received,
            "sent": c.sent,
            "dropped": c.dropped,
            "stale": c.stale,
            "invalid": c.invalid + self.robot.invalid_frames,
            "rejoins": self.rejoins,
            "reconnects": self.reconnects,
        }

    def _start_over(self) -> None:
        """Before saying hello again: a fresh recurrent state, no previous
        action, no messages kept from before (the world's next obs is ``first``)."""
        self.policy.reset()
        self.prev_action[:] = 0.0
        self._drain_ready()
        self.store.clear()

    def _close(self) -> None:
        for p in self.push.values():
            p.close(linger=100)
        self.push.clear()
        if self.inbox_sock is not None:
            self.inbox_sock.close(linger=0)
        self.robot.close()
        if self.auth is not None:
            self.auth.stop()
            self.auth = None

    # ---- one step ---------------------------------------------------------------------
    def _step(self, ob: Observation) -> None:
        pc = time.perf_counter_ns
        t0 = pc()
        if self.cpu0 is None:
            self.cpu0 = time.process_time()
        ep, t = ob.episode, ob.step
        self.cur = (ep, t)
        if ob.peers:  # the world's directory; a profile's static peers win (an agent bound to * reports 0.0.0.0)
            static = self.opts.peers or {}
            for j, a in ob.peers.items():
                if j not in static and self.peers.get(j) != a:
                    self.peers[j] = a
                    old = self.push.pop(j, None)
                    if old is not None:  # it moved (a restart on tcp gets a new port): reconnect
                        old.close(linger=0)
        policy, prev = self.policy, self.prev_action
        if ob.first:
            policy.reset()
            prev[:] = 0.0
            # keep what this step's window allows (nothing is read before the first obs: see _drain_ready)
            self.store = {k: v for k, v in self.store.items()
                          if (k[1] == ep and t - 1 <= k[2] <= t + AHEAD) or (k[1] == ep + 1 and k[2] < AHEAD)}
        d = self.d
        msg_in = msg_mask = None
        if d:
            msg_in, msg_mask = self._inbox(ob)
        t1 = pc()
        continuous = self.continuous
        b = self.batched
        if ob.obs is not b[0] or ob.avail is not b[1]:  # a robot that refills the same arrays (robots.sim): views made once
            b = self.batched = (ob.obs, ob.avail, ob.obs[None], None if continuous else ob.avail[None])
        a, m, _ = policy.act(b[2], b[3], msg_in, msg_mask, self.prev_batched)
        t2 = pc()
        action = a[0].copy() if continuous else a.item()
        if d and m is not None:
            codec = self.codec
            frame = codec.encode(self.id, ep, t, m)  # m: [1, d], the same d floats
            push, me, sent = self.push, self.id, 0
            if not math.isfinite(sum(codec.floats.unpack_from(frame, codec.off_p))):  # never send NaN or inf
                self.c.bad("non-finite msg_out not sent")
                send_to = ()
            else:
                send_to = ob.send_to
            for j in send_to:
                if j != me:
                    sock = push.get(j)
                    if sock is None:
                        self._send_to(j, frame)  # first frame to j: connect (and count) there
                        continue
                    try:
                        sock.send(frame, NOBLOCK)
                        sent += 1
                    except zmq.Again:
                        self.c.dropped += 1
            if sent:
                c = self.c
                c.sent += sent
                c.sent_bytes += sent * len(frame)
        self.robot.apply(ob, action)
        if self.one_hot_prev:
            prev[:] = 0.0
            prev[action] = 1.0
        t3 = pc()
        self.act_ns.add(t2 - t1)
        self.recent_act.add(t2 - t1)
        self.wait_ns.add(t1 - t0)
        self.step_ns.add(t3 - t0)
        self.steps += 1
        # forget what can no longer be heard
        if len(self.store) > (AHEAD + 3) * self.n:
            if len(self.store) > self.store_peak:
                self.store_peak = len(self.store)
            self.store = {k: v for k, v in self.store.items() if (k[1], k[2]) >= (ep, t - 1)}

    def _send_to(self, j: int, frame: bytes) -> None:
        sock = self.push.get(j)
        if sock is None:
            addr = self.peers.get(j)
            if addr is None:
                self.c.dropped += 1  # nobody told us where agent j listens
                return
            sock = self.push[j] = peer_socket(self.ctx, addr, self.opts.keys, agent_user(j), self.max_msg)
        try:
            sock.send(frame, zmq.NOBLOCK)
            self.c.sent += 1
            self.c.sent_bytes += len(frame)
        except zmq.Again:
            self.c.dropped += 1

    def _inbox(self, ob: Observation) -> tuple[np.ndarray, np.ndarray]:
        k, d = self.k_max, self.d
        buf, heard = self.msg_bytes, self.heard
        buf[:] = self.no_msgs
        heard[:] = self.no_heard
        senders = ob.inbox[:k]
        if not senders:
            return self.msg_in, self.msg_mask
        ep, t = ob.episode, ob.step - 1
        store = self.store
        if self.lockstep and t >= 0:
            need = {(j, ep, t) for j in senders}.difference(store)
            if need:
                self._await(need)
        nb = 4 * d  # a message's raw float32 bytes go to its slot (zeros where masked)
        drop = self.opts.drop
        heard_now = 0
        for slot, j in enumerate(senders):
            m = store.get((j, ep, t))  # heard once (the step moves on); kept until pruned, so a copy counts as a duplicate
            if m is None:
                if not self.lockstep:
                    self.c.stale += 1  # not here in time: masked
                continue
            if drop > 0 and self.rng.random() < drop:
                self.c.dropped += 1
                continue
            buf[slot * nb : slot * nb + nb] = m
            heard[slot] = 1
            heard_now += 1
        self.heard_msgs += heard_now
        return self.msg_in, self.msg_mask  # arrays over the two buffers: no numpy call per step

    def _await(self, need: set[tuple[int, int, int]]) -> None:
        """Lock-step: wait for the messages ``need`` (sender, episode, step), up
        to the deadline; one blocking receive per frame, as they come."""
        sock = self.inbox_sock
        assert sock is not None
        take, store, me = self._take, self.store, self.id
        parse = self.codec.parse if self.codec is not None and not self.opts.delay_steps else None
        received = nbytes = 0
        secure, users, user = self.opts.keys is not None, self.users, None
        now = time.perf_counter()
        deadline = now + self.opts.msg_timeout_s
        hb = self.opts.heartbeat_s
        next_hb = now + hb
        hb_ms = int(hb * 1000) + 1
        while need and not self._stop:
            left = deadline - now
            if left <= 0:
                break  # (counting what came)
            if now >= next_hb:  # still here, only waiting
                self.robot.heartbeat()
                next_hb = now + hb
            ms = hb_ms if left >= hb else int(left * 1000) + 1  # = int(min(left, hb) * 1000) + 1
            if ms != self.rcvtimeo:
                sock.setsockopt(zmq.RCVTIMEO, ms)
                self.rcvtimeo = ms
            try:
                part = sock.recv(copy=False)
            except zmq.Again:
                pass
            else:
                if part.more:  # frames are single-part: refused whole
                    self._multipart(sock)
                    now = time.perf_counter()
                    continue
                frame = part.bytes
                if secure:  # the User-Id of the key that sent it
                    user = part.get("User-Id")
                r = parse(frame) if parse is not None else None
                if type(r) is tuple and (key := r[:3]) in need and r[0] != me and (user is None or user == users.get(r[0])):
                    # the fast path: a valid fixed-width frame we wait for (current, so never stale)
                    received += 1
                    nbytes += len(frame)
                    store[key] = r[3]
                    need.discard(key)
                else:
                    need.discard(take(frame, r, user))
            now = time.perf_counter()
        c = self.c
        c.received += received
        c.received_bytes += nbytes

    def _drain_ready(self, final: bool = False) -> None:
        """Read every frame already waiting in the inbox. Not before the first obs
        (unless ``final``): the window of what may be kept is known from then on,
        and until then the frames wait in libzmq's queue (``RCVHWM`` per connection)."""
        s = self.inbox_sock
        if s is None or (self.cur[0] < 0 and not final):
            return
        pollset = self.pollset
        secure = self.opts.keys is not None
        while zmq.zmq_poll(pollset, 0):
            try:
                part = s.recv(NOBLOCK, copy=False)
            except zmq.Again:
                return
            if part.more:
                self._multipart(s)
            else:
                self._take(part.bytes, None, part.get("User-Id") if secure else None)

    def _multipart(self, sock: zmq.Socket) -> None:
        """A multi-part message (its first part read): count it once, read and discard the rest."""
        c = self.c
        c.received += 1
        more = True
        while more:
            try:
                more = sock.recv(NOBLOCK, copy=False).more  # the parts of a message arrive together
            except zmq.Again:
                break
        c.bad("multi-part message")

    def _take(self, frame: bytes, r: Any = None, user: str | None = None) -> tuple[int, int, int] | None:
        """Validate one inbox frame (``r``: the codec's parse of it, if done); keep
        a message that can still be heard (its key is returned), count the rest.
        ``user``: the User-Id of the key that sent it (CURVE), None without."""
        c = self.c
        c.received += 1
        c.received_bytes += len(frame)
        codec = self.codec
        if r is None and codec is not None:
            r = codec.parse(frame)
        if r is None:  # not the fixed-width layout: the generic decoder decides
            env = P.decode(frame, self.ex)
            if isinstance(env, str):
                r = env
            elif env["k"] != "msg":
                r = "not a msg on the message socket"
            else:
                r = (env["from"], env["ep"], env["t"], env["p"].tobytes())
        if type(r) is str:
            c.bad(r)
            return None
        sender, ep, t, p = r
        if self.opts.keys is not None and user != self.users.get(sender):
            c.bad("sender does not match its key")
            return None
        if sender == self.id:
            c.bad("own message")
            return None
        cur = self.cur
        if self.opts.delay_steps > 0 or ep < cur[0] or (ep == cur[0] and t < cur[1] - 1):
            # too late to be heard: a message is heard at the next step only (contract 3);
            # one delayed by D >= 1 steps always misses it
            c.stale += 1
            return None
        key = (sender, ep, t)
        store = self.store
        if key in store:  # the first valid copy stays
            c.bad("duplicate")
            return None
        cep, ct = cur
        if cep < 0:  # the final drain of an agent that never got an obs: nothing will be heard
            c.stale += 1
            return None
        if ep > cep + 1 or (ep == cep and t > ct + AHEAD) or (ep > cep and t >= AHEAD):
            c.bad("too far ahead")  # refused, so the store stays within n x (AHEAD + 3) or so, whatever a sender floods
            return None
        store[key] = p
        if len(store) > self.store_peak:
            self.store_peak = len(store)
        return key

    def metrics(self, reason: str = "") -> dict[str, Any]:
        return {
            "agent": self.id,
            "pid": os.getpid(),
            "steps": self.steps,
            "stopped": reason,
            "rejoins": self.rejoins,
            "act_us": self.act_ns.summary(1e-3),
            "step_us": self.step_ns.summary(1e-3),
            "wait_us": self.wait_ns.summary(1e-3),
            "inbox_peak": self.store_peak,  # the most messages the inbox store held
            "rss_max_kb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss,
            "cpu_s": 0.0 if self.cpu0 is None else round(time.process_time() - self.cpu0, 6),  # from the first step on
            "messages": self.c.as_dict(),
            "robot_invalid_frames": self.robot.invalid_frames,
            # CURVE handshakes at this agent's inbox (one ZAP request each; 0 without CURVE): connections, never frames
            "zap_requests": self.auth.requests if self.auth is not None else 0,
            "zap_refused": self.auth.refused if self.auth is not None else 0,
            "torch_loaded": "torch" in sys.modules,  # the edge never imports it
        }


def status_line(st: dict[str, Any]) -> str:
    """One line of an agent's ``status()`` for its log."""
    return (f"agent {st['agent']}: step {st['steps']} (episode {st['ep']}, t {st['t']}); "
            f"act p50 {st['act_us_p50']:.0f} µs p95 {st['act_us_p95']:.0f} µs; "
            f"messages in {st['heard']} out {st['sent']}, dropped {st['dropped']}, stale {st['stale']}, invalid {st['invalid']}; "
            f"rejoins {st['rejoins']}, reconnects {st['reconnects']}")


def bundle_id(manifest_path: Path) -> str:
    """A short id of a bundle: the first 12 hex digits of its manifest's sha256."""
    from .bundle import sha256_file

    return "b" + sha256_file(Path(manifest_path))[:12]


__all__ = ["AgentProcess", "AgentOptions", "bundle_id", "status_line", "MANIFEST"]
