"""Naive vs fictitious self-play on biased rock-paper-scissors: exact exploitability over training.

For each mode the same learner (IPPO, feed-forward actor) trains team 0 of
``rps`` against its own snapshots, which are exported bundles played by ONNX
Runtime. After every snapshot the script computes, exactly (envs/rps.py):

* ``latest``: the exploitability of the newest member's mixed strategy;
* ``mixture``: that of the population mixture, the uniform mixture of all
  members so far (fictitious play's average strategy).

It prints one table per mode, a summary, and with ``--plot FILE`` draws both
curves (matplotlib, the ``plot`` extra). It asserts nothing (benchmarks/README.md).

    python benchmarks/selfplay_rps.py --steps 24000 --snapshot-every 500 --plot rps.png
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

import numpy as np

from marl_edge.league.exploit import ExploitabilityTrace
from marl_edge.league.selfplay import SelfPlayConfig, run_selfplay


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--steps", type=int, default=24_000, help="env steps per mode")
    ap.add_argument("--snapshot-every", type=int, default=500, help="env steps between snapshots")
    ap.add_argument("--latest", type=float, default=0.8, help="fsp: probability of the newest snapshot")
    ap.add_argument("--ent", type=float, default=0.3, help="IPPO's entropy bonus (constant)")
    ap.add_argument("--seed", type=int, default=0, help="seed of both runs")
    ap.add_argument("--n-envs", type=int, default=16, help="parallel episodes")
    ap.add_argument("--modes", default="naive,fsp", help="comma-separated modes to run")
    ap.add_argument("--plot", type=Path, default=None, help="write the curves to this PNG (needs matplotlib)")
    ap.add_argument("--every-row", type=int, default=4, help="print every k-th snapshot in the tables")
    args = ap.parse_args()
    algo = {"recurrent": False, "ent_start": args.ent, "ent_end": args.ent}
    print(f"# machine: {platform.machine()} {platform.system()}, python {platform.python_version()}")
    print(f"# ippo {algo}; {args.steps:,} steps, a snapshot every {args.snapshot_every:,}; fsp latest={args.latest}; seed {args.seed}")
    traces: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for mode in args.modes.split(","):
            trace = ExploitabilityTrace()
            cfg = SelfPlayConfig(mode=mode, steps=args.steps, snapshot_every=args.snapshot_every, latest=args.latest,
                                 n_envs=args.n_envs, seed=args.seed)
            t0 = time.perf_counter()
            run_selfplay(Path(tmp) / mode, cfg, algo, on_snapshot=trace)
            wall = time.perf_counter() - t0
            traces[mode] = trace.rows
            print(f"\n## {mode}: {len(trace.rows)} members in {wall:.1f} s")
            print(f"{'env steps':>9}  {'newest strategy (R, P, S)':<26} {'expl. newest':>12} {'expl. mixture':>13}")
            for i, r in enumerate(trace.rows):
                if i % args.every_row == 0 or i == len(trace.rows) - 1:
                    s = "(" + ", ".join(f"{p:.2f}" for p in r["strategy"]) + ")"
                    print(f"{r['env_steps']:>9,}  {s:<26} {r['latest']:>12.3f} {r['mixture']:>13.3f}")
    print("\n## summary (second half of training)")
    print(f"{'mode':<6} {'newest: mean':>12} {'min':>6} {'max':>6} {'mixture: final':>15} {'mean':>6}  final mixture (R, P, S)")
    for mode, rows in traces.items():
        half = rows[len(rows) // 2:]
        lat = np.array([r["latest"] for r in half])
        mix = np.array([r["mixture"] for r in half])
        final = ", ".join(f"{p:.2f}" for p in rows[-1]["mixture_strategy"])
        print(f"{mode:<6} {lat.mean():>12.3f} {lat.min():>6.3f} {lat.max():>6.3f} {rows[-1]['mixture']:>15.3f} {mix.mean():>6.3f}  ({final})")
    print("Nash (1/4, 1/2, 1/4) has exploitability 0; uniform 0.333; rock or paper 1; scissors 2.")
    if args.plot is not None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        fig, ax = plt.subplots(figsize=(7, 3.5))
        for mode, rows in traces.items():
            steps = [r["env_steps"] for r in rows]
            ax.plot(steps, [r["latest"] for r in rows], label=f"{mode}: newest", alpha=0.6)
            ax.plot(steps, [r["mixture"] for r in rows], label=f"{mode}: uniform mixture", lw=2)
        ax.axhline(0.05, color="grey", ls=":", lw=1)
        ax.set_xlabel("env steps")
        ax.set_ylabel("exact exploitability")
        ax.set_title("biased rock-paper-scissors")
        ax.legend(fontsize=8)
        fig.tight_layout()
        fig.savefig(args.plot, dpi=120)
        print(f"plot: {args.plot}")


if __name__ == "__main__":
    main()
