"""docs/protocol.md is enough to speak the wire protocol.

``doc_agent_main`` is a minimal agent written from that page alone: plain
``msgpack``, ``zmq``, ``numpy`` and ``onnxruntime``. It runs in its own
process with ``marl_edge`` and ``torch`` blocked from import. It joins a live
world (``runtime.swarm.Launcher``) in place of one ``marl-agent``, next to real
``marl-agent`` processes. The tests check that the world and the other agents
accept its frames, that its actions are the ones applied, and that the team
plays exactly the in-process bundle evaluation. A ``msg`` frame built from
the page's byte table must be byte-identical to ``wire.protocol``'s.

This module imports nothing from marl_edge at the top level: the subprocess
loads it to run ``doc_agent_main``. Every marl_edge import sits inside a test.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import struct
import subprocess
import sys
import time
from pathlib import Path

import msgpack
import numpy as np
import pytest
import zmq

HERE = Path(__file__).resolve()
DOC = HERE.parent.parent / "docs" / "protocol.md"
ME = 1  # the agent the doc client plays
EPISODES = 4

# ---- the msg frame of docs/protocol.md §4, by hand ------------------------------------------


def doc_str(s: str) -> bytes:
    b = s.encode()
    if len(b) <= 31:
        return bytes([0xA0 | len(b)]) + b
    if len(b) <= 255:
        return b"\xd9" + bytes([len(b)]) + b
    raise ValueError("swarm ids are at most 255 bytes")


def doc_msg_frame(swarm: str, sender: int, ep: int, t: int, payload: list[float] | np.ndarray) -> bytes:
    p = struct.pack(f"<{len(payload)}f", *[float(x) for x in payload])
    return b"".join([
        b"\x87",
        b"\xa1v", b"\x01",
        b"\xa2sw", doc_str(swarm),
        b"\xa4from", b"\xcd", struct.pack(">H", sender),
        b"\xa1k", b"\xa3msg",
        b"\xa2ep", b"\xce", struct.pack(">I", ep),
        b"\xa1t", b"\xce", struct.pack(">I", t),
        b"\xa1p", b"\xc4", bytes([len(p)]), p,
    ])


def doc_frame_size(swarm: str, d: int) -> int:
    L = len(swarm.encode())
    return (41 if L <= 31 else 42) + L + 4 * d


# ---- the minimal agent (runs in a subprocess; only the doc's rules) ----------------------------


def doc_agent_main(argv: list[str]) -> int:
    """ARGS: world_endpoint inbox_endpoint agent_id swarm_id bundle_dir out_json"""
    world_ep, inbox_ep, me_s, swarm, bundle, out_path = argv
    me = int(me_s)
    import onnxruntime as ort

    m = json.loads((Path(bundle) / "swarm.json").read_text())
    spec = m["env_spec"]
    n, obs_dim = int(spec["n_agents"]), int(spec["obs_dim"])
    n_act, a_dim = int(spec.get("n_actions") or 0), int(spec.get("action_dim") or 0)
    d, k_max = int(m.get("msg_dim") or 0), int(m.get("k_max") or 0)
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    sess = ort.InferenceSession(str(Path(bundle) / f"agent_{me}" / "policy.onnx"), so, providers=["CPUExecutionProvider"])
    takes = {x.name for x in sess.get_inputs()}
    outs = [x.name for x in sess.get_outputs()]

    log: dict = {"acts": [], "msgs_sent": 0, "msgs_sent_bytes": 0, "msgs_heard": 0, "msg_sizes": [], "invalid": 0, "reasons": [],
                 "firsts": 0, "stop": None, "obs": 0, "received": 0, "received_bytes": 0, "stale": 0}

    def bad(reason: str) -> None:
        log["invalid"] += 1
        log["reasons"].append(reason)

    def vec(b: object, count: int) -> np.ndarray | None:
        if not isinstance(b, bytes) or len(b) != 4 * count:
            return None
        a = np.frombuffer(b, dtype="<f4")
        return a if np.isfinite(a).all() else None

    def is_int(x: object) -> bool:
        return isinstance(x, int) and not isinstance(x, bool)

    def envelope(frame: bytes) -> dict | None:
        """§5 checks 1-8 (common to every kind)."""
        if len(frame) > 1 << 20:
            return bad("oversized")
        try:
            env = msgpack.unpackb(frame, raw=False)
        except Exception:  # noqa: BLE001
            return bad("undecodable")
        if not isinstance(env, dict):
            return bad("not a map")
        if env.get("v") != 1:
            return bad("version")
        if env.get("sw") != swarm:
            return bad("foreign swarm")
        if env.get("k") not in ("msg", "hello", "obs", "act", "hb", "stop", "bye", "absent"):
            return bad("unknown kind")
        if not (is_int(env.get("from")) and -1 <= env["from"] < n):
            return bad("unknown sender")
        if not (is_int(env.get("ep")) and 0 <= env["ep"] <= 10_000_000 and is_int(env.get("t")) and 0 <= env["t"] <= 1_000_000):
            return bad("insane step")
        return env

    def ids(x: object, limit: int) -> list[int] | None:
        if not isinstance(x, list) or len(x) > limit or not all(is_int(i) and 0 <= i < n for i in x) or len(set(x)) != len(x):
            return None
        return x

    ctx = zmq.Context()
    inbox = ctx.socket(zmq.PULL)
    inbox.setsockopt(zmq.LINGER, 0)
    inbox.bind(inbox_ep)
    addr = inbox.getsockopt_string(zmq.LAST_ENDPOINT)
    world = ctx.socket(zmq.DEALER)
    world.setsockopt(zmq.LINGER, 1000)
    world.setsockopt(zmq.IDENTITY, f"agent-{me}".encode())
    world.connect(world_ep)
    push: dict[int, zmq.Socket] = {}
    peers: dict[int, str] = {}
    store: dict[tuple[int, int, int], np.ndarray] = {}

    def send(kind: str, ep: int = 0, t: int = 0, **fields: object) -> None:
        world.send(msgpack.packb({"v": 1, "sw": swarm, "from": me, "k": kind, "ep": ep, "t": t, **fields}, use_bin_type=True))

    def drain(timeout_ms: int) -> None:
        if not inbox.poll(timeout_ms):
            return
        while True:
            try:
                frame = inbox.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            log["received"] += 1
            log["received_bytes"] += len(frame)
            env = envelope(frame)
            if env is None:
                continue
            if env["k"] != "msg":
                bad("not a msg on the message socket")
                continue
            if env["from"] in (-1, me):
                bad("msg from the world or from myself")
                continue
            p = vec(env.get("p"), d)
            if p is None:
                bad("payload")
                continue
            log["msg_sizes"].append(len(frame))
            store[(env["from"], env["ep"], env["t"])] = p.copy()

    hidden = np.zeros((1, int(m["hidden_dim"])), np.float32)
    prev = np.zeros((1, n_act or 1), np.float32)
    steps = 0
    # marl-swarm sends SIGTERM to its children once the byes are in: finish the
    # current step (or the shutdown) cleanly instead of dying mid-write
    import signal

    stopping = []
    signal.signal(signal.SIGTERM, lambda *_: stopping.append(True))
    t_act: list[float] = []
    rejoined_at = -1e9
    send("hello", addr=addr, pid=os.getpid())
    give_up = time.monotonic() + 180  # a safety net: the test's own timeout is shorter
    try:
        while time.monotonic() < give_up and not stopping:
            if not world.poll(200):
                send("hb")  # nothing from the world for 0.2 s: still here
                drain(0)
                continue
            env = envelope(world.recv())
            drain(0)
            if env is None:
                continue
            if env["from"] != -1:
                bad("not from the world")
                continue
            if env["k"] == "stop":
                log["stop"] = env.get("why")
                send("bye", m={"agent": me, "steps": steps, "doc_client": True,
                               "messages": {"sent": log["msgs_sent"], "sent_bytes": log["msgs_sent_bytes"], "received": log["received"],
                                            "received_bytes": log["received_bytes"], "dropped": 0, "stale": log["stale"], "invalid": log["invalid"]},
                               "act_us": {"p50": float(np.median(t_act)) if t_act else 0.0, "p99": float(np.max(t_act)) if t_act else 0.0, "n": len(t_act)}})
                break
            if env["k"] == "hb":  # §7: the world answered a heartbeat
                continue
            if env["k"] == "absent":  # §7: counted absent; start over and say hello again, once
                if time.monotonic() - rejoined_at >= 1.0:
                    rejoined_at = time.monotonic()
                    hidden[:] = 0.0
                    prev[:] = 0.0
                    drain(0)
                    store.clear()
                    send("hello", addr=addr, pid=os.getpid())
                continue
            if env["k"] != "obs":
                bad("unexpected kind from the world")
                continue
            rejoined_at = -1e9
            o = vec(env.get("o"), obs_dim)
            av = env.get("av", b"")
            inn, to = ids(env.get("in", []), k_max if k_max else n), ids(env.get("to", []), n)
            if n_act:
                ok_av = isinstance(av, bytes) and len(av) == n_act and all(x in (0, 1) for x in av) and any(av)
            else:
                ok_av = av in (b"", None)
            if o is None or not ok_av or inn is None or to is None:
                bad("obs")
                continue
            ep, t = env["ep"], env["t"]
            log["obs"] += 1
            if isinstance(env.get("peers"), list):
                for pair in env["peers"]:
                    if isinstance(pair, list) and len(pair) == 2 and is_int(pair[0]) and isinstance(pair[1], str) and peers.get(pair[0]) != pair[1]:
                        peers[pair[0]] = pair[1]
                        old = push.pop(pair[0], None)
                        if old is not None:
                            old.close(linger=0)
            if env.get("first"):
                log["firsts"] += 1
                hidden[:] = 0.0
                prev[:] = 0.0
                store = {key: v for key, v in store.items() if key[1] >= ep}
            feed: dict[str, np.ndarray] = {"obs": o[None].astype(np.float32), "hidden": hidden}
            if "avail_actions" in takes:
                feed["avail_actions"] = np.frombuffer(av, np.uint8).astype(bool)[None]
            if "msg_in" in takes:
                msg_in = np.zeros((1, k_max, d), np.float32)
                mask = np.zeros((1, k_max), bool)
                want = [(j, ep, t - 1) for j in inn]
                wait_until = time.monotonic() + 2.0
                next_hb = time.monotonic() + 0.2
                while t > 0 and any(w not in store for w in want) and time.monotonic() < wait_until:
                    if time.monotonic() >= next_hb:
                        send("hb")
                        next_hb = time.monotonic() + 0.2
                    drain(50)
                for s, key in enumerate(want):
                    if key in store:
                        msg_in[0, s] = store[key]
                        mask[0, s] = True
                        log["msgs_heard"] += 1
                feed["msg_in"], feed["msg_mask"] = msg_in, mask
            if "prev_action" in takes:
                feed["prev_action"] = prev
            t0 = time.perf_counter()
            res = dict(zip(outs, sess.run(None, feed)))
            t_act.append((time.perf_counter() - t0) * 1e6)
            hidden = res["hidden_out"]
            if "msg_out" in res:
                frame = doc_msg_frame(swarm, me, ep, t, res["msg_out"][0])
                for j in to:
                    if j == me:
                        continue
                    if j not in push:
                        if j not in peers:
                            continue
                        s_ = ctx.socket(zmq.PUSH)
                        s_.setsockopt(zmq.LINGER, 1000)
                        s_.connect(peers[j])
                        push[j] = s_
                    push[j].send(frame)
                    log["msgs_sent"] += 1
                    log["msgs_sent_bytes"] += len(frame)
            if a_dim:
                a = res["action"][0].astype("<f4")
                send("act", ep, t, a=a.tobytes())
                log["acts"].append([ep, t, a.tolist()])
            else:
                a = int(res["action"][0])
                send("act", ep, t, a=a)
                log["acts"].append([ep, t, a])
                if "prev_action" in takes:
                    prev[:] = 0.0
                    prev[0, a] = 1.0
            steps += 1
            # forget what can no longer be heard
            store = {key: v for key, v in store.items() if (key[1], key[2]) >= (ep, t - 1)}
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_IGN)  # also through interpreter shutdown
        log["modules"] = sorted(x for x in sys.modules if x.split(".")[0] in ("marl_edge", "torch"))
        Path(out_path).write_text(json.dumps(log))
        for s_ in push.values():
            s_.close(linger=1000)
        inbox.close(linger=0)
        world.close(linger=1000)
        ctx.term()
    return 0 if log["stop"] is not None else 3


# Runs doc_agent_main from this file in a fresh interpreter where marl_edge and torch cannot be imported.
PRELUDE = r"""
import ctypes, importlib.abc, importlib.util, sys
try:
    ctypes.CDLL("libc.so.6").prctl(1, 9)  # PR_SET_PDEATHSIG: die with the test process
except OSError:
    pass
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in ("marl_edge", "torch"):
            raise ModuleNotFoundError(f"{name} is blocked: the doc client must not use it")
        return None
sys.meta_path.insert(0, _Block())
path = sys.argv[1]
spec = importlib.util.spec_from_file_location("protocol_doc_client", path)
mod = importlib.util.module_from_spec(spec)
spec.loader.exec_module(mod)
sys.exit(mod.doc_agent_main(sys.argv[2:]))
"""


# ---- tests ------------------------------------------------------------------------------------


def test_hand_built_msg_frame_is_byte_identical_to_the_runtime():
    from marl_edge.wire import protocol as P

    cases = [
        ("b0123456789ab-42", 3, 1, 17, [1.0, -0.5]),
        ("b0123456789ab", 0, 0, 0, [0.0] * 8),
        ("s" * 31, 65535, 2**32 - 1, 2**32 - 1, np.linspace(-1, 1, 63)),
        ("s" * 32, 5, 9, 300, np.arange(4)),
        ("swarm-" + "x" * 249, 7, 123456, 654321, [3.25]),
    ]
    for swarm, sender, ep, t, p in cases:
        mine = doc_msg_frame(swarm, sender, ep, t, p)
        ref = P.MsgCodec(swarm, len(p)).encode(sender, ep, t, np.asarray(p, np.float32))
        assert mine == ref, (swarm, sender, ep, t)
        assert len(mine) == doc_frame_size(swarm, len(p)) == P.frame_size(len(p), swarm)
    # the hex example printed in the doc is that frame
    text = DOC.read_text()
    block = re.search(r"<!-- example: msg-frame-hex -->\s*```\n(.*?)```", text, re.S)
    assert block, "docs/protocol.md lost its hex example"
    shown = bytes.fromhex(block.group(1).replace("\n", " "))
    assert shown == doc_msg_frame("b0123456789ab-42", 3, 1, 17, [1.0, -0.5]) == P.MsgCodec("b0123456789ab-42", 2).encode(3, 1, 17, np.array([1.0, -0.5], np.float32))
    assert len(shown) == 65


def test_frames_the_doc_calls_invalid_are_refused_and_valid_ones_accepted():
    """§5's checks, on frames built with plain msgpack."""
    from marl_edge.wire import protocol as P

    sw = "b0123456789ab-42"
    ex = P.Expect(sw, 4, msg_dim=2, obs_dim=3, n_actions=3, k_max=2)

    def f(**kw):
        env = {"v": 1, "sw": sw, "from": 1, "k": "hb", "ep": 0, "t": 0}
        env.update(kw)
        return msgpack.packb(env, use_bin_type=True)

    o, av = np.zeros(3, "<f4").tobytes(), bytes([1, 0, 1])
    good = [
        f(),
        f(k="msg", p=np.ones(2, "<f4").tobytes(), **{"from": 3}),
        f(k="obs", o=o, av=av, first=True, to=[0, 2], **{"in": [3, 2], "from": -1}),
        f(k="act", a=2, ep=7, t=4),
        f(k="hello", addr="ipc:///tmp/x.sock", pid=5),
        f(k="bye", m={"steps": 3}),
        f(k="stop", why="done", **{"from": -1}),
        f(k="hb", extra_key="ignored"),
        f(ep=10_000_000, t=1_000_000),  # the largest sane step
    ]
    for frame in good:
        assert isinstance(P.decode(frame, ex), dict), msgpack.unpackb(frame)
    bad = [
        b"\x00" * ((1 << 20) + 1),
        b"\xc1",
        msgpack.packb([1, 2]),
        f(v=2),
        f(sw="other"),
        f(k="shout"),
        f(**{"from": 4}),
        f(**{"from": True}),
        f(ep=-1),
        f(t=1_000_001),
        f(ep=1.0),
        f(k="msg", p=np.ones(3, "<f4").tobytes()),  # wrong size
        f(k="msg", p=[1.0, 2.0]),  # a list, not bin
        f(k="msg", p=np.array([1, np.nan], "<f4").tobytes()),
        f(k="msg", p=np.ones(2, "<f4").tobytes(), **{"from": -1}),
        f(k="obs", o=o, av=av),  # obs not from the world
        f(k="obs", o=o, av=bytes([0, 0, 0]), **{"from": -1}),  # nothing available
        f(k="obs", o=o, av=bytes([1, 2, 1]), **{"from": -1}),
        f(k="obs", o=o, av=av, **{"in": [0, 1, 2], "from": -1}),  # more than k_max
        f(k="obs", o=o, av=av, to=[1, 1], **{"from": -1}),
        f(k="act", a=3),
        f(k="act", a=True),
        f(k="act", a=1, **{"from": -1}),
        f(k="hello", addr=5),
        f(k="hello", addr="x" * 513),
    ]
    for frame in bad:
        assert isinstance(P.decode(frame, ex), str), frame[:80]
    # the continuous box: av empty, a float32 bytes
    exc = P.Expect(sw, 4, obs_dim=3, action_dim=2)
    assert isinstance(P.decode(f(k="obs", o=o, av=b"", **{"from": -1}), exc), dict)
    assert isinstance(P.decode(f(k="act", a=np.array([0.5, -1], "<f4").tobytes()), exc), dict)
    assert isinstance(P.decode(f(k="obs", o=o, av=av, **{"from": -1}), exc), str)
    assert isinstance(P.decode(f(k="act", a=1), exc), str)


@pytest.fixture(scope="module")
def talking_bundle(tmp_path_factory, make_bundle):
    root = tmp_path_factory.mktemp("protocol_doc")
    return make_bundle(root, "talk", steps=600, env_options={"n_agents": 4, "episode_limit": 5}, comm="attention", topology="knn:2", top_k=1)


def _preexec() -> None:
    import ctypes
    import signal

    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)
    except OSError:
        pass


def test_a_client_written_from_the_doc_joins_a_live_world(talking_bundle, tmp_path):
    from marl_edge.runtime.swarm import Launcher, SwarmOptions
    from marl_edge.runtime.team import evaluate_bundle

    out = tmp_path / "doc_agent.json"
    log_path = tmp_path / "doc_agent.log"
    applied: list[tuple[tuple[int, int], np.ndarray]] = []
    started: list[subprocess.Popen] = []

    class DocLauncher(Launcher):
        def spawn(self, i: int, world: str) -> None:
            if i != ME:
                return super().spawn(i, world)
            cmd = [sys.executable, "-c", PRELUDE, str(HERE), world, f"ipc://{self.tmp}/doc_agent.sock", str(i), self.swarm, str(self.dir), str(out)]
            with open(log_path, "ab") as log:
                p = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, cwd=tmp_path, preexec_fn=_preexec)
            started.append(p)
            self.procs[i] = p  # the launcher's own shutdown stops it too

    def on_start(launcher, world) -> None:
        real = world._actions

        def recording():
            a = real()
            applied.append((world.cur, np.array(a, copy=True)))
            return a

        world._actions = recording

    launcher = DocLauncher(talking_bundle, SwarmOptions(episodes=EPISODES, seed=3, start_timeout_s=90))
    try:
        res = launcher.run(on_start=on_start)
        for p in started:
            assert p.wait(timeout=20) == 0, log_path.read_text()[-3000:]
    finally:
        for p in list(launcher.procs.values()) + started:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
        shutil.rmtree(launcher.tmp, ignore_errors=True)
    client = json.loads(out.read_text())
    swarm = res["swarm"]
    m = json.loads((talking_bundle / "swarm.json").read_text())
    d = m["msg_dim"]

    # it stayed independent of marl-edge and torch
    assert client["modules"] == []
    # the world and every other agent accepted all its frames; it never missed a step
    assert res["invalid_frames"] == 0 and res["world_invalid_frames"] == 0, res
    assert res["noop_actions"] == 0 and res["late_actions"] == 0 and not res["absences"]
    assert res["dropped"] == 0
    # ... and everything it received was valid by the doc's rules
    assert client["invalid"] == 0, client["reasons"][:5]
    assert client["stop"] == "done"
    steps = res["steps"]
    assert len(res["returns"]) == EPISODES and steps == EPISODES * 5
    assert client["obs"] == steps and client["firsts"] == EPISODES
    # its actions are the ones the world applied, step by step
    assert len(applied) == steps
    assert [[ep, t, int(a[ME])] for (ep, t), a in applied] == client["acts"]
    # it heard its neighbours and they heard it: 2 messages per step after the first (knn:2)
    assert client["msgs_heard"] == EPISODES * 4 * 2
    assert client["msgs_sent"] > 0 and set(client["msg_sizes"]) == {doc_frame_size(swarm, d)}
    assert client["msgs_sent_bytes"] == client["msgs_sent"] * doc_frame_size(swarm, d)
    # its bye reached the world: the launcher reports its session
    mine = res["per_agent"][ME]["sessions"]
    assert mine and mine[-1]["doc_client"] is True and mine[-1]["steps"] == steps
    # the team it played in is exactly the in-process bundle evaluation (lossless lock-step)
    assert res["returns"] == evaluate_bundle(talking_bundle, episodes=EPISODES, seed=3)["returns"]
