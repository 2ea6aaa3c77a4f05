"""Liveness that heals (docs/protocol.md §7): an agent the world counted absent
(here: SIGSTOP past the heartbeat timeout) learns it from the world's answer
and rejoins by itself with a fresh state; an agent whose world is gone gives
up after --world-timeout with one line (or, with --reconnect, says hello
until a world is back).

Every process a test starts is stopped in a ``finally`` (the launcher's own
for the swarm; the tests' for the processes they start), and SIGCONT is sent
before anything is terminated."""

from __future__ import annotations

import json
import os
import select
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from procs import no_children_left
from marl_edge.runtime.swarm import Launcher, SwarmOptions
from marl_edge.runtime.team import evaluate_bundle

N = 4
LIMIT = 5  # steps per episode


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, make_bundle):
    root = tmp_path_factory.mktemp("bundles")
    return make_bundle(root, "live4", steps=80, env_options={"n_agents": N, "episode_limit": LIMIT}, comm="mean", topology="broadcast")


def test_the_world_answers_heartbeats(bundle, tmp_path):
    """docs/protocol.md §7, frame by frame: hb -> hb while live, absent while not
    (and before any hello), at most one answer per 0.1 s; the hello after an
    absence is a rejoin; after the run, stop."""
    import msgpack
    import zmq

    from marl_edge.runtime.bundle import load_bundle
    from marl_edge.runtime.transport import ZmqTransport
    from marl_edge.runtime.world import REPLY_EVERY_S, World, WorldOptions
    from marl_edge.wire import protocol as P

    sw = "live-test"
    world = World(load_bundle(bundle), ZmqTransport(f"ipc://{tmp_path}/w.sock"), sw, WorldOptions())
    ctx = zmq.Context.instance()
    a = ctx.socket(zmq.DEALER)
    a.setsockopt(zmq.LINGER, 0)
    a.setsockopt(zmq.IDENTITY, b"agent-0")
    a.connect(world.endpoint)

    def say(kind: str, **kw) -> None:
        a.send(P.encode(sw, 0, kind, **kw))
        world._poll(2000)

    def answers() -> list[tuple[str, object]]:
        out = []
        while a.poll(200):
            env = msgpack.unpackb(a.recv())
            assert env["from"] == -1 and env["sw"] == sw
            out.append((env["k"], env.get("why")))
        return out

    try:
        say("hb")
        assert answers() == [("absent", "not joined")]
        say("hello", addr="ipc:///x")
        say("hb")
        say("hb")  # within 0.1 s of the first: not answered
        assert answers() == [("hb", None)]
        assert not world.stats.rejoins
        time.sleep(REPLY_EVERY_S)
        world.mark_absent(0, "silent")
        say("hb")
        assert answers() == [("absent", "silent")]
        time.sleep(REPLY_EVERY_S)
        a.send(P.ActCodec(world.ex).encode(0, 0, 0, 0))  # an absent agent's action: stale, answered too
        world._poll(2000)
        assert answers() == [("absent", "silent")]
        say("hello", addr="ipc:///x")
        assert world.live[0] and [(r["agent"], r["why"]) for r in world.stats.rejoins] == [(0, "silent")]
        world.mark_absent(0, "silent")
        world.finished = True
        time.sleep(REPLY_EVERY_S)
        say("hb")
        assert answers() == [("stop", "done")]
    finally:
        a.close(linger=0)
        world.close()


def test_the_simulated_robot_reads_the_answers(tmp_path):
    """robots.sim: the world's hb is a sign of life (``last_heard``; observe waits on),
    absent is ``Absent`` and ``rejoin`` says the same hello again."""
    import msgpack
    import zmq

    from marl_edge.robots.base import Absent
    from marl_edge.robots.sim import SimRobot
    from marl_edge.wire import protocol as P

    sw = "live-test"
    ctx = zmq.Context.instance()
    w = ctx.socket(zmq.ROUTER)
    w.setsockopt(zmq.LINGER, 0)
    ep = f"ipc://{tmp_path}/w.sock"
    w.bind(ep)
    r = SimRobot(ep, P.Expect(sw, 3, obs_dim=2, n_actions=2))
    try:
        r.connect(1, {"addr": "ipc:///a1", "pid": 7, "bundle": sw})
        ident, hello = w.recv_multipart()
        assert ident == b"agent-1" and msgpack.unpackb(hello)["addr"] == "ipc:///a1"
        assert r.last_heard == 0.0
        w.send_multipart([ident, P.encode(sw, P.WORLD, "hb")])
        t0 = time.monotonic()
        assert r.observe(0.3) is None
        assert time.monotonic() - t0 >= 0.25 and r.last_heard >= t0  # heard, and waited on for the rest
        w.send_multipart([ident, P.encode(sw, P.WORLD, "absent", why="silent")])
        ob = r.observe(1.0)
        assert isinstance(ob, Absent) and ob.reason == "silent"
        r.rejoin()
        ident, again = w.recv_multipart()
        assert msgpack.unpackb(again) == msgpack.unpackb(hello)
        assert r.invalid_frames == 0
    finally:
        r.close()
        w.close(linger=0)


def _stall(world, k: int, pid: int, got: dict, errors: list) -> threading.Thread:
    """Pace ``world`` (at most 40 steps/s, so the stall spans many steps and the
    run outlasts it), record who acted at each step, when agent ``k`` says hello
    again after SIGCONT and who is live when the world stops; SIGSTOP agent ``k``
    (process ``pid``) at step 20 for 5 s (SIGCONT even on failure)."""
    serve, actions, accept, stop = world._serve, world._actions, world.accept, world.stop
    got.update(hello_at=None, cont_at=None, acted=[], live_at_stop=None)

    def paced(*a, **kw):
        time.sleep(0.025)
        return serve(*a, **kw)

    def counted():
        got["acted"].append((world.global_step, sorted(world.pending)))
        return actions()

    def accepting(i, env):
        if i == k and env["k"] == "hello" and not world.live[i] and got["cont_at"] is not None and got["hello_at"] is None:
            got["hello_at"] = time.perf_counter()
        accept(i, env)

    def stopping(*a, **kw):
        got["live_at_stop"] = world.live.copy()
        return stop(*a, **kw)

    world._serve, world._actions, world.accept, world.stop = paced, counted, accepting, stopping

    def stall() -> None:
        try:
            while world.global_step < 20:
                time.sleep(0.01)
            os.kill(pid, signal.SIGSTOP)
            time.sleep(5.0)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)
        finally:
            os.kill(pid, signal.SIGCONT)
            got["cont_at"] = time.perf_counter()

    th = threading.Thread(target=stall, daemon=True)
    th.start()
    return th


def _check_healed(bundle: Path, res: dict, got: dict, k: int, episodes: int, seed: int, link: str) -> None:
    assert len(res["returns"]) == episodes
    assert [a["agent"] for a in res["absences"]] == [k], res["absences"]
    assert [r["agent"] for r in res["rejoins"]] == [k], res["rejoins"]
    rejoin_step = res["rejoins"][0]["step"]
    assert got["hello_at"] is not None, "the stalled agent never said hello again"
    rejoin_s = got["hello_at"] - got["cont_at"]
    print(f"{link}: rejoin {rejoin_s * 1000:.0f} ms after SIGCONT; absent {res['rejoins'][0]['absent_s']} s, back at step {rejoin_step}")
    assert rejoin_s < 1.0
    # everyone present at the end
    assert got["live_at_stop"] is not None and got["live_at_stop"].all()
    # from the step after the rejoin on, every agent acts every step
    after = [(s, acted) for s, acted in got["acted"] if s > rejoin_step]
    assert after and all(acted == list(range(N)) for _, acted in after), after[:3]
    # episodes that start after the rejoin are played exactly as the bundle evaluation plays them
    ref = evaluate_bundle(bundle, episodes=episodes, seed=seed)["returns"]
    starts = [sum(res["lengths"][:e]) for e in range(episodes)]
    later = [e for e in range(episodes) if starts[e] > rejoin_step]
    assert len(later) >= 5, (rejoin_step, starts[-1])
    assert [res["returns"][e] for e in later] == [ref[e] for e in later]


def test_a_stalled_agent_rejoins_by_itself(bundle):
    """SIGSTOP agent 2 for 5 s (the world marks it absent after 1 s of silence),
    then SIGCONT: it learns it is absent from the world's answer, starts over,
    says hello again, and is served from the next step; every agent is there
    at the end and says bye."""
    k, episodes, seed = 2, 50, 3
    got: dict = {}
    errors: list[BaseException] = []

    def on_start(launcher: Launcher, world) -> None:
        got["thread"] = _stall(world, k, launcher.procs[k].pid, got, errors)

    launcher = Launcher(bundle, SwarmOptions(episodes=episodes, seed=seed, transport="ipc", hb_timeout_s=1.0, act_timeout_s=5.0))
    try:
        res = launcher.run(on_start=on_start)
    finally:
        th = got.get("thread")
        if th is not None:
            th.join(timeout=10)
    assert not errors, errors
    _check_healed(bundle, res, got, k, episodes, seed, "zmq")
    for a in res["per_agent"]:  # every agent sent its bye with its metrics
        assert len(a["sessions"]) == 1 and a["sessions"][0]["stopped"] == "done", a
    assert res["per_agent"][k]["sessions"][0]["rejoins"] == 1  # told by the world's absent
    assert res["invalid_frames"] == 0
    assert no_children_left()


def test_a_stalled_agent_rejoins_over_the_udp_link(bundle, tmp_path):
    """The same stall on the UDP robot link (runtime.udp_world): no absent
    datagram there; the agent's next HEARTBEAT takes it back and the FIRST
    of its next OBS starts it over."""
    from marl_edge.runtime.udp_world import summary, udp_world
    from marl_edge.runtime.bundle import load_bundle
    from marl_edge.runtime.world import WorldOptions

    k, episodes, seed = 1, 50, 3
    world = udp_world(load_bundle(bundle), opts=WorldOptions(episodes=episodes, seed=seed, hb_timeout_s=1.0, act_timeout_s=5.0,
                                                             start_timeout_s=60))
    got: dict = {}
    errors: list[BaseException] = []
    out: dict = {}
    agents = [subprocess.Popen([sys.executable, "-m", "marl_edge.cli.agent", str(bundle / f"agent_{i}"), "--robot", world.endpoint,
                                "--bind", f"ipc://{tmp_path}/a{i}.sock", "--metrics", str(tmp_path / f"m{i}.jsonl")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=os.setpgrp)
              for i in range(N)]

    def serve() -> None:
        try:
            world.wait_for_agents()
            got["thread"] = _stall(world, k, agents[k].pid, got, errors)
            stats = world.run()
            world.stop()
            out["res"] = summary(world, stats, seed)
        except BaseException as e:  # noqa: BLE001
            errors.append(e)

    th = threading.Thread(target=serve, daemon=True)
    th.start()
    try:
        th.join(timeout=120)
        if got.get("thread") is not None:
            got["thread"].join(timeout=10)
        rcs = [a.wait(timeout=30) for a in agents]
    finally:
        for a in agents:
            if a.poll() is None:
                os.kill(a.pid, signal.SIGCONT)
        _stop_all(agents)
        if not th.is_alive():
            world.close()
    assert not th.is_alive() and not errors, errors
    assert rcs == [0] * N, [a.stderr.read()[-1000:] for a in agents]
    res = out["res"]
    _check_healed(bundle, res, got, k, episodes, seed, "udp")
    for a in res["per_agent"]:
        assert a["metrics"] and a["metrics"]["stopped"] == "done", a
    assert res["invalid_frames"] == 0
    assert no_children_left()


# ---- a world that is gone ------------------------------------------------------------------------


def _world(bundle: Path, ep: str, episodes: int) -> subprocess.Popen:
    """marl-swarm --no-spawn: only the world, at ``ep``; the test starts the agents."""
    return subprocess.Popen([sys.executable, "-m", "marl_edge.cli.swarm", str(bundle), "--no-spawn", "--world-bind", ep,
                             "--episodes", str(episodes), "--seed", "1"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=os.setpgrp)


def _agents(bundle: Path, ep: str, tmp: Path, *extra: str) -> list[subprocess.Popen]:
    return [subprocess.Popen([sys.executable, "-m", "marl_edge.cli.agent", str(bundle / f"agent_{i}"), "--world", ep,
                              "--bind", f"ipc://{tmp}/a{i}.sock", "--metrics", str(tmp / f"m{i}.jsonl"), *extra],
                             stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True, preexec_fn=os.setpgrp)
            for i in range(N)]


def _wait_running(world: subprocess.Popen, timeout: float = 60.0) -> None:
    """Until the world reports its first finished episode (its progress line on stderr)."""
    deadline = time.monotonic() + timeout
    buf = ""
    while time.monotonic() < deadline:
        r, _, _ = select.select([world.stderr], [], [], 0.5)
        if r:
            line = world.stderr.readline()
            buf += line
            if "episodes" in line and "%" in line:
                return
            if not line and world.poll() is not None:
                break
    raise AssertionError(f"the world never got going: {buf[-2000:]}")


def _stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
            p.wait(timeout=10)


def test_an_agent_whose_world_dies_gives_up_with_one_line(bundle, tmp_path):
    ep = f"ipc://{tmp_path}/w.sock"
    world = _world(bundle, ep, 100_000)
    agents = _agents(bundle, ep, tmp_path, "--world-timeout", "2")
    try:
        _wait_running(world)
        world.kill()
        world.wait(timeout=10)
        killed = time.monotonic()
        rcs, waited = [], []
        for a in agents:
            rcs.append(a.wait(timeout=30))
            waited.append(time.monotonic() - killed)
        errs = [a.stderr.read().strip().splitlines() for a in agents]
    finally:
        _stop_all([world, *agents])
    assert rcs == [3] * N, errs
    for i, lines in enumerate(errs):
        assert lines and lines[-1] == f"agent {i}: no frame from the world for 2.0 s; giving up", lines
    assert max(waited) < 2.0 + 3.0, waited  # the timeout, a heartbeat and the way out
    for i in range(N):
        m = json.loads((tmp_path / f"m{i}.jsonl").read_text().splitlines()[-1])
        assert m["stopped"] == "world silent" and m["steps"] > 0
    assert no_children_left()


def test_reconnect_says_hello_until_a_world_is_back(bundle, tmp_path):
    ep = f"ipc://{tmp_path}/w.sock"
    world = _world(bundle, ep, 100_000)
    agents = _agents(bundle, ep, tmp_path, "--world-timeout", "1", "--reconnect")
    second = None
    try:
        _wait_running(world)
        world.kill()
        world.wait(timeout=10)
        time.sleep(1.5)  # past the timeout: they say hello into the void
        assert all(a.poll() is None for a in agents)
        second = _world(bundle, ep, 3)
        assert second.wait(timeout=60) == 0, second.stderr.read()[-2000:]
        rcs = [a.wait(timeout=30) for a in agents]
        errs = [a.stderr.read() for a in agents]
    finally:
        _stop_all([world, *agents] + ([second] if second is not None else []))
    assert rcs == [0] * N, errs
    for i, e in enumerate(errs):
        assert f"agent {i}: no frame from the world for 1.0 s; saying hello until it is back" in e, e
        assert f"agent {i}: the world is back" in e, e
        m = json.loads((tmp_path / f"m{i}.jsonl").read_text().splitlines()[-1])
        assert m["stopped"] == "done"
    assert no_children_left()


def test_agents_started_before_their_world_wait_for_it(bundle, tmp_path):
    """The silence clock starts at the world's first frame: robots booted before the
    workstation wait past --world-timeout, then play the whole run."""
    ep = f"ipc://{tmp_path}/w.sock"
    agents = _agents(bundle, ep, tmp_path, "--world-timeout", "1")
    world = None
    try:
        time.sleep(2.5)  # more than twice the timeout with no world at all
        assert all(a.poll() is None for a in agents), [a.stderr.read() for a in agents if a.poll() is not None]
        world = _world(bundle, ep, 2)
        assert world.wait(timeout=60) == 0, world.stderr.read()[-2000:]
        rcs = [a.wait(timeout=30) for a in agents]
    finally:
        _stop_all(agents + ([world] if world is not None else []))
    assert rcs == [0] * N
    for i in range(N):
        assert json.loads((tmp_path / f"m{i}.jsonl").read_text().splitlines()[-1])["stopped"] == "done"
    assert no_children_left()
