"""marl-league: self-play against frozen bundle opponents (docs/league.md)."""

from __future__ import annotations

from pathlib import Path

import click

from .common import Progress, debug_option, emit_json, require_train_extra, run_command


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def league_cmd():
    """Competitive teams: train one team of a two-team env against frozen
    snapshots of itself, each an exported bundle played by ONNX Runtime
    (docs/league.md). `marl-league selfplay` trains; `marl-league members`
    lists a league's members (and, for matrix games such as rps, their exact
    exploitability)."""


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
    sp = league.config()["selfplay"]
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


def main() -> None:
    run_command(league_cmd, prog_name="marl-league")


if __name__ == "__main__":
    main()
