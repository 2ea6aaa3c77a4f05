"""marl-eval: greedy evaluation of a run's checkpoint (torch) or of an exported
bundle (ONNX Runtime, torch-free), in process."""

from __future__ import annotations

from pathlib import Path

import click

from .common import debug_option, emit_json, run_command


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("target", type=click.Path(path_type=Path))
@click.option("--opponent", "opponent", type=click.Path(path_type=Path), default=None,
              help="Bundles from marl-league: play TARGET's team against this bundle's team in their two-team game (both greedy); "
                   "the same episodes as marl-swarm TARGET --opponent. Reports both teams' returns and TARGET's wins/draws/losses.")
@click.option("--episodes", type=int, default=32, show_default=True, help="How many episodes to play (episode i has the same seed in every command).")
@click.option("--seed", type=int, default=None, help="Episode seeds come from this (default: the run's seed).")
@click.option("--checkpoint", "step", type=int, default=None, help="Env step of the checkpoint (default: latest).")
@click.option(
    "--msg-loss",
    type=float,
    default=0.0,
    show_default=True,
    help="Drop each heard message with this probability (a lossy link; communicating runs).",
)
@click.option("--sample", is_flag=True, help="Stochastic actors (mappo, ippo, coma; run directories): draw actions from the policy instead of the argmax.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(path_type=Path),
              help="Bundles: A public key (marl-keys signing OUT writes OUT.pub) the bundle must be signed with (repeatable: any one of them); unsigned, wrongly signed or changed bundles are refused. Needs marl-edge[crypto].")
@click.option("--render", "render_out", type=click.Path(path_type=Path), default=None,
              help="Draw one evaluated episode: FILE.gif (one frame per step, plus the start) or FILE.png (all frames on one sheet). Needs marl-edge[plot].")
@click.option("--render-episode", type=int, default=0, show_default=True, help="Which evaluated episode --render draws (0 = the first).")
@click.option("--n-agents", "n_agents", type=int, default=None,
              help="Play a team of N agents with the same policies (N up to the run's max_agents, in an env that can change its size; docs/team-size.md).")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@debug_option
def eval_cmd(target, opponent, episodes, seed, step, msg_loss, sample, trusted_keys, render_out, render_episode, n_agents, as_json, debug):
    """Greedy (or, with --sample, sampled) evaluation of TARGET: a run directory made by marl-train (torch),
    or a bundle made by marl-export (ONNX Runtime, no torch).

    The same --seed and --episodes give the same episodes in every command."""
    import numpy as np

    from ..train.config import ConfigError

    if episodes < 1:
        raise ConfigError("--episodes must be >= 1")
    if seed is not None and seed < 0:
        raise ConfigError("--seed must be >= 0")
    if not 0.0 <= msg_loss <= 1.0:
        raise ConfigError("--msg-loss must be in [0, 1]")
    if n_agents is not None and n_agents < 1:
        raise ConfigError("--n-agents must be >= 1")
    if n_agents is not None and render_out is not None:
        raise ConfigError("--render draws the trained team size; drop --n-agents to render")
    if render_out is not None:
        if not 0 <= render_episode < episodes:
            raise ConfigError(f"--render-episode must be in 0..{episodes - 1} (one of the --episodes {episodes})")
        from ..viz.figure import check_out, pyplot
        from ..viz.render import OUT_SUFFIXES

        check_out(render_out, OUT_SUFFIXES)  # before evaluating: a bad path or a missing extra fails at once
        pyplot()
    from ..runtime.bundle import is_bundle

    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    if opponent is not None:
        if n_agents is not None:
            raise ConfigError("--n-agents does not apply with --opponent: a match plays each bundle at its game's team size")
        return _eval_match(target, opponent, episodes, seed, sample, step, msg_loss, trusted_keys, render_out, say, as_json)
    if is_bundle(target):
        if sample:
            raise ConfigError("--sample applies to run directories; an exported policy acts greedily (masked argmax)")
        if step is not None:
            raise ConfigError("--checkpoint applies to run directories; a bundle holds one checkpoint")
        from ..runtime.team import evaluate_bundle

        res = evaluate_bundle(target, episodes, seed, msg_loss=msg_loss, trusted_keys=list(trusted_keys) or None, n_agents=n_agents)
        signed = f", signed by trusted key {res['signed_by']}" if res.get("signed_by") else ""
        say(f"{target}: bundle of the checkpoint at {res['checkpoint_step']:,} env steps (ONNX Runtime{signed})")
    else:
        if trusted_keys:
            raise ConfigError(f"--trusted-key applies to bundles; {target} is not one (no swarm.json)")
        from ..train.evaluation import evaluate_run

        res = evaluate_run(target, episodes, seed, step, msg_loss=msg_loss, sample=sample, n_agents=n_agents)
        say(f"{target}: checkpoint at {res['checkpoint_step']:,} env steps")
    if n_agents is not None:
        say(f"team of {res['n_agents']} agents")
    r = res["returns"]
    say(f"{res.get('mode', 'greedy')} return {np.mean(r):.3f} ± {np.std(r):.3f} over {len(r)} episodes (seed {res['seed']})")
    if "msg_loss" in res:
        say(f"messages: {res['msgs_heard_per_step']:.2f} heard per step at {res['msg_loss']:.0%} loss")
    if "agent_stats" in res:
        for line in agent_stats_table(res["agent_stats"]):
            say(line)
    if render_out is not None:
        record = _record_episode(target, res, episodes, step, msg_loss, sample, list(trusted_keys), render_episode)
        from ..viz.render import write_episode

        pic = write_episode(record, render_out)
        if abs(pic["return"] - r[render_episode]) > 1e-9 * max(1.0, abs(r[render_episode])):
            raise RuntimeError(f"the rendered episode returned {pic['return']}, the evaluated one {r[render_episode]}: the replay diverged")
        say(f"rendered episode {render_episode} ({pic['steps']} steps, return {pic['return']:.3f}): {pic['frames']} frames in {render_out}")
        res["render"] = pic | {"episode": render_episode}
    if as_json:
        emit_json(res)
    return 0


def _eval_match(target: Path, opponent: Path, episodes: int, seed: int | None, sample: bool, step: int | None, msg_loss: float,
                trusted_keys: tuple[Path, ...], render_out: Path | None, say, as_json: bool) -> int:
    """``marl-eval A --opponent B``: the match in process (``runtime.match.evaluate_match``)."""
    from ..runtime.bundle import is_bundle
    from ..runtime.match import evaluate_match
    from ..train.config import ConfigError

    for what, used in (("--sample", sample), ("--checkpoint", step is not None), ("--msg-loss", msg_loss > 0), ("--render", render_out is not None)):
        if used:
            raise ConfigError(f"{what} does not apply with --opponent: a match plays two bundles greedily")
    if not is_bundle(target):
        raise ConfigError(f"--opponent plays two bundles; {target} is not one (no swarm.json)")
    res = evaluate_match(target, opponent, episodes, seed, trusted_keys=list(trusted_keys) or None)
    for k, t in enumerate(res["match"]["teams"]):
        rs = res["returns" if k == 0 else "opponent_returns"]
        say(f"team {'AB'[k]}   {t['bundle']}: team {t['team']} of {res['match']['game']} (trained as team {t['trained_as']}), "
            f"return {sum(rs) / len(rs):.3f} mean")
    say(f"match    team A: {res['wins']} wins, {res['draws']} draws, {res['losses']} losses over {episodes} episodes (seed {res['seed']}, ONNX Runtime)")
    if as_json:
        emit_json(res)
    return 0


def agent_stats_table(stats: dict[str, list[float]]) -> list[str]:
    """One line per agent of what the env reported about each (means per episode): a stat
    ``NAME`` with its ``NAME_share`` of the steps reads ``idle 16.0 (100%)``, so a robot that
    never works stands out."""
    names = [k for k in stats if not k.endswith("_share")]
    n = len(stats[names[0]]) if names else 0
    head = "agent  " + "  ".join(f"{name:>16}" for name in names)
    lines = ["per agent (mean per episode; share of steps):", head]
    for i in range(n):
        cells = []
        for name in names:
            share = stats.get(f"{name}_share")
            cells.append(f"{stats[name][i]:>8.2f} ({share[i]:>4.0%})" if share is not None else f"{stats[name][i]:>16.2f}")
        lines.append(f"{i:>5}  " + "  ".join(f"{c:>16}" for c in cells))
    return lines


def _record_episode(target: Path, res: dict, episodes: int, step: int | None, msg_loss: float, sample: bool,
                    trusted_keys: list[Path], index: int):
    """Play the evaluation again, exactly as ``evaluate_run``/``evaluate_bundle`` did (same
    batch, seeds, policy and random streams), and note episode ``index``'s seed, actions and
    message routing. The caller checks the replayed return against the evaluated one, so a
    change to how those functions evaluate cannot go unnoticed."""
    import numpy as np

    from ..envs import episode_seeds
    from ..envs.rollout import Rollout
    from ..runtime.bundle import is_bundle
    from ..viz.episode import EpisodeRecord, EpisodeRecorder

    seed = int(res["seed"])
    n_envs = max(1, min(episodes, 32))
    if is_bundle(target):
        from ..runtime.bundle import load_bundle
        from ..runtime.team import BundleTeamPolicy

        b = load_bundle(target, trusted_keys=trusted_keys or None)
        env_name, env_options = b.manifest.env.name, dict(b.manifest.env.options)
        env, topology = b.make_env(n_envs), b.topology()
        team = BundleTeamPolicy(b, n_envs, msg_loss=msg_loss, loss_rng=np.random.default_rng([seed, 7]))
    else:
        from ..envs import make
        from ..train.evaluation import load_policy_net
        from ..train.policy import TorchTeamPolicy

        net, rs, _ = load_policy_net(target, step)
        net.eval()
        env_name, env_options = rs.run.env, dict(rs.run.env_options)
        env, topology = make(env_name, n_envs=n_envs, **env_options), rs.topology()
        team = TorchTeamPolicy(net, n_envs, np.random.default_rng([seed, 11]), msg_loss=msg_loss, loss_rng=np.random.default_rng([seed, 7]), sample=sample)
    seeds = episode_seeds(seed, episodes)
    cursor = 0

    def next_seeds(k: int) -> np.ndarray:
        nonlocal cursor
        out = seeds[cursor : cursor + k]
        cursor += len(out)
        return out

    recorder = EpisodeRecorder(team, index)
    try:
        ro = Rollout(env, recorder, next_seeds, topology=topology)
        while ro.active.any() and not recorder.finished:
            ro.step()
    finally:
        env.close()
    return EpisodeRecord(env_name, env_options, int(seeds[index]), recorder.actions,
                         heard=recorder.heard if topology is not None else None,
                         label=f"{'bundle' if is_bundle(target) else 'run'} episode {index}, seed {seed}")


def main() -> None:
    run_command(eval_cmd, prog_name="marl-eval")


if __name__ == "__main__":
    main()
