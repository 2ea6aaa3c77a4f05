"""CURVE on every TCP link of a swarm (docs/protocol.md, "Trust model and CURVE").

A secured TCP swarm plays exactly the bundle evaluation; a stranger without a
key changes nothing and cannot take an agent's slot (also a killed one's); an
insider with agent 3's key cannot speak as agent 0 (its frames are counted
with a reason), nor take a killed agent's slot, and its flood as agent 3 and
its 50 MB frames leave the returns and agent 0's inbox bounded;
--insecure still works; key files are private. Loopback only. Every process
a test starts is stopped in a ``finally`` (and the launcher's agents die with
it through PR_SET_PDEATHSIG)."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest
import zmq

from procs import no_children_left
from marl_edge.runtime.bundle import BundleError
from marl_edge.runtime.keys import PUBLIC_KEYS, generate_swarm_keys, load_keys
from marl_edge.runtime.swarm import Launcher, SwarmOptions, run_swarm
from marl_edge.runtime.team import evaluate_bundle
from marl_edge.wire import protocol as P


@pytest.fixture(scope="module")
def bundle(tmp_path_factory, make_bundle):
    root = tmp_path_factory.mktemp("curve")
    return make_bundle(root, "knn3", env_options={"n_agents": 6, "episode_limit": 5}, comm="attention", topology="knn:3", top_k=2)


@pytest.mark.parametrize("transport,security", [("tcp", "auto"), ("ipc", "curve")])
def test_secured_swarm_reproduces_the_bundle_evaluation(bundle, transport, security):
    modes = {}

    def on_start(launcher, world):  # the run's own keys, in its private folder
        modes.update({u: stat.S_IMODE(os.stat(f).st_mode) for u, f in launcher.key_files.items()})
        modes["dir"] = stat.S_IMODE(os.stat(launcher.key_files["public"].parent).st_mode)

    res = Launcher(bundle, SwarmOptions(episodes=6, seed=7, transport=transport, security=security)).run(on_start=on_start)
    assert res["security"] == "curve"
    assert modes.pop("dir") == 0o700 and modes.pop("public") == 0o644
    assert sorted(modes) == ["agent-0", "agent-1", "agent-2", "agent-3", "agent-4", "agent-5", "world"] and set(modes.values()) == {0o600}
    assert res["returns"] == evaluate_bundle(bundle, episodes=6, seed=7)["returns"]
    assert res["invalid_frames"] == 0 and res["dropped"] == 0 and res["noop_actions"] == 0 and not res["absences"]
    assert res["msgs_per_step"] == 6 * 3
    assert no_children_left()


def test_key_files_are_private(tmp_path):
    paths = generate_swarm_keys(tmp_path / "k", 3)
    assert stat.S_IMODE(os.stat(tmp_path / "k").st_mode) == 0o700
    for user in ("world", "agent-0", "agent-1", "agent-2"):
        assert stat.S_IMODE(os.stat(paths[user]).st_mode) == 0o600
    pub = json.loads(paths["public"].read_text())
    assert sorted(pub) == ["agent-0", "agent-1", "agent-2", "world"] and all(len(k) == 40 for k in pub.values())
    assert load_keys(paths["agent-1"], paths["public"]).me == "agent-1"
    os.chmod(paths["agent-1"], 0o644)
    with pytest.raises(BundleError, match="chmod 600"):
        load_keys(paths["agent-1"], paths["public"])
    with pytest.raises(BundleError, match="is agent-2's, not agent-0's"):
        load_keys(paths["agent-2"], paths["public"], me="agent-0")


# ---- strangers and insiders ------------------------------------------------------------------

# A separate process (not part of the swarm). It gets the world's and agent 0's
# endpoints and the swarm id, and optionally a key pair (public, secret), then
# floods well-formed frames claiming to be agent 0 from a DEALER with routing
# id agent-0 and a PUSH to agent 1's inbox, until told to stop.
ATTACKER = textwrap.dedent("""
    import json, sys, time
    import numpy as np, zmq
    from marl_edge.wire import protocol as P
    a = json.loads(sys.argv[1])
    ctx = zmq.Context()
    def curve(s, server):
        if a["key"] == "plain":  # no CURVE at all: a NULL-mechanism client
            return
        if a["key"]:
            s.curve_publickey, s.curve_secretkey = a["key"][0].encode(), a["key"][1].encode()
        else:  # a key of its own, unknown to the swarm
            s.curve_publickey, s.curve_secretkey = zmq.curve_keypair()
        s.curve_serverkey = server.encode()
    w = ctx.socket(zmq.DEALER); w.setsockopt(zmq.IDENTITY, b"agent-0"); w.setsockopt(zmq.LINGER, 0)
    curve(w, a["world_key"]); w.connect(a["world"])
    m = ctx.socket(zmq.PUSH); m.setsockopt(zmq.LINGER, 0); m.setsockopt(zmq.SNDHWM, 0)
    curve(m, a["inbox_key"]); m.connect(a["inbox"])
    ex = P.Expect(a["swarm"], a["n"], msg_dim=a["d"], obs_dim=1, n_actions=a["n_actions"], k_max=a["k"])
    act, msg = P.ActCodec(ex), P.MsgCodec(a["swarm"], a["d"])
    hello = P.encode(a["swarm"], 0, "hello", addr="tcp://127.0.0.1:1", pid=1)
    ep = 0
    print("ready", flush=True)
    deadline = time.time() + 60
    while time.time() < deadline:
        for t in range(6):
            for f in (hello, act.encode(0, ep, t, 1), P.encode(a["swarm"], 0, "hb", ep, t)):
                try: w.send(f, zmq.NOBLOCK)
                except zmq.Again: pass
            try: m.send(msg.encode(0, ep, t, np.full(a["d"], 9.0, np.float32)), zmq.NOBLOCK)
            except zmq.Again: pass
        ep = (ep + 1) % 8
        time.sleep(0.01)
""")


def start_attacker(launcher: Launcher, world, key: tuple[str, str] | str | None) -> subprocess.Popen:
    keys = launcher.world_keys
    m = launcher.bundle.manifest
    args = {"world": world.endpoint, "inbox": world.addr[1], "swarm": launcher.swarm, "n": launcher.n, "d": m.msg_dim, "k": m.k_max,
            "n_actions": m.env_spec.n_actions, "world_key": keys.public.decode(), "inbox_key": keys.publics["agent-1"].decode(), "key": key}
    p = subprocess.Popen([sys.executable, "-c", ATTACKER, json.dumps(args)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert p.stdout.readline().strip() == "ready", p.stderr.read()
    time.sleep(0.3)  # let it connect (or fail to) before the episodes start
    return p


def stop(p: subprocess.Popen | None, check: bool = False) -> None:
    if check:  # it was still attacking when the run ended
        assert p is not None and p.poll() is None, p and p.stderr.read()
    if p is not None and p.poll() is None:
        p.kill()
        p.wait(timeout=10)


def run_with_attacker(bundle, key_of) -> dict:
    """A tcp swarm (4 episodes, seed 2) with an attacker started once every agent has said
    hello; ``key_of(launcher)`` gives its key. The attacker is stopped, even on failure."""
    box = {}

    def on_start(launcher, world):
        box["p"] = start_attacker(launcher, world, key=key_of(launcher))

    launcher = Launcher(bundle, SwarmOptions(episodes=4, seed=2, transport="tcp"))
    try:
        return launcher.run(on_start=on_start)
    finally:
        stop(box.get("p"), check=True)


@pytest.mark.parametrize("key", [None, "plain"], ids=["unknown-key", "no-curve"])
def test_a_stranger_without_a_key_changes_nothing(bundle, key):
    res = run_with_attacker(bundle, lambda launcher: key)
    assert res["returns"] == evaluate_bundle(bundle, episodes=4, seed=2)["returns"]
    # its handshakes fail: not one of its frames reaches the world or the inbox
    assert res["invalid_frames"] == 0 and not res["absences"] and not res["rejoins"]
    assert res["noop_actions"] == 0
    assert no_children_left()


def test_an_insider_cannot_speak_as_another_agent(bundle):
    """Agent 3's valid key, claiming to be agent 0 (routing id agent-0, from=0)."""

    def agent_3s_key(launcher):
        k = load_keys(launcher.key_files["agent-3"], launcher.key_files["public"])
        return k.public.decode(), k.secret.decode()

    res = run_with_attacker(bundle, agent_3s_key)
    assert res["returns"] == evaluate_bundle(bundle, episodes=4, seed=2)["returns"]
    assert not res["absences"] and not res["rejoins"] and res["noop_actions"] == 0
    # agent 1's inbox admitted the key and refused every frame with a reason
    inbox = res["per_agent"][1]["sessions"][-1]["messages"]
    assert inbox["invalid"] > 0
    assert set(inbox["invalid_reasons"]) == {"sender does not match its key"}, inbox
    # the world never let it have agent 0's routing id (agent 0 holds it): none of its frames arrived
    assert res["world_invalid_frames"] == 0
    assert no_children_left()


@pytest.mark.parametrize("who", ["insider", "outsider"])
def test_nobody_takes_a_killed_agents_slot(bundle, who):
    """Agent 0 is killed; a process with agent 3's key (insider) takes the routing id
    agent-0 but every frame it sends as agent 0 (hello included) is refused; one with
    a key of its own (outsider) never gets past the handshake. Either way agent 0
    stays absent until its own restart (whose key is agent 0's) comes back."""
    box = {}

    def on_start(launcher, world):
        run = world.run

        def hook(step):
            if step == 8:  # agent 0 was killed at step 5
                k = load_keys(launcher.key_files["agent-3"], launcher.key_files["public"])
                box["p"] = start_attacker(launcher, world, key=(k.public.decode(), k.secret.decode()) if who == "insider" else None)
            elif step == 19:  # before agent 0's restart at step 20
                stop(box.get("p"))
                time.sleep(0.3)  # its connection closes

        def run_with_hook(on_step=None, progress=None):
            return run(on_step=lambda step: (hook(step), on_step(step)), progress=progress)

        world.run = run_with_hook

    launcher = Launcher(bundle, SwarmOptions(episodes=6, seed=3, transport="tcp", kills=[(0, 5)], restarts=[(0, 20)]))
    try:
        res = launcher.run(on_start=on_start)
    finally:
        stop(box.get("p"))
    assert [(a["agent"], a["why"]) for a in res["absences"]] == [(0, "killed")]
    assert [(r["agent"], r["step"]) for r in res["rejoins"]] == [(0, 20)]  # only its own restart came back
    assert res["noop_actions"] == 20 - 5
    if who == "insider":
        assert res["world_invalid_frames"] > 0  # the squatter's frames, refused
        assert set(res["world_invalid_reasons"]) == {"sender does not match its key"}, res["world_invalid_reasons"]
    else:  # its handshakes fail: not one of its frames reaches the world
        assert res["world_invalid_frames"] == 0 and res["world_invalid_reasons"] == {}
    assert no_children_left()


# An insider with agent 3's valid key, speaking as agent 3 (which its key authorises):
# a flood of well-formed future-dated msg frames into agent 0's inbox, then one frame
# far above the socket limit to that inbox and one to the world's ROUTER (from a
# fresh routing id, so nothing but the size stops it). Arguments: one JSON object.
INSIDER_FLOOD = textwrap.dedent("""
    import json, sys, zmq, numpy as np
    from marl_edge.wire import protocol as P
    a = json.loads(sys.argv[1])
    ctx = zmq.Context()
    def curve(s, server):
        s.curve_publickey, s.curve_secretkey = a["key"][0].encode(), a["key"][1].encode()
        s.curve_serverkey = server.encode()
    codec, x = P.MsgCodec(a["swarm"], a["d"]), np.zeros(a["d"], np.float32)
    s = ctx.socket(zmq.PUSH); s.setsockopt(zmq.SNDHWM, 0); curve(s, a["inbox_key"]); s.connect(a["inbox"])
    for k in range(a["flood"]):  # dated after anything the 5-step episodes reach (episodes 0-3: never stale either)
        ep, t = (3, 10 + k) if k % 2 else (100 + k, k % 5)
        s.send(codec.encode(3, ep, t % 1_000_000, x))
    s.close(linger=30000)
    for ep, key, kind in ((a["inbox"], a["inbox_key"], zmq.PUSH), (a["world"], a["world_key"], zmq.DEALER)):
        b = ctx.socket(kind)
        if kind == zmq.DEALER:
            b.setsockopt(zmq.IDENTITY, b"intruder")
        curve(b, key); b.connect(ep)
        b.send(b"\\x00" * a["big"])
        b.close(linger=10000)
    ctx.term()
""")


def test_an_insider_flooding_as_itself_changes_nothing(bundle):
    """Agent 3's key, frames from agent 3: admitted by the key check, refused by the
    inbox window (counted "too far ahead"); the 50 MB frames are dropped by libzmq
    (MAXMSGSIZE) on the inbox and on the world's ROUTER before Python sees them."""
    from test_limits import BIG, FLOOD
    from marl_edge.runtime.agent import AHEAD

    procs = []

    def on_start(launcher, world):
        k = load_keys(launcher.key_files["agent-3"], launcher.key_files["public"])
        pub = launcher.world_keys.publics
        args = {"inbox": world.addr[0], "inbox_key": pub["agent-0"].decode(), "world": world.endpoint, "world_key": pub["world"].decode(),
                "swarm": launcher.swarm, "d": launcher.bundle.msg_dim, "key": [k.public.decode(), k.secret.decode()], "flood": FLOOD, "big": BIG}
        p = subprocess.Popen([sys.executable, "-c", INSIDER_FLOOD, json.dumps(args)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        procs.append(p)
        assert p.wait(timeout=60) == 0, p.stderr.read().decode()[-2000:]

    launcher = Launcher(bundle, SwarmOptions(episodes=4, seed=5, transport="tcp"))
    try:
        res = launcher.run(on_start=on_start)
    finally:
        for p in procs:
            stop(p)
    assert res["security"] == "curve"
    assert res["returns"] == evaluate_bundle(bundle, episodes=4, seed=5)["returns"]
    assert not res["absences"] and not res["rejoins"] and res["noop_actions"] == 0
    s0, s1 = res["per_agent"][0]["sessions"][-1], res["per_agent"][1]["sessions"][-1]
    assert s0["messages"]["invalid_reasons"] == {"too far ahead": FLOOD}  # every one admitted (its key is agent 3's) and refused
    assert res["invalid_reasons"] == {"too far ahead": FLOOD}
    assert s0["messages"]["received_bytes"] < FLOOD * 200  # the 50 MB never arrived ...
    assert res["world_invalid_frames"] == 0 and res["world_invalid_reasons"] == {}  # ... at the world either
    assert s0["inbox_peak"] <= (AHEAD + 3) * launcher.n  # n x window, not the flood
    assert s0["rss_max_kb"] < s1["rss_max_kb"] + 40_000
    print(f"flooded agent over CURVE: inbox peak {s0['inbox_peak']} messages, max RSS {s0['rss_max_kb'] / 1024:.0f} MB "
          f"(an agent not flooded: {s1['rss_max_kb'] / 1024:.0f} MB)")
    assert no_children_left()


# ---- the CLI ---------------------------------------------------------------------------------


def test_cli_insecure_tcp_warns_and_works(bundle, cli):
    p = cli("swarm", str(bundle), "--transport", "tcp", "--insecure", "--episodes", "3", "--seed", "1", "--json", "--quiet", check=True, timeout=120)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["security"] == "none"
    assert res["returns"] == evaluate_bundle(bundle, episodes=3, seed=1)["returns"]
    warn = [line for line in p.stderr.splitlines() if "WARNING" in line]
    assert len(warn) == 1 and "--insecure" in warn[0]


def test_cli_agent_on_tcp_wants_keys_or_insecure(bundle, cli):
    p = cli("agent", str(bundle / "agent_0"), "--world", "tcp://127.0.0.1:1", timeout=60)
    assert p.returncode == 2 and "--secret-key" in p.stderr and "--insecure" in p.stderr and "Traceback" not in p.stderr, p.stderr


def test_profiles_carry_private_keys_outside_the_bundle(bundle, cli, tmp_path):
    out = tmp_path / "prof"
    cli("swarm", str(bundle), "--write-profiles", str(out), "--world-bind", "tcp://127.0.0.1:5555", "--base-port", "5600", check=True, timeout=60)
    prof = json.loads((out / "agent_2.json").read_text())
    assert prof["secret_key"] == "agent_2.key_secret" and prof["public_keys"] == PUBLIC_KEYS
    for f in [out / f"agent_{i}.key_secret" for i in range(6)] + [out / "world.key_secret"]:
        assert stat.S_IMODE(os.stat(f).st_mode) == 0o600
    assert load_keys(out / "agent_2.key_secret", out / PUBLIC_KEYS).me == "agent-2"
    assert not list(Path(bundle).rglob("*.key_secret"))
    p = cli("swarm", str(bundle), "--write-profiles", str(bundle / "prof"), "--world-bind", "tcp://127.0.0.1:5555", timeout=60)
    assert p.returncode == 2 and "never go inside the bundle" in p.stderr, p.stderr
