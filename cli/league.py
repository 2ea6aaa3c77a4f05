"""marl-league: self-play against frozen bundle opponents (docs/league.md)."""

from __future__ import annotations

from pathlib import Path

import click
import numpy as np

from .common import Progress, debug_option, emit_json, require_train_extra, run_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def league_cmd():
    """Competitive teams: train one team of a two-team env against frozen
    snapshots of itself, each an exported bundle played by ONNX Runtime
    (docs/league.md). `marl-league selfplay` trains; `marl-league league`
    trains an AlphaStar-style league; `marl-league members` lists a league's
    members (and, for matrix games such as rps, their exact exploitability);
    `marl-league table` prints a league's Elo and win-rate matrix."""


@league_cmd.command("selfplay")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The new league directory (members, bundles, the learner's run).")
@click.option("--mode", type=click.Choice(["naive", "fsp"]), default="fsp", show_default=True,
              help="naive: always the newest snapshot; fsp: the newest with probability --latest, else a uniformly drawn older one.")
@click.option("--game", default="rps", show_default=True, help="A registered env with two teams (EnvSpec.teams).")
@click.option("--algo", default="ippo", show_default=True, help="Any registered algorithm (marl-train --help lists them).")
@click.option("--steps", type=int, default=20_000, show_default=True, help="Env steps of the learner.")
@click.option("--snapshot-every", type=int, default=1_000, show_default=True, help="Env steps between snapshots (one is also taken before training).")
@click.option("--latest", type=float, default=0.8, show_default=True, help="fsp: probability that an episode's opponent is the newest snapshot.")
@click.option("--greedy-opponents", is_flag=True, help="Opponents play their greedy argmax instead of sampling from their logits.")
@click.option("--n-envs", type=int, default=8, show_default=True, help="Parallel episodes.")
@click.option("--seed", type=int, default=0, show_default=True, help="Fixes the learner, the episodes and the opponents' choices.")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="An algorithm key (e.g. lr=1e-3) or a game option as env.KEY (repeatable).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@debug_option
def selfplay_cmd(out, mode, game, algo, steps, snapshot_every, latest, greedy_opponents, n_envs, seed, sets, as_json, debug):
    """Train team 0 of GAME by self-play into a new league directory OUT."""
    require_train_extra("marl-league", ("torch", "onnx"))
    from ..train.config import _parse_literal, parse_set
    from ..league.selfplay import SelfPlayConfig, run_selfplay

    game_options, algo_ov = {}, {}
    for k, v in parse_set(sets).items():
        if k.startswith("env."):
            game_options[k[4:]] = _parse_literal(v)
        else:
            algo_ov[k] = v
    cfg = SelfPlayConfig(mode=mode, game=game, game_options=game_options, algo=algo, steps=steps, snapshot_every=snapshot_every,
                         latest=latest, sample_opponents=not greedy_opponents, n_envs=n_envs, seed=seed)
    bar = Progress(steps, "steps", enabled=True)

    def progress(row: dict) -> None:
        ret = row["return_mean"]
        bar.update(row["env_steps"], f"members {row['members']}" + ("" if ret is None else f", return {ret:.3f}"))

    res = run_selfplay(out, cfg, algo_ov, progress=progress)
    bar.close()
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    say(f"league   {res['league_dir']}: {res['members']} members after {res['env_steps']:,} env steps ({res['mode']}, {res['algo']}) "
        f"in {res['wall_s']:.1f} s")
    say(f"next     marl-league members {res['league_dir']}")
    if as_json:
        emit_json(res)
    return 0


@league_cmd.command("members")
@click.argument("league_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@debug_option
def members_cmd(league_dir, as_json, debug):
    """List LEAGUE_DIR's members; for a one-round matrix game also each member's
    mixed strategy and the exact exploitability of it and of the uniform mixture so far."""
    from ..league.exploit import ExploitabilityTrace
    from ..league.members import LeagueDir

    from ..envs import make

    league = LeagueDir(league_dir)
    members = league.members()
    stored = league.config()
    sp = stored.get("selfplay") or stored["league"]  # a self-play run or a league: both name the game and the seat
    rows = [m.to_dict() for m in members]
    env = make(sp["game"], n_envs=1, **sp["game_options"])
    one_round_matrix = len(env.spec.teams) == 2 and env.spec.episode_limit == 1 and "payoff" in env.spec.options
    env.close()
    if one_round_matrix:
        trace = ExploitabilityTrace(sp["game"], sp["game_options"], seat=1 - sp["team"])
        for m in members:
            trace(m, league.bundle_path(m))
        rows = [r | t for r, t in zip(rows, trace.rows)]
    for r in rows:
        line = f"{r['name']:<16} {r['env_steps']:>9,} steps  {r['created']}"
        if "latest" in r:
            line += f"  strategy {r['strategy']}  exploitability {r['latest']:.3f}  mixture {r['mixture']:.3f}"
        (click.echo if not as_json else (lambda m: click.echo(m, err=True)))(line)
    if as_json:
        emit_json({"league_dir": str(league_dir), "members": rows})
    return 0


@league_cmd.command("league")
@click.option("--config", "config_file", type=click.Path(path_type=Path), default=None,
              help="The league config (YAML or JSON; keys: the fields of league.league.LeagueConfig, algorithm keys under set:). "
                   "Optional with --resume, which reads the league's own.")
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The league directory (new, or the one to resume).")
@click.option("--resume", is_flag=True, help="Continue the league in --out from its last commit (after a crash or kill -9).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@debug_option
def league_run_cmd(config_file, out, resume, as_json, debug):
    """Train an AlphaStar-style league (main agents, main exploiters, league
    exploiters, PFSP) into OUT; the learners take turns in this process."""
    require_train_extra("marl-league", ("torch", "onnx"))
    from ..league.league import read_league_config, run_league
    from ..league.opponents import LeagueError

    if config_file is None and not resume:
        raise LeagueError("a new league needs --config FILE (only --resume reads the league's own)")
    cfg = read_league_config(config_file) if config_file is not None else None
    bar: Progress | None = None

    def progress(row: dict) -> None:
        nonlocal bar
        if bar is None:
            bar = Progress(row["total_steps"], "steps", enabled=True)
        bar.update(row["env_steps"], f"round {row['round']}, {row['learner']}, members {row['members']}")

    res = run_league(out, cfg, resume=resume, progress=progress)
    if bar is not None:
        bar.close()
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    roles = ", ".join(f"{n} {r}" for r, n in res["members_by_role"].items())
    say(f"league   {res['league_dir']}: {res['members']} members ({roles}) after {res['rounds']} rounds, {res['games']:,} games, "
        f"in {res['wall_s']:.1f} s")
    for ln in res["learners"]:
        say(f"learner  {ln['name']:<20} {ln['role']:<17} {ln['env_steps']:>9,} steps  {ln['snapshots']} snapshots  "
            f"{ln['resets']} resets  Elo {ln['elo']:.0f}")
    say(f"next     marl-league table {res['league_dir']}")
    if as_json:
        emit_json(res)
    return 0


@league_cmd.command("table")
@click.argument("league_dir", type=click.Path(path_type=Path))
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@click.option("--plot", "plot_file", type=click.Path(path_type=Path), default=None, help="Also draw the win-rate matrix as a heatmap (PNG; needs matplotlib).")
@debug_option
def table_cmd(league_dir, as_json, plot_file, debug):
    """Print a league's players (members, then learners) with role, env steps, games and
    Elo, and the win-rate matrix: row i's win rate against column j (draws count half)."""
    from ..league.members import LeagueDir
    from ..league.payoff import read_payoff

    league = LeagueDir(league_dir)
    steps = {m.name: m.env_steps for m in league.members()}
    state_path = Path(league_dir) / "state.json"
    if state_path.is_file():
        import json

        for ln in json.loads(state_path.read_text())["learners"]:
            steps[f"{ln['name']}@{ln['generation']}"] = ln["env_steps"]
    payoff = read_payoff(league_dir)
    elo, wr = payoff.elo(), payoff.win_rate_matrix()
    rows = [{"index": i, "name": p.name, "kind": p.kind, "role": p.role, "env_steps": steps.get(p.name),
             "games": int(payoff.games[i].sum()), "elo": round(float(elo[i]), 1)} for i, p in enumerate(payoff.players)]
    order = [r["index"] for r in rows if r["kind"] == "member"] + [r["index"] for r in rows if r["kind"] == "learner"]
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    say(f"{'#':>3}  {'player':<30} {'role':<17} {'env steps':>9} {'games':>7} {'Elo':>7}")
    for k, i in enumerate(order):
        r = rows[i]
        st = "-" if r["env_steps"] is None else f"{r['env_steps']:,}"
        say(f"{k:>3}  {r['name'] + (' (learner)' if r['kind'] == 'learner' else ''):<30} {r['role'] or '-':<17} {st:>9} "
            f"{r['games']:>7,} {r['elo']:>7.1f}")
    say("")
    say("win rate of row against column (draws count half; . = no games)")
    say("     " + "".join(f"{k:>5}" for k in range(len(order))))
    for k, i in enumerate(order):
        say(f"{k:>3}  " + "".join("    ." if np.isnan(wr[i, j]) else f"{wr[i, j]:5.2f}" for j in order))
    if plot_file is not None:
        _plot_win_rates(plot_file, [rows[i]["name"] for i in order], wr[np.ix_(order, order)])
        say(f"plot     {plot_file}")
    if as_json:
        emit_json({"league_dir": str(league_dir), "players": [rows[i] for i in order],
                   "win_rate": [[None if np.isnan(wr[i, j]) else round(float(wr[i, j]), 4) for j in order] for i in order]})
    return 0


def _plot_win_rates(out: Path, names: list[str], wr: np.ndarray) -> None:
    """The win-rate matrix as a heatmap (grey where two players never met)."""
    from ..viz.figure import check_out, new_figure, save_figure

    out = check_out(out, (".png",))
    n = len(names)
    fig, ax = new_figure((2.0 + 0.45 * n, 1.5 + 0.4 * n))
    shown = np.ma.masked_invalid(wr)
    im = ax.imshow(shown, vmin=0.0, vmax=1.0, cmap="RdBu")
    ax.set_facecolor("0.85")
    ax.set_xticks(range(n), names, rotation=90, fontsize=7)
    ax.set_yticks(range(n), names, fontsize=7)
    ax.set_xlabel("opponent")
    ax.set_ylabel("player")
    ax.set_title("win rate (row against column)")
    fig.colorbar(im, ax=ax, fraction=0.046)
    fig.tight_layout()
    save_figure(fig, out)


@league_cmd.command("payoff")
@click.argument("league_dir", type=click.Path(path_type=Path))
@click.option("--episodes", type=int, default=100, show_default=True, help="Episodes per match (per pair and seat).")
@click.option("--workers", type=int, default=0, show_default=True,
              help="0: play in this process; N >= 1: one Ray task per match on a local Ray of N CPUs (the ray extra).")
@click.option("--address", default=None, help="Join this Ray cluster instead (auto or HOST:6379); needs --workers >= 1.")
@click.option("--seats", type=click.Choice(["auto", "one", "both"]), default="auto", show_default=True,
              help="Per pair, play one seat order or both; auto: one for a symmetric matrix game, both otherwise.")
@click.option("--greedy", is_flag=True, help="Members play their greedy argmax instead of sampling from their logits.")
@click.option("--seed", type=int, default=0, show_default=True, help="Seeds the episodes of every match (the same episodes for every pair).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@debug_option
def payoff_cmd(league_dir, episodes, workers, address, seats, greedy, seed, as_json, debug):
    """Round-robin evaluation of LEAGUE_DIR's members: every pair plays --episodes
    episodes (in both seats when the game is asymmetric), in process or as Ray tasks.
    Writes LEAGUE_DIR/payoff-eval.json (win/draw/game counts, win rates, Elo) and prints the table."""
    import time

    from ..league.matches import check_workers, is_symmetric, member_game, payoff_table, play_matches, round_robin
    from ..league.members import LeagueDir, write_json_atomic
    from ..league.opponents import LeagueError

    league = LeagueDir(league_dir)
    members = league.members()
    if len(members) < 2:
        raise LeagueError(f"{league_dir} has {len(members)} member(s); a payoff needs at least 2")
    if episodes < 1:
        raise LeagueError(f"--episodes must be >= 1, got {episodes}")
    check_workers(workers, address)
    paths = [league.bundle_path(m) for m in members]
    game, game_options = member_game(paths[0])
    both = seats == "both" or (seats == "auto" and not is_symmetric(game, game_options))
    plan = round_robin(paths, game, game_options, episodes, seed, sample=not greedy, both_seats=both)
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    where = "in process" if workers == 0 else f"on Ray ({address or f'local, {workers} workers'})"
    say(f"payoff   {len(members)} members, {len(plan)} matches of {episodes} episodes ({'both seats' if both else 'one seat'}), {where}")
    t0 = time.perf_counter()
    bar = Progress(len(plan), "matches", enabled=True)
    results = play_matches([s for _, _, s in plan], workers=workers, address=address, progress=bar.update)
    bar.close()
    wall = time.perf_counter() - t0
    table = payoff_table([m.name for m in members], [(a, b) for a, b, _ in plan], results)
    table |= {"game": game, "game_options": game_options, "episodes": episodes, "seed": seed, "seats": "both" if both else "one",
              "sample": not greedy, "workers": workers, "address": address, "wall_s": round(wall, 3),
              "matches": [{"a": members[a].name, "b": members[b].name} | r.to_dict() for (a, b, _), r in zip(plan, results)]}
    write_json_atomic(league.root / "payoff-eval.json", table)
    names = table["members"]
    width = max(len(n) for n in names)
    say("win rate of the row member against the column member (draws count half), and Elo:")
    say(f"{'':4}{'member':<{width}}  " + " ".join(f"{k:>5}" for k in range(len(names))) + "      elo")
    for k, (n, row) in enumerate(zip(names, table["win_rate"])):
        cells = " ".join("    -" if x is None else f"{x:5.2f}" for x in row)
        say(f"{k:>3} {n:<{width}}  {cells}  {table['elo'][n]:7.1f}")
    say(f"played   {len(plan)} matches in {wall:.1f} s ({len(plan) / wall:.1f} matches/s); wrote {league.root / 'payoff-eval.json'}")
    if as_json:
        emit_json({"league_dir": str(league_dir), "payoff": table})
    return 0


def main() -> None:
    run_command(league_cmd, prog_name="marl-league")


if __name__ == "__main__":
    main()
