"""Training throughput of IQL / VDN / QMIX, measured side by side in one run.

Two measurements, both printed as tables (never asserted):

1. Throughput (default): for each env x algo x n_envs (B), train a fixed
   budget of env steps and report env steps per second. Each run is timed
   around the ``train()`` call, so process start and imports are excluded but
   the setup inside ``train()`` (env and learner construction, metrics files)
   is included; that setup time and the loop-only rate are shown beside it.
   A ratio column compares each B with B=1 of the same env and algo.

2. Wall-clock to threshold (``--to-threshold``, takes many minutes): train
   with the env's own budget (the registry's ``train_steps``) at B=8 and B=32
   and read from the progress rows the first time the running training
   return (episode-weighted mean of the last >= 100 finished episodes, under
   epsilon-greedy exploration) reaches a threshold: 9.0 for rendezvous (+10 on
   success); for spread ``--spread-threshold`` or, by default, the uniform
   random policy's mean return + 50% of (final training return - random).

Runs go to a temporary directory (deleted at the end) with no final
evaluation, no replay buffer in checkpoints and one checkpoint at the end.

    .venv/bin/python benchmarks/train_throughput.py --quick
    .venv/bin/python benchmarks/train_throughput.py --json bench.json
    .venv/bin/python benchmarks/train_throughput.py --to-threshold --algos qmix
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from marl_edge import __version__
from marl_edge.envs import EnvError, episode_seeds, get_entry, make
from marl_edge.envs.rollout import evaluate
from marl_edge.train.config import ConfigError, RunConfig
from marl_edge.train.registry import get_algo
from marl_edge.train.rundir import create_run_dir, git_revision, make_run_spec, RunError
from marl_edge.train.loop import train

TARGET = (
    "target >= 5,000 env steps/s for QMIX on 4-agent rendezvous with batched envs "
    "(peers measured on the same 2-vCPU machine: EPyMARL 400\u20131,060)"
)
TARGET_SPS = 5000.0
DEFAULT_ALGOS = ["qmix", "vdn", "iql"]
DEFAULT_ENVS = ["rendezvous", "spread"]
DEFAULT_N_ENVS = [1, 8, 32]
THRESHOLD_N_ENVS = [8, 32]
# explicit, so the benchmark keeps measuring the same teams if a default changes
ENV_OPTIONS: dict[str, dict[str, Any]] = {"rendezvous": {"n_agents": 4}, "spread": {"n_agents": 3}}
FIXED_THRESHOLDS = {"rendezvous": 9.0}  # team return; +10 on success
RANDOM_EPISODES = 64


class BenchError(Exception):
    """A user-facing problem with the benchmark's options."""


# ---------------------------------------------------------------- helpers
def _csv(text: str, cast: type = str) -> list[Any]:
    items = [t.strip() for t in text.split(",") if t.strip()]
    try:
        return [cast(t) for t in items]
    except ValueError as e:
        raise BenchError(f"bad list {text!r}: {e}") from e


def _log(msg: str, end: str = "\n") -> None:
    sys.stderr.write(msg + end)
    sys.stderr.flush()


def _cpu_model() -> str | None:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or None


def machine_info(torch_threads: int) -> dict[str, Any]:
    info: dict[str, Any] = {
        "nproc": os.cpu_count(),
        "cpu": _cpu_model(),
        "python": platform.python_version(),
        "platform": platform.platform(),
        "torch": torch.__version__,
        "torch_threads": torch_threads,
        "torch_threads_default": torch.get_num_threads(),
        "numpy": np.__version__,
        "marl-edge": __version__,
        "git": git_revision(),
    }
    if hasattr(os, "sched_getaffinity"):
        info["cpus_usable"] = len(os.sched_getaffinity(0))
    if hasattr(os, "getloadavg"):
        info["loadavg_start"] = [round(x, 2) for x in os.getloadavg()]
    return info


def table(headers: list[str], rows: list[list[Any]]) -> str:
    cells = [[_cell(v) for v in r] for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in cells)) if cells else len(h) for i, h in enumerate(headers)]
    line = "  ".join(h.rjust(w) for h, w in zip(headers, widths))
    out = [line, "  ".join("-" * w for w in widths)]
    for r in cells:
        out.append("  ".join(c.rjust(w) for c, w in zip(r, widths)))
    return "\n".join(out)


def _cell(v: Any) -> str:
    if v is None:
        return "-"
    if isinstance(v, float):
        if abs(v) >= 1000:
            return f"{v:,.0f}"
        if abs(v) >= 100:
            return f"{v:.0f}"
        if abs(v) >= 10:
            return f"{v:.1f}"
        return f"{v:.2f}"
    if isinstance(v, int):
        return f"{v:,}"
    return str(v)


def write_json_atomic(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(data, indent=2))
    os.replace(tmp, path)


# ---------------------------------------------------------------- one run
def run_training(
    root: Path,
    name: str,
    env: str,
    algo: str,
    n_envs: int,
    steps: int,
    args: argparse.Namespace,
    log_every: int = 0,
) -> dict[str, Any]:
    """Create a run directory under ``root``, train it, time the ``train()`` call."""
    run = RunConfig(
        env=env,
        algo=algo,
        steps=steps,
        seed=args.seed,
        n_envs=n_envs,
        eval_episodes=0,
        env_options=dict(ENV_OPTIONS.get(env, {})),
        log_every=log_every,
        checkpoint_every=steps,  # one checkpoint, at the end
        save_buffer=False,
        torch_threads=args.torch_threads,
    )
    overrides: dict[str, Any] = {}
    if args.episodes_per_update is not None:
        overrides["episodes_per_update"] = args.episodes_per_update
    rs = make_run_spec(run, overrides)
    run_dir = create_run_dir(rs, root / name)
    rows: list[dict[str, Any]] = []
    live = sys.stderr.isatty()

    t_call = time.perf_counter()

    def progress(row: dict[str, Any]) -> None:
        now = time.perf_counter() - t_call
        rows.append({**row, "call_s": now})
        if live:
            _log(f"\r    {row['env_steps']:>9,}/{row['total_steps']:,} env steps  {row['env_steps'] / max(now, 1e-9):,.0f}/s ", end="")

    try:
        summary = train(run_dir, progress=progress)
    finally:
        call_s = time.perf_counter() - t_call
        if live:
            _log("\r" + " " * 60 + "\r", end="")
        shutil.rmtree(run_dir, ignore_errors=True)
    loop_s = float(summary["wall_s"])
    env_steps = int(summary["env_steps"])
    return {
        "env": env,
        "algo": algo,
        "n_agents": rs.env_spec.n_agents,
        "episode_limit": rs.env_spec.episode_limit,
        "n_envs": n_envs,
        "env_steps": env_steps,
        "episodes": int(summary["episodes"]),
        "updates": int(summary["updates"]),
        "call_s": call_s,  # the whole train() call
        "loop_s": loop_s,  # train()'s own clock: from the first rollout to the end
        "setup_s": max(0.0, call_s - loop_s),  # env/learner construction, metrics files, teardown
        "steps_per_s": env_steps / max(call_s, 1e-9),
        "loop_steps_per_s": env_steps / max(loop_s, 1e-9),
        "first_row": {k: rows[0].get(k) for k in ("env_steps", "wall_s", "call_s")} if rows else None,
        "final_return": summary.get("train_return"),
        "rows": rows,
    }


# ---------------------------------------------------------------- throughput mode
def throughput(args: argparse.Namespace, root: Path, results: dict[str, Any]) -> None:
    combos = [(e, a, b) for e in args.envs for a in args.algos for b in args.n_envs]
    total = len(combos) * args.repeats
    print(f"\n== Throughput: {args.steps:,} env steps per run, repeats {args.repeats}, seed {args.seed}, "
          f"eval off, one checkpoint at the end, replay buffer not saved")
    if args.episodes_per_update is not None:
        print(f"   episodes_per_update = {args.episodes_per_update} (fixed for every B)")
    else:
        print("   learner default: one gradient update per B finished episodes, so larger B also means fewer updates per env step")
    sys.stdout.flush()
    runs: list[dict[str, Any]] = results.setdefault("throughput_runs", [])
    k = 0
    try:
        for rep in range(args.repeats):  # interleaved, so drift in machine load hits every config alike
            for env, algo, b in combos:
                k += 1
                r = run_training(root, f"tp_{k}", env, algo, b, args.steps, args)
                r["repeat"] = rep
                r.pop("rows")
                runs.append(r)
                _log(f"  [{k}/{total}] {env:<10} {algo:<4} B={b:<3} {r['env_steps']:,} steps in {r['call_s']:.2f} s "
                     f"= {r['steps_per_s']:,.0f} steps/s (setup {r['setup_s']:.2f} s, {r['updates']} updates)")
    except KeyboardInterrupt:
        _log("  interrupted: tables below hold the runs finished so far")
        results["interrupted"] = True
    print_throughput(runs, args, results)


def print_throughput(runs: list[dict[str, Any]], args: argparse.Namespace, results: dict[str, Any]) -> None:
    groups: dict[tuple[str, str, int], list[dict[str, Any]]] = {}
    for r in runs:
        groups.setdefault((r["env"], r["algo"], r["n_envs"]), []).append(r)
    med = {key: statistics.median(x["steps_per_s"] for x in rs) for key, rs in groups.items()}
    summary = []
    rows = []
    for (env, algo, b), rs in groups.items():
        base = med.get((env, algo, 1))
        first = rs[0]
        sps = med[(env, algo, b)]
        row = {
            "env": env,
            "algo": algo,
            "n_agents": first["n_agents"],
            "n_envs": b,
            "env_steps": first["env_steps"],
            "episodes": first["episodes"],
            "updates": first["updates"],
            "setup_s": statistics.median(x["setup_s"] for x in rs),
            "call_s": statistics.median(x["call_s"] for x in rs),
            "steps_per_s": sps,
            "steps_per_s_min": min(x["steps_per_s"] for x in rs),
            "steps_per_s_max": max(x["steps_per_s"] for x in rs),
            "loop_steps_per_s": statistics.median(x["loop_steps_per_s"] for x in rs),
            "updates_per_s": statistics.median(x["updates"] / max(x["call_s"], 1e-9) for x in rs),
            "ratio_vs_B1": (sps / base) if base else None,
            "repeats": len(rs),
        }
        summary.append(row)
        line = [env, algo, row["n_agents"], b, row["env_steps"], row["episodes"], row["updates"], row["setup_s"],
                row["call_s"], sps]
        if args.repeats > 1:
            line.append(f"{row['steps_per_s_min']:,.0f}\u2013{row['steps_per_s_max']:,.0f}")
        line += [row["loop_steps_per_s"], row["updates_per_s"],
                 f"{row['ratio_vs_B1']:.2f}x" if row["ratio_vs_B1"] is not None else "n/a"]
        rows.append(line)
    results["throughput"] = summary
    headers = ["env", "algo", "agents", "B", "env steps", "episodes", "updates", "setup s", "train() s", "steps/s"]
    if args.repeats > 1:
        headers.append("steps/s range")
    headers += ["loop steps/s", "updates/s", "vs B=1"]
    print()
    print(table(headers, rows))
    print("\nsteps/s = env steps / wall time of the whole train() call (setup included); setup s = train() s minus "
          "train()'s own loop clock;\nloop steps/s excludes that setup; vs B=1 = steps/s over the same env and algo at B=1"
          + (" (n/a: B=1 not measured)" if not any(b == 1 for (_, _, b) in groups) else "") + ".")
    q = [r for r in summary if r["env"] == "rendezvous" and r["algo"] == "qmix" and r["n_envs"] > 1 and r["n_agents"] == 4]
    if q:
        best = max(q, key=lambda r: r["steps_per_s"])
        verdict = "meets" if best["steps_per_s"] >= TARGET_SPS else "is below"
        print(f"target check (informational): QMIX rendezvous best {best['steps_per_s']:,.0f} steps/s at B={best['n_envs']} "
              f"{verdict} the 5,000 steps/s target")
    sys.stdout.flush()


# ---------------------------------------------------------------- threshold mode
class UniformRandomTeam:
    """Uniform random over each agent's available actions (a ``TeamPolicy``)."""

    def __init__(self, rng: np.random.Generator) -> None:
        self.rng = rng

    def reset(self, mask: np.ndarray) -> None:
        pass

    def act(self, ts: Any) -> np.ndarray:
        r = self.rng.random(ts.avail_actions.shape)
        r[~ts.avail_actions] = -1.0
        return r.argmax(-1)


def random_return(env_name: str, seed: int, episodes: int = RANDOM_EPISODES) -> float:
    env = make(env_name, n_envs=min(episodes, 32), **ENV_OPTIONS.get(env_name, {}))
    try:
        eps = evaluate(env, UniformRandomTeam(np.random.default_rng(seed)), episode_seeds(seed, episodes))
    finally:
        env.close()
    return float(np.mean([e.ret for e in eps]))


def smooth_returns(rows: list[dict[str, Any]], window: int) -> list[dict[str, Any]]:
    """Progress rows with a running training return added.

    Each row's ``return_mean`` covers only the episodes finished since the
    previous row, so early rows (few episodes) are noisy. ``smooth_return`` is
    the episode-weighted mean over the trailing rows that cover at least
    ``window`` episodes; ``full`` says the window was filled.
    """
    out: list[dict[str, Any]] = []
    hist: list[tuple[int, float]] = []
    prev = 0
    for x in rows:
        n = int(x["episodes"]) - prev
        prev = int(x["episodes"])
        if x.get("return_mean") is None or n <= 0:
            continue
        hist.append((n, float(x["return_mean"])))
        tot, acc = 0, 0.0
        for n_i, m_i in reversed(hist):
            tot += n_i
            acc += n_i * m_i
            if tot >= window:
                break
        out.append({**x, "smooth_return": acc / tot, "smooth_n": tot, "full": tot >= window})
    return out


def to_threshold(args: argparse.Namespace, root: Path, results: dict[str, Any]) -> None:
    bs = args.threshold_n_envs
    print(f"\n== Wall-clock to threshold: B in {bs}, seed {args.seed}; training return = running mean over the last "
          f">= {args.smooth_episodes} finished training episodes (epsilon-greedy), read at each log row")
    out: list[dict[str, Any]] = results.setdefault("to_threshold", [])
    baselines = {}
    for env in args.envs:
        baselines[env] = random_return(env, args.seed)
        budget = args.threshold_steps or get_entry(env).train_steps
        if env in FIXED_THRESHOLDS:
            rule = f"return >= {FIXED_THRESHOLDS[env]}"
        elif env == "spread" and args.spread_threshold is not None:
            rule = f"return >= {args.spread_threshold} (--spread-threshold)"
        else:
            rule = f"return >= random + {args.threshold_frac:.0%} of (final - random)"
        print(f"   {env}: budget {budget:,} env steps, random policy mean return {baselines[env]:.3f} "
              f"over {RANDOM_EPISODES} episodes; threshold: {rule}")
    sys.stdout.flush()
    combos = [(e, a, b) for e in args.envs for a in args.algos for b in bs]
    k = 0
    try:
        for env, algo, b in combos:
            k += 1
            budget = args.threshold_steps or get_entry(env).train_steps
            _log(f"  [{k}/{len(combos)}] {env:<10} {algo:<4} B={b:<3} {budget:,} steps ...")
            r = run_training(root, f"th_{k}", env, algo, b, budget, args, log_every=max(1, budget // 100))
            rows = smooth_returns(r["rows"], args.smooth_episodes)
            rnd = baselines[env]
            final = rows[-1]["smooth_return"] if rows else None
            best = max((x["smooth_return"] for x in rows if x["full"]), default=None)
            if env in FIXED_THRESHOLDS:
                thr = FIXED_THRESHOLDS[env]
            elif env == "spread" and args.spread_threshold is not None:
                thr = args.spread_threshold
            elif final is not None and final > rnd:
                thr = rnd + args.threshold_frac * (final - rnd)
            else:
                thr = None  # no improvement over random: nothing to time
            hit = next((x for x in rows if thr is not None and x["full"] and x["smooth_return"] >= thr), None)
            rec = {
                "env": env,
                "algo": algo,
                "n_envs": b,
                "budget": budget,
                "random_return": rnd,
                "threshold": thr,
                "final_return": final,
                "best_return": best,
                "improvement_over_random": (final - rnd) if final is not None else None,
                "reached": hit is not None,
                "env_steps_to_threshold": hit["env_steps"] if hit else None,
                "loop_s_to_threshold": hit["wall_s"] if hit else None,
                "call_s_to_threshold": hit["call_s"] if hit else None,
                "setup_s": r["setup_s"],
                "total_s": r["call_s"],
                "steps_per_s": r["steps_per_s"],
                "smooth_episodes": args.smooth_episodes,
                "curve": [
                    {"env_steps": x["env_steps"], "call_s": round(x["call_s"], 3), "return_mean": x["return_mean"],
                     "smooth_return": x["smooth_return"]}
                    for x in rows
                ],
            }
            out.append(rec)
            _log(f"      final return {final if final is None else round(final, 3)}, "
                 + (f"threshold {thr:.3f} reached at {hit['env_steps']:,} steps / {hit['call_s']:.1f} s"
                    if hit else f"threshold {'-' if thr is None else round(thr, 3)} not reached")
                 + f"; {r['call_s']:.1f} s total")
    except KeyboardInterrupt:
        _log("  interrupted: the table below holds the runs finished so far")
        results["interrupted"] = True
    rows = []
    for r in out:
        rows.append([r["env"], r["algo"], r["n_envs"], r["budget"], r["random_return"], r["final_return"],
                     r["improvement_over_random"], r["threshold"],
                     r["env_steps_to_threshold"] if r["reached"] else "not reached",
                     r["call_s_to_threshold"], r["loop_s_to_threshold"], r["total_s"], r["steps_per_s"]])
    print()
    print(table(["env", "algo", "B", "budget", "random", "final", "final-random", "threshold", "steps to thr",
                 "s to thr", "loop s to thr", "total s", "steps/s"], rows))
    print("\ns to thr = seconds from the start of the train() call to the first log row at or above the threshold "
          "(setup included);\nloop s to thr = the same on train()'s own clock (setup excluded). final = the running return "
          "at the end. Returns are\ntraining returns under exploration, not greedy evaluations; random = uniform random "
          f"policy over available actions, {RANDOM_EPISODES} episodes.")
    sys.stdout.flush()


# ---------------------------------------------------------------- main
def parse_args(argv: list[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--steps", type=int, default=20_000, help="env steps per throughput run (default 20000)")
    p.add_argument("--quick", action="store_true", help="tiny smoke run: 2000 steps, B=8 only (threshold mode: 4000 steps)")
    p.add_argument("--algos", default=",".join(DEFAULT_ALGOS), help="comma list (default qmix,vdn,iql)")
    p.add_argument("--envs", default=",".join(DEFAULT_ENVS), help="comma list (default rendezvous,spread)")
    p.add_argument("--n-envs", default=None, help="comma list of B (default 1,8,32; threshold mode 8,32)")
    p.add_argument("--repeats", type=int, default=1, help="runs per configuration, interleaved; tables show the median")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--torch-threads", type=int, default=RunConfig().torch_threads,
                   help=f"torch threads per run (default {RunConfig().torch_threads}, the RunConfig default)")
    p.add_argument("--episodes-per-update", type=int, default=None,
                   help="fix the learner's episodes per gradient update for every B (default: the learner's, = B)")
    p.add_argument("--to-threshold", action="store_true",
                   help="also measure wall-clock to a return threshold with each env's full budget (many minutes)")
    p.add_argument("--threshold-only", action="store_true", help="with --to-threshold: skip the throughput tables")
    p.add_argument("--threshold-steps", type=int, default=None, help="override the env budget in threshold mode")
    p.add_argument("--spread-threshold", type=float, default=None,
                   help="absolute return threshold for spread (default: random + --threshold-frac of final - random)")
    p.add_argument("--threshold-frac", type=float, default=0.5, help="fraction of the improvement over random (default 0.5)")
    p.add_argument("--smooth-episodes", type=int, default=100,
                   help="threshold mode: running return over at least this many training episodes (default 100)")
    p.add_argument("--json", type=Path, default=None, metavar="PATH", help="also write the results as JSON")
    args = p.parse_args(argv)

    args.algos = _csv(args.algos)
    args.envs = _csv(args.envs)
    for a in args.algos:
        get_algo(a)  # ConfigError names the valid ones
    for e in args.envs:
        get_entry(e)  # EnvError names the valid ones
    n_envs = _csv(args.n_envs, int) if args.n_envs else None
    if args.quick:
        args.steps = 2000
        n_envs = n_envs or [8]
        args.threshold_steps = args.threshold_steps or 4000
    args.n_envs = n_envs or DEFAULT_N_ENVS
    args.threshold_n_envs = n_envs or THRESHOLD_N_ENVS
    if not args.algos or not args.envs or not args.n_envs:
        raise BenchError("--algos, --envs and --n-envs must not be empty")
    if any(b < 1 for b in args.n_envs):
        raise BenchError(f"--n-envs values must be >= 1, got {args.n_envs}")
    if args.steps < 1 or args.repeats < 1 or args.torch_threads < 1 or args.smooth_episodes < 1:
        raise BenchError("--steps, --repeats, --torch-threads and --smooth-episodes must be >= 1")
    if args.threshold_only and not args.to_threshold:
        raise BenchError("--threshold-only needs --to-threshold")
    if not 0.0 < args.threshold_frac <= 1.0:
        raise BenchError(f"--threshold-frac must be in (0, 1], got {args.threshold_frac}")
    return args


def main(argv: list[str] | None = None) -> int:
    try:
        args = parse_args(argv)
    except (BenchError, ConfigError, EnvError) as e:
        _log(f"error: {e}")
        return 2

    info = machine_info(args.torch_threads)
    results: dict[str, Any] = {"machine": info, "target": TARGET, "settings": {
        k: v for k, v in vars(args).items() if k != "json"}}
    cpus = f"{info['nproc']} cpus" + (f" ({info['cpus_usable']} usable)" if "cpus_usable" in info else "")
    print("marl-edge training throughput benchmark")
    print(f"machine: {cpus}, {info['cpu'] or 'unknown cpu'}, load avg {info.get('loadavg_start', '-')}")
    print(f"python {info['python']}, torch {info['torch']} (threads per run: {args.torch_threads}; torch default "
          f"{info['torch_threads_default']}), numpy {info['numpy']}, marl-edge {info['marl-edge']} "
          f"git {str((info['git'] or {}).get('revision') or '-')[:10]}{' (dirty)' if (info['git'] or {}).get('dirty') else ''}")
    print(TARGET)
    sys.stdout.flush()

    try:
        with tempfile.TemporaryDirectory(prefix="marl-bench-") as tmp:
            root = Path(tmp)
            # warm-up: pay one-time costs (lazy imports such as tensorboard, first torch ops) outside the tables
            t = time.perf_counter()
            run_training(root, "warmup", args.envs[0], args.algos[0], args.n_envs[0], 500, args)
            results["warmup_s"] = time.perf_counter() - t
            print(f"warm-up run (500 steps of {args.envs[0]}/{args.algos[0]}, not in the tables): {results['warmup_s']:.2f} s")
            if not args.threshold_only:
                throughput(args, root, results)
            if args.to_threshold and not results.get("interrupted"):
                to_threshold(args, root, results)
    except (ConfigError, EnvError, RunError) as e:
        _log(f"error: {e}")
        return 2
    except KeyboardInterrupt:
        _log("interrupted")
        results["interrupted"] = True

    if hasattr(os, "getloadavg"):
        info["loadavg_end"] = [round(x, 2) for x in os.getloadavg()]
        print(f"\nload avg at the end: {info['loadavg_end']} (other jobs on the machine skew these numbers)")
    if args.json is not None:
        try:
            write_json_atomic(args.json, results)
        except OSError as e:
            _log(f"error: cannot write {args.json}: {e.strerror or e}")
            return 1
        print(f"results written to {args.json}")
    return 130 if results.get("interrupted") else 0


if __name__ == "__main__":
    sys.exit(main())
