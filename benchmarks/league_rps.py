"""The league's main agent on biased rock-paper-scissors, beside fictitious self-play.

One AlphaStar-style league (``league/league.py``: a main agent, a main
exploiter and a league exploiter, AlphaStar's default proportions) and,
with ``--fsp``, one fictitious self-play run with the same learner and the
same env steps per learner. After every snapshot of the main agent (and of
the FSP learner) the script computes exactly (``envs/rps.py``):

* ``newest``: the exploitability of the main agent's newest snapshot;
* ``main mixture``: that of the uniform mixture of the main agent's snapshots
  so far (comparable to FSP's population mixture);
* ``league mixture``: that of the uniform mixture of every member so far
  (the exploiters' snapshots too).

It asserts nothing (benchmarks/README.md).

    python benchmarks/league_rps.py --fsp
"""

from __future__ import annotations

import argparse
import platform
import tempfile
import time
from pathlib import Path

from marl_edge.league.exploit import ExploitabilityTrace
from marl_edge.league.league import LeagueConfig, run_league
from marl_edge.league.members import Member
from marl_edge.league.selfplay import SelfPlayConfig, run_selfplay


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    # multiples of --n-envs, so that the league's and FSP's snapshots fall on the same env steps
    ap.add_argument("--steps", type=int, default=24_576, help="env steps per learner")
    ap.add_argument("--snapshot-every", type=int, default=1_024, help="main agent (and FSP): env steps between snapshots")
    ap.add_argument("--chunk", type=int, default=512, help="env steps of a learner's turn")
    ap.add_argument("--ent", type=float, default=0.3, help="IPPO's entropy bonus (constant)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--n-envs", type=int, default=16)
    ap.add_argument("--fsp", action="store_true", help="also run fictitious self-play (latest 0.8) with the same budget")
    ap.add_argument("--every-row", type=int, default=4, help="print every k-th main snapshot")
    args = ap.parse_args()
    algo = {"recurrent": False, "ent_start": args.ent, "ent_end": args.ent}
    print(f"# machine: {platform.machine()} {platform.system()}, python {platform.python_version()}")
    print(f"# ippo {algo}; {args.steps:,} env steps per learner, chunk {args.chunk}, main snapshot every {args.snapshot_every:,}; "
          f"seed {args.seed}")
    main_trace, league_trace = ExploitabilityTrace(), ExploitabilityTrace()

    def on_snapshot(member: Member, bundle: Path) -> None:
        league_trace(member, bundle)
        if member.role == "main":
            main_trace(member, bundle)
            main_trace.rows[-1]["league_mixture"] = league_trace.rows[-1]["mixture"]

    cfg = LeagueConfig(steps=args.steps, chunk=args.chunk, snapshot_every=args.snapshot_every,
                       main_exploiter_budget=2 * args.snapshot_every, league_exploiter_budget=args.snapshot_every,
                       n_envs=args.n_envs, seed=args.seed, set=algo)
    fsp_rows: list[dict] = []
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        summary = run_league(Path(tmp) / "league", cfg, on_snapshot=on_snapshot)
        print(f"\n## league: {summary['members']} members {summary['members_by_role']}, {summary['games']:,} games, "
              f"in {time.perf_counter() - t0:.1f} s")
        if args.fsp:
            trace = ExploitabilityTrace()
            t0 = time.perf_counter()
            run_selfplay(Path(tmp) / "fsp", SelfPlayConfig(mode="fsp", steps=args.steps, snapshot_every=args.snapshot_every,
                                                           n_envs=args.n_envs, seed=args.seed), algo, on_snapshot=trace)
            print(f"## fsp: {len(trace.rows)} members in {time.perf_counter() - t0:.1f} s")
            fsp_rows = trace.rows
    fsp = {r["env_steps"]: r for r in fsp_rows}
    print(f"\n{'env steps':>9}  {'main: newest':>12} {'main mixture':>12} {'league mixture':>14}" + ("  fsp: newest  fsp: mixture" if fsp else ""))
    rows = main_trace.rows
    for i, r in enumerate(rows):
        if i % args.every_row == 0 or i == len(rows) - 1:
            line = f"{r['env_steps']:>9,}  {r['latest']:>12.3f} {r['mixture']:>12.3f} {r['league_mixture']:>14.3f}"
            f = fsp.get(r["env_steps"])
            if f is not None:
                line += f"  {f['latest']:>11.3f} {f['mixture']:>13.3f}"
            print(line)
    half = rows[len(rows) // 2:]
    mean = lambda k, rs: sum(x[k] for x in rs) / len(rs)  # noqa: E731
    print(f"\nsecond half: main newest mean {mean('latest', half):.3f} (min {min(x['latest'] for x in half):.3f}, "
          f"max {max(x['latest'] for x in half):.3f}); main mixture mean {mean('mixture', half):.3f}, final {rows[-1]['mixture']:.3f}; "
          f"league mixture final {rows[-1]['league_mixture']:.3f}")
    if fsp_rows:
        fh = fsp_rows[len(fsp_rows) // 2:]
        print(f"second half: fsp newest mean {mean('latest', fh):.3f}; fsp mixture mean {mean('mixture', fh):.3f}, final {fsp_rows[-1]['mixture']:.3f}")
    print("Nash (1/4, 1/2, 1/4) has exploitability 0; uniform 0.333; rock or paper 1; scissors 2.")


if __name__ == "__main__":
    main()
