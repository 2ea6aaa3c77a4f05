"""The world simulator: a built-in env (batch 1) and the topology, serving
each simulated robot over ZeroMQ. torch-free.

Lock-step: each step the world sends every live agent its observation, its
available actions and its two neighbour lists (``in``: whose step t-1
messages it hears now; ``to``: who hears what it emits now -- docs/design.md
contracts 2-3, computed by the same ``Topology.neighbours`` as training),
then steps the env when every live agent has acted or the deadline passed.
An absent agent's robot takes the no-op (action 0 when the env has none).
Episode ``e`` is played with the seed ``episode_seeds(seed, episodes)[e]``,
so a lossless lock-step swarm reproduces ``marl-eval BUNDLE`` exactly.

Liveness: agents say hello, then act or send heartbeats. One silent for
``hb_timeout_s`` is absent: it gets no observations, others stop hearing it
(it leaves every ``in``/``to`` list, so nobody waits for it) and its robot
no-ops. A hello from an absent agent is a rejoin: it starts over with a
fresh recurrent state (``first``) and an empty inbox for its first step.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import zmq

from ..envs import episode_seeds
from . import protocol as P
from .bundle import Bundle

POLLIN, NOBLOCK, SNDMORE = int(zmq.POLLIN), int(zmq.NOBLOCK), int(zmq.SNDMORE)  # plain ints: no enum arithmetic per call


@dataclass
class WorldOptions:
    episodes: int = 8
    seed: int = 0
    start_timeout_s: float = 60.0  # for every agent's first hello
    act_timeout_s: float = 5.0  # lock-step deadline for a live agent's action
    hb_timeout_s: float = 1.0
    mode: str = "lockstep"
    hz: float = 20.0


@dataclass
class WorldStats:
    returns: list[float] = field(default_factory=list)
    lengths: list[int] = field(default_factory=list)
    step_ms: list[float] = field(default_factory=list)
    steps: int = 0
    noop_actions: int = 0  # steps x agents played by an absent agent's robot
    late_actions: int = 0
    absences: list[dict[str, Any]] = field(default_factory=list)
    rejoins: list[dict[str, Any]] = field(default_factory=list)
    counters: P.Counters = field(default_factory=P.Counters)
    wall_s: float = 0.0
    cpu_s: float = 0.0  # the world process's CPU time over the episodes (all its threads)


def _codecs(ex: P.Expect) -> tuple[P.ObsCodec | None, P.ActCodec | None]:
    try:
        return P.ObsCodec(ex), (P.ActCodec(ex) if not ex.action_dim else None)
    except P.ProtocolError:  # sizes the fixed layouts do not cover: the generic frames
        return None, None


class World:
    _expired_at = 0.0  # when liveness was last checked (perf_counter)
    _rcvtimeo = -1  # the socket's ZMQ_RCVTIMEO (ms) for _poll_one, set only when it changes

    def __init__(self, bundle: Bundle, endpoint: str, swarm: str, opts: WorldOptions, ctx: zmq.Context | None = None) -> None:
        self.b, self.opts, self.swarm = bundle, opts, swarm
        spec = bundle.manifest.env_spec
        self.n = spec.n_agents
        self.noop = spec.noop_action or 0
        self.action_dim = spec.action_dim or 0  # continuous: an absent robot's action is the zero vector
        self.topology = bundle.topology()
        self.ex = P.Expect.for_bundle(bundle.manifest, swarm)
        self.obs_codec, self.act_codec = _codecs(self.ex)  # fixed-width per-step frames (None: generic msgpack)
        self.ctx = ctx or zmq.Context.instance()
        self._open(endpoint)
        self.addr: dict[int, str] = {}
        self.live = np.zeros(self.n, dtype=bool)
        self.last_seen = np.zeros(self.n)
        self.fresh = np.zeros(self.n, dtype=bool)  # (re)joined: first step starts over
        self.live_prev = np.zeros(self.n, dtype=bool)  # who was served (and so could send) last step
        self.peers_version = 0
        self.peers_sent = np.full(self.n, -1)
        self.stats = WorldStats()
        self.bye: dict[int, dict[str, Any]] = {}
        self.pending: dict[int, Any] = {}  # agent -> action for the current step
        self.cur = (-1, -1)
        self.global_step = 0
        self.finished = False

    # ---- the transport (ZeroMQ here; a subclass may override _open, _poll, _send, close) ----
    def _open(self, endpoint: str) -> None:
        """Listen for the robots at ``endpoint``; set ``self.endpoint`` to the bound address."""
        self.sock = self.ctx.socket(zmq.ROUTER)
        self.sock.setsockopt(zmq.LINGER, 0)
        self.sock.setsockopt(zmq.ROUTER_MANDATORY, 0)
        # a restarted robot takes its identity over from a connection that is still half-open
        self.sock.setsockopt(zmq.ROUTER_HANDOVER, 1)
        self.sock.setsockopt(zmq.RCVHWM, 100_000)  # a burst of junk must not stall the agents' frames
        self.sock.bind(endpoint)
        self.endpoint = self.sock.getsockopt_string(zmq.LAST_ENDPOINT)

    # ---- receiving -------------------------------------------------------------------
    def _poll(self, timeout_ms: int) -> None:
        sock = self.sock
        pollset = [(sock, POLLIN)]
        if not zmq.zmq_poll(pollset, timeout_ms):
            return
        while True:
            try:
                parts = sock.recv_multipart(NOBLOCK)
            except zmq.Again:
                return
            self._handle(parts)
            if not zmq.zmq_poll(pollset, 0):  # drained (cheaper than a failing recv)
                return

    def _poll_one(self, timeout_ms: int) -> None:
        """The lock-step wait: handle the next frame (waiting up to ``timeout_ms``).

        One blocking receive per frame, as the actions come in: no "anything
        else?" probe after each (a system call), since the wait loop asks again
        anyway. Another transport (a subclass with its own ``_poll``) uses that."""
        if type(self)._poll is not World._poll:
            self._poll(timeout_ms)
            return
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
        self._handle(parts)

    def _handle(self, parts: list[bytes]) -> None:
        c = self.stats.counters
        c.received += 1
        if len(parts) != 2:
            c.bad("not one frame")
            return
        ident, frame = parts
        c.received_bytes += len(frame)
        r = self.act_codec.parse(frame) if self.act_codec is not None else None
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
        self._accept(i, env)

    def _accept(self, i: int, env: dict[str, Any]) -> None:
        """A valid envelope (``k``: hello, bye, hb or act; ``ep``, ``t``, ``addr``,
        ``a``, ``m``) from agent ``i``, whatever transport carried it."""
        c = self.stats.counters
        now = time.perf_counter()
        kind = env["k"]
        if kind == "hello":
            if not self.live[i] and i in self.addr:
                self.stats.rejoins.append({"agent": i, "step": self.global_step})
            self.addr[i] = env["addr"]
            self.live[i] = True
            self.fresh[i] = True
            self.last_seen[i] = now
            self.peers_version += 1
        elif kind == "bye":
            self.bye[i] = env.get("m") if isinstance(env.get("m"), dict) else {}
            self._absent(i, "bye")
        elif not self.live[i]:
            c.stale += 1  # an absent agent must say hello again
        elif kind == "hb":
            self.last_seen[i] = now
        elif kind == "act":
            self.last_seen[i] = now
            if (env["ep"], env["t"]) == self.cur:
                self.pending[i] = env["a"] if self.action_dim else int(env["a"])
            else:
                self.stats.late_actions += 1
                c.stale += 1
        else:
            c.bad(f"unexpected kind {kind}")

    def _absent(self, i: int, why: str) -> None:
        if self.live[i]:
            self.live[i] = False
            if not self.finished:
                self.stats.absences.append({"agent": i, "step": self.global_step, "why": why})

    def mark_absent(self, i: int, why: str = "killed") -> None:
        """For the launcher: agent ``i``'s process is known to be gone."""
        self._absent(i, why)

    def _send(self, i: int, kind: str, ep: int = 0, t: int = 0, **fields: Any) -> None:
        if kind == "obs":  # every agent, every step: no generic field loop
            f = fields
            frame = P.encode_obs(self.swarm, ep, t, f["o"], f["av"], f["first"], f["to"], f["in"], f.get("peers"))
        else:
            frame = P.encode(self.swarm, P.WORLD, kind, ep, t, **fields)
        self._send_frame(i, frame)

    def _send_frame(self, i: int, frame: bytes) -> None:
        c = self.stats.counters
        c.sent += 1
        c.sent_bytes += len(frame)
        self.sock.send(b"agent-%d" % i, SNDMORE)
        self.sock.send(frame)

    # ---- running -----------------------------------------------------------------------
    def wait_for_agents(self) -> None:
        deadline = time.perf_counter() + self.opts.start_timeout_s
        while not self.live.all():
            left = deadline - time.perf_counter()
            if left <= 0:
                missing = [i for i in range(self.n) if not self.live[i]]
                raise TimeoutError(f"agents {missing} did not say hello within {self.opts.start_timeout_s:.0f} s")
            self._poll(int(min(left, 0.5) * 1000) + 1)

    def run(self, on_step: Callable[[int], None] | None = None, progress: Callable[[dict[str, Any]], None] | None = None) -> WorldStats:
        if self.opts.mode not in ("lockstep", "realtime"):
            raise ValueError(f"mode must be lockstep or realtime, got {self.opts.mode!r}")
        if self.opts.mode == "realtime" and not self.opts.hz > 0:
            raise ValueError("realtime mode needs hz > 0")
        env = self.b.make_env(1)
        self.next_tick = time.perf_counter()
        seeds = episode_seeds(self.opts.seed, self.opts.episodes)
        t_start, cpu_start = time.perf_counter(), time.process_time()
        try:
            for ep in range(self.opts.episodes):
                ts = env.reset(seeds[ep : ep + 1])
                ret, t = 0.0, 0
                hear_prev: list[list[int]] = [[] for _ in range(self.n)]
                self.fresh[:] = True
                self.live_prev[:] = False
                while True:
                    if on_step is not None:
                        on_step(self.global_step)
                    self._poll(0)
                    if time.perf_counter() - self._expired_at >= 0.01:  # liveness, at most 100 times a second
                        self._expire()
                    hear = self._neighbours(ts)
                    t0 = time.perf_counter()
                    actions = self._serve(ep, t, ts, hear, hear_prev)
                    self.stats.step_ms.append((time.perf_counter() - t0) * 1e3)
                    ts = env.step(actions[None])
                    ret += float(ts.team_reward()[0])
                    hear_prev = hear
                    t += 1
                    self.global_step += 1
                    self.stats.steps += 1
                    if ts.done[0]:
                        break
                self.stats.returns.append(ret)
                self.stats.lengths.append(t)
                if progress is not None:
                    progress({"episode": ep + 1, "return": ret, "steps": self.stats.steps})
        finally:
            self.stats.wall_s = time.perf_counter() - t_start
            self.stats.cpu_s = time.process_time() - cpu_start
            env.close()
        return self.stats

    def _expire(self) -> None:
        now = time.perf_counter()
        self._expired_at = now
        silent = self.live & (now - self.last_seen > self.opts.hb_timeout_s)
        if silent.any():
            for i in np.flatnonzero(silent).tolist():
                self._absent(i, "silent")

    def _neighbours(self, ts: Any) -> list[list[int]]:
        if self.topology is None:
            return [[] for _ in range(self.n)]
        idx, mask = self.topology.neighbours(ts.positions, batch=1)
        return [[j for j, ok in zip(row, ok_row) if ok] for row, ok_row in zip(idx[0].tolist(), mask[0].tolist())]

    def _serve(self, ep: int, t: int, ts: Any, hear: list[list[int]], hear_prev: list[list[int]]) -> np.ndarray:
        """Send this step's observations; collect actions (lock-step: all or the
        deadline; real-time: whatever came before the next tick)."""
        live = self.live.copy()
        self.cur = (ep, t)
        self.pending = {}
        on, was_on, fresh = live.tolist(), self.live_prev.tolist(), self.fresh.tolist()  # plain lists: no numpy scalars per agent
        send_to: list[list[int]] = [[] for _ in range(self.n)]
        for i in range(self.n):
            if on[i]:
                for j in hear[i]:
                    if on[j]:
                        send_to[j].append(i)
        obs = ts.obs[0]
        avail = ts.avail_actions[0] if not self.action_dim else None
        served = [i for i in range(self.n) if on[i]]
        version, sent_version = self.peers_version, self.peers_sent.tolist()
        zmq_obs = type(self)._send is World._send  # our own transport: straight to the encoder
        for i in served:
            # hear only senders served last step (they sent) and still here now
            inbox = [] if fresh[i] else [j for j in hear_prev[i] if on[j] and was_on[j]]
            peers = None
            if sent_version[i] != version:
                peers = [[j, a] for j, a in sorted(self.addr.items())]
                self.peers_sent[i] = version
            av = avail[i] if avail is not None else b""
            if zmq_obs:
                oc = self.obs_codec
                if peers is None and oc is not None:
                    frame = oc.encode(ep, t, obs[i], av, fresh[i], send_to[i], inbox)
                else:
                    frame = P.encode_obs(self.swarm, ep, t, obs[i], av, fresh[i], send_to[i], inbox, peers)
                self._send_frame(i, frame)
            else:
                extra = {} if peers is None else {"peers": peers}
                self._send(i, "obs", ep, t, o=obs[i], av=av, first=fresh[i], to=send_to[i], **{"in": inbox}, **extra)
        self.fresh[live] = False
        self.live_prev = live
        if self.opts.mode == "realtime":
            self.next_tick += 1.0 / self.opts.hz
            if self.next_tick < time.perf_counter():  # fell behind: do not try to catch up
                self.next_tick = time.perf_counter()
            while time.perf_counter() < self.next_tick:
                self._poll(max(0, int((self.next_tick - time.perf_counter()) * 1000)))
            self._expire()
            missing = [i for i in np.flatnonzero(live & self.live) if int(i) not in self.pending]
            self.stats.late_actions += len(missing)  # those robots no-op this tick
            return self._actions()
        now = time.perf_counter()
        deadline = now + self.opts.act_timeout_s
        pending = self.pending
        hb = self.opts.hb_timeout_s
        hb_ms = int(hb * 1000) + 1
        calm = (len(self.stats.absences), self.peers_version)  # every absence is recorded; every (re)join bumps the version
        seen = None
        while True:
            # who is still to act: recounted only when enough actions came in or someone came or went
            changes = (len(self.stats.absences), self.peers_version)
            if changes != seen or len(pending) >= len(served):
                seen = changes
                if changes == calm:  # nobody came or went since the observations went out
                    waiting = [i for i in served if i not in pending]
                else:
                    waiting = [i for i in np.flatnonzero(live & self.live).tolist() if i not in pending]
                if not waiting:
                    break
            left = deadline - now
            if left <= 0:
                for i in waiting:
                    if self.live[i] and i not in pending:
                        self._absent(i, "no action before the deadline")
                break
            self._poll_one(hb_ms if left >= hb else int(left * 1000) + 1)  # = int(min(left, hb) * 1000) + 1
            now = time.perf_counter()
            if now - self._expired_at >= 0.01:  # liveness: 100 checks a second are plenty (hb_timeout_s is ~1 s)
                self._expire()
        return self._actions()

    def _actions(self) -> np.ndarray:
        if self.action_dim:
            cont = np.zeros((self.n, self.action_dim), dtype=np.float32)
            for i, a in self.pending.items():
                cont[i] = a
            self.stats.noop_actions += self.n - len(self.pending)
            return cont
        actions = np.full(self.n, self.noop, dtype=np.int64)
        for i, a in self.pending.items():
            actions[i] = a
        self.stats.noop_actions += self.n - len(self.pending)
        return actions

    def stop(self, grace_s: float = 3.0) -> None:
        """Tell every agent to stop and collect their goodbyes (metrics)."""
        self.finished = True
        expect = [i for i in range(self.n) if self.live[i]]
        for i in expect:
            self._send(i, "stop", why="done")
        deadline = time.perf_counter() + grace_s
        while any(i not in self.bye for i in expect) and time.perf_counter() < deadline:
            self._poll(50)

    def close(self) -> None:
        self.sock.close(linger=0)
