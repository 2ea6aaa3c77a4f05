"""CURVE vs plain TCP: the lock-step swarm's throughput with and without
CurveZMQ on its links (docs/protocol.md §11), side by side.

For each n (default 4, 16) the scout bundle of ``benchmarks/swarm.py`` (mean
messages over knn:3) plays the same episodes over tcp, alternately with CURVE
(the default) and with ``--insecure`` (plain TCP), ``--repeats`` pairs, so
both see the same machine load. The table gives both steps/s, their ratio
measured pair by pair (target: CURVE >= 85 % of plain), CPU per step and
whether both played the same returns (they must). Never asserted.

    .venv/bin/python benchmarks/curve.py
    .venv/bin/python benchmarks/curve.py --n 4,16,64 --repeats 5 --bundles /tmp/swarm-bundles
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from swarm import bundle_for, default_episodes, fmt, git_rev, med, versions  # noqa: E402

from marl_edge.runtime.swarm import SwarmOptions, run_swarm  # noqa: E402

TARGET = 0.85


def timed_run(bundle: Path, episodes: int, security: str) -> dict[str, Any]:
    """One lock-step run over tcp, plus ``late_steps_per_s``: the throughput over
    the second half of its episodes (the clock read as each episode ends)."""
    ends: list[tuple[int, float]] = []
    res = run_swarm(bundle, SwarmOptions(episodes=episodes, seed=0, transport="tcp", security=security),
                    progress=lambda p: ends.append((p["steps"], time.perf_counter())))
    (s0, t0), (s1, t1) = ends[len(ends) // 2 - 1], ends[-1]
    res["late_steps_per_s"] = (s1 - s0) / max(t1 - t0, 1e-9)
    res["handshakes"] = sum(s.get("zap_requests", 0) for a in res["per_agent"] for s in a["sessions"])
    return res


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", default="4,16", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--episodes", type=int, default=0, help="per run (default: about 2,000 steps / n^0.5, at least 4)")
    ap.add_argument("--repeats", type=int, default=3, help="interleaved (curve, plain) pairs per n")
    ap.add_argument("--bundles", type=Path, default=None, help="export the bundles here and reuse them (default: a temporary directory)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    load0 = os.getloadavg()
    print(f"# swarm lock-step throughput over tcp: CURVE vs plain\n# nproc {os.cpu_count()}, {versions()}, git {git_rev()}\n"
          f"# load average at start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}\n", flush=True)
    rows, out = [], []
    with tempfile.TemporaryDirectory(prefix="marl-bench-curve-") as tmp:
        root = args.bundles or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        for n in args.n:
            b = bundle_for(n, root)
            episodes = args.episodes or default_episodes(n)
            runs: dict[str, list] = {"curve": [], "plain": []}
            loads = []
            for r in range(args.repeats):
                for sec in (("curve", "plain") if r % 2 == 0 else ("plain", "curve")):
                    loads.append(os.getloadavg()[0])
                    res = timed_run(b, episodes, "auto" if sec == "curve" else "insecure")
                    assert res["security"] == ("curve" if sec == "curve" else "none")
                    runs[sec].append(res)
                    print(f"  n={n} #{r + 1} {sec:5s}: {res['steps_per_s']:,.1f} steps/s, second half {res['late_steps_per_s']:,.1f} "
                          f"(load {loads[-1]:.1f})", flush=True)
            cu, pl = runs["curve"], runs["plain"]
            ratios = [c["steps_per_s"] / p["steps_per_s"] for c, p in zip(cu, pl)]
            late = [c["late_steps_per_s"] / p["late_steps_per_s"] for c, p in zip(cu, pl)]
            cpu = lambda x: n * x["agent_cpu_us_per_step"] + x["world_cpu_us_per_step"]  # noqa: E731
            row = {
                "n": n, "episodes": episodes, "steps": cu[0]["steps"], "repeats": args.repeats,
                "curve_steps_per_s": med([c["steps_per_s"] for c in cu]), "plain_steps_per_s": med([p["steps_per_s"] for p in pl]),
                "ratio": med(ratios), "ratios": ratios, "late_ratio": med(late), "late_ratios": late,
                "handshakes_per_step": med([c["handshakes"] / c["steps"] for c in cu]),
                "curve_cpu_us_per_step": med([cpu(c) for c in cu]), "plain_cpu_us_per_step": med([cpu(p) for p in pl]),
                "curve_step_ms_p50": med([c["step_ms_p50"] for c in cu]), "plain_step_ms_p50": med([p["step_ms_p50"] for p in pl]),
                "same_returns": all(c["returns"] == p["returns"] for c, p in zip(cu, pl)),
                "invalid_frames": sum(c["invalid_frames"] for c in cu), "load_during": [min(loads), max(loads)],
            }
            out.append(row)
            rows.append(f"| {n} | {row['steps']:,} × {args.repeats} | {fmt(row['curve_steps_per_s'])} | {fmt(row['plain_steps_per_s'])} | "
                        f"**{row['ratio']:.0%}** ({min(ratios):.0%}–{max(ratios):.0%}) | {'yes' if row['ratio'] >= TARGET else 'no'} | "
                        f"{row['late_ratio']:.0%} ({min(late):.0%}–{max(late):.0%}) | {row['handshakes_per_step']:.2f} | "
                        f"{fmt(row['curve_cpu_us_per_step'])} / {fmt(row['plain_cpu_us_per_step'])} | "
                        f"{row['curve_step_ms_p50']:.2f} / {row['plain_step_ms_p50']:.2f} | {'yes' if row['same_returns'] else 'NO'} | "
                        f"{min(loads):.1f}–{max(loads):.1f} |")
    load1 = os.getloadavg()
    print("\n| n | steps × pairs | CURVE steps/s | plain steps/s | CURVE / plain | ≥ 85 % | CURVE / plain, 2nd half | "
          "CURVE handshakes / step | all-process CPU µs/step CURVE / plain | step p50 ms CURVE / plain | same returns | load (1 min) |")
    print("|---" * 12 + "|")
    print("\n".join(rows))
    print(f"\nload average at end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}. CURVE / plain is the median of the per-pair ratios "
          f"(range in brackets); CPU is n x agent + world per step.")
    if args.json:
        args.json.write_text(json.dumps({"load_start": load0, "load_end": load1, "rows": out}, indent=2))


if __name__ == "__main__":
    main()
