"""``marl-swarm``: the world plus one OS process per agent, on one machine.

Starts the world simulator (in this process) and ``marl-agent`` for every
agent of a bundle (each its own process, its own policy, its own sockets),
plays the episodes lock-step, stops everything -- also when something fails:
every child is put in its own process group, dies with its parent
(PR_SET_PDEATHSIG on Linux), and is terminated, then killed, on the way out.
Faults: ``--kill AGENT@STEP`` / ``--restart AGENT@STEP`` act on the world's
global step counter; ``--drop P`` makes every receiver lose each message with
probability P (seeded per agent).

Watching a run: ``SwarmOptions.trace`` writes the world's per-step trace
(``runtime.trace``); ``report_every_s`` has every agent send its counters to
the world (``status`` frames), and ``live_rows`` / ``live_table`` turn what the
world knows into the per-agent table of ``marl-swarm --live``.
"""

from __future__ import annotations

import ctypes
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np

from ..wire import protocol as P
from .agent import bundle_id
from .bundle import MANIFEST, Bundle, BundleError, load_bundle
from .keys import PUBLIC_KEYS, WORLD_USER, agent_user, generate_swarm_keys, inside, load_keys, secret_name
from .match import TeamsTransport, outcomes, plan_match
from .metrics import percentiles
from .trace import TraceWriter
from .transport import ZmqTransport
from .world import World, WorldOptions


@dataclass
class SwarmOptions:
    episodes: int = 8
    seed: int | None = None  # default: the source run's seed (like marl-eval)
    transport: str = "ipc"
    mode: str = "lockstep"
    hz: float = 20.0
    drop: float = 0.0
    delay_steps: int = 0  # every message sent this many steps late (so it arrives stale and is masked)
    kills: list[tuple[int, int]] = field(default_factory=list)  # (agent, global step)
    restarts: list[tuple[int, int]] = field(default_factory=list)
    act_timeout_s: float = 5.0
    hb_timeout_s: float = 1.0
    # placement hooks (separate hosts or network namespaces): where the world
    # listens, where agent i listens, and a command prefix to start agent i
    world_bind: str | None = None
    agent_bind: Callable[[int], str] | None = None
    agent_prefix: Callable[[int], list[str]] | None = None
    spawn: bool = True  # False: run only the world and wait for agents started elsewhere (profiles)
    swarm_id: str | None = None
    start_timeout_s: float = 60.0
    trusted_keys: tuple[str, ...] = ()  # public-key files: the bundle must be signed by one (checked here and by every agent)
    # CURVE (docs/protocol.md, "Trust model and CURVE"): "auto" secures tcp (fresh keys per
    # run; with spawn=False the world's key files below), "curve" secures ipc too, "insecure" none
    security: str = "auto"
    secret_key: Path | None = None  # spawn=False: the world's secret key file
    public_keys: Path | None = None  # spawn=False: the swarm's public_keys.json
    trace: Path | None = None  # write the per-step trace here (JSON lines, runtime.trace)
    report_every_s: float = 0.0  # spawned agents send their counters to the world this often (0: never; --live)


def parse_at(text: str, n: int, what: str) -> tuple[int, int]:
    a, sep, s = text.partition("@")
    try:
        agent, step = int(a), int(s)
    except ValueError:
        raise BundleError(f"--{what} takes AGENT@STEP (e.g. 2@10), got {text!r}") from None
    if not sep or not 0 <= agent < n or step < 0:
        raise BundleError(f"--{what} {text}: agent must be in 0..{n - 1} and step >= 0")
    return agent, step


def check_faults(kills: list[tuple[int, int]], restarts: list[tuple[int, int]]) -> None:
    """Every ``--restart A@S`` needs agent A killed (``--kill A@S'``, S' < S) after
    its previous restart: otherwise it would silently do nothing."""
    events = sorted([(s, 0, a) for a, s in kills] + [(s, 1, a) for a, s in restarts])
    down: set[int] = set()
    for s, restart, a in events:
        if not restart:
            down.add(a)
        elif a in down and (s, 0, a) not in events:  # killed strictly before this step
            down.discard(a)
        else:
            raise BundleError(f"--restart {a}@{s}: agent {a} is not killed before step {s} (add --kill {a}@S with S < {s})")


def _pdeathsig() -> None:  # runs in the child before exec
    os.setpgrp()
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def _is_session(s: Any) -> bool:
    """An agent's metrics as the summary reads them; a robot that speaks the
    protocol may send any map in its ``bye``, and a foreign one is left out."""
    if not isinstance(s, dict):
        return False
    m, a = s.get("messages"), s.get("act_us")
    return (isinstance(m, dict) and all(isinstance(m.get(k), (int, float)) for k in ("sent", "sent_bytes", "dropped", "stale", "invalid"))
            and isinstance(a, dict) and all(isinstance(a.get(k), (int, float)) for k in ("n", "p50", "p99")))


def _merge(counts: list[Any]) -> dict[str, int]:
    """Reason -> count, summed over the given maps (anything else skipped)."""
    out: dict[str, int] = {}
    for c in counts:
        if isinstance(c, dict):
            for k, v in c.items():
                if isinstance(k, str) and isinstance(v, int):
                    out[k] = out.get(k, 0) + v
    return dict(sorted(out.items()))


class Launcher:
    def __init__(self, bundle_dir: Path, opts: SwarmOptions) -> None:
        self.bundle = load_bundle(bundle_dir, trusted_keys=list(opts.trusted_keys) or None)
        self.dir = Path(bundle_dir)
        self.opts = opts
        self.n = self.bundle.n_agents
        if opts.transport not in ("ipc", "tcp"):
            raise BundleError(f"--transport must be ipc or tcp, got {opts.transport!r}")
        if opts.mode not in ("lockstep", "realtime"):
            raise BundleError(f"--mode must be lockstep or realtime, got {opts.mode!r}")
        if opts.security not in ("auto", "curve", "insecure"):
            raise BundleError(f"security must be auto, curve or insecure, got {opts.security!r}")
        if opts.mode == "realtime" and not 0 < opts.hz <= 10_000:
            raise BundleError(f"--hz must be in (0, 10000], got {opts.hz}")
        if opts.delay_steps < 0:
            raise BundleError(f"--delay-steps must be >= 0, got {opts.delay_steps}")
        if not 0.0 <= opts.drop < 1.0:
            raise BundleError(f"--drop must be in [0, 1), got {opts.drop}")
        if self.bundle.msg_dim == 0 and (opts.drop > 0 or opts.delay_steps > 0):
            what = "--drop" if opts.drop > 0 else "--delay-steps"
            raise BundleError(f"{what}: this bundle sends no messages (msg_dim 0), so there is nothing to {'drop' if opts.drop > 0 else 'delay'}")
        check_faults(opts.kills, opts.restarts)
        self.swarm = opts.swarm_id or f"{bundle_id(self.dir / MANIFEST)}-{os.getpid() % 100000}"
        if not opts.spawn and (opts.kills or opts.restarts):
            raise BundleError("--kill and --restart need the agents started by marl-swarm (drop --no-spawn)")
        self.procs: dict[int, subprocess.Popen] = {}
        self.seed = self.bundle.manifest.source.seed if opts.seed is None else int(opts.seed)
        self.tmp = Path(tempfile.mkdtemp(prefix="marl-swarm-"))  # removed by run() on every way out (and below if the keys fail)
        world_ep = opts.world_bind or self.endpoint("world")
        self.secure = opts.security == "curve" or (opts.security == "auto" and (opts.transport == "tcp" or world_ep.startswith("tcp://")))
        self.key_files: dict[str, Path] = {}
        self.world_keys = None
        if self.secure:
            try:
                self._keys()
            except BundleError:
                shutil.rmtree(self.tmp, ignore_errors=True)
                raise

    def _keys(self) -> None:
        opts = self.opts
        if opts.spawn:  # fresh keys for this run, in its private (0700) folder
            self.key_files = generate_swarm_keys(self.tmp / "keys", self.n)
            self.world_keys = load_keys(self.key_files[WORLD_USER], self.key_files["public"], WORLD_USER)
        else:
            if opts.secret_key is None or opts.public_keys is None:
                raise BundleError("a CURVE world needs --secret-key WORLD_KEY --public-keys public_keys.json "
                                  "(marl-swarm --write-profiles writes them), or --insecure")
            self.world_keys = load_keys(opts.secret_key, opts.public_keys, WORLD_USER)
        missing = [i for i in range(self.n) if agent_user(i) not in self.world_keys.publics]
        if missing:
            raise BundleError(f"the swarm's public keys have none for agents {missing}")

    def endpoint(self, name: str) -> str:
        if self.opts.transport == "ipc":
            return f"ipc://{self.tmp}/{name}.sock"
        return "tcp://127.0.0.1:*"

    def agent_of(self, i: int) -> tuple[Bundle, int, str, dict[str, Path]]:
        """Where the world's agent ``i`` comes from: its bundle, its id in that bundle,
        the swarm id its frames carry and its swarm's key files (a match has two of each)."""
        return self.bundle, i, self.swarm, self.key_files

    def endpoint_for(self, world: World, i: int) -> str:
        """Where the world's agent ``i`` reaches the world."""
        return world.endpoint

    def make_world(self, wopts: WorldOptions) -> World:
        return World(self.bundle, ZmqTransport(self.opts.world_bind or self.endpoint("world"), keys=self.world_keys), self.swarm, wopts)

    def spawn(self, i: int, world: str) -> None:
        bundle, local, swarm, key_files = self.agent_of(i)
        bind = self.opts.agent_bind(i) if self.opts.agent_bind else self.endpoint(f"agent_{i}")
        prefix = self.opts.agent_prefix(i) if self.opts.agent_prefix else []
        cmd = [
            *prefix, sys.executable, "-m", "marl_edge.cli.agent", str(bundle.path / bundle.manifest.agents[local].dir),
            "--manifest", str(bundle.path / MANIFEST), "--world", world, "--bind", bind,
            "--swarm-id", swarm, "--drop", str(self.opts.drop), "--seed", str(self.seed), "--mode", self.opts.mode,
            "--hz", str(self.opts.hz), "--delay-steps", str(self.opts.delay_steps),
            # late messages never arrive in time: do not wait for them
            "--msg-timeout", "0" if self.opts.delay_steps else "2",
            "--metrics", str(self.tmp / f"agent_{i}.jsonl"),
            "--report-every", str(self.opts.report_every_s),
            *[a for k in self.opts.trusted_keys for a in ("--trusted-key", str(Path(k).resolve()))],
        ]
        if self.secure:
            cmd += ["--secret-key", str(key_files[agent_user(local)]), "--public-keys", str(key_files["public"])]
        elif self.opts.security == "insecure" or bind.startswith("tcp://") or world.startswith("tcp://"):
            cmd += ["--insecure"]
        log = open(self.tmp / f"agent_{i}.log", "ab")
        self.procs[i] = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_pdeathsig)
        log.close()

    def kill(self, i: int) -> None:
        p = self.procs.get(i)
        if p is not None and p.poll() is None:
            p.kill()
            p.wait(timeout=10)

    def shutdown(self) -> None:
        for p in self.procs.values():
            if p.poll() is None:
                p.terminate()
        deadline = time.time() + 5
        for p in self.procs.values():
            try:
                p.wait(timeout=max(0.1, deadline - time.time()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(timeout=5)

    def run(
        self, progress: Callable[[dict[str, Any]], None] | None = None, on_start: Callable[["Launcher", World], None] | None = None,
        watch: Callable[[World], None] | None = None,
    ) -> dict[str, Any]:
        """``on_start(launcher, world)`` runs once every agent has said hello (tests inject faults there);
        ``watch(world)`` before every step and while the world waits (``--live``: it decides how often to draw).
        The temporary folder goes on every way out (the CLI turns SIGTERM into an exception)."""
        try:
            return self._run(progress, on_start, watch)
        finally:
            shutil.rmtree(self.tmp, ignore_errors=True)

    def _run(
        self, progress: Callable[[dict[str, Any]], None] | None = None, on_start: Callable[["Launcher", World], None] | None = None,
        watch: Callable[[World], None] | None = None,
    ) -> dict[str, Any]:
        wopts = WorldOptions(episodes=self.opts.episodes, seed=self.seed, act_timeout_s=self.opts.act_timeout_s,
                             hb_timeout_s=self.opts.hb_timeout_s, mode=self.opts.mode, hz=self.opts.hz,
                             start_timeout_s=self.opts.start_timeout_s)
        trace = TraceWriter(self.opts.trace, self.bundle, self.seed, self.opts.episodes) if self.opts.trace is not None else None
        try:
            world = self.make_world(wopts)
        except BaseException:
            if trace is not None:
                trace.close()
            raise
        world.trace, world.watch = trace, watch
        kills = {}
        for a, s in self.opts.kills:
            kills.setdefault(s, []).append(a)
        restarts = {}
        for a, s in self.opts.restarts:
            restarts.setdefault(s, []).append(a)

        def on_step(step: int) -> None:
            for a in kills.pop(step, []):
                self.kill(a)
                world.mark_absent(a, "killed")
            for a in restarts.pop(step, []):
                if self.procs[a].poll() is None:
                    continue  # still running: nothing to restart
                self.spawn(a, self.endpoint_for(world, a))
                deadline = time.time() + 30
                while not world.live[a] and time.time() < deadline:
                    world._poll(50)

        t0 = time.perf_counter()
        try:
            if self.opts.spawn:
                for i in range(self.n):
                    self.spawn(i, self.endpoint_for(world, i))
            self.world_endpoint = world.endpoint
            world.wait_for_agents()
            startup = time.perf_counter() - t0
            if on_start is not None:
                on_start(self, world)
            stats = world.run(on_step=on_step, progress=progress)
            world.stop()
        except TimeoutError as e:
            logs = "; ".join(f"agent {i}: {' | '.join((self.tmp / f'agent_{i}.log').read_text()[-300:].split())}" for i in range(self.n)
                             if (self.tmp / f"agent_{i}.log").exists() and (self.tmp / f"agent_{i}.log").stat().st_size)
            raise BundleError(f"{e}{' -- ' + logs if logs else ''}") from None
        finally:
            if trace is not None:
                trace.close()
            world.close()
            self.shutdown()
        if watch is not None:
            watch(world)  # the final counters (the agents' last reports)
        agents = self._agent_metrics(world)
        out = self._summary(stats, agents, startup)
        out["endpoints"] = dict(sorted(world.addr.items()))
        return out

    def _agent_metrics(self, world: World) -> list[dict[str, Any]]:
        out = []
        for i in range(self.n):
            lines = []
            f = self.tmp / f"agent_{i}.jsonl"
            if f.exists():
                lines = [json.loads(x) for x in f.read_text().splitlines() if x.strip()]
            if i in world.bye and world.bye[i]:
                lines = lines or [world.bye[i]]
            out.append({"agent": i, "sessions": [s for s in lines if _is_session(s)]})
        return out

    def _summary(self, stats: Any, agents: list[dict[str, Any]], startup: float) -> dict[str, Any]:
        sessions = [s for a in agents for s in a["sessions"]]
        msg = [s["messages"] for s in sessions]
        act_p50 = [s["act_us"]["p50"] for s in sessions if s["act_us"]["n"]]
        act_p99 = [s["act_us"]["p99"] for s in sessions if s["act_us"]["n"]]
        cpu = [s["cpu_s"] / s["steps"] for s in sessions if s.get("steps") and "cpu_s" in s]
        steps = max(1, stats.steps)
        sent_bytes = sum(m["sent_bytes"] for m in msg)
        sent = sum(m["sent"] for m in msg)
        d = self.bundle.msg_dim
        return {
            "bundle": str(self.dir),
            "swarm": self.swarm,
            "agents": self.n,
            "transport": self.opts.transport,
            "security": "curve" if self.secure else "none",
            "mode": self.opts.mode,
            "episodes": len(stats.returns),
            "seed": self.seed,
            "mean_return": float(np.mean(stats.returns)) if stats.returns else float("nan"),
            "returns": stats.returns,
            "lengths": stats.lengths,
            "steps": stats.steps,
            "steps_per_s": stats.steps / max(stats.wall_s, 1e-9),
            "startup_s": round(startup, 3),
            "step_ms_p50": percentiles(stats.step_ms)["p50"],
            "step_ms_p99": percentiles(stats.step_ms)["p99"],
            "msgs_per_step": sent / steps,
            "msg_bytes_per_step": sent_bytes / steps,
            "msg_frame_bytes": P.frame_size(d, self.swarm) if d else 0,
            "act_latency_us_p50": float(np.median(act_p50)) if act_p50 else float("nan"),
            "act_latency_us_p99": float(np.max(act_p99)) if act_p99 else float("nan"),
            "agent_cpu_us_per_step": float(np.mean(cpu)) * 1e6 if cpu else float("nan"),  # one agent's process, all its threads
            "world_cpu_us_per_step": stats.cpu_s / steps * 1e6,
            "dropped": sum(m["dropped"] for m in msg),
            "stale": sum(m["stale"] for m in msg) + stats.counters.stale,
            "invalid_frames": sum(m["invalid"] for m in msg) + stats.counters.invalid + sum(s.get("robot_invalid_frames", 0) for s in sessions),
            "world_invalid_frames": stats.counters.invalid,
            "world_invalid_reasons": dict(sorted(stats.counters.invalid_reasons.items())),
            "invalid_reasons": _merge([m.get("invalid_reasons") for m in msg] + [stats.counters.invalid_reasons]),
            "nobody_acted": stats.steps > 0 and stats.noop_actions >= stats.steps * self.n,  # every robot no-op'd every step
            "noop_actions": stats.noop_actions,
            "late_actions": stats.late_actions,
            "hz": self.opts.hz if self.opts.mode == "realtime" else None,
            "delay_steps": self.opts.delay_steps,
            "absences": stats.absences,
            "rejoins": stats.rejoins,
            "per_agent": agents,
        }


class MatchLauncher(Launcher):
    """``marl-swarm A --opponent B``: bundle A's team against bundle B's team in their
    two-team game (``runtime.match``). The world steps the whole game; every agent of
    either bundle is its own ``marl-agent`` process, started exactly as in a swarm of
    its own bundle (its bundle folder, its id in that bundle). Each team reaches the
    world over a transport of its own, with its own swarm id (the run's id and
    ``-a``/``-b``) and, over CURVE, its own keys; ``--kill``/``--restart`` name the
    game's agents. The summary's ``returns`` are team A's; ``opponent_returns``,
    ``wins``/``draws``/``losses`` (team A's) and ``match`` (who sits where) are added."""

    def __init__(self, bundle_dir: Path, opponent_dir: Path, opts: SwarmOptions) -> None:
        for what, used in (("--no-spawn", not opts.spawn), ("--world-bind", opts.world_bind is not None), ("--trace", opts.trace is not None),
                           ("--swarm-id", opts.swarm_id is not None)):
            if used:
                raise BundleError(f"{what} is not supported with --opponent yet: a match runs its own world and spawns both teams")
        keys = list(opts.trusted_keys) or None
        self.match = plan_match(load_bundle(bundle_dir, trusted_keys=keys), load_bundle(opponent_dir, trusted_keys=keys))
        super().__init__(bundle_dir, opts)  # checks the options, makes the run folder and (through _keys) the keys
        self.n = self.match.spec.n_agents
        self.seat = {g: (k, i) for k, seat in enumerate(self.match.seats) for i, g in enumerate(seat.agents)}

    def team_swarm(self, k: int) -> str:
        return f"{self.swarm}-{'ab'[k]}"

    def _keys(self) -> None:
        """Fresh keys per team: each team's world socket admits only that team's agents."""
        self.team_keys = [generate_swarm_keys(self.tmp / f"keys_{'ab'[k]}", len(seat.agents)) for k, seat in enumerate(self.match.seats)]
        self.team_world_keys = [load_keys(f[WORLD_USER], f["public"], WORLD_USER) for f in self.team_keys]

    def agent_of(self, i: int) -> tuple[Bundle, int, str, dict[str, Path]]:
        k, local = self.seat[i]
        return self.match.seats[k].bundle, local, self.team_swarm(k), self.team_keys[k] if self.secure else {}

    def endpoint_for(self, world: World, i: int) -> str:
        return world.transport.endpoints[self.seat[i][0]]

    def make_world(self, wopts: WorldOptions) -> World:
        teams = []
        for k, seat in enumerate(self.match.seats):
            keys = self.team_world_keys[k] if self.secure else None
            ex = P.Expect.for_bundle(seat.bundle.manifest, self.team_swarm(k))
            teams.append((ZmqTransport(self.endpoint(f"world_{'ab'[k]}"), keys=keys), seat.agents, ex))
        return World(self.match.stage(self.swarm), TeamsTransport(teams), self.swarm, wopts)

    def _summary(self, stats: Any, agents: list[dict[str, Any]], startup: float) -> dict[str, Any]:
        out = super()._summary(stats, agents, startup)
        ra, rb = [r[0] for r in stats.team_returns], [r[1] for r in stats.team_returns]
        return out | {"opponent": str(self.match.seats[1].bundle.path), "mean_return": float(np.mean(ra)) if ra else float("nan"),
                      "returns": ra, "opponent_returns": rb, **outcomes(ra, rb), "match": self.match.describe()}


# ---- the live view (marl-swarm --live) --------------------------------------------------------


def live_rows(world: World, now: float | None = None) -> list[dict[str, Any]]:
    """One row per agent of what the world knows now: whether it is live (or
    why absent; ``done`` once it said goodbye after the last episode), how many
    actions it sent in time, and its latest ``status`` report (None fields when
    it sent none) with the report's age in seconds."""
    now = time.perf_counter() if now is None else now
    rows = []
    for i in range(world.n):
        st = world.status.get(i)
        m = st[1] if st is not None else {}
        num = lambda k: m.get(k) if isinstance(m.get(k), (int, float)) and not isinstance(m.get(k), bool) else None  # noqa: E731
        rows.append({
            "agent": i,
            "state": "live" if world.live[i] else "done" if world.finished and i in world.bye
            else f"absent ({world.absent_why.get(i, ('not joined', 0.0))[0]})",
            "acted": world.acted[i],
            "step": num("steps"),
            "act_us_p50": num("act_us_p50"),
            "act_us_p95": num("act_us_p95"),
            "msgs_in": num("heard"),
            "msgs_out": num("sent"),
            "dropped": num("dropped"),
            "stale": num("stale"),
            "invalid": num("invalid"),
            "rejoins": num("rejoins"),
            "report_age_s": None if st is None else round(now - st[0], 1),
        })
    return rows


LIVE_COLUMNS = (("agent", "agent", "{}"), ("state", "state", "{}"), ("step", "step", "{}"), ("acted", "acted", "{}"),
                ("act_us_p50", "act p50 µs", "{:.0f}"), ("act_us_p95", "p95 µs", "{:.0f}"), ("msgs_in", "msg in", "{}"),
                ("msgs_out", "msg out", "{}"), ("dropped", "drop", "{}"), ("stale", "stale", "{}"), ("invalid", "invalid", "{}"),
                ("rejoins", "rejoin", "{}"), ("report_age_s", "report age s", "{}"))


def _cell(v: Any, fmt: str) -> str:
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "-"
    return fmt.format(v)


def live_table(rows: list[dict[str, Any]], header: str = "") -> list[str]:
    """The rows as an aligned text table (``header`` above it, when given).
    ``step`` is the agent's own count (from its report); ``acted`` the world's."""
    cells = [[title for _, title, _ in LIVE_COLUMNS]] + [[_cell(r.get(k), fmt) for k, _, fmt in LIVE_COLUMNS] for r in rows]
    widths = [max(len(c[j]) for c in cells) for j in range(len(LIVE_COLUMNS))]
    lines = ["  ".join(c[j].rjust(widths[j]) if j not in (1,) else c[j].ljust(widths[j]) for j in range(len(c))).rstrip() for c in cells]
    return ([header] if header else []) + lines


def live_line(rows: list[dict[str, Any]], header: str = "") -> str:
    """The rows as one plain line (a log, a pipe): per agent its state, step,
    act p50/p95 µs, messages in/out, drops and invalid frames."""
    parts = [f"{r['agent']} {r['state']} step {_cell(r['step'], '{}')} acted {r['acted']} "
             f"act {_cell(r['act_us_p50'], '{:.0f}')}/{_cell(r['act_us_p95'], '{:.0f}')} µs "
             f"in {_cell(r['msgs_in'], '{}')} out {_cell(r['msgs_out'], '{}')} drop {_cell(r['dropped'], '{}')} "
             f"invalid {_cell(r['invalid'], '{}')}" for r in rows]
    return "live " + (header + " | " if header else "") + " | ".join(parts)


def write_profiles(bundle_dir: Path, out: Path, world: str, hosts: list[str], base_port: int, mode: str = "lockstep",
                   hz: float = 20.0, swarm_id: str | None = None, bundle_path_on_robot: str | None = None,
                   trusted_keys: tuple[str, ...] = (), insecure: bool = False) -> list[Path]:
    """One deployment profile per robot (``marl-agent --profile FILE``): agent
    folder, manifest, world endpoint, its own inbox endpoint, every peer's
    endpoint, mode and rate. Agent i listens on ``hosts[i % len(hosts)]`` at
    ``base_port + i``. With ``trusted_keys`` the bundle must be signed by one of
    them, and each profile lists them (as given: the key's path on the robots).

    Unless ``insecure``, fresh CURVE keys go next to the profiles (never into
    the bundle folder): ``agent_<i>.key_secret`` (0600; robot i's only),
    ``world.key_secret`` (the world host's only) and ``public_keys.json``
    (everyone's); each profile names its own secret key file and the public
    keys file, relative to the profile's folder."""
    b = load_bundle(bundle_dir, trusted_keys=list(trusted_keys) or None)
    if not insecure and inside(out, bundle_dir):
        raise BundleError(f"--write-profiles {out}: secret keys never go inside the bundle folder; write the profiles elsewhere")
    if not hosts:
        raise BundleError("--hosts needs at least one host")
    if not 1 <= base_port <= 65535 - b.n_agents:
        raise BundleError(f"--base-port must leave room for {b.n_agents} ports, got {base_port}")
    root = bundle_path_on_robot or str(Path(bundle_dir).resolve())
    sid = swarm_id or bundle_id(Path(bundle_dir) / MANIFEST)
    addr = {i: f"tcp://{hosts[i % len(hosts)]}:{base_port + i}" for i in range(b.n_agents)}
    out = Path(out)
    if not out.exists():
        out.mkdir(parents=True, mode=0o700)
    if not insecure:
        generate_swarm_keys(out, b.n_agents)
    paths = []
    for i in range(b.n_agents):
        prof = {
            "agent_dir": f"{root}/{b.manifest.agents[i].dir}",
            "manifest": f"{root}/{MANIFEST}",
            "world": world,
            "bind": f"tcp://*:{base_port + i}",
            "peers": {str(j): a for j, a in addr.items() if j != i},
            "mode": mode,
            "hz": hz,
            "swarm_id": sid,
        }
        if trusted_keys:
            prof["trusted_keys"] = [str(k) for k in trusted_keys]
        if insecure:
            prof["insecure"] = True
        else:
            prof["secret_key"] = secret_name(agent_user(i))
            prof["public_keys"] = PUBLIC_KEYS
        p = out / f"agent_{i}.json"
        p.write_text(json.dumps(prof, indent=2))
        paths.append(p)
    return paths


def run_swarm(bundle_dir: Path, opts: SwarmOptions, progress: Callable[[dict[str, Any]], None] | None = None,
              watch: Callable[[World], None] | None = None, opponent: Path | None = None) -> dict[str, Any]:
    """A swarm of ``bundle_dir``'s agents; with ``opponent`` (a bundle of the other team) a match of the two."""
    launcher = Launcher(bundle_dir, opts) if opponent is None else MatchLauncher(bundle_dir, opponent, opts)
    return launcher.run(progress, watch=watch)
