"""Learning results of the actor-critic learners beside QMIX, over seeds.

A results table, not a speed benchmark: each (task, algorithm) is trained
for ``--seeds`` seeds on the task's budget, evaluated greedily on episodes no
training seed plays (seed 12345), and printed as mean ± std over seeds beside
a uniform random team and the task's known optimum. Nothing is asserted.

Tasks (the algorithms each one is run with):

- ``two_step``   (QMIX paper's two-step game, optimum 8): coma, qmix
- ``rendezvous`` (4 agents, +10 on success):            mappo, ippo, qmix
- ``spread``     (3 agents, discrete moves):             mappo, ippo, qmix
- ``spread_cont``(3 agents, continuous velocity box):    maddpg (QMIX needs discrete actions)

    .venv/bin/python benchmarks/learning.py                                  # everything, ~1.5 h on 2 cores
    .venv/bin/python benchmarks/learning.py --tasks two_step,rendezvous --seeds 3 --json learn.json
    .venv/bin/python benchmarks/learning.py --tasks spread --algos mappo --steps 50000
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

from marl_edge.envs import episode_seeds, make
from marl_edge.envs.rollout import evaluate
from marl_edge.train.config import RunConfig
from marl_edge.train.rundir import create_run_dir, git_revision, make_run_spec
from marl_edge.train.loop import train
from marl_edge.train.evaluation import evaluate_run

from comm import table  # noqa: E402  (benchmarks/ is the script's folder on sys.path)

EVAL_SEED = 12345
TASKS: dict[str, dict[str, Any]] = {
    "two_step": {"env": "two_step", "options": {}, "algos": ["coma", "qmix"], "optimum": "8"},
    "rendezvous": {"env": "rendezvous", "options": {"n_agents": 4}, "algos": ["mappo", "ippo", "qmix"], "optimum": "10 (success)"},
    "spread": {"env": "spread", "options": {"n_agents": 3}, "algos": ["mappo", "ippo", "qmix"], "optimum": "-21 (hand-coded)"},
    "spread_cont": {"env": "spread", "options": {"n_agents": 3, "continuous": True}, "algos": ["maddpg"], "optimum": "n/a"},
}


class RandomTeam:
    """Uniform random actions: over the available ones, or in the action box."""

    def __init__(self, spec: Any, rng: np.random.Generator) -> None:
        self.spec, self.rng = spec, rng

    def reset(self, mask: np.ndarray) -> None:
        pass

    def act(self, ts: Any) -> np.ndarray:
        if self.spec.action_dim is not None:
            B, n = ts.obs.shape[:2]
            return self.rng.uniform(self.spec.action_low, self.spec.action_high, (B, n, self.spec.action_dim)).astype(np.float32)
        r = self.rng.random(ts.avail_actions.shape)
        r[~ts.avail_actions] = -1.0
        return r.argmax(-1)


def random_return(env_name: str, options: dict[str, Any], episodes: int) -> float:
    env = make(env_name, n_envs=min(episodes, 32), **options)
    try:
        eps = evaluate(env, RandomTeam(env.spec, np.random.default_rng(0)), episode_seeds(EVAL_SEED, episodes))
    finally:
        env.close()
    return float(np.mean([e.ret for e in eps]))


def mean_std(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.2f} ± {statistics.pstdev(xs):.2f}" if len(xs) > 1 else f"{xs[0]:.2f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tasks", default=",".join(TASKS), type=lambda s: s.split(","))
    ap.add_argument("--algos", default=None, type=lambda s: s.split(","), help="only these algorithms (default: each task's list)")
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--steps", type=int, default=None, help="env steps per run (default: the env's registered budget)")
    ap.add_argument("--episodes", type=int, default=200, help="greedy evaluation episodes per run")
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    for t in args.tasks:
        if t not in TASKS:
            sys.exit(f"error: unknown task {t!r}; choose from {', '.join(TASKS)}")
    load = os.getloadavg()[0]
    print(f"# marl-edge learning results  (git {git_revision().get('revision', '?')}, nproc {os.cpu_count()}, load {load:.2f})", flush=True)
    rows, out = [], []
    with tempfile.TemporaryDirectory(prefix="marl-learn-") as tmp:
        for task in args.tasks:
            tk = TASKS[task]
            rnd = random_return(tk["env"], tk["options"], args.episodes)
            for algo in [a for a in tk["algos"] if args.algos is None or a in args.algos]:
                rets, walls, steps = [], [], 0
                for seed in range(args.seeds):
                    run = RunConfig(env=tk["env"], algo=algo, steps=args.steps, seed=seed, eval_episodes=0, env_options=dict(tk["options"]),
                                    save_buffer=False)
                    rs = make_run_spec(run, {})
                    d = create_run_dir(rs, Path(tmp) / f"{task}_{algo}_s{seed}")
                    t0 = time.perf_counter()
                    train(d)
                    walls.append(time.perf_counter() - t0)
                    steps = rs.total_steps
                    rets.append(evaluate_run(d, args.episodes, EVAL_SEED)["mean_return"])
                    print(f"  {task} {algo} seed {seed}: {rets[-1]:.3f} ({walls[-1]:.0f} s)", file=sys.stderr, flush=True)
                rows.append([task, algo, f"{steps:,}", mean_std(rets), " ".join(f"{r:.2f}" for r in rets), f"{rnd:.2f}", tk["optimum"],
                             f"{statistics.mean(walls):.0f}"])
                out.append({"task": task, "algo": algo, "steps": steps, "returns": rets, "random": rnd, "wall_s": walls})
    print(f"\nGreedy return over {args.episodes} evaluation episodes (seed {EVAL_SEED}), mean ± std over {args.seeds} seeds "
          f"(seeds 0..{args.seeds - 1}), default configs:\n")
    print(table(["task", "algo", "env steps", "return", "per seed", "random", "optimum", "train s"], rows))
    print(f"\nload average: {load:.2f} at the start, {os.getloadavg()[0]:.2f} at the end")
    if args.json:
        args.json.write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
