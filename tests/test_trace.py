"""marl-swarm --trace: the world's per-step JSON-lines trace (docs/robots.md,
"The swarm trace"). A trace replays in the env alone and gives the recorded
rewards and the swarm's returns; absences show as no-ops; the file is written
as the run goes, so an interrupted run leaves only complete lines.

Every process a test starts is stopped by the launcher's ``finally`` or by the
test's own ``finally``."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from procs import no_children_left
from marl_edge.envs import make
from marl_edge.runtime.swarm import SwarmOptions, run_swarm
from marl_edge.runtime.trace import read_trace


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, make_bundle):
    root = tmp_path_factory.mktemp("trace")
    return make_bundle(root, "knn2", env_options={"n_agents": 4, "episode_limit": 6}, comm="attention", topology="knn:2", top_k=2)


def replay(lines: list[dict]) -> list[float]:
    """Replay a trace in a fresh env: reset each episode with its seed, step with the
    recorded actions, check each step's rewards; the returns it gives."""
    head = lines[0]
    assert head["kind"] == "header"
    env = make(head["env"], n_envs=1, **head["env_options"])
    assert env.spec.to_dict() == head["spec"]
    returns: list[float] = []
    ts = None
    for rec in lines[1:]:
        if rec["kind"] == "episode":
            ts = env.reset(np.array([rec["seed"]]))
            returns.append(0.0)
            t = 0
        elif rec["kind"] == "step":
            assert rec["t"] == t and rec["episode"] == len(returns) - 1
            if rec["positions"] is not None:  # where the robots were when they acted
                assert np.asarray(rec["positions"], dtype=np.float32).tolist() == ts.positions[0].tolist()
            ts = env.step(np.asarray([rec["actions"]]))
            assert ts.reward[0].tolist() == rec["reward"], (rec["episode"], t)
            returns[-1] += float(ts.team_reward(env.spec.reward_scalarisation)[0])
            t += 1
    env.close()
    return returns


def test_a_lockstep_trace_replays_to_the_swarms_returns(bundle, cli, tmp_path):
    trace = tmp_path / "run.jsonl"
    p = cli("swarm", str(bundle), "--episodes", "5", "--seed", "4", "--trace", str(trace), "--json", "--quiet", check=True, timeout=180)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    lines = read_trace(trace)
    assert len(lines) == len(trace.read_text().splitlines())  # every line is JSON
    head = lines[0]
    assert set(head) == {"kind", "env", "env_options", "spec", "seed", "episodes", "topology"}
    assert (head["env"], head["seed"], head["episodes"], head["topology"]["spec"]) == ("scout", 4, 5, "knn:2")
    assert [r["kind"] for r in lines].count("episode") == 5 and lines[-1] == {"kind": "end", "returns": res["returns"]}
    steps = [r for r in lines if r["kind"] == "step"]
    assert len(steps) == res["steps"]
    for r in steps:
        assert set(r) == {"kind", "episode", "t", "actions", "reward", "positions", "heard", "dropped", "absent"}
        assert len(r["actions"]) == len(r["reward"]) == len(r["positions"]) == len(r["heard"]) == 4
        assert r["absent"] == [] and r["dropped"] == [0, 0, 0, 0]
        # knn:2: nobody hears anything at t = 0, then two senders each, never itself
        assert all(len(h) == (0 if r["t"] == 0 else 2) and i not in h for i, h in enumerate(r["heard"]))
    assert replay(lines) == res["returns"]


def test_an_absent_agent_is_traced_as_a_no_op_and_unheard(bundle, tmp_path):
    trace = tmp_path / "kill.jsonl"
    res = run_swarm(bundle, SwarmOptions(episodes=4, seed=1, kills=[(2, 8)], trace=trace))
    lines = read_trace(trace)
    steps = [r for r in lines if r["kind"] == "step"]
    assert len(steps) == res["steps"] == 24
    for g, r in enumerate(steps):  # the kill happens before global step 8 is served
        if g < 8:
            assert r["absent"] == [] and sum(r["dropped"]) == 0
            continue
        assert r["absent"] == [2] and r["actions"][2] == 0  # the no-op (scout has no noop_action: 0)
        assert r["heard"][2] == [] and r["dropped"][2] == 0 and all(2 not in h for h in r["heard"])
        for i in (0, 1, 3):  # knn:2 lists two senders from t = 1 on: each is heard, or dropped because it is gone
            assert len(r["heard"][i]) + r["dropped"][i] == (0 if r["t"] == 0 else 2)
    assert sum(sum(r["dropped"]) for r in steps[8:]) > 0  # its neighbours missed it
    assert replay(lines) == res["returns"]  # the world applied exactly what it traced
    assert no_children_left()


def test_an_interrupted_run_leaves_a_usable_trace(bundle, tmp_path):
    """SIGINT mid-run: the swarm stops (exit 130, every agent reaped), the trace
    holds the header, whole episode and step lines, and no end line."""
    trace = tmp_path / "cut.jsonl"
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "marl_edge.cli.swarm", str(bundle), "--episodes", "100000", "--trace", str(trace),
                             "--quiet"], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, start_new_session=True)
    try:
        deadline = time.time() + 60
        while time.time() < deadline and (not trace.exists() or trace.read_text().count('"kind":"step"') < 20):
            time.sleep(0.1)
        assert trace.exists(), proc.stderr.read().decode()[-2000:] if proc.poll() is not None else "no trace"
        proc.send_signal(signal.SIGINT)
        rc = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert rc == 130, proc.stderr.read().decode()[-2000:]
    text = trace.read_text()
    lines = read_trace(trace)
    assert len(lines) == len(text.splitlines()) and text.endswith("\n")  # nothing cut: every line complete
    kinds = [r["kind"] for r in lines]
    assert kinds[0] == "header" and "end" not in kinds and kinds.count("step") >= 20
    replay(lines)  # every recorded step replays to its recorded rewards
    assert no_children_left()
