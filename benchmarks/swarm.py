"""Swarm throughput: lock-step steps/s and step latency for n agent processes.

For each n (default 4, 16, 64) a scout bundle with n agents, mean messages
over knn:3 (k = 3, as in the reference prototype) is exported from a very
short training run (speed does not depend on the weights), then
``marl-swarm``'s launcher runs it lock-step over ipc and tcp with validation
and metrics on, as users run it. Printed side by side with the reference
prototype measured on this 2-core machine (bare ORT + ZeroMQ, k = 3,
lock-step: n=4 ~1,670 steps/s, n=16 ~456, n=64 ~81; NOTES.md) and the
target (>= 90 % of it). Never asserted.

    .venv/bin/python benchmarks/swarm.py
    .venv/bin/python benchmarks/swarm.py --n 4,16 --transports ipc --episodes 40
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
from pathlib import Path

from marl_edge.export.bundle import export_run
from marl_edge.runtime.swarm import SwarmOptions, run_swarm
from marl_edge.train.config import RunConfig
from marl_edge.train.trainer import create_run_dir, git_revision, make_run_spec, train

REFERENCE = {4: 1670, 16: 456, 64: 81}


def bundle_for(n: int, root: Path) -> Path:
    run = RunConfig(env="scout", algo="qmix", steps=200, seed=0, eval_episodes=0, n_envs=1,
                    env_options={"n_agents": n, "episode_limit": 25}, checkpoint_every=200, save_buffer=False)
    rs = make_run_spec(run, {"comm": "mean", "topology": "knn:3", "buffer_size": "64", "batch_size": "1"})
    d = create_run_dir(rs, root / f"run{n}")
    train(d)
    export_run(d, root / f"bundle{n}", parity_steps=25)
    return root / f"bundle{n}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="4,16,64", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--transports", default="ipc,tcp", type=lambda s: s.split(","))
    ap.add_argument("--episodes", type=int, default=0, help="per run (default: about 2,000 steps / n^0.5, at least 4)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    load = os.getloadavg()
    print(f"# swarm lock-step throughput  (nproc {os.cpu_count()}, {platform.processor() or platform.machine()}, "
          f"load {load[0]:.2f}, git {git_revision().get('revision', '?')})\n")
    rows, out = [], []
    with tempfile.TemporaryDirectory(prefix="marl-bench-swarm-") as tmp:
        for n in args.n:
            b = bundle_for(n, Path(tmp))
            episodes = args.episodes or max(4, int(2000 / n**0.5 / 25))
            for tr in args.transports:
                r = run_swarm(b, SwarmOptions(episodes=episodes, seed=0, transport=tr))
                ref = REFERENCE.get(n)
                frac = r["steps_per_s"] / ref if ref else float("nan")
                rows.append(f"| {n} | {tr} | {r['steps']:,} | {r['steps_per_s']:,.0f} | {r['step_ms_p50']:.2f} / {r['step_ms_p99']:.2f} | "
                            f"{r['act_latency_us_p50']:.0f} / {r['act_latency_us_p99']:.0f} | {r['msgs_per_step']:.0f} | "
                            f"{ref or 'n/a'} | {frac:.0%} | {'yes' if frac >= 0.9 else 'no'} |")
                out.append({k: v for k, v in r.items() if k != "per_agent"} | {"n": n, "reference": ref})
                print(f"  n={n} {tr}: {r['steps_per_s']:,.0f} steps/s", flush=True)
    print("\n| n | transport | steps | steps/s | step p50 / p99 ms | act p50 / p99 µs | msgs/step | reference steps/s | of reference | >= 90 % |")
    print("|---|---|---|---|---|---|---|---|---|---|")
    print("\n".join(rows))
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
