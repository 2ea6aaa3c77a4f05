"""marl-swarm: one process per agent over ZeroMQ. Fidelity to the in-process
bundle evaluation, sparse message volume, faults, fuzzing, torch-free agents.

Every process a test starts is stopped by the launcher's ``finally`` (and
dies with its parent through PR_SET_PDEATHSIG if the test process dies)."""

from __future__ import annotations

import json
import os
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from frames import envelope
from procs import no_children_left
from marl_edge.wire import protocol as P
from marl_edge.runtime.swarm import Launcher, SwarmOptions, run_swarm
from marl_edge.runtime.team import evaluate_bundle


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, make_bundle):
    root = tmp_path_factory.mktemp("bundles")
    six = {"n_agents": 6, "episode_limit": 5}
    return {
        "knn3": make_bundle(root, "knn3", env_options=six, comm="attention", topology="knn:3", top_k=2),
        "bcast": make_bundle(root, "bcast", env_options=six, comm="mean", topology="broadcast"),
    }


@pytest.mark.parametrize("transport", ["ipc", "tcp"])
def test_lockstep_swarm_reproduces_the_bundle_evaluation(bundles, transport):
    """Fidelity: 6 recurrent, communicating agents (attention, knn:3), lossless lock-step."""
    res = run_swarm(bundles["knn3"], SwarmOptions(episodes=12, seed=7, transport=transport))
    ref = evaluate_bundle(bundles["knn3"], episodes=12, seed=7)
    assert res["returns"] == ref["returns"]
    assert res["dropped"] == 0 and res["invalid_frames"] == 0 and res["noop_actions"] == 0 and not res["absences"]
    assert res["act_latency_us_p50"] > 0 and res["steps_per_s"] > 0
    assert no_children_left()


def test_message_bytes_per_step_are_n_k_frames_not_n_squared(bundles):
    n = 6
    knn = run_swarm(bundles["knn3"], SwarmOptions(episodes=4, seed=0))
    bc = run_swarm(bundles["bcast"], SwarmOptions(episodes=4, seed=0))
    frame = knn["msg_frame_bytes"]
    assert frame == bc["msg_frame_bytes"] == P.frame_size(8, knn["swarm"])
    assert knn["msgs_per_step"] == n * 3 and knn["msg_bytes_per_step"] == n * 3 * frame
    assert bc["msgs_per_step"] == n * (n - 1) and bc["msg_bytes_per_step"] == n * (n - 1) * frame


def test_a_killed_agent_is_masked_and_rejoins_when_restarted(bundles):
    res = run_swarm(bundles["bcast"], SwarmOptions(episodes=6, seed=3, kills=[(2, 7)], restarts=[(2, 18)]))
    assert len(res["returns"]) == 6  # every episode finished
    assert [(a["agent"], a["step"], a["why"]) for a in res["absences"]] == [(2, 7, "killed")]
    assert [(r["agent"], r["step"]) for r in res["rejoins"]] == [(2, 18)]
    assert res["noop_actions"] == 18 - 7  # its robot no-op'd while it was gone
    assert res["invalid_frames"] == 0
    # the restarted process reported its own session
    sessions = res["per_agent"][2]["sessions"]
    assert len(sessions) >= 1 and sessions[-1]["steps"] == 6 * 5 - 18
    assert no_children_left()


def test_lossy_links_complete_and_report_the_loss(bundles):
    res = run_swarm(bundles["bcast"], SwarmOptions(episodes=8, seed=0, drop=0.2))
    heard = 6 * 5 * 8 - 6 * 8  # receivers x steps that have an inbox (not the first step)
    expected = 0.2 * heard * 5  # five messages per receiver per step
    assert len(res["returns"]) == 8
    assert 0.6 * expected < res["dropped"] < 1.4 * expected


def test_messages_late_by_a_step_are_stale_and_masked(bundles):
    """--delay-steps 1: every message misses the one step it may be heard at
    (contract 3), so the swarm plays exactly the team that hears nothing."""
    res = run_swarm(bundles["knn3"], SwarmOptions(episodes=6, seed=4, delay_steps=1))
    silent = evaluate_bundle(bundles["knn3"], episodes=6, seed=4, msg_loss=1.0)
    assert res["returns"] == silent["returns"]
    assert res["stale"] > 0 and res["invalid_frames"] == 0


def test_realtime_mode_runs_at_the_rate(bundles):
    hz = 40.0
    res = run_swarm(bundles["knn3"], SwarmOptions(episodes=4, seed=0, mode="realtime", hz=hz))
    assert len(res["returns"]) == 4 and res["mode"] == "realtime"
    assert 0.5 * hz < res["steps_per_s"] < 1.1 * hz
    assert res["invalid_frames"] == 0
    assert no_children_left()


def test_agents_load_no_torch(bundles):
    res = run_swarm(bundles["knn3"], SwarmOptions(episodes=1, seed=0))
    flags = [s["torch_loaded"] for a in res["per_agent"] for s in a["sessions"]]
    assert flags and not any(flags)


# ---- fuzzing -----------------------------------------------------------------------------


def malformed_frames(swarm: str, n_agents: int, d: int, count: int, rng: np.random.Generator) -> list[bytes]:
    codec = P.MsgCodec(swarm, d)
    good = codec.encode(1, 0, 1, np.zeros(d, np.float32))
    makers = [
        lambda: rng.bytes(int(rng.integers(0, 200))),  # line noise
        lambda: envelope(swarm, 1, "msg", 0, 1, p=np.zeros(d, np.float32)).replace(b"\xa1v\x01", b"\xa1v\x07"),  # wrong version
        lambda: P.MsgCodec(swarm, d + 1).encode(1, 0, 1, np.zeros(d + 1, np.float32)),  # wrong shape
        lambda: codec.encode(1, 0, 1, np.full(d, np.nan, np.float32)),  # NaN
        lambda: codec.encode(1, 0, 1, np.full(d, np.inf, np.float32)),  # inf
        lambda: codec.encode(99, 0, 1, np.zeros(d, np.float32)),  # unknown sender
        lambda: P.MsgCodec("other-swarm", d).encode(1, 0, 1, np.zeros(d, np.float32)),  # foreign swarm
        lambda: good[: int(rng.integers(1, len(good)))],  # truncated
        lambda: b"\x93\x01\x02\x03",  # not a map
        lambda: envelope(swarm, 1, "msg", 0, 1, p="not bytes"),
        lambda: envelope(swarm, 1, "msg", -5, 1, p=np.zeros(d, np.float32)),  # negative episode
    ]
    frames = [makers[i % len(makers)]() for i in range(count)]
    frames[::997] = [b"\x00" * (P.MAX_FRAME + 10)] * len(frames[::997])  # oversized
    return frames


def test_fuzzed_agent_and_world_survive_and_count_every_bad_frame(bundles):
    n_frames = 10_000
    sent = {"agent": 0, "world": 0}

    def on_start(launcher: Launcher, world) -> None:
        rng = np.random.default_rng(0)
        frames = malformed_frames(launcher.swarm, 6, 8, n_frames, rng)
        ctx = zmq.Context.instance()
        to_agent = ctx.socket(zmq.PUSH)
        to_agent.setsockopt(zmq.SNDHWM, 0)
        to_agent.connect(world.addr[0])
        to_world = ctx.socket(zmq.DEALER)
        to_world.setsockopt(zmq.SNDHWM, 0)
        to_world.setsockopt(zmq.IDENTITY, b"fuzzer")
        to_world.connect(world.endpoint)
        # a frame above the socket's ZMQ_MAXMSGSIZE is dropped by libzmq with the connection it came
        # on (so never counted): those go over connections of their own (tests/test_limits.py)
        big = [f for f in frames if len(f) > P.max_message_size(world.ex)]
        for f in frames:
            if len(f) > P.max_message_size(world.ex):
                continue
            to_agent.send(f)
            sent["agent"] += 1
            to_world.send(f)
            sent["world"] += 1
        for f in big:
            for ep in (world.addr[0], world.endpoint):
                junk = ctx.socket(zmq.PUSH if ep != world.endpoint else zmq.DEALER)
                junk.connect(ep)
                junk.send(f)
                junk.close(linger=500)
        sent["big"] = len(big)
        # valid-looking frames from an impostor identity are refused too
        to_world.send(P.ActCodec(world.ex).encode(0, 0, 0, 0))
        sent["world"] += 1
        time.sleep(0.5)
        to_agent.close(linger=2000)
        to_world.close(linger=2000)

    launcher = Launcher(bundles["knn3"], SwarmOptions(episodes=4, seed=0))
    res = launcher.run(on_start=on_start)
    ref = evaluate_bundle(bundles["knn3"], episodes=4, seed=0)
    assert res["returns"] == ref["returns"]  # the swarm still finishes, unchanged
    agent0 = res["per_agent"][0]["sessions"][-1]["messages"]
    assert sent["big"] > 0
    assert agent0["invalid"] == sent["agent"] == n_frames - sent["big"]
    assert res["world_invalid_frames"] == sent["world"] == n_frames - sent["big"] + 1
    assert no_children_left()


# ---- the CLI -------------------------------------------------------------------------------


def test_cli_swarm_json_summary(bundles, cli):
    p = cli("swarm", str(bundles["knn3"]), "--episodes", "4", "--seed", "2", "--json", "--quiet", check=True, timeout=120)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    for key in ("mean_return", "returns", "steps_per_s", "msg_bytes_per_step", "act_latency_us_p50", "act_latency_us_p99", "dropped", "invalid_frames"):
        assert key in res
    e = cli("evaluate", str(bundles["knn3"]), "--episodes", "4", "--seed", "2", "--json", check=True)
    assert json.loads(e.stdout.strip().splitlines()[-1])["returns"] == res["returns"]
    assert "steps/s" in p.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--kill", "2"], "--kill takes AGENT@STEP"),
        (["--kill", "9@3"], "agent must be in 0..5"),
        (["--drop", "1.5"], "--drop must be in [0, 1)"),
        (["--mode", "realtime", "--hz", "0"], "--hz must be in (0, 10000]"),
        (["--delay-steps", "-1"], "--delay-steps must be >= 0"),
    ],
)
def test_cli_swarm_bad_input(bundles, cli, args, message):
    p = cli("swarm", str(bundles["knn3"]), *args, timeout=60)
    assert p.returncode == 2 and message in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_cli_swarm_not_a_bundle(cli, tmp_path):
    p = cli("swarm", str(tmp_path), timeout=60)
    assert p.returncode == 2 and "is not a bundle" in p.stderr


def test_cli_agent_refuses_a_tampered_folder(bundles, cli, tmp_path):
    import shutil

    b = tmp_path / "b"
    shutil.copytree(bundles["knn3"], b)
    card = b / "agent_1" / "agent.json"
    card.write_text(card.read_text().replace('"hidden_dim": 64', '"hidden_dim": 65'))
    p = cli("agent", str(b / "agent_1"), "--world", "ipc:///nonexistent", timeout=60)
    assert p.returncode == 2 and "sha256" in p.stderr and "agent 1" in p.stderr, p.stderr


def test_agent_process_stops_cleanly_on_sigterm(bundles, tmp_path):
    import signal
    import subprocess
    import sys

    ctx = zmq.Context.instance()
    world = ctx.socket(zmq.ROUTER)
    ep = f"ipc://{tmp_path}/w.sock"
    world.bind(ep)
    proc = subprocess.Popen([sys.executable, "-m", "marl_edge.cli.agent", str(bundles["knn3"] / "agent_0"), "--world", ep,
                             "--bind", f"ipc://{tmp_path}/a0.sock", "--metrics", str(tmp_path / "m.jsonl")],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    try:
        assert world.poll(30_000), "the agent never said hello"
        ident, frame = world.recv_multipart()
        import msgpack

        assert ident == b"agent-0" and msgpack.unpackb(frame)["k"] == "hello"
        proc.send_signal(signal.SIGTERM)
        rc = proc.wait(timeout=20)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        world.close(linger=0)
    assert rc == 0, proc.stderr.read().decode()[-2000:]
    m = json.loads((tmp_path / "m.jsonl").read_text().splitlines()[-1])
    assert m["agent"] == 0 and m["stopped"] == "signal"


def test_profiles_deploy_agents_started_elsewhere(bundles, cli, tmp_path):
    """marl-swarm --write-profiles, then marl-agent --profile per robot and a world-only marl-swarm --no-spawn."""
    import socket
    import subprocess
    import sys

    def free_block(start: int, count: int) -> int:
        """The first port p >= start with p..p+count-1 all free (below the ephemeral range)."""
        for p in range(start, 32000, count + 1):
            socks = []
            try:
                for q in range(p, p + count):
                    s = socket.socket()
                    socks.append(s)
                    s.bind(("127.0.0.1", q))
                return p
            except OSError:
                continue
            finally:
                for s in socks:
                    s.close()
        raise RuntimeError("no free port block")

    world_port = free_block(21000 + os.getpid() % 5000, 7)
    base = world_port + 1
    p = cli("swarm", str(bundles["knn3"]), "--write-profiles", str(tmp_path / "prof"), "--world-bind", f"tcp://127.0.0.1:{world_port}",
            "--hosts", "127.0.0.1", "--base-port", str(base), check=True, timeout=60)
    assert "profiles 6 written" in p.stdout
    prof = json.loads((tmp_path / "prof" / "agent_3.json").read_text())
    assert prof["bind"] == f"tcp://*:{base + 3}" and prof["peers"]["0"] == f"tcp://127.0.0.1:{base}" and "3" not in prof["peers"]
    agents = [subprocess.Popen([sys.executable, "-m", "marl_edge.cli.agent", "--profile", str(tmp_path / "prof" / f"agent_{i}.json")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE) for i in range(6)]
    try:
        res = run_swarm(bundles["knn3"], SwarmOptions(episodes=4, seed=1, transport="tcp", spawn=False, world_bind=f"tcp://127.0.0.1:{world_port}",
                                                      swarm_id=prof["swarm_id"], start_timeout_s=60,
                                                      secret_key=tmp_path / "prof" / "world.key_secret", public_keys=tmp_path / "prof" / "public_keys.json"))
        for a in agents:
            assert a.wait(timeout=20) == 0
    finally:
        for a in agents:
            if a.poll() is None:
                a.kill()
                a.wait()
    assert res["returns"] == evaluate_bundle(bundles["knn3"], episodes=4, seed=1)["returns"]
    assert res["msgs_per_step"] == 18 and res["invalid_frames"] == 0


def test_summary_leaves_out_a_foreign_bye():
    """A client may send any map in its bye; only well-formed agent metrics reach the summary."""
    from marl_edge.runtime.swarm import _is_session

    good = {"messages": {"sent": 3, "sent_bytes": 276, "dropped": 0, "stale": 1, "invalid": 0}, "act_us": {"n": 5, "p50": 70.0, "p99": 90.5}}
    assert _is_session(good)
    for bad in ({}, {"hello": 1}, {"messages": {"sent": "3"}, "act_us": good["act_us"]}, {"messages": good["messages"]}, [good], None):
        assert not _is_session(bad)
