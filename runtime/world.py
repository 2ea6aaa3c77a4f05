"""The world simulator: a built-in env (batch 1) and the topology, serving
each robot over a transport (``runtime.transport``: ZeroMQ for the simulated
robots, UDP for the testbed device of ``runtime.udp_world``). torch-free.

Lock-step: each step the world sends every live agent its observation, its
available actions and its two neighbour lists (``in``: whose step t-1
messages it hears now; ``to``: who hears what it emits now -- docs/design.md
contracts 2-3, computed by the same ``Topology.neighbours`` as training),
then steps the env when every live agent has acted or the deadline passed.
An absent agent's robot takes the no-op (action 0 when the env has none).
Episode ``e`` is played with the seed ``episode_seeds(seed, episodes)[e]``,
so a lossless lock-step swarm reproduces ``marl-eval BUNDLE`` exactly.

What the world plays is a ``Stage``: usually a bundle's own env
(``Stage.of_bundle``); for a match (``runtime.match``) the two-team game, its
agents served by two bundles' processes, with each team's return kept apart.

Liveness: agents say hello, then act or send heartbeats. One silent for
``hb_timeout_s`` is absent: it gets no observations, others stop hearing it
(it leaves every ``in``/``to`` list, so nobody waits for it) and its robot
no-ops. A hello from an absent agent is a rejoin: it starts over with a
fresh recurrent state (``first``) and an empty inbox for its first step.
The world answers an agent's heartbeat (``hb`` while it is live, ``absent``
while it is not, ``stop`` once the run is over; an ``act`` from an absent
agent gets ``absent`` too), at most every ``REPLY_EVERY_S`` per agent: an
agent that stalled past the timeout learns it and says hello again, and an
agent that hears nothing at all knows the world is gone (docs/protocol.md §7).

Watching: an agent that reports (``status`` frames) has its latest counters
kept in ``status`` (``marl-swarm --live`` shows them with ``live``, ``acted``
and ``absent_why``); with a ``trace`` (``runtime.trace.TraceWriter``) the world
writes one JSON line per step: the joint action it applied, the rewards, the
positions and who was routed whose messages.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np

from ..envs import EnvSpec, episode_seeds
from ..envs.base import scalarise
from ..wire import protocol as P
from .bundle import Bundle
from .metrics import Latency
from .trace import TraceWriter
from .transport import Transport

REPLY_EVERY_S = 0.1  # the world answers an agent's hb (or an absent agent's act) at most this often


@dataclass
class WorldOptions:
    episodes: int = 8
    seed: int = 0
    start_timeout_s: float = 60.0  # for every agent's first hello
    act_timeout_s: float = 5.0  # lock-step deadline for a live agent's action
    hb_timeout_s: float = 1.0
    mode: str = "lockstep"
    hz: float = 20.0


@dataclass(frozen=True)
class Stage:
    """What a world plays: the env's spec and how to make it (batch 1), the
    topology that routes messages (None: no messages), and the frames its
    robots may send. ``teams`` (the world's agent indices of each team) makes
    the world keep one return per team besides the whole env's (``WorldStats.team_returns``):
    a match's two teams, whose zero-sum rewards cancel in the env's own return."""

    spec: EnvSpec
    make_env: Callable[[], Any]
    topology: Any
    expect: P.Expect
    teams: tuple[tuple[int, ...], ...] = ()

    @classmethod
    def of_bundle(cls, bundle: Bundle, swarm: str) -> "Stage":
        """A bundle's own env, as ``marl-eval BUNDLE`` plays it."""
        return cls(bundle.manifest.env_spec, lambda: bundle.make_env(1), bundle.topology(), P.Expect.for_bundle(bundle.manifest, swarm))


@dataclass
class WorldStats:
    returns: list[float] = field(default_factory=list)
    team_returns: list[list[float]] = field(default_factory=list)  # per episode, one per team of the stage (none without teams)
    lengths: list[int] = field(default_factory=list)
    step_ms: Latency = field(default_factory=Latency)  # fixed memory, however many steps
    steps: int = 0
    noop_actions: int = 0  # steps x agents played by an absent agent's robot
    late_actions: int = 0
    absences: list[dict[str, Any]] = field(default_factory=list)
    rejoins: list[dict[str, Any]] = field(default_factory=list)
    counters: P.Counters = field(default_factory=P.Counters)
    wall_s: float = 0.0
    cpu_s: float = 0.0  # the world process's CPU time over the episodes (all its threads)


class World:
    """The env and the team's liveness, served over ``transport`` (which the
    world opens here and closes in ``close``). ``stage``: a bundle (its own
    env) or a ``Stage``."""

    _expired_at = 0.0  # when liveness was last checked (perf_counter)

    def __init__(self, stage: Bundle | Stage, transport: Transport, swarm: str, opts: WorldOptions) -> None:
        self.stage = stage if isinstance(stage, Stage) else Stage.of_bundle(stage, swarm)
        self.b: Bundle | None = None if isinstance(stage, Stage) else stage  # the bundle whose env it plays (None: a match's game)
        self.opts, self.swarm = opts, swarm
        spec = self.stage.spec
        self.n = spec.n_agents
        self.noop = spec.noop_action or 0
        self.action_dim = spec.action_dim or 0  # continuous: an absent robot's action is the zero vector
        self.topology = self.stage.topology
        self.ex = self.stage.expect
        self.addr: dict[int, str] = {}
        self.live = np.zeros(self.n, dtype=bool)
        self.last_seen = np.zeros(self.n)
        self.fresh = np.zeros(self.n, dtype=bool)  # (re)joined: first step starts over
        self.live_prev = np.zeros(self.n, dtype=bool)  # who was served (and so could send) last step
        self.replied_at = [-1e9] * self.n  # when agent i's hb (or absent act) was last answered (perf_counter)
        self.absent_why: dict[int, tuple[str, float]] = {}  # agent -> why and when it was last marked absent
        self.peers_version = 0
        self.peers_sent = np.full(self.n, -1)
        self.stats = WorldStats()
        self.bye: dict[int, dict[str, Any]] = {}
        self.pending: dict[int, Any] = {}  # agent -> action for the current step
        self.avail_sent: Any = None  # [n, n_actions] bool: the availability sent for the current step (discrete)
        self.cur = (-1, -1)
        self.global_step = 0
        self.finished = False
        self.acted = [0] * self.n  # actions received from agent i in time for their step
        self.status: dict[int, tuple[float, dict[str, Any]]] = {}  # agent -> (perf_counter, its latest status report)
        self.trace: TraceWriter | None = None  # set before run() to write the per-step trace
        # set to be called with the world before every step and while it waits (start-up, actions): a live view
        self.watch: Callable[["World"], None] | None = None
        self.served_in: list[list[int]] = [[] for _ in range(self.n)]  # with a trace: each agent's "in" list this step
        self.fresh_served: list[bool] = [False] * self.n  # with a trace: who started over this step
        self.transport = transport
        self.endpoint = transport.open(self)  # where the robots reach the world

    @property
    def counters(self) -> P.Counters:
        return self.stats.counters

    # ---- receiving (the transport hands over every valid frame) ---------------------------
    def _poll(self, timeout_ms: int) -> None:
        """Handle every frame waiting, waiting up to ``timeout_ms`` for the first."""
        self.transport.poll(timeout_ms)

    def accept(self, i: int, env: dict[str, Any]) -> None:
        """A valid envelope (``k``: hello, bye, hb, act or status; ``ep``, ``t``,
        ``addr``, ``a``, ``m``) from agent ``i``, whatever transport carried it."""
        c = self.stats.counters
        now = time.perf_counter()
        kind = env["k"]
        if kind == "status":  # informative only: kept whether the agent is live or not, changes nothing
            self.status[i] = (now, env["m"])
            if self.live[i]:
                self.last_seen[i] = now
        elif kind == "hello":
            if not self.live[i] and i in self.addr:
                why, since = self.absent_why.get(i, ("", now))
                self.stats.rejoins.append({"agent": i, "step": self.global_step, "why": why, "absent_s": round(now - since, 3)})
            self.addr[i] = env["addr"]
            self.live[i] = True
            self.fresh[i] = True
            self.last_seen[i] = now
            self.peers_version += 1
        elif kind == "bye":
            self.bye[i] = env.get("m") if isinstance(env.get("m"), dict) else {}
            self._absent(i, "bye")
        elif not self.live[i]:
            c.stale += 1  # an absent agent must say hello again: tell it so
            if kind in ("hb", "act"):
                self._reply(i, now)
        elif kind == "hb":
            self.last_seen[i] = now
            self._reply(i, now)
        elif kind == "act":
            self.last_seen[i] = now
            if (env["ep"], env["t"]) == self.cur:
                if self.action_dim:
                    self.pending[i] = env["a"]
                else:
                    a = int(env["a"])
                    av = self.avail_sent
                    if av is not None and not av[i, a]:  # not in the availability it was sent: the no-op instead
                        c.bad("unavailable action")
                        a = self.noop
                    self.pending[i] = a
                self.acted[i] += 1
            else:
                self.stats.late_actions += 1
                c.stale += 1
        else:
            c.bad(f"unexpected kind {kind}")

    def _reply(self, i: int, now: float) -> None:
        """Answer agent ``i``'s heartbeat (or an absent agent's action), rate-limited:
        ``hb`` if it is live, ``stop`` if the run is over, ``absent`` otherwise."""
        if now - self.replied_at[i] < REPLY_EVERY_S:
            return
        self.replied_at[i] = now
        if self.finished:
            if i not in self.bye:
                self.transport.send_stop(i, "done")  # (again: it may have stalled through the first)
        elif self.live[i]:
            self.transport.send_hb(i)
        else:
            self.transport.send_absent(i, self.absent_why.get(i, ("not joined", 0.0))[0])

    def _absent(self, i: int, why: str) -> None:
        if self.live[i]:
            self.live[i] = False
            self.absent_why[i] = (why, time.perf_counter())
            if not self.finished:
                self.stats.absences.append({"agent": i, "step": self.global_step, "why": why})

    def mark_absent(self, i: int, why: str = "killed") -> None:
        """For the launcher: agent ``i``'s process is known to be gone."""
        self._absent(i, why)

    # ---- running -----------------------------------------------------------------------
    def wait_for_agents(self) -> None:
        deadline = time.perf_counter() + self.opts.start_timeout_s
        while not self.live.all():
            left = deadline - time.perf_counter()
            if left <= 0:
                missing = [i for i in range(self.n) if not self.live[i]]
                raise TimeoutError(f"agents {missing} did not say hello within {self.opts.start_timeout_s:.0f} s")
            self._poll(int(min(left, 0.5) * 1000) + 1)
            if self.watch is not None:
                self.watch(self)

    def run(self, on_step: Callable[[int], None] | None = None, progress: Callable[[dict[str, Any]], None] | None = None) -> WorldStats:
        if self.opts.mode not in ("lockstep", "realtime"):
            raise ValueError(f"mode must be lockstep or realtime, got {self.opts.mode!r}")
        if self.opts.mode == "realtime" and not self.opts.hz > 0:
            raise ValueError("realtime mode needs hz > 0")
        env = self.stage.make_env()
        teams, how = self.stage.teams, self.stage.spec.reward_scalarisation
        self.next_tick = time.perf_counter()
        seeds = episode_seeds(self.opts.seed, self.opts.episodes)
        t_start, cpu_start = time.perf_counter(), time.process_time()
        trace = self.trace
        try:
            for ep in range(self.opts.episodes):
                ts = env.reset(seeds[ep : ep + 1])
                if trace is not None:
                    trace.episode(ep, int(seeds[ep]))
                ret, t = 0.0, 0
                team_ret = [0.0] * len(teams)
                hear_prev: list[list[int]] = [[] for _ in range(self.n)]
                self.fresh[:] = True
                self.live_prev[:] = False
                while True:
                    if on_step is not None:
                        on_step(self.global_step)
                    if self.watch is not None:
                        self.watch(self)
                    self._poll(0)
                    if time.perf_counter() - self._expired_at >= 0.01:  # liveness, at most 100 times a second
                        self._expire()
                    hear = self._neighbours(ts)
                    t0 = time.perf_counter()
                    actions = self._serve(ep, t, ts, hear, hear_prev)
                    self.stats.step_ms.add((time.perf_counter() - t0) * 1e3)
                    positions = ts.positions
                    ts = env.step(actions[None])
                    if trace is not None:
                        self._trace_step(trace, ep, t, actions, ts, positions, hear_prev)
                    ret += float(ts.team_reward(env.spec.reward_scalarisation)[0])
                    for k, agents in enumerate(teams):
                        team_ret[k] += float(scalarise(ts.reward[0, list(agents)], how))
                    hear_prev = hear
                    t += 1
                    self.global_step += 1
                    self.stats.steps += 1
                    if ts.done[0]:
                        break
                self.stats.returns.append(ret)
                if teams:
                    self.stats.team_returns.append(team_ret)
                self.stats.lengths.append(t)
                if progress is not None:
                    progress({"episode": ep + 1, "return": ret, "steps": self.stats.steps} | ({"team_returns": team_ret} if teams else {}))
            if trace is not None:
                trace.end(self.stats.returns)
        finally:
            self.stats.wall_s = time.perf_counter() - t_start
            self.stats.cpu_s = time.process_time() - cpu_start
            env.close()
        return self.stats

    def _trace_step(self, trace: TraceWriter, ep: int, t: int, actions: np.ndarray, ts: Any, positions: Any,
                    hear_prev: list[list[int]]) -> None:
        """Step ``t``'s trace line. ``positions``: where the robots were when they
        acted (what the topology used); ``heard``: the ``in`` list each agent was
        served; ``dropped``: the senders its topology listed that were not routed
        to it, because they were absent (or not yet served) at ``t - 1``."""
        served_in, served, fresh = self.served_in, self.live_prev.tolist(), self.fresh_served
        # not served this step: heard nothing, and nothing was routed to it; a (re)join or t = 0 starts empty
        dropped = [len(hear_prev[i]) - len(served_in[i]) if served[i] and not fresh[i] else 0 for i in range(self.n)]
        absent = [i for i in range(self.n) if i not in self.pending]
        trace.step(ep, t, actions.tolist(), ts.reward[0].tolist(), None if positions is None else positions[0].tolist(), served_in, dropped, absent)

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
        self.avail_sent = avail
        served = [i for i in range(self.n) if on[i]]
        version, sent_version = self.peers_version, self.peers_sent.tolist()
        send_obs = self.transport.send_obs
        tracing = self.trace is not None
        if tracing:
            self.served_in = [[] for _ in range(self.n)]
            self.fresh_served = fresh
        for i in served:
            # hear only senders served last step (they sent) and still here now
            inbox = [] if fresh[i] else [j for j in hear_prev[i] if on[j] and was_on[j]]
            if tracing:
                self.served_in[i] = inbox
            peers = None
            if sent_version[i] != version:
                peers = [[j, a] for j, a in sorted(self.addr.items())]
                self.peers_sent[i] = version
            send_obs(i, ep, t, obs[i], avail[i] if avail is not None else b"", fresh[i], send_to[i], inbox, peers)
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
            self.transport.poll_one(hb_ms if left >= hb else int(left * 1000) + 1)  # = int(min(left, hb) * 1000) + 1
            now = time.perf_counter()
            if self.watch is not None:
                self.watch(self)
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
            self.transport.send_stop(i, "done")
        deadline = time.perf_counter() + grace_s
        while any(i not in self.bye for i in expect) and time.perf_counter() < deadline:
            self._poll(50)

    def close(self) -> None:
        self.transport.close()
