"""Communication, measured side by side in one run: does talking pay, does
dropout buy robustness, and what does each topology cost on the wire.

Three tables (printed, never asserted):

1. ``talk``: on ``scout`` (one agent sees the target; see envs/scout.py), each
   learner with comm=none|mean|knn|attention, ``--seeds`` seeds each: greedy
   return (mean ± std over seeds of each run's 500-episode mean) beside the
   silent and talking ceilings.
2. ``dropout``: policies trained with msg_dropout 0 and ``--dropout``
   (default 0.2) on a sparse scout team (n=6, T=5, knn:2: the target must be
   relayed), evaluated under message loss 0..50 %: mean ± std over seeds,
   and the drop from each policy's own loss-free return.
3. ``volume``: messages, floats and bytes per step for n = 4..64 under
   broadcast, knn:3 and graph:ring, plus a short spread n=16 training run per
   topology whose *measured* floats per step sit beside the formula.

    .venv/bin/python benchmarks/comm.py                      # all three, ~20 min on 2 cores
    .venv/bin/python benchmarks/comm.py --tables talk --algos qmix
    .venv/bin/python benchmarks/comm.py --tables dropout --json comm.json
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np

from marl_edge.envs.scout import silent_ceiling, talking_ceiling
from marl_edge.envs.topology import message_volume, parse_topology
from marl_edge.train.config import RunConfig
from marl_edge.train.rundir import create_run_dir, git_revision, make_run_spec
from marl_edge.train.loop import train
from marl_edge.train.evaluation import evaluate_run

EVAL_SEED = 12345  # evaluation episodes differ from every training seed's


def run_one(root: Path, name: str, env: str, algo: str, steps: int, seed: int, sets: dict[str, Any], env_options: dict[str, Any]) -> Path:
    run = RunConfig(env=env, algo=algo, steps=steps, seed=seed, eval_episodes=0, env_options=env_options, checkpoint_every=steps, save_buffer=False)
    rs = make_run_spec(run, {k: str(v) for k, v in sets.items()})
    out = create_run_dir(rs, root / name)
    t0 = time.perf_counter()
    train(out)
    print(f"  trained {name} in {time.perf_counter() - t0:.0f} s", file=sys.stderr, flush=True)
    return out


def mean_std(xs: list[float]) -> str:
    return f"{statistics.mean(xs):.3f} ± {statistics.pstdev(xs):.3f}" if len(xs) > 1 else f"{xs[0]:.3f}"


def table(headers: list[str], rows: list[list[str]]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(cells)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (x + 2) for x in w) + "|", *(line(r) for r in rows)])


def talk(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    out: dict[str, Any] = {}
    rows = []
    for algo in args.algos:
        for comm in args.comms:
            rets = []
            sets: dict[str, Any] = {"comm": comm}
            if comm == "knn":
                sets["comm_k"] = args.knn_k  # fewer than the 3 others, or knn is the mean
            for seed in range(args.seeds):
                d = run_one(root, f"talk_{algo}_{comm}_s{seed}", "scout", algo, args.talk_steps, seed, sets, {})
                rets.append(evaluate_run(d, args.episodes, EVAL_SEED)["mean_return"])
            out[f"{algo}/{comm}"] = rets
            label = f"knn (comm_k={args.knn_k})" if comm == "knn" else comm
            rows.append([algo, label, mean_std(rets), " ".join(f"{r:.3f}" for r in rets)])
    print(f"\n## talk: scout (n=4, K=4, T=4), {args.talk_steps:,} steps, {args.seeds} seeds, {args.episodes} eval episodes each")
    print(f"silent ceiling {silent_ceiling(4, 4, 4):.4f}, talking ceiling {talking_ceiling(4, 4, 4):.4f}, random 1.0\n")
    print(table(["algo", "comm", "return (mean ± std over seeds)", "per seed"], rows))
    return out


def dropout(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    losses = [0.0, 0.1, 0.2, 0.3, 0.4, 0.5]
    env_opts = {"n_agents": 6, "episode_limit": 5}
    curves: dict[str, list[list[float]]] = {}
    for p in (0.0, args.dropout):
        per_seed = []
        for seed in range(args.seeds):
            d = run_one(root, f"drop_p{p}_s{seed}", "scout", "qmix", args.dropout_steps, seed,
                        {"comm": "mean", "topology": "knn:2", "msg_dropout": p}, env_opts)
            per_seed.append([evaluate_run(d, args.episodes, EVAL_SEED, msg_loss=loss)["mean_return"] for loss in losses])
        curves[f"p={p}"] = per_seed
    print(f"\n## dropout: scout n=6, T=5, knn:2, qmix + mean, {args.dropout_steps:,} steps, {args.seeds} seeds; "
          f"greedy return under message loss ({args.episodes} episodes per point)")
    print(f"silent ceiling {silent_ceiling(6, 4, 5):.4f}\n")
    rows = []
    for i, loss in enumerate(losses):
        row = [f"{loss:.0%}"]
        for key, per_seed in curves.items():
            vals = [c[i] for c in per_seed]
            drops = [c[0] - c[i] for c in per_seed]
            row += [mean_std(vals), f"{statistics.mean(drops):.3f}"]
        rows.append(row)
    heads = ["loss"] + [h for key in curves for h in (f"trained {key}", f"{key}: drop")]
    print(table(heads, rows))
    return {"losses": losses, "curves": curves}


def volume(root: Path, args: argparse.Namespace) -> dict[str, Any]:
    d = 8
    rows = []
    for n in (4, 16, 64):
        for spec in ("broadcast", "knn:3", "graph:ring"):
            v = message_volume(parse_topology(spec, n), n, d)
            rows.append([str(n), spec, f"{v['messages_per_step']:,}", f"{v['floats_per_step']:,}", f"{v['bytes_per_step']:,}",
                         f"{v['fraction_of_broadcast']:.3f}"])
    print(f"\n## volume: per step, d = {d} float32 (formula)\n")
    print(table(["n", "topology", "messages", "floats", "bytes", "of broadcast"], rows))
    measured = {}
    rows = []
    for spec in ("knn:3", "broadcast"):
        run = run_one(root, f"vol_{spec.replace(':', '')}", "spread", "qmix", args.volume_steps, 0,
                      {"comm": "mean", "topology": spec, "msg_dim": d}, {"n_agents": 16})
        with open(run / "metrics.csv") as f:
            import csv

            last = list(csv.DictReader(f))[-1]
        measured[spec] = float(last["msg_floats_per_step"])
        rows.append([spec, last["msgs_per_step"], last["msg_floats_per_step"], str(message_volume(parse_topology(spec, 16), 16, d)["floats_per_step"])])
    print(f"\nspread n=16, {args.volume_steps:,} training steps: measured in the rollout vs the formula\n")
    print(table(["topology", "msgs/step measured", "floats/step measured", "floats/step formula"], rows))
    return measured


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--tables", default="talk,dropout,volume")
    ap.add_argument("--algos", default="qmix,vdn,iql", type=lambda s: s.split(","))
    ap.add_argument("--comms", default="none,mean,knn,attention", type=lambda s: s.split(","))
    ap.add_argument("--seeds", type=int, default=3)
    ap.add_argument("--episodes", type=int, default=500)
    ap.add_argument("--talk-steps", type=int, default=40_000)
    ap.add_argument("--knn-k", type=int, default=2, help="talk: the knn aggregator's comm_k (the 2 nearest of 3)")
    ap.add_argument("--dropout", type=float, default=0.2)
    ap.add_argument("--dropout-steps", type=int, default=60_000)
    ap.add_argument("--volume-steps", type=int, default=2_000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    print(f"# marl-edge communication experiments  (git {git_revision().get('revision', '?')})")
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="marl-comm-") as tmp:
        root = Path(tmp)
        for name in args.tables.split(","):
            results[name] = {"talk": talk, "dropout": dropout, "volume": volume}[name](root, args)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    np.set_printoptions(precision=3)
    main()
