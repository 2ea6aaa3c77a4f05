"""Third-party envs stepped in-process vs in worker processes (``env.workers=W``).

For LBF and RWARE at B parallel episodes, side by side in one run (tables,
never asserted):

1. raw stepping: env steps per second of random available actions, finished
   slots restarted one by one (as the rollout loop does); the pool's start-up
   (spawning and building the workers) is shown apart and not counted;
   CPU µs per env step are summed over the processes (the workers' read from
   /proc): beside the ceiling's they show the pool's own overhead, and
   ``main`` is what stays in the training process; ``ceiling`` is what W independent in-process steppers of B/W
   slots each reach together, over one in-process stepper of B: the most a
   W-worker pool could gain on this machine at its current load;
2. training: ``train.loop.train`` for ``--steps`` env steps (VDN by
   default); ``loop steps/s`` is on train()'s own clock (from the first
   rollout step), ``call s`` is the whole call, the workers' start-up included.

Configurations are interleaved (in-process, W=2, in-process, ...) so a change
in machine load hits both alike; with ``--repeats N`` the tables show medians.
The main module of a spawned worker is re-imported in it, so this script
imports torch only inside functions.

    .venv/bin/python benchmarks/env_workers.py
    .venv/bin/python benchmarks/env_workers.py --n-envs 8,16 --workers 2 --steps 5000 --repeats 3 --json bench.json
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from marl_edge.envs import make

ENVS = {"lbf": "gym:lbforaging:Foraging-5x5-2p-1f-coop-v3", "rware": "gym:rware:rware-tiny-2ag-v2"}


def _children_cpu_s(env: Any) -> float:
    """CPU seconds the pool's workers have used so far (Linux /proc; 0 for an in-process env)."""
    total = 0
    for p in getattr(env, "_procs", []):
        with open(f"/proc/{p.pid}/stat") as f:
            fields = f.read().rsplit(")", 1)[1].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total / os.sysconf("SC_CLK_TCK")


def raw_stepping(name: str, n_envs: int, workers: int, batched_steps: int, seed: int, barrier: Any = None) -> dict[str, Any]:
    t0 = time.perf_counter()
    env = make(name, n_envs=n_envs, workers=workers)
    startup = time.perf_counter() - t0
    rng = np.random.default_rng(seed)
    try:
        ts = env.reset(seed)
        for i in range(batched_steps + 20):
            if i == 20:  # warm-up done
                if barrier is not None:
                    barrier.wait()
                t0, env_steps = time.perf_counter(), 0
                cpu0, kids0 = time.process_time(), _children_cpu_s(env)
            act = (ts.avail_actions * rng.random(ts.avail_actions.shape)).argmax(-1)
            active = int((~ts.done).sum())
            ts = env.step(act)
            if i >= 20:
                env_steps += active
            if ts.done.any():
                ts = env.reset(rng.integers(0, 2**31, size=n_envs), mask=ts.done)
        wall = time.perf_counter() - t0
        cpu, kids = time.process_time() - cpu0, _children_cpu_s(env) - kids0
    finally:
        env.close()
    return {"startup_s": startup, "env_steps": env_steps, "wall_s": wall, "steps_per_s": env_steps / wall, "t0": t0,
            "cpu_us_per_step": 1e6 * (cpu + kids) / env_steps, "main_cpu_us_per_step": 1e6 * cpu / env_steps}


def _ceiling_job(barrier: Any, queue: Any, name: str, n_envs: int, batched_steps: int, seed: int) -> None:
    queue.put(raw_stepping(name, n_envs, 0, batched_steps, seed, barrier=barrier))


def ceiling(name: str, n_envs: int, workers: int, batched_steps: int, seed: int) -> dict[str, Any]:
    """What W cores give right now: W independent processes, each stepping B/W slots
    in-process at once (no pipes, no waiting on each other). Their summed env steps/s
    bound what a W-worker pool can reach on this machine at this load."""
    import multiprocessing as mp

    ctx = mp.get_context("spawn")
    barrier, queue = ctx.Barrier(workers), ctx.Queue()
    procs = [ctx.Process(target=_ceiling_job, args=(barrier, queue, name, max(1, n_envs // workers), batched_steps, seed + k), daemon=True)
             for k in range(workers)]
    for p in procs:
        p.start()
    try:
        runs = [queue.get(timeout=600) for _ in procs]
    finally:
        for p in procs:
            p.join(timeout=10)
            if p.is_alive():
                p.terminate()
                p.join()
    span = max(r["t0"] + r["wall_s"] for r in runs) - min(r["t0"] for r in runs)  # one clock (CLOCK_MONOTONIC) for all
    steps = sum(r["env_steps"] for r in runs)
    cpu_us = sum(r["cpu_us_per_step"] * r["env_steps"] for r in runs)
    return {"steps_per_s": steps / span, "cpu_us_per_step": cpu_us / steps, "runs": runs}


def training(name: str, n_envs: int, workers: int, steps: int, algo: str, seed: int, root: Path) -> dict[str, Any]:
    from marl_edge.train.config import RunConfig
    from marl_edge.train.loop import train
    from marl_edge.train.rundir import create_run_dir, make_run_spec

    opts = {"workers": workers} if workers > 1 else {}
    run = RunConfig(env=name, algo=algo, steps=steps, seed=seed, n_envs=n_envs, eval_episodes=0, env_options=opts,
                    checkpoint_every=steps, save_buffer=False)
    run_dir = create_run_dir(make_run_spec(run, {}), root / f"{algo}_{n_envs}_{workers}_{time.monotonic_ns()}")
    t0 = time.perf_counter()
    summary = train(run_dir)
    call = time.perf_counter() - t0
    return {"call_s": call, "loop_s": summary["wall_s"], "env_steps": summary["env_steps"],
            "loop_steps_per_s": summary["env_steps"] / summary["wall_s"], "steps_per_s": summary["env_steps"] / call}


def table(headers: list[str], rows: list[list[Any]]) -> str:
    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:,.0f}" if abs(v) >= 100 else f"{v:.2f}"
        return str(v)

    cells = [[cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) for i, h in enumerate(headers)]
    lines = ["  ".join(h.rjust(w) for h, w in zip(headers, widths)), "  ".join("-" * w for w in widths)]
    lines += ["  ".join(c.rjust(w) for c, w in zip(r, widths)) for r in cells]
    return "\n".join(lines)


def median_of(runs: list[dict[str, Any]], key: str) -> float:
    return statistics.median(r[key] for r in runs)


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--envs", default="lbf,rware", help=f"comma list of {', '.join(ENVS)} or gym:/pz: names")
    ap.add_argument("--n-envs", default="8,16")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--raw-steps", type=int, default=300, help="batched steps timed per raw-stepping run")
    ap.add_argument("--steps", type=int, default=4000, help="env steps per training run (0: skip training)")
    ap.add_argument("--algo", default="vdn")
    ap.add_argument("--repeats", type=int, default=1)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    envs = [ENVS.get(e, e) for e in args.envs.split(",") if e]
    sizes = [int(b) for b in args.n_envs.split(",") if b]
    modes = [0, args.workers]
    load0 = os.getloadavg()
    print(f"nproc {os.cpu_count()}, load average {load0[0]:.2f} {load0[1]:.2f} {load0[2]:.2f} at the start; "
          f"W={args.workers} workers (spawn) vs in-process; repeats {args.repeats}, medians shown")
    raw: dict[tuple, list] = {}
    trained: dict[tuple, list] = {}
    with tempfile.TemporaryDirectory(prefix="env_workers_") as tmp:
        for rep in range(args.repeats):
            for name in envs:
                for B in sizes:
                    for W in modes:
                        r = raw_stepping(name, B, W, args.raw_steps, args.seed + rep)
                        raw.setdefault((name, B, W), []).append(r)
                        print(f"  raw   {name} B={B} W={W}: {r['steps_per_s']:,.0f} env steps/s", file=sys.stderr, flush=True)
                    r = ceiling(name, B, args.workers, args.raw_steps, args.seed + rep)
                    raw.setdefault((name, B, "ceiling"), []).append(r)
                    print(f"  raw   {name} B={B} {args.workers} independent processes: {r['steps_per_s']:,.0f} env steps/s",
                          file=sys.stderr, flush=True)
            if args.steps:
                for name in envs:
                    for B in sizes:
                        for W in modes:
                            r = training(name, B, W, args.steps, args.algo, args.seed, Path(tmp))
                            trained.setdefault((name, B, W), []).append(r)
                            print(f"  train {name} B={B} W={W}: {r['loop_steps_per_s']:,.0f} env steps/s", file=sys.stderr, flush=True)
    W = args.workers
    rows = []
    for name in envs:
        for B in sizes:
            a, b = median_of(raw[(name, B, 0)], "steps_per_s"), median_of(raw[(name, B, W)], "steps_per_s")
            c = median_of(raw[(name, B, "ceiling")], "steps_per_s")
            rows.append([name.split(":")[-1], B, a, b, f"{b / a:.2f}x", f"{c / a:.2f}x", median_of(raw[(name, B, 0)], "cpu_us_per_step"),
                         median_of(raw[(name, B, "ceiling")], "cpu_us_per_step"),
                         median_of(raw[(name, B, W)], "cpu_us_per_step"), median_of(raw[(name, B, W)], "main_cpu_us_per_step"),
                         median_of(raw[(name, B, W)], "startup_s")])
    print(f"\nRaw stepping, random available actions, {args.raw_steps} batched steps (env steps/s; CPU µs per env step)")
    print(table(["env", "B", "in-process", f"W={W}", "ratio", "ceiling", "CPU in-process", "CPU ceiling", f"CPU W={W} all", f"CPU W={W} main",
                 f"W={W} start-up s"], rows))
    if trained:
        rows = []
        for name in envs:
            for B in sizes:
                p, q = trained[(name, B, 0)], trained[(name, B, W)]
                a, b = median_of(p, "loop_steps_per_s"), median_of(q, "loop_steps_per_s")
                rows.append([name.split(":")[-1], B, a, b, f"{b / a:.2f}x", median_of(p, "call_s"), median_of(q, "call_s")])
        print(f"\nTraining ({args.algo}, {args.steps:,} env steps, train.loop.train; loop env steps/s)")
        print(table(["env", "B", "in-process", f"W={W}", "ratio", "in-process call s", f"W={W} call s"], rows))
    load1 = os.getloadavg()
    print(f"\nload average {load1[0]:.2f} {load1[1]:.2f} {load1[2]:.2f} at the end")
    if args.json:
        out = {"args": vars(args) | {"json": str(args.json)}, "load_start": load0, "load_end": load1,
               "raw": [{"env": k[0], "n_envs": k[1], "workers": k[2], "runs": v} for k, v in raw.items()],
               "train": [{"env": k[0], "n_envs": k[1], "workers": k[2], "runs": v} for k, v in trained.items()]}
        args.json.write_text(json.dumps(out, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
