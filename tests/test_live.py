"""What a running swarm shows: ``marl-swarm --live`` (the per-agent table built
from the world's liveness and the agents' ``status`` reports) and
``marl-agent``'s own log (``--log-level``, ``--status-every``, ``--report-every``).

Every process a test starts is stopped by the launcher's ``finally`` or by the
test's own ``finally``."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
from types import SimpleNamespace

import msgpack
import numpy as np
import pytest
import zmq

from procs import no_children_left
from marl_edge.runtime.bundle import read_manifest
from marl_edge.runtime.swarm import live_line, live_rows, live_table
from marl_edge.wire import protocol as P


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, make_bundle):
    root = tmp_path_factory.mktemp("live")
    return make_bundle(root, "knn2", env_options={"n_agents": 3, "episode_limit": 6}, comm="mean", topology="knn:2")


def test_the_live_table_shows_each_agents_counters():
    now = 100.0
    report = {"agent": 0, "ep": 2, "t": 3, "steps": 41, "act_us_p50": 31.4, "act_us_p95": 77.6, "heard": 80, "received": 82, "sent": 81,
              "dropped": 2, "stale": 1, "invalid": 3, "rejoins": 1, "reconnects": 0}
    world = SimpleNamespace(n=3, live=np.array([True, False, True]), absent_why={1: ("silent", 90.0)}, acted=[40, 12, 41],
                            status={0: (now - 0.5, report), 1: (now - 9.0, {"steps": True, "act_us_p50": "fast"})},
                            finished=False, bye={})
    rows = live_rows(world, now)
    assert rows[0] == {"agent": 0, "state": "live", "acted": 40, "step": 41, "act_us_p50": 31.4, "act_us_p95": 77.6, "msgs_in": 80,
                            "msgs_out": 81, "dropped": 2, "stale": 1, "invalid": 3, "rejoins": 1, "report_age_s": 0.5}
    assert rows[1]["state"] == "absent (silent)" and rows[1]["step"] is None and rows[1]["act_us_p50"] is None  # junk is not shown
    assert rows[2]["report_age_s"] is None and rows[2]["msgs_in"] is None  # never reported
    table = live_table(rows, "live     1.0 s")
    assert table[0] == "live     1.0 s" and table[1].split()[:4] == ["agent", "state", "step", "acted"]
    assert table[2].split() == ["0", "live", "41", "40", "31", "78", "80", "81", "2", "1", "3", "1", "0.5"]
    assert table[3].split()[:5] == ["1", "absent", "(silent)", "-", "12"]
    assert len({len(line) for line in table[1:]}) <= 2  # aligned (rstrip may shorten rows ending in "-")
    line = live_line(rows, "1.0 s")
    assert "\n" not in line and line.startswith("live 1.0 s | 0 live step 41 acted 40 act 31/78 µs in 80 out 81 drop 2 invalid 3 | 1 absent")
    world.finished, world.bye = True, {0: {}}
    assert live_rows(world, now)[0]["state"] == "live" and live_rows(world, now)[1]["state"] == "absent (silent)"
    world.live[0] = False
    assert live_rows(world, now)[0]["state"] == "done"


ROW = re.compile(r"(\d+) (live|done|absent \([^)]*\)) step (\S+) acted (\d+) act (\S+)/(\S+) µs in (\S+) out (\S+) drop (\S+) invalid (\S+)")


def test_marl_swarm_live_into_a_pipe_prints_plain_rows_with_the_counters(bundle, cli):
    p = cli("swarm", str(bundle), "--episodes", "6", "--seed", "1", "--live", "--json", check=True, timeout=180)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    live = [line for line in p.stderr.splitlines() if line.startswith("live ")]
    assert live and "\x1b[" not in p.stderr  # not a terminal: plain lines, no ANSI
    rows = [ROW.findall(line) for line in live]
    assert all(len(r) == 3 for r in rows)  # every refresh has a row per agent
    last = rows[-1]
    for i, (agent, state, step, acted, p50, p95, heard, sent, drop, invalid) in enumerate(last):
        assert int(agent) == i and state == "done"
        assert int(step) == int(acted) == res["steps"]  # lossless lock-step: every agent acted every step
        assert 0 < float(p50) <= float(p95)
        assert int(heard) == 2 * (res["steps"] - res["episodes"])  # knn:2 with 3 agents: both others, from t = 1 on
        assert int(sent) > 0 and drop == "0" and invalid == "0"
    assert res["returns"] and no_children_left()


def _agent(bundle, tmp_path, *args: str) -> tuple[subprocess.Popen, zmq.Socket]:
    ctx = zmq.Context.instance()
    world = ctx.socket(zmq.ROUTER)
    ep = f"ipc://{tmp_path}/w.sock"
    world.bind(ep)
    proc = subprocess.Popen([sys.executable, "-m", "marl_edge.cli.agent", str(bundle / "agent_0"), "--world", ep, "--bind",
                             f"ipc://{tmp_path}/a0.sock", *args], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    return proc, world


def test_marl_agent_logs_status_lines_and_reports_status_frames(bundle, tmp_path):
    """With no world answering, the agent idles: it still logs its status line and
    sends its status report, which the reference validator accepts."""
    proc, world = _agent(bundle, tmp_path, "--status-every", "0.2", "--report-every", "0.2", "--log-level", "info")
    ex = P.Expect.for_bundle(read_manifest(bundle / "swarm.json"), "")
    try:
        kinds, status = [], []
        deadline = time.time() + 30
        while time.time() < deadline and len(status) < 2:
            if world.poll(1000):
                ident, frame = world.recv_multipart()
                ex.swarm = msgpack.unpackb(frame)["sw"]
                env = P.decode(frame, ex)
                assert not isinstance(env, str), env
                kinds.append(env["k"])
                if env["k"] == "status":
                    status.append(env["m"])
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        world.close(linger=0)
    err = proc.stderr.read()
    assert rc == 0, err[-2000:]
    assert kinds[0] == "hello" and len(status) == 2, kinds
    assert status[0]["agent"] == 0 and status[0]["steps"] == 0 and status[0]["ep"] == -1
    for key in ("act_us_p50", "act_us_p95", "heard", "sent", "dropped", "stale", "invalid", "rejoins", "reconnects"):
        assert key in status[0]
    lines = err.splitlines()
    assert any(" INFO agent 0: started, lockstep" in line for line in lines), err
    st = [line for line in lines if " INFO agent 0: step 0 (episode -1, t 0); act p50" in line]
    assert len(st) >= 2 and "messages in 0 out 0, dropped 0, stale 0, invalid 0; rejoins 0, reconnects 0" in st[0], err
    assert lines[-1].endswith("INFO agent 0: stopped (signal) after 0 steps")
    # a status frame that is not a map is refused by name
    bad = P.encode(ex.swarm, 0, "status", m=[1, 2])
    assert P.decode(bad, ex) == "status: m is not a map" and P.decode(P.encode(ex.swarm, -1, "status", m={}), ex) == "status from the world"


def test_marl_agent_log_level_warning_keeps_it_quiet(bundle, tmp_path):
    proc, world = _agent(bundle, tmp_path, "--status-every", "0.1", "--log-level", "warning")
    try:
        assert world.poll(30_000), "the agent never said hello"
        time.sleep(0.5)  # several status periods
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        world.close(linger=0)
    err = proc.stderr.read()
    assert rc == 0 and "INFO" not in err and "step 0" not in err, err


def test_the_watch_sees_a_killed_agent_go_absent(bundle):
    """The launcher hands the world to ``watch`` (what --live draws from) before each step,
    while it waits, and once at the end."""
    from marl_edge.runtime.swarm import Launcher, SwarmOptions

    seen: list[list[dict]] = []
    res = Launcher(bundle, SwarmOptions(episodes=3, seed=2, kills=[(1, 5)], report_every_s=0.2)).run(watch=lambda w: seen.append(live_rows(w)))
    assert len(seen) > res["steps"]  # every step, and the waits besides
    states = [tuple(r["state"] for r in rows) for rows in seen]
    assert ("live", "absent (killed)", "live") in states
    last = seen[-1]
    assert [r["state"] for r in last] == ["done", "absent (killed)", "done"]
    assert last[1]["acted"] == 5 and last[0]["acted"] == last[2]["acted"] == res["steps"] == 18
    assert last[0]["step"] == res["steps"] and last[0]["msgs_out"] > 0  # its last report came before its goodbye
    assert no_children_left()
