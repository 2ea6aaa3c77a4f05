"""QMIX beside weighted QMIX (OW, CW) on the non-monotonic matrix games.

A results table, not a speed benchmark. ``climbing`` (optimum 11 beside -30
penalties) and ``penalty`` with k = 100 (optima 10, miscoordination -100, a
safe 2) are payoffs QMIX's monotonic mixer cannot represent; it settles on the
safe joint action (7 and 2). Each (game, algorithm, seed) trains with the same
budget and exploration (default 10,000 one-step episodes, 16 at a time: 2,500
updates, epsilon annealed 1 -> 0.05 over the first 40 %), then plays greedily; the table shows one row per run:
its greedy return, env steps and wall-clock. Nothing is asserted.

    .venv/bin/python benchmarks/matrix_games.py                           # 3 seeds x 2 games x 3 algos, ~10 min on 2 idle cores
    .venv/bin/python benchmarks/matrix_games.py --algos qmix,cw_qmix --seeds 1 --steps 5000 --n-envs 32
    .venv/bin/python benchmarks/matrix_games.py --set alpha=0.5 --algos ow_qmix     # a key of the algorithms' configs
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

from marl_edge.train.config import RunConfig, parse_set
from marl_edge.train.evaluation import evaluate_run
from marl_edge.train.loop import train
from marl_edge.train.rundir import create_run_dir, git_revision, make_run_spec

from comm import table  # noqa: E402  (benchmarks/ is the script's folder on sys.path)

GAMES: dict[str, dict[str, Any]] = {
    "climbing": {"options": {}, "optimum": 11.0, "qmix_known": 7.0},
    "penalty": {"options": {"k": 100.0}, "optimum": 10.0, "qmix_known": 2.0},
}
EVAL_EPISODES = 8  # the games are deterministic: every greedy episode returns the same payoff


def run_one(root: Path, game: str, algo: str, seed: int, steps: int | None, n_envs: int, sets: dict[str, str]) -> dict[str, Any]:
    """Train one run in ``root`` and play it greedily; its row of the table as a dict."""
    run = RunConfig(env=game, algo=algo, steps=steps, seed=seed, n_envs=n_envs, eval_episodes=0,
                    env_options=dict(GAMES[game]["options"]), save_buffer=False)
    rs = make_run_spec(run, sets)
    d = create_run_dir(rs, root / f"{game}_{algo}_s{seed}")
    t0 = time.perf_counter()
    summary = train(d)
    wall = time.perf_counter() - t0
    ret = evaluate_run(d, EVAL_EPISODES, seed)["mean_return"]
    return {"seed": seed, "game": game, "algo": algo, "return": ret, "env_steps": int(summary["env_steps"]), "wall_s": wall,
            "optimum": GAMES[game]["optimum"]}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--games", default=",".join(GAMES), type=lambda s: s.split(","))
    ap.add_argument("--algos", default="qmix,ow_qmix,cw_qmix", type=lambda s: s.split(","))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=10_000, help="env steps per run (the games' registered budget is 20,000)")
    ap.add_argument("--n-envs", type=int, default=16, help="parallel episodes; one update per n_envs / 4 episodes")
    ap.add_argument("--set", dest="sets", action="append", default=[], help="KEY=VALUE for every algorithm's config (as marl-train --set)")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    for g in args.games:
        if g not in GAMES:
            sys.exit(f"error: unknown game {g!r}; choose from {', '.join(GAMES)}")
    sets = parse_set(args.sets)
    load = os.getloadavg()[0]
    print(f"# QMIX vs weighted QMIX on matrix games  (git {git_revision().get('revision', '?')}, nproc {os.cpu_count()}, "
          f"load {load:.2f}, n_envs {args.n_envs}{', ' + ' '.join(args.sets) if args.sets else ''})", flush=True)
    out = []
    with tempfile.TemporaryDirectory(prefix="marl-matrix-") as tmp:
        for seed in range(args.seeds):
            for game in args.games:
                for algo in args.algos:
                    r = run_one(Path(tmp), game, algo, seed, args.steps, args.n_envs, sets)
                    out.append(r)
                    print(f"  seed {seed} {game} {algo}: {r['return']:.1f} ({r['wall_s']:.0f} s)", file=sys.stderr, flush=True)
    rows = [[str(r["seed"]), r["game"], r["algo"], f"{r['return']:.1f}", f"{r['env_steps']:,}", f"{r['wall_s']:.0f} s"] for r in out]
    print("\nGreedy return after training (climbing: optimum 11, QMIX's known 7; penalty k=100: optimum 10, QMIX's known 2):\n")
    print(table(["seed", "game", "algo", "greedy return", "env steps", "wall-clock"], rows))
    print("\nruns at the optimum, per algorithm:")
    for algo in args.algos:
        mine = [r for r in out if r["algo"] == algo]
        hits = sum(r["return"] == r["optimum"] for r in mine)
        print(f"  {algo}: {hits} of {len(mine)}")
    print(f"\nload average: {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
