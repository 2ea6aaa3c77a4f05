"""The UDP datagram format (wire.udp), the robot adapter (robots.udp) and its
testbed device (runtime.udp_world).

Lock-step fidelity: a device process serving the env over UDP plus one
``marl-agent --robot udp://...`` process per robot (messages peer to peer over
ZeroMQ) plays exactly the episodes of the in-process bundle evaluation.
Malformed datagrams are counted and dropped on both ends of the link.

Every process a test starts is killed in a ``finally`` (and dies with the
test process through PR_SET_PDEATHSIG); no test asserts on time.
"""

from __future__ import annotations

import json
import math
import os
import select
import socket
import struct
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from procs import no_children_left
from marl_edge.robots.udp import UdpRobot
from marl_edge.robots.base import Observation, Stop
from marl_edge.runtime.bundle import load_bundle
from marl_edge.runtime.swarm import _pdeathsig
from marl_edge.runtime.team import evaluate_bundle
from marl_edge.runtime.world import WorldOptions
from marl_edge.wire import udp as U

N = 5  # robots in the test bundle


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, make_bundle):
    root = tmp_path_factory.mktemp("udp_bundles")
    return make_bundle(root, "knn2", env_options={"n_agents": N, "episode_limit": 5}, comm="attention", topology="knn:2")


def start(args: list[str], log: Path, **kw) -> subprocess.Popen:
    """``python ARGS`` in its own process group, dying with this process; stderr to ``log``."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    with open(log, "wb") as err:
        return subprocess.Popen([sys.executable, *args], env=env, preexec_fn=_pdeathsig, stderr=err, **kw)


def first_line(proc: subprocess.Popen, wait_s: float = 120.0) -> str:
    """The first stdout line of ``proc`` (unbuffered pipe: nothing read past it)."""
    fd = proc.stdout.fileno()
    line = b""
    while not line.endswith(b"\n"):
        ready, _, _ = select.select([fd], [], [], wait_s)
        if not ready:
            raise AssertionError(f"no output from {proc.args} within {wait_s} s")
        b = os.read(fd, 1)
        if not b:
            raise AssertionError(f"{proc.args} exited ({proc.wait()}) before printing a line")
        line += b
    return line.decode().strip()


def stop_all(procs: list[subprocess.Popen]) -> None:
    for p in procs:
        if p.poll() is None:
            p.kill()
    for p in procs:
        p.wait(timeout=30)


# ---- malformed datagrams ----------------------------------------------------------------------


def malformed_to_agent(good: bytes, spec: U.UdpSpec, agent: int, rng: np.random.Generator) -> list[bytes]:
    """Datagrams a robot's agent must refuse: each breaks one rule of the format."""
    obs = np.linspace(-1, 1, spec.obs_dim).astype(np.float32)
    av = np.ones(spec.n_actions, bool)

    def o(**kw):
        a = dict(agent=agent, episode=0, step=1, obs=obs, avail=av, inbox=[0], send_to=[2], first=False) | kw
        return U.encode_obs(a["agent"], a["episode"], a["step"], a["obs"], a["avail"], a["inbox"], a["send_to"], a["first"])

    def poke(d: bytes, off: int, fmt: str, value) -> bytes:
        b = bytearray(d)
        struct.pack_into(fmt, b, off, value)
        return bytes(b)

    nan_obs = obs.copy()
    nan_obs[1] = np.nan
    inf_obs = obs.copy()
    inf_obs[0] = np.inf
    out = [rng.bytes(int(n)) for n in rng.integers(0, 300, 8)]  # line noise
    out += [
        b"",  # empty
        good[:10],  # no whole header
        b"XX" + good[2:],  # wrong magic
        poke(good, 2, "<B", 9),  # wrong version
        poke(good, 3, "<B", 0x7F),  # unknown kind
        U.encode_act(agent, 0, 1, 1),  # an agent -> device kind
        U.encode_hello(agent, "tcp://x:1", "sw"),  # another one
        o(agent=(agent + 1) % spec.n_agents),  # addressed to another agent
        poke(good, 4, "<H", 999),  # unknown agent
        poke(good, 6, "<H", 0x0004),  # unknown flag
        poke(good, 8, "<I", 2**31),  # insane episode
        good[:-1],  # truncated
        good + b"\x00",  # a trailing byte
        o(obs=obs[:-1]),  # wrong obs_dim
        o(obs=nan_obs),  # NaN
        o(obs=inf_obs),  # inf
        o(avail=np.zeros(spec.n_actions, bool)),  # nothing available
        o(avail=np.ones(spec.n_actions + 1, bool)),  # wrong n_actions
        poke(good, len(good) - 1, "<B", 2),  # avail byte not 0/1
        o(inbox=list(range(spec.k_max + 1))),  # a longer inbox than k_max
        o(inbox=[0, 0]),  # duplicate ids
        o(send_to=[spec.n_agents]),  # id out of range
        U.encode_peers(agent, {0: "tcp://a:1"})[:-1],  # truncated peers
        U.encode_peers(agent, {0: "tcp://a:1"}) + b"!",  # trailing bytes
        poke(U.encode_peers(agent, {0: "tcp://a:1", 1: "tcp://b:2"}), 16 + 4 + 4 + 9, "<H", 0),  # duplicate peer id
        poke(U.encode_stop(agent, "done"), 18, "<H", 1),  # reserved field set
        U.encode_stop(agent, "done")[:-4] + b"\xff\xfe\xfd\xfc",  # not UTF-8
        b"ME" + bytes(U.MAX_DATAGRAM - 2),  # the largest datagram, version 0
    ]
    return out


def test_adapter_drops_and_counts_malformed_datagrams_and_speaks_the_format():
    spec = U.UdpSpec(n_agents=4, obs_dim=6, n_actions=4, k_max=2)
    dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    stranger = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dev.bind(("127.0.0.1", 0))
    dev.settimeout(30)
    robot = UdpRobot(f"udp://127.0.0.1:{dev.getsockname()[1]}", spec)
    try:
        robot.connect(1, {"addr": "ipc:///tmp/a1.sock", "pid": 4242, "bundle": "sw-1"})
        data, agent_at = dev.recvfrom(70000)
        h = U.decode(data, spec, to_agent=False)
        assert not isinstance(h, str) and (h.kind, h.agent, h.addr, h.swarm, h.pid) == (U.HELLO, 1, "ipc:///tmp/a1.sock", "sw-1", 4242)

        obs = np.linspace(-1, 1, 6).astype(np.float32)
        good = U.encode_obs(1, 0, 1, obs, np.array([1, 0, 1, 1], bool), [0], [2], first=False)
        bad = malformed_to_agent(good, spec, 1, np.random.default_rng(0))
        for k, frame in enumerate(bad):
            dev.sendto(frame, agent_at)
            assert robot.observe(30.0) is None, k  # read, refused, nothing to act on
            assert robot.invalid_frames == k + 1, (k, frame[:32])
        stranger.sendto(good, agent_at)  # well formed, but not from the device
        assert robot.observe(30.0) is None and robot.invalid_frames == len(bad) + 1
        reasons = robot.counters.invalid_reasons
        for key in ("bad magic", "version 9", "unknown kind", "wrong direction", "addressed to another agent", "obs", "in", "to", "peers",
                    "stop", "not from the device", "short", "insane step", "unknown flags", "unknown agent"):
            assert key in reasons, (key, reasons)

        # a valid exchange after all that: peers, then an observation carrying them
        dev.sendto(U.encode_peers(1, {0: "tcp://10.0.0.1:5600", 2: "tcp://10.0.0.3:5602"}), agent_at)
        dev.sendto(U.encode_obs(1, 3, 0, obs, np.array([1, 0, 1, 1], bool), [], [0, 2], first=True), agent_at)
        ob = None
        for _ in range(3):
            ob = robot.observe(30.0)
            if ob is not None:
                break
        assert isinstance(ob, Observation)
        assert (ob.episode, ob.step, ob.first, ob.inbox, ob.send_to) == (3, 0, True, [], [0, 2])
        assert ob.obs.dtype == np.float32 and np.array_equal(ob.obs, obs) and ob.avail.tolist() == [True, False, True, True]
        assert ob.peers == {0: "tcp://10.0.0.1:5600", 2: "tcp://10.0.0.3:5602"}

        robot.apply(ob, 2)
        a = U.decode(dev.recvfrom(70000)[0], spec, to_agent=False)
        assert not isinstance(a, str) and (a.kind, a.agent, a.episode, a.step, a.action) == (U.ACT, 1, 3, 0, 2)
        robot.heartbeat()
        hb = U.decode(dev.recvfrom(70000)[0], spec, to_agent=False)
        assert not isinstance(hb, str) and (hb.kind, hb.addr, hb.swarm) == (U.HEARTBEAT, "ipc:///tmp/a1.sock", "sw-1")
        dev.sendto(U.encode_stop(1, "done"), agent_at)
        st = robot.observe(30.0)
        assert isinstance(st, Stop) and st.reason == "done"
        robot.goodbye({"steps": 1, "act_us": {"p50": math.nan}})
        bye = U.decode(dev.recvfrom(70000)[0], spec, to_agent=False)
        assert not isinstance(bye, str) and bye.kind == U.BYE and bye.metrics == {"steps": 1, "act_us": {"p50": None}}
        assert robot.invalid_frames == len(bad) + 1  # the valid ones counted nothing
    finally:
        robot.close()
        dev.close()
        stranger.close()


def test_continuous_actions_on_the_link():
    spec = U.UdpSpec(n_agents=2, obs_dim=3, action_dim=2)
    d = U.decode(U.encode_obs(0, 0, 0, np.ones(3, np.float32), None, [], [1]), spec, to_agent=True, agent=0)
    assert not isinstance(d, str) and d.avail.size == 0
    a = U.decode(U.encode_act(1, 4, 2, np.array([0.25, -1.0], np.float32)), spec, to_agent=False)
    assert not isinstance(a, str) and a.action.dtype == np.float32 and a.action.tolist() == [0.25, -1.0]
    assert U.decode(U.encode_act(1, 4, 2, np.array([np.nan, 0.0], np.float32)), spec, to_agent=False) == "act: non-finite values"
    assert U.decode(U.encode_act(1, 4, 2, np.zeros(3, np.float32)), spec, to_agent=False).startswith("act: action_dim 3")
    assert U.decode(U.encode_act(1, 4, 2, 1), spec, to_agent=False).startswith("act: action_dim 0")
    assert U.decode(U.encode_obs(0, 0, 0, np.ones(3, np.float32), np.ones(2, bool), [], []), spec, to_agent=True).startswith("obs: 2 avail")


def test_device_drops_and_counts_malformed_datagrams(bundle):
    from marl_edge.runtime.udp_world import udp_world

    b = load_bundle(bundle)
    spec = U.UdpSpec.from_manifest(b.manifest)
    device = udp_world(b, "127.0.0.1", 0, swarm="sw-test", opts=WorldOptions(episodes=1))
    a0 = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    try:
        at = ("127.0.0.1", device.transport.port)
        a0.sendto(U.encode_hello(0, "tcp://127.0.0.1:7000", "sw-test", 11), at)
        device._poll(30_000)
        assert device.live[0] and device.addr[0] == "tcp://127.0.0.1:7000" and device.stats.counters.invalid == 0
        rng = np.random.default_rng(1)
        act = U.encode_act(0, 0, 0, 1)
        bad = [rng.bytes(int(n)) for n in rng.integers(0, 200, 6)] + [
            b"",
            b"XX" + act[2:],  # wrong magic
            act[:2] + b"\x02" + act[3:],  # wrong version
            act[:-1],  # truncated
            act + b"\x00",  # trailing byte
            U.encode_act(0, 0, 0, spec.n_actions),  # action out of range
            U.encode_act(0, 0, 0, -1),
            U.encode_act(0, 0, 0, np.zeros(2, np.float32)),  # a box action to a discrete team
            U.encode_act(N, 0, 0, 1),  # unknown agent
            U.encode_obs(0, 0, 0, np.zeros(spec.obs_dim, np.float32), np.ones(spec.n_actions, bool), [], []),  # device -> agent kind
            U.encode_bye(0)[:-1],  # metrics not JSON
            U.encode_hello(1, "tcp://127.0.0.1:7001", "another-swarm"),  # foreign swarm
            U.encode_hello(1, "x", "sw-test")[:-1] + b"\xff",  # not UTF-8
        ]
        for k, frame in enumerate(bad):
            a0.sendto(frame, at)
            device._poll(30_000)
            assert device.stats.counters.invalid == k + 1, (k, frame[:24], device.stats.counters.invalid_reasons)
        other.sendto(act, at)  # a valid action claiming to be agent 0, from another address
        device._poll(30_000)
        assert device.stats.counters.invalid == len(bad) + 1
        assert device.stats.counters.invalid_reasons.get("sender does not match its address") == 1
        assert device.live.tolist() == [True] + [False] * (N - 1)  # nothing junk said changed who is here
    finally:
        device.close()
        a0.close()
        other.close()


# ---- the whole team over the link --------------------------------------------------------------


def test_udp_robots_reproduce_the_bundle_evaluation_lockstep(bundle, tmp_path):
    """A device process + one marl-agent process per robot: the same returns as
    evaluate_bundle for the same seed and episodes. Agent 0 runs from a profile
    (robot link and static peers in it); the others get their peers from the
    device. Junk datagrams sent to the device are counted, and change nothing."""
    episodes, seed = 6, 5
    binds = {i: f"ipc://{tmp_path}/agent_{i}.sock" for i in range(N)}
    procs: list[subprocess.Popen] = []
    sent_junk = 0
    try:
        dev = start(["-m", "marl_edge.runtime.udp_world", str(bundle), "--port", "0", "--episodes", str(episodes), "--seed", str(seed)],
                    tmp_path / "device.log", stdout=subprocess.PIPE, bufsize=0)
        procs.append(dev)
        line = first_line(dev)
        assert line.startswith("listening udp://127.0.0.1:"), line
        endpoint = line.split()[1]
        host, port = U.parse_udp_url(endpoint)

        junk = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        rng = np.random.default_rng(3)
        for k in range(60):  # while it waits for the robots
            frame = rng.bytes(int(rng.integers(0, 120))) if k % 3 else U.encode_act(k % N, 0, 0, 0)  # noise, impostor actions
            junk.sendto(frame, (host, port))
            sent_junk += 1
        junk.close()

        prof = {"agent_dir": str(bundle / "agent_0"), "manifest": str(bundle / "swarm.json"), "robot": endpoint, "bind": binds[0],
                "peers": {str(j): a for j, a in binds.items() if j != 0}, "mode": "lockstep"}
        (tmp_path / "agent_0.json").write_text(json.dumps(prof))
        for i in range(N):
            args = ["--profile", str(tmp_path / "agent_0.json")] if i == 0 else [str(bundle / f"agent_{i}"), "--robot", endpoint, "--bind", binds[i]]
            procs.append(start(["-m", "marl_edge.cli.agent", *args, "--metrics", str(tmp_path / f"agent_{i}.jsonl")],
                               tmp_path / f"agent_{i}.log", stdout=subprocess.DEVNULL))
        out, _ = dev.communicate(timeout=600)
        agent_rcs = [p.wait(timeout=60) for p in procs[1:]]
    finally:
        stop_all(procs)
    assert no_children_left()
    logs = "\n".join(f"{f.name}: {f.read_text()[-1500:]}" for f in sorted(tmp_path.glob("*.log")))
    assert dev.returncode == 0, logs
    assert agent_rcs == [0] * N, logs
    res = json.loads(out.decode().strip().splitlines()[-1])

    ref = evaluate_bundle(bundle, episodes=episodes, seed=seed)
    assert res["returns"] == ref["returns"] and res["lengths"] == ref["lengths"]
    assert res["noop_actions"] == 0 and res["late_actions"] == 0 and not res["absences"] and not res["rejoins"]
    assert res["device_invalid_frames"] == sent_junk and res["robot_invalid_frames"] == 0 and res["invalid_frames"] == sent_junk
    metrics = [json.loads((tmp_path / f"agent_{i}.jsonl").read_text().splitlines()[-1]) for i in range(N)]
    steps = sum(ref["lengths"])
    for m in metrics:
        assert m["steps"] == steps and m["stopped"] == "done" and not m["torch_loaded"]
        assert m["messages"]["invalid"] == 0 and m["messages"]["dropped"] == 0 and m["robot_invalid_frames"] == 0
    # knn:2: each robot hears 2 others, so N * 2 messages are sent per step (the last step's too: nobody waits for them)
    assert sum(m["messages"]["sent"] for m in metrics) == N * 2 * steps


# ---- marl-agent --robot ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args,message",
    [
        (["--robot", "udp://127.0.0.1"], "--robot: 'udp://127.0.0.1' is not udp://HOST:PORT"),
        (["--robot", "tcp://127.0.0.1:9000"], "the scheme must be udp://"),
        (["--robot", "udp://127.0.0.1:99999"], "is not udp://HOST:PORT"),
        (["--robot", "udp://127.0.0.1:9000", "--world", "ipc:///tmp/w.sock"], "not both"),
    ],
)
def test_cli_agent_bad_robot(bundle, cli, args, message):
    p = cli("agent", str(bundle / "agent_0"), *args, timeout=60)
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and message in lines[0] and "Traceback" not in p.stderr, p.stderr
