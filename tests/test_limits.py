"""Bounded resources and protocol strictness (issue 16): the socket size limit,
the inbox window, duplicates, multi-part messages, the protocol version's
type, the world's availability check, latency statistics in fixed memory,
and marl-swarm's temp folders, exit codes and flag refusals.

Every process a test starts is stopped in a ``finally`` (the swarm's agents
by the launcher's, and they die with their parent through PR_SET_PDEATHSIG)."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from types import SimpleNamespace

import msgpack
import numpy as np
import pytest
import zmq

from procs import no_children_left
from marl_edge.wire import protocol as P

SW = "b0123456789ab-42"
FLOOD = int(os.environ.get("LIM_FLOOD", 60_000))  # future-dated msg frames (the finding had 300 000: the store is bounded either way)
MULTI = 25  # multi-part messages
BIG = 50 << 20  # bytes: a frame far above the socket limit


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, make_bundle):
    root = tmp_path_factory.mktemp("limits")
    four = {"n_agents": 4, "episode_limit": 5}
    return {
        "talk": make_bundle(root, "talk", steps=600, env_options=four, comm="attention", topology="knn:2", top_k=1),
        "silent": make_bundle(root, "silent", steps=300, env_options=four),
    }


# ---- wire.protocol ------------------------------------------------------------------------


def test_version_must_be_an_int():
    ex = P.Expect(SW, 4)

    def hb(v):
        return msgpack.packb({"v": v, "sw": SW, "from": 1, "k": "hb", "ep": 0, "t": 0})

    assert isinstance(P.decode(hb(1), ex), dict)
    assert P.decode(hb(True), ex) == "version True"
    assert P.decode(hb(1.0), ex) == "version 1.0"
    assert P.decode(hb("1"), ex) == "version '1'"
    c = P.Counters()  # reasons that quote the sender stay a bounded table
    for k in range(10_000):
        c.bad(P.decode(hb(f"junk-{k}" * 50), ex))
    assert c.invalid == 10_000 and len(c.invalid_reasons) <= P.Counters.MAX_REASONS + 1 and c.invalid_reasons["other"] > 9_000
    assert max(len(k) for k in c.invalid_reasons) <= 80


def test_max_message_size_holds_every_legitimate_frame():
    ex = P.Expect(SW, 64, msg_dim=8, obs_dim=300, n_actions=9, k_max=4)
    limit = P.max_message_size(ex)
    peers = [[j, "tcp://" + "h" * 490 + ":65535"] for j in range(64)]  # endpoints near their 512-char limit
    obs = P.ObsCodec(ex).encode(1, 2, np.ones(300, np.float32), np.ones(9, bool), True, list(range(64)), [0, 1, 2, 3], peers)
    assert isinstance(P.decode(obs, ex), dict) and 2 * len(obs) <= limit <= P.MAX_FRAME
    assert limit >= 2 * P.BYE_BUDGET
    assert P.max_message_size(P.Expect(SW, 100_000, obs_dim=10)) == P.MAX_FRAME  # never above what decode accepts


# ---- fixed-memory latency statistics --------------------------------------------------------


def test_latency_stats_use_fixed_memory_and_match_exact_percentiles():
    from marl_edge.runtime.metrics import Latency, percentiles

    rng = np.random.default_rng(0)
    small = rng.lognormal(4, 1, 500)
    lat = Latency()
    for x in small:
        lat.add(float(x))
    assert {k: lat.summary()[k] for k in ("p50", "p99", "n")} == percentiles(small)  # exact while it fits the buffer
    big = rng.lognormal(10, 1.5, 300_000)  # e.g. nanoseconds
    lat = Latency()
    for x in big:
        lat.add(float(x))
    s = lat.summary(1e-3)
    assert s["n"] == len(big) and s["mean"] == pytest.approx(big.mean() * 1e-3, rel=1e-9)
    for q in (50, 99):
        assert s[f"p{q}"] == pytest.approx(np.percentile(big, q) * 1e-3, rel=0.015)
    assert len(lat.buf) < lat.batch and lat.counts.size == Latency.NBINS  # the memory does not grow with the steps
    z = Latency()
    for _ in range(5000):
        z.add(0)
    assert z.summary()["p50"] == 0 and z.summary()["p99"] == 0
    assert Latency().summary()["n"] == 0


# ---- the world's availability check -----------------------------------------------------------


class ScriptedTransport:
    """A transport whose robots answer every obs at once with a scripted action."""

    endpoint = "scripted://"

    def __init__(self, choose):
        self.choose = choose

    def open(self, world):
        self.world = world
        return self.endpoint

    def poll(self, timeout_ms):
        pass

    def poll_one(self, timeout_ms):
        pass

    def send_obs(self, i, ep, t, o, av, first, to, inbox, peers=None):
        self.world.accept(i, {"k": "act", "from": i, "ep": ep, "t": t, "a": self.choose(i, np.asarray(av, bool))})

    def send_stop(self, i, why):
        pass

    def close(self):
        pass


def test_world_plays_the_noop_for_an_unavailable_action(bundles):
    from marl_edge.runtime.bundle import load_bundle
    from marl_edge.runtime.world import World, WorldOptions

    b = load_bundle(bundles["silent"])
    spec = b.manifest.env_spec
    n, na = spec.n_agents, spec.n_actions
    noop = spec.noop_action or 0
    forbidden = (noop + 1) % na
    world = World(b, ScriptedTransport(lambda i, av: forbidden if i % 2 else int(np.flatnonzero(av)[-1])), SW, WorldOptions())
    world.live[:] = True
    world.last_seen[:] = time.perf_counter() + 60
    avail = np.ones((1, n, na), bool)
    avail[0, :, forbidden] = False  # the odd agents pick it anyway
    ts = SimpleNamespace(obs=np.zeros((1, n, spec.obs_dim), np.float32), avail_actions=avail)
    actions = world._serve(0, 0, ts, [[] for _ in range(n)], [[] for _ in range(n)])
    odd = list(range(1, n, 2))
    assert [int(actions[i]) for i in odd] == [noop] * len(odd)
    assert [int(actions[i]) for i in range(0, n, 2)] == [na - 1 if (na - 1) != forbidden else na - 2] * len(range(0, n, 2))
    assert world.counters.invalid_reasons == {"unavailable action": len(odd)}


# ---- the agent's inbox ------------------------------------------------------------------------


def _agent(bundle: Path, i: int = 0, swarm: str = SW):
    from marl_edge.runtime.agent import AgentOptions, AgentProcess

    return AgentProcess(bundle / f"agent_{i}", bundle / "swarm.json", None, swarm, AgentOptions())


def test_inbox_keeps_a_small_window_and_counts_duplicates_and_multipart(bundles):
    from marl_edge.runtime.agent import AHEAD
    from marl_edge.runtime.transport import inbox_socket, peer_socket

    a = _agent(bundles["talk"])
    codec = P.MsgCodec(SW, a.d)
    x = np.ones(a.d, np.float32)
    a.cur = (2, 4)
    assert a._take(codec.encode(1, 2, 3, x)) == (1, 2, 3)  # heard at step 4
    assert a._take(codec.encode(1, 2, 3, 2 * x)) is None  # a duplicate: the first stays
    assert np.frombuffer(a.store[(1, 2, 3)], "<f4")[0] == 1.0
    assert a._take(codec.encode(1, 2, 4 + AHEAD, x)) == (1, 2, 4 + AHEAD)
    assert a._take(codec.encode(1, 3, AHEAD - 1, x)) == (1, 3, AHEAD - 1)  # the next episode's first steps
    for ep, t in [(2, 5 + AHEAD), (3, AHEAD), (4, 0), (9_999_999, 1_000_000)]:
        assert a._take(codec.encode(1, ep, t, x)) is None
    assert a.c.invalid_reasons == {"duplicate": 1, "too far ahead": 4}
    # a flood of future-dated messages from every sender: the store stays n x window
    for k in range(20_000):
        a._take(codec.encode(1 + k % 3, 2, 5 + AHEAD + k, x))
    assert len(a.store) == 3 and a.store_peak == 3
    assert a.c.invalid_reasons["too far ahead"] == 4 + 20_000
    # before the first obs nothing is read: the frames wait in libzmq's queue until the window is known
    b = _agent(bundles["talk"])
    b.robot = RecordingRobot()
    # multi-part messages are refused, counted once each
    ctx = zmq.Context.instance()
    s, addr = inbox_socket(ctx, f"inproc://limits-{os.getpid()}", max_msg=4096)
    push = peer_socket(ctx, addr)
    try:
        b.inbox_sock, b.pollset = s, [(s, zmq.POLLIN)]
        for _ in range(3):
            push.send_multipart([codec.encode(1, 0, 0, x), codec.encode(2, 0, 0, x), b"tail"])
        push.send(codec.encode(3, 0, 0, x))
        time.sleep(0.2)
        b._drain_ready()
        assert b.c.received == 0 and not b.store  # nothing read before the first obs
        b.cur = (0, 1)
        b._drain_ready()
        assert b.c.invalid_reasons == {"multi-part message": 3} and list(b.store) == [(3, 0, 0)]
        push.send_multipart([codec.encode(1, 0, 0, x), b"x"])
        push.send(codec.encode(1, 0, 0, 3 * x))
        b.opts.msg_timeout_s = 5
        b._await({(1, 0, 0)})  # the fast path: also refuses the multi-part one
        assert b.c.invalid_reasons["multi-part message"] == 4 and np.frombuffer(b.store[(1, 0, 0)], "<f4")[0] == 3.0
    finally:
        push.close(linger=0)
        s.close(linger=0)


class RecordingRobot:
    invalid_frames = 0

    def __init__(self):
        self.actions = []
        self.beats = 0

    def apply(self, ob, action):
        self.actions.append(action)

    def heartbeat(self):
        self.beats += 1


def test_agent_never_sends_a_non_finite_message(bundles):
    from marl_edge.robots.base import Observation

    a = _agent(bundles["talk"])
    a.robot = RecordingRobot()
    sent = []
    a._send_to = lambda j, frame: sent.append(j)
    act = a.policy.act

    def nan_policy(*args):
        action, m, h = act(*args)
        return action, np.full_like(m, np.nan), h

    a.policy.act = nan_policy
    spec = a.manifest.env_spec
    ob = Observation(0, 0, np.zeros(spec.obs_dim, np.float32), np.ones(spec.n_actions, bool), [], [1, 2], True)
    a._step(ob)
    assert sent == [] and a.c.sent == 0 and a.c.invalid_reasons == {"non-finite msg_out not sent": 1}
    assert len(a.robot.actions) == 1  # it still acts
    a.policy.act = act
    a._step(Observation(0, 1, ob.obs, ob.avail, [], [1, 2], False))
    assert sent == [1, 2]


# ---- a live swarm under attack ---------------------------------------------------------------------

ATTACKER = r"""
import sys, zmq, numpy as np
from marl_edge.wire import protocol as P
inbox, world, swarm, flood, multi, big = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5]), int(sys.argv[6])
ctx = zmq.Context()
codec = P.MsgCodec(swarm, 8)
x = np.zeros(8, np.float32)
s = ctx.socket(zmq.PUSH); s.setsockopt(zmq.SNDHWM, 0); s.connect(inbox)
for k in range(flood):  # well-formed, from real senders, dated after anything the 5-step episodes reach
    ep, t = (3, 10 + k) if k % 2 else (100 + k, k % 5)  # (episodes 0-3: never stale either)
    s.send(codec.encode(1 + k % 3, ep, t % 1_000_000, x))
for k in range(multi):
    s.send_multipart([codec.encode(1, 500 + k, 0, x), codec.encode(2, 500 + k, 0, x)])
s.close(linger=20000)
for ep, kind in ((inbox, zmq.PUSH), (world, zmq.DEALER)):  # far above the socket limit: libzmq drops it, never Python
    b = ctx.socket(kind)
    if kind == zmq.DEALER:
        b.setsockopt(zmq.IDENTITY, b"intruder")
    b.connect(ep)
    b.send(b"\x00" * big)
    b.close(linger=5000)
ctx.term()
"""


def test_a_flooded_agent_keeps_a_bounded_inbox_and_the_team_plays_unchanged(bundles, tmp_path):
    from marl_edge.runtime.agent import AHEAD
    from marl_edge.runtime.swarm import Launcher, SwarmOptions
    from marl_edge.runtime.team import evaluate_bundle

    procs = []

    def on_start(launcher, world):
        p = subprocess.Popen([sys.executable, "-c", ATTACKER, world.addr[0], world.endpoint, launcher.swarm, str(FLOOD), str(MULTI), str(BIG)],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(p)
        assert p.wait(timeout=40) == 0, p.stderr.read().decode()[-2000:]

    try:
        res = Launcher(bundles["talk"], SwarmOptions(episodes=4, seed=0)).run(on_start=on_start)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    assert res["returns"] == evaluate_bundle(bundles["talk"], episodes=4, seed=0)["returns"]
    s0 = res["per_agent"][0]["sessions"][-1]
    s1 = res["per_agent"][1]["sessions"][-1]
    m0 = s0["messages"]
    assert m0["invalid_reasons"] == {"too far ahead": FLOOD, "multi-part message": MULTI}
    assert m0["received_bytes"] < FLOOD * 200 and "oversized" not in res["invalid_reasons"]  # the 50 MB never arrived
    assert res["world_invalid_frames"] == 0 and res["world_invalid_reasons"] == {}
    assert res["invalid_reasons"] == {"multi-part message": MULTI, "too far ahead": FLOOD}
    assert s0["inbox_peak"] <= 2 * (AHEAD + 3) * 4  # n x window, not the flood
    assert s0["rss_max_kb"] < s1["rss_max_kb"] + 40_000  # neither the flood nor the 50 MB frame grew it
    print(f"flooded agent: inbox peak {s0['inbox_peak']} messages, max RSS {s0['rss_max_kb'] / 1024:.0f} MB "
          f"(an agent not flooded: {s1['rss_max_kb'] / 1024:.0f} MB)")
    assert no_children_left()


# ---- marl-swarm: temp folders, exit codes, refusals ------------------------------------------------


@pytest.fixture
def short_tmp():
    """A TMPDIR of its own (short: ipc socket paths are at most 107 bytes)."""
    d = tempfile.mkdtemp(prefix="lim", dir="/tmp")
    yield Path(d)
    shutil.rmtree(d, ignore_errors=True)


def _swarm(args, tmpdir, **kw):
    env = {**os.environ, "TMPDIR": str(tmpdir), "PYTHONUNBUFFERED": "1"}
    return subprocess.run([sys.executable, "-m", "marl_edge.cli.swarm", *args], capture_output=True, text=True, env=env, timeout=90, **kw)


@pytest.mark.parametrize("args,message", [
    (["--world-bind", "ipc:///nonexistent-marl/dir/w.sock"], "the world cannot listen on"),
    (["--start-timeout", "0.01"], "did not say hello within"),
])
def test_temp_folder_removed_after_a_startup_error(bundles, short_tmp, args, message):
    p = _swarm([str(bundles["talk"]), "--episodes", "1", *args], short_tmp)
    assert p.returncode == 2 and message in p.stderr and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not list(short_tmp.glob("marl-swarm-*"))


def _pids_with(text: str) -> list[int]:
    out = []
    for d in Path("/proc").iterdir():
        if d.name.isdigit():
            try:
                if text in d.joinpath("cmdline").read_bytes().decode(errors="replace"):
                    out.append(int(d.name))
            except OSError:
                continue
    return out


@pytest.mark.parametrize("sig,rc,said", [(signal.SIGTERM, 128 + signal.SIGTERM, "terminated"), (signal.SIGINT, 130, "aborted")])
def test_temp_folder_removed_and_agents_stopped_after_a_signal(bundles, short_tmp, sig, rc, said):
    env = {**os.environ, "TMPDIR": str(short_tmp)}
    p = subprocess.Popen([sys.executable, "-m", "marl_edge.cli.swarm", str(bundles["talk"]), "--episodes", "100000", "--quiet"],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and not list(short_tmp.glob("marl-swarm-*/agent_3.log")):
            time.sleep(0.1)
        time.sleep(2.0)  # the agents are running
        folder = list(short_tmp.glob("marl-swarm-*"))
        assert len(folder) == 1
        assert _pids_with(str(folder[0]))  # its agents
        p.send_signal(sig)
        code = p.wait(timeout=30)
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
    err = p.stderr.read().decode()
    assert code == rc and said in err and "Traceback" not in err, err[-2000:]
    assert not list(short_tmp.glob("marl-swarm-*"))
    deadline = time.time() + 10
    while _pids_with(str(folder[0])) and time.time() < deadline:
        time.sleep(0.1)
    assert not _pids_with(str(folder[0]))
    assert no_children_left()


def test_a_run_where_nobody_acted_fails_with_one_line(bundles, short_tmp):
    kills = [x for i in range(4) for x in ("--kill", f"{i}@0")]
    p = _swarm([str(bundles["silent"]), "--episodes", "2", "--json", "--quiet", *kills], short_tmp)
    assert p.returncode == 1, p.stderr
    res = json.loads(p.stdout.strip().splitlines()[-1])  # NaN became null
    assert [ln for ln in p.stderr.splitlines() if ln.startswith("error:")] == [
        f"error: no agent acted in {res['steps']} steps: every robot played the no-op (see the absences above)"]
    assert res["nobody_acted"] is True and res["act_latency_us_p50"] is None and res["noop_actions"] == 4 * res["steps"] > 0
    assert not list(short_tmp.glob("marl-swarm-*"))


@pytest.mark.parametrize("bundle,args,message", [
    ("silent", ["--drop", "0.2"], "error: --drop: this bundle sends no messages (msg_dim 0), so there is nothing to drop"),
    ("silent", ["--delay-steps", "1"], "error: --delay-steps: this bundle sends no messages (msg_dim 0), so there is nothing to delay"),
    ("talk", ["--restart", "1@5"], "error: --restart 1@5: agent 1 is not killed before step 5 (add --kill 1@S with S < 5)"),
    ("talk", ["--kill", "1@5", "--restart", "1@5"], "error: --restart 1@5: agent 1 is not killed before step 5"),
    ("talk", ["--kill", "1@2", "--restart", "1@5", "--restart", "1@9"], "error: --restart 1@9: agent 1 is not killed before step 9"),
])
def test_flags_that_would_do_nothing_are_refused(bundles, short_tmp, bundle, args, message):
    p = _swarm([str(bundles[bundle]), "--episodes", "1", *args], short_tmp)
    assert p.returncode == 2 and p.stderr.strip().startswith(message) and len(p.stderr.strip().splitlines()) == 1, p.stderr
    assert not list(short_tmp.glob("marl-swarm-*"))


def test_cli_prints_and_writes_the_invalid_reasons(bundles, monkeypatch, tmp_path):
    """The printed summary names the reasons; --metrics-out holds them, NaN as null."""
    from click.testing import CliRunner

    from marl_edge.cli import swarm as cli_swarm
    from marl_edge.runtime import swarm as rt_swarm

    res = {"mean_return": 1.0, "episodes": 1, "seed": 0, "steps_per_s": 10.0, "step_ms_p50": 1.0, "step_ms_p99": 2.0,
           "act_latency_us_p50": float("nan"), "act_latency_us_p99": float("nan"), "startup_s": 0.1, "msg_frame_bytes": 73,
           "msgs_per_step": 1.0, "msg_bytes_per_step": 73.0, "dropped": 0, "stale": 0, "invalid_frames": 7, "world_invalid_frames": 2,
           "invalid_reasons": {"too far ahead": 5, "unavailable action": 2}, "world_invalid_reasons": {"unavailable action": 2},
           "late_actions": 0, "absences": [], "rejoins": [], "nobody_acted": False, "steps": 5, "per_agent": []}
    monkeypatch.setattr(rt_swarm, "run_swarm", lambda *a, **k: dict(res))
    saved = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        out = CliRunner().invoke(cli_swarm.swarm_cmd, [str(bundles["silent"]), "--quiet", "--metrics-out", str(tmp_path / "m.jsonl")],
                                 standalone_mode=False)
    finally:
        for s, h in saved.items():
            signal.signal(s, h)
    assert out.exception is None, out.output
    assert "invalid  7 frames (too far ahead 5, unavailable action 2); the world's: 2" in out.output
    summary = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[-1], parse_constant=lambda c: pytest.fail(f"{c} in JSON"))["summary"]
    assert summary["world_invalid_reasons"] == {"unavailable action": 2} and summary["act_latency_us_p50"] is None
