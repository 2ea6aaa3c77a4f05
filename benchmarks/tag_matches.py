"""Win rates between the members of a tag self-play league (``marl-league selfplay --game tag``).

Every pair of chosen members plays ``--episodes`` games in each seat (member A as
team 0 against B as team 1, then the seats swapped, with the same episode
seeds), each member's bundle run by the runtime's ONNX Runtime policy as the
league runs opponents (``league.opponents.Member``: sampled from the logits,
with generators seeded per episode; ``--greedy``: the argmax, as deployed). It prints the score matrix, row member
against column member: (wins + draws / 2) / games, so 0.5 is even; and the
win / draw / loss counts of the newest member against each older one.

It answers one question of issue 15 for the grid game: does a later snapshot
of naive self-play lose to an earlier one? Example (about a minute)::

    marl-league selfplay --out lg --game tag --mode naive --steps 20000
    .venv/bin/python benchmarks/tag_matches.py lg --every 4 --episodes 200
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np

from marl_edge.envs import episode_seeds, make
from marl_edge.league.opponents import Member


def play(a: Path, b: Path, game_options: dict, episodes: int, seed: int, sample: bool = True) -> np.ndarray:
    """Outcomes for team 0 ([episodes] in 1 / 0 / -1) of ``a`` as team 0 against ``b`` as team 1."""
    env = make("tag", n_envs=episodes, **game_options)
    k = env.team_size
    seeds = episode_seeds(seed, episodes)
    ts = env.reset(seeds)
    players = [Member(a, episodes, k, sample), Member(b, episodes, k, sample)]
    everyone = np.ones(episodes, dtype=bool)
    for p in players:
        p.reset(everyone)
    rngs = [np.random.default_rng([int(s), 0x7A6]) for s in seeds]
    rows = np.arange(episodes)
    while not ts.done.all():
        acts = np.concatenate([players[t].act(ts.obs[:, t * k : (t + 1) * k], ts.avail_actions[:, t * k : (t + 1) * k], rows, rngs)
                               for t in (0, 1)], axis=1)
        acts[ts.done] = 0
        ts = env.step(acts)
    return ts.info["outcome"].copy()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("league", type=Path)
    ap.add_argument("--every", type=int, default=4, help="Use every k-th member (and the newest).")
    ap.add_argument("--episodes", type=int, default=200, help="Games per pair and seat.")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--greedy", action="store_true", help="Members play their greedy argmax (as deployed) instead of sampling.")
    ap.add_argument("--json", type=Path, default=None, help="Also write the matrix and counts here.")
    args = ap.parse_args()
    members = json.loads((args.league / "members.json").read_text())
    league = json.loads((args.league / "league.json").read_text())
    game_options = dict(league.get("selfplay", league).get("game_options") or {})
    chosen = list(range(0, len(members), args.every))
    if chosen[-1] != len(members) - 1:
        chosen.append(len(members) - 1)
    names = [members[i]["name"] for i in chosen]
    paths = [args.league / members[i]["bundle"] for i in chosen]
    n = len(chosen)
    score = np.full((n, n), 0.5)
    wdl = np.zeros((n, n, 3), dtype=np.int64)  # row's wins, draws, losses over both seats
    for i in range(n):
        for j in range(i + 1, n):
            as0 = play(paths[i], paths[j], game_options, args.episodes, args.seed, not args.greedy)
            as1 = -play(paths[j], paths[i], game_options, args.episodes, args.seed, not args.greedy)
            res = np.concatenate([as0, as1])
            wdl[i, j] = [(res == 1).sum(), (res == 0).sum(), (res == -1).sum()]
            wdl[j, i] = wdl[i, j][::-1]
            score[i, j] = (wdl[i, j, 0] + 0.5 * wdl[i, j, 1]) / len(res)
            score[j, i] = 1.0 - score[i, j]
    steps = [members[i].get("env_steps", "?") for i in chosen]
    print("score of row against column ((wins + draws/2) / games; " f"{2 * args.episodes} games per pair)")
    print(f"{'':>14}" + "".join(f"{s:>8}" for s in steps))
    for i in range(n):
        print(f"{names[i]:>12}{steps[i]:>8}" + "".join(f"{score[i, j]:8.3f}" for j in range(n)))
    print("\nnewest against each older member: wins / draws / losses")
    for j in range(n - 1):
        w, d, l = wdl[n - 1, j]
        print(f"  {names[-1]} vs {names[j]} ({steps[j]} steps): {w} / {d} / {l}")
    later_loses = [(names[i], names[j], round(float(score[i, j]), 3)) for i in range(n) for j in range(i) if score[i, j] < 0.5]
    print(f"\nlater members scoring below 0.5 against an earlier one: {len(later_loses)} of {n * (n - 1) // 2} pairs")
    for li in later_loses:
        print(f"  {li[0]} vs {li[1]}: {li[2]}")
    if args.json:
        args.json.write_text(json.dumps({"members": names, "env_steps": steps, "score": score.tolist(), "wdl": wdl.tolist()}))


if __name__ == "__main__":
    main()
