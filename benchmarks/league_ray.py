"""League evaluation matches per second: in process, and as Ray tasks with 1 and 2 workers.

The members come from a short ``marl-league selfplay`` run on biased
rock-paper-scissors (or ``--league DIR``, an existing league). Their
round-robin (``league.matches.round_robin``, one seat per pair: the game is
symmetric) is played three ways, side by side in one run:

* ``in process``: ``play_matches(specs, workers=0)``;
* ``ray, W workers``: ``play_matches(specs, workers=W)``, one Ray task per
  match on a local Ray of W CPUs, bundles shipped as bytes.

Ray's startup (``ray.init`` and a first task per worker that imports the
package) and its shutdown are timed apart from the matches, which run on the
already started Ray; the table shows matches per second without and with
them. It also checks that every way gives the same results.
It asserts nothing (benchmarks/README.md).

    python benchmarks/league_ray.py --members-steps 2000 --snapshot-every 250 --episodes 100
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from marl_edge.league.matches import is_symmetric, member_game, play_matches, round_robin
from marl_edge.league.members import LeagueDir


def make_league(out: Path, steps: int, snapshot_every: int) -> None:
    cmd = [sys.executable, "-m", "marl_edge.cli.league", "selfplay", "--out", str(out), "--mode", "fsp", "--steps", str(steps),
           "--snapshot-every", str(snapshot_every), "--n-envs", "16", "--set", "recurrent=false",
           "--set", "ent_start=0.3", "--set", "ent_end=0.3"]
    print("# " + " ".join(["marl-league", *cmd[3:]]).replace(str(out), "LEAGUE"), flush=True)
    subprocess.run(cmd, check=True, stdout=subprocess.DEVNULL)


def _warm() -> str:
    import marl_edge.league.matches  # noqa: F401  (what a match task imports first)

    return "ok"


def ray_run(specs: list, workers: int) -> tuple[list, float, float, float]:
    """Results, seconds to start a local Ray of ``workers`` CPUs with warm workers, seconds of
    the matches alone (``play_matches`` uses the running Ray), seconds to shut it down."""
    import logging

    import ray

    t0 = time.perf_counter()
    ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING)
    try:
        task = ray.remote(num_cpus=1)(_warm)
        ray.get([task.remote() for _ in range(workers)])
        t1 = time.perf_counter()
        results = play_matches(specs, workers=workers)
        t2 = time.perf_counter()
    finally:
        ray.shutdown()
    return results, t1 - t0, t2 - t1, time.perf_counter() - t2


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--league", type=Path, default=None, help="use this league directory; a short one is trained there if it holds none (default: a temporary one)")
    ap.add_argument("--members-steps", type=int, default=2_000, help="env steps of the self-play run that makes the members")
    ap.add_argument("--snapshot-every", type=int, default=250, help="env steps between its snapshots")
    ap.add_argument("--episodes", type=int, default=100, help="episodes per match")
    ap.add_argument("--workers", default="1,2", help="comma-separated Ray worker counts")
    ap.add_argument("--repeats", type=int, default=3, help="runs of every config, interleaved; the table shows medians")
    args = ap.parse_args()
    # a local Ray on loopback only (Ray's single-machine mode; read when ray is first imported)
    os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    print(f"# machine: {platform.machine()} {platform.system()}, {os.cpu_count()} cores, python {platform.python_version()}, "
          f"load {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    with tempfile.TemporaryDirectory() as tmp:
        root = args.league or Path(tmp) / "league"
        if not (root / "members.json").is_file():
            make_league(root, args.members_steps, args.snapshot_every)
        league = LeagueDir(root)
        paths = [league.bundle_path(m) for m in league.members()]
        game, options = member_game(paths[0])
        specs = [s for _, _, s in round_robin(paths, game, options, args.episodes, seed=0, both_seats=not is_symmetric(game, options))]
        print(f"# {len(paths)} members of {game}: {len(specs)} matches of {args.episodes} episodes")

        configs = [0] + [int(w) for w in args.workers.split(",")]
        runs: dict[int, list[tuple[float, float, float]]] = {w: [] for w in configs}
        same = {w: True for w in configs}
        reference = None
        for _ in range(args.repeats):  # interleaved, so a change in the machine's load hits every config alike
            for workers in configs:
                if workers == 0:
                    t0 = time.perf_counter()
                    results = play_matches(specs, workers=0)
                    start, wall, stop = 0.0, time.perf_counter() - t0, 0.0
                else:
                    results, start, wall, stop = ray_run(specs, workers)
                reference = reference if reference is not None else results
                same[workers] = same[workers] and results == reference
                runs[workers].append((start, wall, stop))

    n = len(specs)
    print(f"\n{args.repeats} repeat(s); medians, with the range of matches/s over the repeats")
    print(f"{'how':<16} {'matches s':>9} {'matches/s':>10} {'range':>13} {'vs in process':>14} {'ray start s':>12} {'ray stop s':>11} "
          f"{'matches/s incl. start+stop':>27} {'same results':>13}")
    base = n / statistics.median(r[1] for r in runs[0])
    for workers in configs:
        start, wall, stop = (statistics.median(r[k] for r in runs[workers]) for k in range(3))
        rates = [n / r[1] for r in runs[workers]]
        how = "in process" if workers == 0 else f"ray, {workers} worker{'s' if workers > 1 else ''}"
        ray_cols = f"{start:12.2f} {stop:11.2f}" if workers else f"{'-':>12} {'-':>11}"
        print(f"{how:<16} {wall:9.2f} {n / wall:10.2f} {min(rates):6.2f}-{max(rates):<6.2f} {n / wall / base:13.2f}x {ray_cols} "
              f"{statistics.median(n / sum(r) for r in runs[workers]):27.2f} {'yes' if same[workers] else 'NO':>13}")
    print(f"# load at the end: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")


if __name__ == "__main__":
    main()
