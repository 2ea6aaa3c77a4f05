"""The bare swarm prototype: the yardstick ``benchmarks/swarm.py`` measures
marl-edge against, side by side in the same run.

The same work as ``marl-swarm`` in lock-step, with nothing else: one world
(in the calling process) steps the bundle's env and topology, and ``n`` agent
processes each run the bundle's own ``policy.onnx`` with a bare
``onnxruntime`` ``session.run`` (one thread, as marl-edge). Each step the
world sends agent ``i`` a struct-packed frame (episode, step, first flag,
whose previous-step messages it hears, whom it sends to, observation,
available actions) over ROUTER/DEALER; the agent waits (blocking ``recv``,
no deadline) for the messages it hears, acts, PUSHes its message straight to
each receiver's PULL inbox (``<HII`` header + raw float32, connected lazily)
and returns its action.

What it leaves out on purpose -- the cost marl-edge is measured for: no
msgpack envelopes, no validation of any frame, no heartbeats, deadlines,
liveness or rejoin, no fault injection, no metrics, no bundle checksums.
It supports discrete-action bundles (what the benchmark exports).

The agents import only numpy, onnxruntime and pyzmq. The world uses
marl-edge's env, topology and episode seeds so both play the same episodes:
a lossless run must give the same returns as ``marl-swarm`` (the benchmark
prints whether it does).

    from swarm_reference import run_reference
    r = run_reference(Path("bundles/x"), episodes=8, seed=0, transport="ipc")
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shutil
import signal
import struct
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import zmq

# world -> agent: episode, step, first, n_in, n_to; then n_in + n_to uint16 ids, obs float32, avail uint8
OBS = struct.Struct("<IIBBH")
ACT = struct.Struct("<IIq")  # agent -> world: episode, step, action
MSG = struct.Struct("<HII")  # agent -> agent: sender, episode, step; then msg float32
HELLO = struct.Struct("<H")  # agent -> world at start: id, then its inbox address
BYE = struct.Struct("<HdId")  # agent -> world after STOP: id, CPU seconds from its first step on, steps, median session.run µs
STOP = 0xFFFFFFFF


# ---- the agent process ---------------------------------------------------------------------


def agent_main(argv: list[str]) -> None:
    import onnxruntime as ort

    ap = argparse.ArgumentParser()
    ap.add_argument("--policy", required=True)
    ap.add_argument("--id", type=int, required=True)
    ap.add_argument("--world", required=True)
    ap.add_argument("--bind", required=True)
    ap.add_argument("--io", required=True, help="JSON: the manifest's inputs")
    ap.add_argument("--obs-dim", type=int, required=True)
    ap.add_argument("--n-actions", type=int, required=True)
    a = ap.parse_args(argv)
    me = a.id
    so = ort.SessionOptions()
    so.intra_op_num_threads = 1
    so.inter_op_num_threads = 1
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    sess = ort.InferenceSession(a.policy, sess_options=so, providers=["CPUExecutionProvider"])
    types = {"float32": np.float32, "bool": np.bool_, "int64": np.int64}
    feed = {x["name"]: np.zeros([1, *x["shape"][1:]], dtype=types[x["dtype"]]) for x in json.loads(a.io)}
    out_names = [o.name for o in sess.get_outputs()]
    hid_out = out_names.index("hidden_out")
    talks = "msg_in" in feed
    k, d = feed["msg_in"].shape[1:] if talks else (0, 0)
    od, na = a.obs_dim, a.n_actions

    ctx = zmq.Context.instance()
    inbox = ctx.socket(zmq.PULL)
    inbox.setsockopt(zmq.LINGER, 0)
    inbox.bind(a.bind)
    world = ctx.socket(zmq.DEALER)
    world.setsockopt(zmq.LINGER, 0)
    world.setsockopt(zmq.IDENTITY, b"a%d" % me)
    world.connect(a.world)
    world.send(HELLO.pack(me) + inbox.getsockopt_string(zmq.LAST_ENDPOINT).encode())
    peers: dict[int, str] = json.loads(world.recv())["peers"]  # the directory, once everyone is here
    push: dict[int, zmq.Socket] = {}
    store: dict[tuple[int, int, int], bytes] = {}
    cpu0, steps, run_ns = None, 0, []
    while True:
        f = world.recv()
        ep, t, first, n_in, n_to = OBS.unpack_from(f)
        if ep == STOP:
            break
        if cpu0 is None:
            cpu0 = time.process_time()
        steps += 1
        off = OBS.size
        ids = struct.unpack_from(f"<{n_in + n_to}H", f, off)
        off += 2 * (n_in + n_to)
        feed["obs"][0] = np.frombuffer(f, np.float32, od, off)
        feed["avail_actions"][0] = np.frombuffer(f, np.uint8, na, off + 4 * od)
        if first:
            feed["hidden"][:] = 0.0
            store = {key: v for key, v in store.items() if key[1] >= ep}
        if talks:
            msg_in, mask = feed["msg_in"], feed["msg_mask"]
            msg_in[:] = 0.0
            mask[:] = False
            for slot, j in enumerate(ids[:n_in]):
                key = (j, ep, t - 1)
                while key not in store:  # lock-step: wait for it
                    m = inbox.recv()
                    store[MSG.unpack_from(m)] = m
                msg_in[0, slot] = np.frombuffer(store.pop(key), np.float32, d, MSG.size)
                mask[0, slot] = True
        r0 = time.perf_counter_ns()
        out = sess.run(None, feed)
        run_ns.append(time.perf_counter_ns() - r0)
        feed["hidden"] = out[hid_out]
        action = int(out[0][0])
        if talks:
            frame = MSG.pack(me, ep, t) + out[2].tobytes()
            for j in ids[n_in:]:
                s = push.get(j)
                if s is None:
                    s = push[j] = ctx.socket(zmq.PUSH)
                    s.setsockopt(zmq.LINGER, 0)
                    s.connect(peers[str(j)])
                s.send(frame)
        world.send(ACT.pack(ep, t, action))
    world.send(BYE.pack(me, 0.0 if cpu0 is None else time.process_time() - cpu0, steps, float(np.median(run_ns)) / 1e3 if run_ns else float("nan")))
    for s in push.values():
        s.close()
    inbox.close()
    world.close(linger=1000)


# ---- the world (in the calling process) ---------------------------------------------------------


def _pdeathsig() -> None:
    os.setpgrp()
    try:
        ctypes.CDLL("libc.so.6").prctl(1, signal.SIGKILL)  # die with the parent
    except OSError:
        pass


def run_reference(bundle_dir: Path, episodes: int, seed: int, transport: str = "ipc", start_timeout_s: float = 60.0) -> dict[str, Any]:
    """Play ``episodes`` lock-step with the bare prototype; steps/s, step latency, returns."""
    from marl_edge.envs import episode_seeds
    from marl_edge.runtime.bundle import load_bundle

    b = load_bundle(bundle_dir)
    spec = b.manifest.env_spec
    n, na = b.n_agents, spec.n_actions or 0
    if not na:
        raise ValueError("the bare reference supports discrete-action bundles only")
    noop = spec.noop_action or 0
    topo = b.topology()
    tmp = Path(tempfile.mkdtemp(prefix="marl-ref-"))
    ep_of = (lambda name: f"ipc://{tmp}/{name}.sock") if transport == "ipc" else (lambda name: "tcp://127.0.0.1:*")
    ctx = zmq.Context.instance()
    sock = ctx.socket(zmq.ROUTER)
    sock.setsockopt(zmq.LINGER, 0)
    sock.bind(ep_of("world"))
    endpoint = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    procs = []
    env = None
    try:
        io = json.dumps([x.to_dict() for x in b.inputs])
        for i in range(n):
            cmd = [sys.executable, __file__, "agent", "--policy", str(b.agent(i).policy_path), "--id", str(i), "--world", endpoint,
                   "--bind", ep_of(f"agent_{i}"), "--io", io, "--obs-dim", str(spec.obs_dim), "--n-actions", str(na)]
            log = open(tmp / f"agent_{i}.log", "ab")
            procs.append(subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, preexec_fn=_pdeathsig))
            log.close()
        addr: dict[int, str] = {}
        deadline = time.perf_counter() + start_timeout_s
        while len(addr) < n:
            if not sock.poll(500):
                if time.perf_counter() > deadline or any(p.poll() is not None for p in procs):
                    logs = " ".join((tmp / f"agent_{i}.log").read_text()[-300:] for i in range(n))
                    raise RuntimeError(f"bare agents did not start: {logs}")
                continue
            _, f = sock.recv_multipart()
            (i,) = HELLO.unpack_from(f)
            addr[i] = f[HELLO.size :].decode()
        ident = [b"a%d" % i for i in range(n)]
        directory = json.dumps({"peers": {str(i): a for i, a in addr.items()}}).encode()
        for i in range(n):
            sock.send_multipart([ident[i], directory])

        env = b.make_env(1)
        seeds = episode_seeds(seed, episodes)
        returns, lengths, step_ms = [], [], []
        steps = 0
        actions = np.full((1, n), noop, dtype=np.int64)
        t_start, cpu_start = time.perf_counter(), time.process_time()
        for ep in range(episodes):
            ts = env.reset(seeds[ep : ep + 1])
            ret, t = 0.0, 0
            hear_prev: list[list[int]] = [[] for _ in range(n)]
            while True:
                if topo is not None:
                    idx, mask = topo.neighbours(ts.positions, batch=1)
                    hear = [idx[0, i][mask[0, i]].tolist() for i in range(n)]
                else:
                    hear = [[] for _ in range(n)]
                send_to: list[list[int]] = [[] for _ in range(n)]
                for i in range(n):
                    for j in hear[i]:
                        send_to[j].append(i)
                t0 = time.perf_counter()
                obs, av = ts.obs[0], ts.avail_actions[0].astype(np.uint8)
                for i in range(n):
                    ids = hear_prev[i] + send_to[i]
                    frame = b"".join([OBS.pack(ep, t, t == 0, len(hear_prev[i]), len(send_to[i])), struct.pack(f"<{len(ids)}H", *ids),
                                      obs[i].tobytes(), av[i].tobytes()])
                    sock.send_multipart([ident[i], frame])
                for _ in range(n):
                    who, f = sock.recv_multipart()
                    _, _, a = ACT.unpack(f)
                    actions[0, int(who[1:])] = a
                step_ms.append((time.perf_counter() - t0) * 1e3)
                ts = env.step(actions)
                ret += float(ts.team_reward(env.spec.reward_scalarisation)[0])
                hear_prev = hear
                t += 1
                steps += 1
                if ts.done[0]:
                    break
            returns.append(ret)
            lengths.append(t)
        wall, cpu = time.perf_counter() - t_start, time.process_time() - cpu_start
        stop = OBS.pack(STOP, 0, 0, 0, 0)
        for i in range(n):
            sock.send_multipart([ident[i], stop])
        agent_cpu, run_us = [], []
        while len(agent_cpu) < n and sock.poll(10_000):
            _, f = sock.recv_multipart()
            _, cpu_s, st, r_us = BYE.unpack(f)
            agent_cpu.append(cpu_s / max(1, st))
            run_us.append(r_us)
        for p in procs:
            p.wait(timeout=10)
    finally:
        if env is not None:
            env.close()
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=5)
        sock.close(linger=0)
        shutil.rmtree(tmp, ignore_errors=True)
    return {
        "agents": n,
        "transport": transport,
        "episodes": episodes,
        "returns": returns,
        "lengths": lengths,
        "steps": steps,
        "steps_per_s": steps / max(wall, 1e-9),
        "step_ms_p50": float(np.percentile(step_ms, 50)),
        "step_ms_p99": float(np.percentile(step_ms, 99)),
        "agent_cpu_us_per_step": float(np.mean(agent_cpu)) * 1e6 if agent_cpu else float("nan"),
        "act_latency_us_p50": float(np.median(run_us)) if run_us else float("nan"),  # the bare session.run, wall
        "world_cpu_us_per_step": cpu / max(1, steps) * 1e6,
    }


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "agent":
        agent_main(sys.argv[2:])
    else:
        ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
        ap.add_argument("bundle", type=Path)
        ap.add_argument("--episodes", type=int, default=8)
        ap.add_argument("--seed", type=int, default=0)
        ap.add_argument("--transport", default="ipc", choices=["ipc", "tcp"])
        args = ap.parse_args()
        print(json.dumps(run_reference(args.bundle, args.episodes, args.seed, args.transport), indent=1))
