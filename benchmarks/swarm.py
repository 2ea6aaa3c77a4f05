"""Swarm throughput: marl-edge's lock-step swarm beside a bare prototype, in one run.

For each n (default 4, 16, 64) a scout bundle with n agents, mean messages
over knn:3 (k = 3) is exported from a very short training run (speed does
not depend on the weights). Then, for each transport, two swarms play the
same episodes lock-step, interleaved (bare, marl-edge, marl-edge, bare, ...
for ``--repeats`` pairs), so both see the same machine load:

- **marl-edge**: ``marl-swarm``'s launcher (``runtime.swarm.run_swarm``), as
  users run it: every frame validated, metrics on, liveness, deadlines.
- **bare**: ``benchmarks/swarm_reference.py``: the same policy.onnx files with
  a bare ``session.run``, struct-packed frames, the same world env, topology
  and k = 3 peer messages, and nothing else (no validation, no metrics).

The table gives both, their ratio measured pair by pair (the headline: the
target is >= 90 %), whether both played the same returns (they must: same
episodes, lossless lock-step), CPU time per step, and the old absolute
numbers of the first bare prototype, measured before this benchmark existed (n=4 ~1,670 steps/s, n=16 ~456, n=64
~81 on an idle machine) for orientation. Never asserted.

    .venv/bin/python benchmarks/swarm.py
    .venv/bin/python benchmarks/swarm.py --n 4,16 --transports ipc --repeats 5
    .venv/bin/python benchmarks/swarm.py --bundles /tmp/swarm-bundles   # keep/reuse the exported bundles

marl-edge's tcp swarm runs CURVE (docs/protocol.md §11) unless ``--security
insecure``; ``benchmarks/curve.py`` compares the two.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import platform
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from swarm_reference import run_reference  # noqa: E402

from marl_edge.runtime.swarm import SwarmOptions, run_swarm  # noqa: E402

REFERENCE = {4: 1670, 16: 456, 64: 81}  # the first bare prototype, measured on an idle 2-vCPU machine (ipc)
TARGET = 0.9


def default_episodes(n: int) -> int:
    """Episodes per run when not given: about 2,000 / sqrt(n) steps of 25-step episodes, at least 4."""
    return max(4, int(2000 / n**0.5 / 25))


def bundle_for(n: int, root: Path) -> Path:
    out = root / f"bundle{n}"
    if (out / "swarm.json").is_file():
        return out
    from marl_edge.export.bundle import export_run
    from marl_edge.train.config import RunConfig
    from marl_edge.train.rundir import create_run_dir, make_run_spec
    from marl_edge.train.loop import train

    run = RunConfig(env="scout", algo="qmix", steps=200, seed=0, eval_episodes=0, n_envs=1,
                    env_options={"n_agents": n, "episode_limit": 25}, checkpoint_every=200, save_buffer=False)
    rs = make_run_spec(run, {"comm": "mean", "topology": "knn:3", "buffer_size": "64", "batch_size": "1"})
    d = create_run_dir(rs, root / f"run{n}")
    train(d)
    export_run(d, out, parity_steps=25)
    return out


def git_rev() -> str:
    try:
        from marl_edge.train.rundir import git_revision

        g = git_revision()
        return f"{g.get('revision', '?')[:10]}{' (dirty)' if g.get('dirty') else ''}"
    except Exception:  # noqa: BLE001 -- the header is informational
        return "?"


def versions() -> str:
    import onnxruntime
    import zmq

    return f"python {platform.python_version()}, onnxruntime {onnxruntime.__version__}, pyzmq {zmq.__version__} (libzmq {zmq.zmq_version()})"


def med(xs: list[float]) -> float:
    xs = [x for x in xs if not math.isnan(x)]
    return float(np.median(xs)) if xs else float("nan")


def fmt(x: float, spec: str = ",.0f") -> str:
    return "n/a" if x is None or (isinstance(x, float) and math.isnan(x)) else format(x, spec)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="4,16,64", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--transports", default="ipc,tcp", type=lambda s: s.split(","))
    ap.add_argument("--episodes", type=int, default=0, help="per run (default: about 2,000 steps / n^0.5, at least 4)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved (bare, marl-edge) pairs per n and transport")
    ap.add_argument("--security", default="auto", choices=["auto", "insecure"],
                    help="marl-edge's tcp links: auto = CURVE (as users run it; the bare prototype is plain tcp), insecure = plain tcp")
    ap.add_argument("--bundles", type=Path, default=None, help="export the bundles here and reuse them (default: a temporary directory)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    load0 = os.getloadavg()
    print(f"# swarm lock-step throughput: marl-edge vs the bare prototype, side by side\n"
          f"# nproc {os.cpu_count()}, {platform.processor() or platform.machine()}, {versions()}, git {git_rev()}\n"
          f"# load average at start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f} (1 / 5 / 15 min)\n", flush=True)
    rows, out = [], []
    with tempfile.TemporaryDirectory(prefix="marl-bench-swarm-") as tmp:
        root = args.bundles or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for n in args.n:
            b = bundle_for(n, root)
            episodes = args.episodes or default_episodes(n)
            for tr in args.transports:
                runs: dict[str, list[dict[str, Any]]] = {"bare": [], "marl-edge": []}
                loads = []
                for r in range(args.repeats):
                    for who in (("bare", "marl-edge") if r % 2 == 0 else ("marl-edge", "bare")):
                        loads.append(os.getloadavg()[0])
                        if who == "bare":
                            res = run_reference(b, episodes, 0, tr)
                        else:
                            res = run_swarm(b, SwarmOptions(episodes=episodes, seed=0, transport=tr, security=args.security))
                        runs[who].append(res)
                        print(f"  n={n} {tr} #{r + 1} {who:9s}: {res['steps_per_s']:,.0f} steps/s (load {loads[-1]:.1f})", flush=True)
                me, bare = runs["marl-edge"], runs["bare"]
                ratios = [m["steps_per_s"] / x["steps_per_s"] for m, x in zip(me, bare)]
                # all processes' CPU time per step (n agents + the world): what bounds throughput on a saturated machine
                cpu_ratios = [(n * x["agent_cpu_us_per_step"] + x["world_cpu_us_per_step"])
                              / (n * m.get("agent_cpu_us_per_step", float("nan")) + m.get("world_cpu_us_per_step", float("nan")))
                              for m, x in zip(me, bare)]
                ratio = med(ratios)
                same = all(m["returns"] == x["returns"] for m, x in zip(me, bare))
                sps_me, sps_bare = med([m["steps_per_s"] for m in me]), med([x["steps_per_s"] for x in bare])
                ref = REFERENCE.get(n) if tr == "ipc" else None
                row = {
                    "n": n, "transport": tr, "episodes": episodes, "steps": me[0]["steps"], "repeats": args.repeats,
                    "steps_per_s": sps_me, "bare_steps_per_s": sps_bare, "ratio": ratio, "ratios": ratios,
                    "cpu_ratio": med(cpu_ratios), "cpu_ratios": cpu_ratios,
                    "step_ms_p50": med([m["step_ms_p50"] for m in me]), "step_ms_p99": med([m["step_ms_p99"] for m in me]),
                    "bare_step_ms_p50": med([x["step_ms_p50"] for x in bare]), "bare_step_ms_p99": med([x["step_ms_p99"] for x in bare]),
                    "agent_cpu_us": med([m.get("agent_cpu_us_per_step", float("nan")) for m in me]),
                    "bare_agent_cpu_us": med([x["agent_cpu_us_per_step"] for x in bare]),
                    "world_cpu_us": med([m.get("world_cpu_us_per_step", float("nan")) for m in me]),
                    "bare_world_cpu_us": med([x["world_cpu_us_per_step"] for x in bare]),
                    "act_us_p50": med([m["act_latency_us_p50"] for m in me]), "bare_act_us_p50": med([x["act_latency_us_p50"] for x in bare]),
                    "msgs_per_step": me[0]["msgs_per_step"],
                    "invalid_frames": sum(m["invalid_frames"] for m in me), "same_returns": same,
                    "old_reference": ref, "load_during": [min(loads), max(loads)],
                }
                out.append(row)
                rows.append(
                    f"| {n} | {tr} | {row['steps']:,} × {args.repeats} | {fmt(sps_me)} | {fmt(sps_bare)} | "
                    f"**{ratio:.0%}** ({min(ratios):.0%}–{max(ratios):.0%}) | {'yes' if ratio >= TARGET else 'no'} | {fmt(row['cpu_ratio'], '.0%')} | "
                    f"{row['step_ms_p50']:.2f} / {row['step_ms_p99']:.2f} | {row['bare_step_ms_p50']:.2f} / {row['bare_step_ms_p99']:.2f} | "
                    f"{fmt(row['agent_cpu_us'])} / {fmt(row['bare_agent_cpu_us'])} | {fmt(row['world_cpu_us'])} / {fmt(row['bare_world_cpu_us'])} | "
                    f"{fmt(row['act_us_p50'])} / {fmt(row['bare_act_us_p50'])} | {row['msgs_per_step']:.0f} | {'yes' if same else 'NO'} | "
                    f"{ref if ref else 'n/a'} | {fmt(sps_me / ref if ref else float('nan'), '.0%')} | {min(loads):.1f}–{max(loads):.1f} |"
                )
    load1 = os.getloadavg()
    print("\n| n | transport | steps × pairs | marl-edge steps/s | bare steps/s | marl-edge / bare | ≥ 90 % | CPU ratio | "
          "step p50 / p99 ms marl-edge | step p50 / p99 ms bare | agent CPU µs/step marl-edge / bare | world CPU µs/step marl-edge / bare | "
          "act p50 µs marl-edge / bare | msgs/step | same returns | old ref steps/s | marl-edge / old ref | load (1 min) |")
    print("|---" * 18 + "|")
    print("\n".join(rows))
    print(f"\nload average at end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}. "
          f"marl-edge / bare is the median of the per-pair ratios of steps/s (range in brackets); CPU ratio is the median per-pair ratio of\n"
          f"all processes' CPU time per step, bare / marl-edge (n x agent + world), which bounds throughput when the cores are saturated;\n"
          f"steps/s, latencies and CPU are medians over the pairs.")
    if args.json:
        args.json.write_text(json.dumps({"load_start": load0, "load_end": load1, "time": time.time(), "rows": out}, indent=2))


if __name__ == "__main__":
    main()
