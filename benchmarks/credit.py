"""Credit assignment side by side: team reward vs difference rewards vs shaping.

A results table and a cost table (printed, never asserted; docs/credit.md):

1. ``learn``: each learner (``--algos``, default QMIX and MAPPO) trained with
   each reward mode (``--modes``) for ``--seeds`` seeds on one env (``--env``,
   ``--env-set KEY=VALUE``): env steps and wall-clock until the training
   return (under exploration, averaged over the last ``--window`` episodes)
   first reaches ``--threshold``, the final greedy return over ``--episodes`` evaluation
   episodes no training seed plays (seed 12345), and, where the evaluation
   reports ``agent_stats`` with an idle share per robot, that share.
2. ``cost``: env steps per second of a random team stepped by the rollout
   loop with no signals, with the counterfactual (difference rewards), with
   the potential (shaping) and with both, at batch sizes ``--cost-batches``:
   what the rollback costs on its own, apart from learning.

Modes: ``team`` (the env's reward), ``difference`` (D_i; VDN/QMIX: the
per-agent auxiliary term), ``team+difference``, ``shaping`` (team reward +
the env's built-in potential, ``shaping=builtin``), ``difference+shaping``.

    .venv/bin/python benchmarks/credit.py --env rendezvous --env-set grid=7 --env-set goal_size=2 --steps 30000
    .venv/bin/python benchmarks/credit.py --env warehouse --steps 200000 --threshold 5 --json credit.json
    .venv/bin/python benchmarks/credit.py --tables cost
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
from marl_edge.envs.credit import CreditSpec
from marl_edge.envs.rollout import Rollout
from marl_edge.train.config import RunConfig, _parse_literal
from marl_edge.train.evaluation import evaluate_run
from marl_edge.train.loop import train
from marl_edge.train.rundir import create_run_dir, git_revision, make_run_spec

from comm import table  # noqa: E402  (benchmarks/ is the script's folder on sys.path)
from learning import RandomTeam  # noqa: E402

EVAL_SEED = 12345
MODES: dict[str, dict[str, str]] = {
    "team": {},
    "difference": {"reward": "difference"},
    "team+difference": {"reward": "team+difference"},
    "shaping": {"shaping": "builtin"},
    "difference+shaping": {"reward": "difference", "shaping": "builtin"},
}


def parse_env_sets(items: list[str]) -> dict[str, Any]:
    out = {}
    for item in items:
        key, _, value = item.partition("=")
        if not key or not value:
            sys.exit(f"error: --env-set expects KEY=VALUE, got {item!r}")
        out[key] = _parse_literal(value)
    return out


def first_reach(rows: list[dict[str, Any]], threshold: float, window: int) -> tuple[int | None, float | None]:
    """Env steps and wall seconds of the first metrics row where the training return, averaged
    over the episodes of the trailing rows that hold at least ``window`` episodes, reaches ``threshold``."""
    hist: list[tuple[int, float]] = []  # (episodes, return mean) per row
    before = 0
    for r in rows:
        k = int(r["episodes"]) - before
        before = int(r["episodes"])
        if r.get("return_mean") is None or k <= 0:
            continue
        hist.append((k, float(r["return_mean"])))
        total, acc = 0, 0.0
        for k_i, ret in reversed(hist):
            total, acc = total + k_i, acc + k_i * ret
            if total >= window:
                break
        if total >= window and acc / total >= threshold:
            return int(r["env_steps"]), float(r["wall_s"])
    return None, None


def idle_share(ev: dict[str, Any]) -> list[float] | None:
    """Per-robot idle share from the evaluation's ``agent_stats``, when the env reports it."""
    stats = ev.get("agent_stats")
    if not isinstance(stats, dict):
        return None
    for key in ("idle_share", "idle"):
        if key in stats:
            return [float(x) for x in stats[key]]
    return None


def fmt(xs: list[float | None], spec: str = ".0f") -> str:
    got = [x for x in xs if x is not None]
    if not got:
        return "never"
    body = f"{statistics.mean(got):{spec}}" + (f" ± {statistics.pstdev(got):{spec}}" if len(got) > 1 else "")
    return body + ("" if len(got) == len(xs) else f" ({len(got)}/{len(xs)} reached)")


def learn(root: Path, args: argparse.Namespace, env_options: dict[str, Any]) -> list[dict[str, Any]]:
    rows, out = [], []
    for algo in args.algos:
        for mode in args.modes:
            res: dict[str, list[Any]] = {"steps": [], "wall": [], "ret": [], "sps": [], "idle": [], "curve": []}
            for seed in range(args.seeds):
                run = RunConfig(env=args.env, algo=algo, steps=args.steps, seed=seed, n_envs=args.n_envs, eval_episodes=0,
                                env_options=env_options, checkpoint_every=args.steps, save_buffer=False, log_every=args.log_every)
                rs = make_run_spec(run, MODES[mode])
                d = create_run_dir(rs, root / f"{algo}_{mode}_s{seed}")
                progress: list[dict[str, Any]] = []
                t0 = time.perf_counter()
                summary = train(d, progress=progress.append)
                wall = time.perf_counter() - t0
                steps, secs = first_reach(progress, args.threshold, args.window)
                ev = evaluate_run(d, args.episodes, EVAL_SEED)
                res["steps"].append(steps)
                res["wall"].append(secs)
                res["ret"].append(ev["mean_return"])
                res["sps"].append(summary["env_steps"] / wall)
                res["idle"].append(idle_share(ev))
                res["curve"].append([(r["env_steps"], r["episodes"], r["return_mean"]) for r in progress])
                print(f"  {algo} {mode} seed {seed}: eval {ev['mean_return']:.2f}, threshold at {steps} steps / "
                      f"{'-' if secs is None else f'{secs:.0f} s'}, {wall:.0f} s", file=sys.stderr, flush=True)
            idle = [x for x in res["idle"] if x is not None]
            idle_txt = " ".join(f"{v:.2f}" for v in np.mean(idle, axis=0)) if idle else "n/a"
            rows.append([algo, mode, fmt(res["steps"]), fmt(res["wall"]), fmt(res["ret"], ".2f"), " ".join(f"{r:.2f}" for r in res["ret"]),
                         f"{statistics.mean(res['sps']):.0f}", idle_txt])
            out.append({"algo": algo, "mode": mode, **res})
    print(f"\n## learn: {args.env} {env_options or ''}, {args.steps:,} steps, n_envs {args.n_envs}, {args.seeds} seeds; "
          f"threshold {args.threshold} on the training return; greedy eval over {args.episodes} episodes (seed {EVAL_SEED})\n")
    print(table(["algo", "reward", "env steps to threshold", "wall s to threshold", "final return", "per seed", "train steps/s",
                 "idle share per robot"], rows))
    return out


def cost(args: argparse.Namespace, env_options: dict[str, Any]) -> list[dict[str, Any]]:
    """Env steps/s of the rollout loop with a random team, with and without each signal."""
    variants = {
        "none": None,
        "shaping": CreditSpec(shaping="builtin"),
        "difference": CreditSpec(difference=True),
        "difference+shaping": CreditSpec(difference=True, shaping="builtin"),
    }
    rows, out = [], []
    for B in args.cost_batches:
        base = None
        for name, credit in variants.items():
            rates = []
            for _ in range(args.repeats):
                env = make(args.env, n_envs=B, **env_options)
                ro = Rollout(env, RandomTeam(env.spec, np.random.default_rng(0)), lambda k: np.arange(k), record=True, credit=credit)
                for _ in range(20):  # warm-up (the counterfactual env is built on the first step)
                    ro.step()
                steps0, t0 = ro.env_steps, time.perf_counter()
                while time.perf_counter() - t0 < args.cost_seconds:
                    ro.step()
                rates.append((ro.env_steps - steps0) / (time.perf_counter() - t0))
                env.close()
            rate = statistics.median(rates)
            base = base or rate
            rows.append([str(B), name, f"{rate:,.0f}", f"{rate / base:.2f}x"])
            out.append({"n_envs": B, "signals": name, "steps_per_s": rates})
    print(f"\n## cost: the rollout loop stepping {args.env} {env_options or ''} with a random team (recording episodes), "
          f"median of {args.repeats} x {args.cost_seconds} s\n")
    print(table(["n_envs", "signals", "env steps/s", "vs none"], rows))
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", default="learn,cost", type=lambda s: s.split(","))
    ap.add_argument("--env", default="rendezvous")
    ap.add_argument("--env-set", action="append", default=[], help="env option KEY=VALUE (repeatable)")
    ap.add_argument("--algos", default="qmix,mappo", type=lambda s: s.split(","))
    ap.add_argument("--modes", default="team,difference,shaping", type=lambda s: s.split(","), help=f"of {', '.join(MODES)}")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=30_000)
    ap.add_argument("--n-envs", type=int, default=8)
    ap.add_argument("--log-every", type=int, default=500, help="env steps per metrics row (the threshold's resolution)")
    ap.add_argument("--threshold", type=float, default=9.0, help="training return that counts as solved (rendezvous: 9 of 10)")
    ap.add_argument("--window", type=int, default=100, help="episodes the training return is averaged over for the threshold")
    ap.add_argument("--episodes", type=int, default=200, help="greedy evaluation episodes per run")
    ap.add_argument("--cost-batches", default="8,32", type=lambda s: [int(x) for x in s.split(",")])
    ap.add_argument("--cost-seconds", type=float, default=2.0)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    for m in args.modes:
        if m not in MODES:
            sys.exit(f"error: unknown mode {m!r}; choose from {', '.join(MODES)}")
    env_options = parse_env_sets(args.env_set)
    load = os.getloadavg()[0]
    print(f"# marl-edge credit assignment  (git {git_revision().get('revision', '?')}, nproc {os.cpu_count()}, load {load:.2f})", flush=True)
    out: dict[str, Any] = {"env": args.env, "env_options": env_options}
    if "cost" in args.tables:
        out["cost"] = cost(args, env_options)
    if "learn" in args.tables:
        with tempfile.TemporaryDirectory(prefix="marl-credit-") as tmp:
            out["learn"] = learn(Path(tmp), args, env_options)
    print(f"\nload average: {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
