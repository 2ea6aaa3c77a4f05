"""The authenticated UDP robot link (wire.udp.LinkAuth; docs/robots.md, "An
authenticated link"): the tag, the replay window, the key file, the counters,
and a whole run with a key while an attacker without it relays, replays and
forges datagrams.

Every process a test starts is killed in a ``finally`` (and dies with the
test process through PR_SET_PDEATHSIG); no test asserts on time.
"""

from __future__ import annotations

import base64
import json
import os
import socket
import struct
import subprocess
from pathlib import Path

import numpy as np
import pytest

from procs import no_children_left
from test_robots_udp import first_line, start, stop_all
from marl_edge.robots.base import Observation, Stop
from marl_edge.robots.udp import UdpRobot
from marl_edge.runtime.bundle import load_bundle
from marl_edge.runtime.team import evaluate_bundle
from marl_edge.runtime.world import WorldOptions
from marl_edge.wire import udp as U

HERE = Path(__file__).resolve().parent
N = 3
SPEC = U.UdpSpec(n_agents=4, obs_dim=6, n_actions=4, k_max=2)
KEY = bytes(range(32))


def obs_datagram(agent: int = 1, step: int = 1) -> bytes:
    return U.encode_obs(agent, 0, step, np.linspace(-1, 1, 6).astype(np.float32), np.array([1, 0, 1, 1], bool), [0], [2])


# ---- the codec ---------------------------------------------------------------------------------


def test_seal_and_open_every_kind():
    dev, agent = U.LinkAuth(KEY), U.LinkAuth(KEY)
    down = [obs_datagram(), U.encode_peers(1, {0: "tcp://a:1"}), U.encode_stop(1, "done")]
    up = [U.encode_hello(1, "tcp://a:1", "sw"), U.encode_hello(1, "tcp://a:1", "sw", heartbeat=True), U.encode_act(1, 0, 1, 3), U.encode_bye(1, {"x": 1})]
    last = None
    for plain in down:
        sealed = dev.seal(plain)
        assert len(sealed) == len(plain) + U.TRAILER_SIZE == len(plain) + 24
        assert struct.unpack_from("<H", sealed, 6)[0] & U.FLAG_AUTH
        want, got = U.decode(plain, SPEC, to_agent=True, agent=1), U.decode(sealed, SPEC, to_agent=True, agent=1, auth=agent)
        assert not isinstance(got, str) and got.counter is not None and (last is None or got.counter == last + 1)
        last = got.counter
        got.counter = None
        assert repr(got) == repr(want)
    for plain in up:
        got = U.decode(agent.seal(plain), SPEC, to_agent=False, auth=dev)
        want = U.decode(plain, SPEC, to_agent=False)
        assert not isinstance(got, str) and got.counter is not None
        got.counter = None
        assert repr(got) == repr(want)
    # the tag is HMAC-SHA256 over every byte before it, truncated to 16 (what a C client computes)
    import hashlib
    import hmac

    s = U.LinkAuth(KEY, counter=41).seal(U.encode_act(2, 7, 9, 1))
    assert struct.unpack_from("<Q", s, len(s) - 24)[0] == 42
    assert s[-16:] == hmac.new(KEY, s[:-16], hashlib.sha256).digest()[:16]


def test_bad_tags_wrong_keys_and_the_unauthenticated_format_are_refused():
    sender, receiver = U.LinkAuth(KEY), U.LinkAuth(KEY)
    good = sender.seal(obs_datagram())
    for off in (0, 4, 8, 16, 30, len(good) - 24, len(good) - 17, len(good) - 1):  # header, body, counter, tag
        b = bytearray(good)
        b[off] ^= 0x40
        r = U.decode(bytes(b), SPEC, to_agent=True, agent=1, auth=receiver)
        assert r == "bad tag", (off, r)  # with a key, the tag is checked before anything else is parsed
    assert U.decode(U.LinkAuth(bytes(32)).seal(obs_datagram()), SPEC, to_agent=True, agent=1, auth=receiver) == "bad tag"
    assert U.decode(obs_datagram(), SPEC, to_agent=True, agent=1, auth=receiver) == "no tag"
    assert U.decode(good[:-U.TRAILER_SIZE], SPEC, to_agent=True, agent=1, auth=receiver) == "bad tag"  # AUTH set, the trailer cut off
    assert U.decode(good[:20], SPEC, to_agent=True, agent=1, auth=receiver) == "no tag"
    assert U.decode(good[:-1], SPEC, to_agent=True, agent=1, auth=receiver) == "bad tag"
    assert U.decode(good, SPEC, to_agent=True, agent=1) == "authenticated (no link key here)"
    # the refusals moved no window: the good one is still fresh, once
    assert not isinstance(U.decode(good, SPEC, to_agent=True, agent=1, auth=receiver), str)
    assert U.decode(good, SPEC, to_agent=True, agent=1, auth=receiver) == "replayed"
    with pytest.raises(U.UdpLinkError):
        U.LinkAuth(b"short")


def test_replay_window_slides():
    w = U.ReplayWindow(64)
    assert w.check(100) is None
    w.update(100)
    assert w.check(100) == "replayed" and w.check(36) == "too old" and w.check(37) is None
    for n in (37, 99, 50, 80):  # late but inside the window: each once
        assert w.check(n) is None
        w.update(n)
        assert w.check(n) == "replayed"
    w.update(101)  # slides by one: 37 is now 64 below the top
    assert w.check(37) == "too old" and w.check(38) is None and w.check(99) == "replayed"
    w.update(101 + 1000)  # a jump past the window forgets it all
    assert w.check(101) == "too old" and w.check(1101 - 63) is None and w.check(1101) == "replayed"

    # per sender and direction: one agent's counters do not move another's window
    dev = U.LinkAuth(KEY)
    a1, a2 = U.LinkAuth(KEY, counter=10), U.LinkAuth(KEY, counter=10)
    h1, h2 = a1.seal(U.encode_act(1, 0, 0, 0)), a2.seal(U.encode_act(2, 0, 0, 0))  # the same counter, 11
    assert not isinstance(U.decode(h1, SPEC, to_agent=False, auth=dev), str)
    assert not isinstance(U.decode(h2, SPEC, to_agent=False, auth=dev), str)
    old = [a1.seal(U.encode_act(1, 0, 0, 0)) for _ in range(70)]  # counters 12..81
    for d in old[1:]:
        assert not isinstance(U.decode(d, SPEC, to_agent=False, auth=dev), str)
    assert U.decode(old[0], SPEC, to_agent=False, auth=dev) == "too old"  # 12: 69 below 81
    assert U.decode(old[-1], SPEC, to_agent=False, auth=dev) == "replayed"
    # a restarted sender starts its counter at the clock (ns): above what it sent before
    assert not isinstance(U.decode(U.LinkAuth(KEY).seal(U.encode_act(1, 0, 0, 0)), SPEC, to_agent=False, auth=dev), str)


# ---- the key file -------------------------------------------------------------------------------


def test_key_files(tmp_path, cli):
    p = Path(U.write_link_key(tmp_path / "link.key"))
    assert os.stat(p).st_mode & 0o777 == 0o600 and len(p.read_text().strip()) == 64
    nested = Path(U.write_link_key(tmp_path / "keys" / "link.key"))  # a folder that does not exist yet: made, private
    assert os.stat(nested.parent).st_mode & 0o777 == 0o700 and os.stat(nested).st_mode & 0o777 == 0o600
    key = U.read_link_key(p)
    assert len(key) == 32 and U.read_link_key(p) == key
    with pytest.raises(U.UdpLinkError, match="exists"):
        U.write_link_key(p)
    b64 = tmp_path / "b64.key"
    b64.write_text(base64.b64encode(KEY).decode() + "\n")
    b64.chmod(0o600)
    assert U.read_link_key(b64) == KEY
    for mode in (0o640, 0o604, 0o644):
        p.chmod(mode)
        with pytest.raises(U.UdpLinkError, match=f"mode {mode:04o} lets others read it; run chmod 600"):
            U.read_link_key(p)
    p.chmod(0o600)
    short = tmp_path / "short.key"
    short.write_text("abcd\n")
    short.chmod(0o600)
    with pytest.raises(U.UdpLinkError, match="want 32 bytes"):
        U.read_link_key(short)
    with pytest.raises(U.UdpLinkError, match="cannot read it"):
        U.read_link_key(tmp_path / "missing.key")

    r = cli("keys", "link", str(tmp_path / "cli.key"), timeout=60)
    assert r.returncode == 0 and len(U.read_link_key(tmp_path / "cli.key")) == 32, r.stderr
    r = cli("keys", "link", str(tmp_path / "cli.key"), timeout=60)
    assert r.returncode == 2 and r.stderr.strip().splitlines() == [f"error: {tmp_path / 'cli.key'} exists; pass --force to replace it"]


def test_cli_refuses_a_key_file_others_can_read(tmp_path, cli):
    p = Path(U.write_link_key(tmp_path / "link.key"))
    p.chmod(0o644)
    r = cli("agent", str(tmp_path / "agent_0"), "--robot", "udp://127.0.0.1:9000", "--link-key", str(p), timeout=60)
    lines = r.stderr.strip().splitlines()
    assert r.returncode == 2 and len(lines) == 1 and "lets others read it; run chmod 600" in lines[0], r.stderr
    r = cli("agent", str(tmp_path / "agent_0"), "--world", "ipc:///tmp/w.sock", "--link-key", str(p), timeout=60)
    assert r.returncode == 2 and "give --robot" in r.stderr and "Traceback" not in r.stderr, r.stderr


# ---- both ends count what they refuse -------------------------------------------------------------


def test_adapter_counts_refusals():
    dev = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    dev.bind(("127.0.0.1", 0))
    dev.settimeout(30)
    dev_auth = U.LinkAuth(KEY)
    robot = UdpRobot(f"udp://127.0.0.1:{dev.getsockname()[1]}", SPEC, auth=U.LinkAuth(KEY))
    try:
        robot.connect(1, {"addr": "tcp://a:1", "pid": 1, "bundle": "sw"})
        data, at = dev.recvfrom(70000)
        assert U.decode(data, SPEC, to_agent=False) == "authenticated (no link key here)"
        h = U.decode(data, SPEC, to_agent=False, auth=dev_auth)
        assert not isinstance(h, str) and h.kind == U.HELLO and h.swarm == "sw"
        good = dev_auth.seal(obs_datagram())
        bad = [U.encode_stop(1, "forged"), good[:-1] + bytes([good[-1] ^ 1]), U.LinkAuth(bytes(32)).seal(U.encode_stop(1, "x"))]
        for k, frame in enumerate(bad):
            dev.sendto(frame, at)
            assert robot.observe(30.0) is None and robot.invalid_frames == k + 1
        dev.sendto(good, at)
        assert isinstance(robot.observe(30.0), Observation)
        dev.sendto(good, at)  # replayed
        assert robot.observe(30.0) is None
        assert robot.counters.invalid_reasons == {"no tag": 1, "bad tag": 2, "replayed": 1}
        dev.sendto(dev_auth.seal(U.encode_stop(1, "done")), at)
        st = robot.observe(30.0)
        assert isinstance(st, Stop) and st.reason == "done"
    finally:
        robot.close()
        dev.close()


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, make_bundle):
    root = tmp_path_factory.mktemp("udp_auth_bundles")
    return make_bundle(root, "knn1", steps=600, env_options={"n_agents": N, "episode_limit": 5}, comm="attention", topology="knn:1")


def test_device_counts_refusals(bundle):
    from marl_edge.runtime.udp_world import udp_world

    device = udp_world(load_bundle(bundle), "127.0.0.1", 0, swarm="sw", opts=WorldOptions(episodes=1), link_key=KEY)
    a0, other = socket.socket(socket.AF_INET, socket.SOCK_DGRAM), socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    me = U.LinkAuth(KEY)
    try:
        at = ("127.0.0.1", device.transport.port)
        c = device.stats.counters
        hello = me.seal(U.encode_hello(0, "tcp://127.0.0.1:7000", "sw", 11))
        for frame in (U.encode_hello(0, "tcp://127.0.0.1:7000", "sw", 11), hello[:-1] + bytes([hello[-1] ^ 1]), U.LinkAuth(bytes(32)).seal(U.encode_hello(1, "x", "sw"))):
            other.sendto(frame, at)
            device._poll(30_000)
        assert not device.live.any() and c.invalid_reasons == {"no tag": 1, "bad tag": 2}
        a0.sendto(hello, at)
        device._poll(30_000)
        assert device.live[0] and device.addr[0] == "tcp://127.0.0.1:7000" and c.invalid == 3
        other.sendto(hello, at)  # a captured hello replayed from elsewhere: it does not move agent 0
        device._poll(30_000)
        assert c.invalid_reasons["replayed"] == 1 and device.transport.udp_addr[0][1] == a0.getsockname()[1]
        other.sendto(U.encode_act(0, 0, 0, 1), at)  # an unauthenticated action in agent 0's name: no move either
        device._poll(30_000)
        assert c.invalid_reasons["no tag"] == 2 and device.transport.udp_addr[0][1] == a0.getsockname()[1]
        other.sendto(me.seal(U.encode_hello(0, "tcp://127.0.0.1:7000", "sw", 11, heartbeat=True)), at)  # agent 0 roamed: authentic, fresh
        device._poll(30_000)
        assert device.transport.udp_addr[0][1] == other.getsockname()[1] and c.invalid == 5
    finally:
        device.close()
        a0.close()
        other.close()


# ---- a whole run with a key, an attacker on the path -----------------------------------------------


def test_authenticated_run_with_an_attacker_matches_the_evaluation(bundle, tmp_path):
    """Device and agents share a key; agent 0 reaches the device through an
    attacker (no key) who replays everything it relays and forges HELLO, ACT
    and STOP datagrams. The returns are those of the in-process evaluation,
    and every refusal is counted with its reason."""
    episodes, seed = 4, 3
    key = U.write_link_key(tmp_path / "link.key")
    binds = {i: f"ipc://{tmp_path}/agent_{i}.sock" for i in range(N)}
    procs: list[subprocess.Popen] = []
    try:
        dev = start(["-m", "marl_edge.runtime.udp_world", str(bundle), "--port", "0", "--episodes", str(episodes), "--seed", str(seed),
                     "--link-key", key], tmp_path / "device.log", stdout=subprocess.PIPE, bufsize=0)
        procs.append(dev)
        endpoint = first_line(dev).split()[1]
        host, port = U.parse_udp_url(endpoint)
        attacker = start([str(HERE / "udp_attacker.py"), host, str(port)], tmp_path / "attacker.log", stdout=subprocess.PIPE, bufsize=0)
        procs.append(attacker)
        via = first_line(attacker).split()[1]
        # agent 1 from a profile: its link_key is relative to the profile's folder
        (tmp_path / "agent_1.json").write_text(json.dumps({"agent_dir": str(bundle / "agent_1"), "robot": endpoint, "link_key": "link.key",
                                                           "bind": binds[1]}))
        for i in range(N):
            robot = via if i == 0 else endpoint
            args = ["--profile", str(tmp_path / "agent_1.json")] if i == 1 else [str(bundle / f"agent_{i}"), "--robot", robot, "--link-key", key,
                                                                                   "--bind", binds[i]]
            procs.append(start(["-m", "marl_edge.cli.agent", *args, "--metrics", str(tmp_path / f"agent_{i}.jsonl")],
                               tmp_path / f"agent_{i}.log", stdout=subprocess.DEVNULL))
        out, _ = dev.communicate(timeout=300)
        agent_rcs = [p.wait(timeout=60) for p in procs[2:]]
    finally:
        stop_all(procs)
    assert no_children_left()
    logs = "\n".join(f"{f.name}: {f.read_text()[-1500:]}" for f in sorted(tmp_path.glob("*.log")))
    assert dev.returncode == 0 and agent_rcs == [0] * N, logs
    res = json.loads(out.decode().strip().splitlines()[-1])
    ref = evaluate_bundle(bundle, episodes=episodes, seed=seed)
    assert res["returns"] == ref["returns"] and res["lengths"] == ref["lengths"]
    assert res["authenticated"] and res["noop_actions"] == 0 and not res["absences"] and not res["rejoins"]

    reasons = res["device_link"]["invalid_reasons"]
    assert set(reasons) <= {"no tag", "bad tag", "replayed", "too old"}, reasons
    assert reasons["no tag"] >= 6 + 2 * 6 and reasons["bad tag"] >= 6 and reasons["replayed"] >= 10, reasons
    assert res["device_invalid_frames"] == sum(reasons.values())
    metrics = [json.loads((tmp_path / f"agent_{i}.jsonl").read_text().splitlines()[-1]) for i in range(N)]
    steps = sum(ref["lengths"])
    for i, m in enumerate(metrics):
        assert m["steps"] == steps and m["stopped"] == "done", (i, m)
        assert (m["robot_invalid_frames"] > 0) == (i == 0), (i, m)  # only agent 0's link carries the attacker
    # agent 0 refused the replayed OBS, the forged tags and the forged STOPs (unauthenticated): at least 6 + 6 + 10
    assert metrics[0]["robot_invalid_frames"] >= 22, metrics[0]
