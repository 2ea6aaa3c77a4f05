"""marl-train: train a team and leave a run directory."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import click

from ..envs import env_names, get_entry
from ..train.config import RUN_SET_KEYS
from .common import Progress, debug_option, emit_json, require_train_extra, run_command

DEFAULT_ENV = "two_step"


def _help() -> str:
    from ..train.registry import ALGOS

    envs = ", ".join(f"{name} ({get_entry(name).train_steps:,})" for name in env_names())
    algos = "; ".join(f"{a.name} ({a.description})" for a in ALGOS.values())
    return (
        "Train a multi-agent team (centralised training) and write a run directory "
        "with config, metrics, TensorBoard events, checkpoints and a final greedy evaluation.\n\n"
        f"Envs, with the env steps each trains for when --steps is not given (its recommended budget): {envs}; or pz:MODULE[:FACTORY] (or pz:./path/file.py[:FACTORY], your own file) for any PettingZoo parallel env "
        "(e.g. pz:mpe2.simple_spread_v3); or gym:MODULE:ENV_ID for a gymnasium multi-agent env such as LBF or RWARE "
        "(e.g. gym:lbforaging:Foraging-8x8-2p-2f-coop-v3, gym:rware:rware-tiny-2ag-v2; pip install 'marl-edge[benchmarks]'). "
        "--set env.workers=W steps a pz: or gym: env's parallel episodes in W worker processes (same episodes; "
        "0 or 1: in-process, the default; the built-in envs are batched in numpy and take no workers). "
        "gym: and pz: envs report the team return summed over agents "
        "(env.reward_scalarisation=sum, the field's convention; mean for the built-in envs); a gym: env's own time limit "
        "ends episodes as terminal (env.time_limit=terminal|bootstrap).\n\n"
        f"Algorithms: {algos}.\n\n"
        "--set takes algorithm keys (e.g. lr=1e-3, td_lambda=0.6), env options as env.KEY "
        f"(e.g. env.n_agents=8) and run keys ({', '.join(RUN_SET_KEYS)}).\n\n"
        "Messages: comm=none|mean|knn|attention, topology=broadcast|knn:K|range:R|graph:ring|grid|FILE, "
        "msg_dim=D, comm_k=K (knn aggregator), comm_reduce=mean|sum, top_k=K (attention), msg_dropout=P "
        "(e.g. --env scout --set comm=attention --set topology=knn:2).\n\n"
        "Agent network: hidden_dim=H, recurrent=true|false (GRU or feed-forward), shared=true|false, agent_id, last_action.\n\n"
        "Rewards: standardise_rewards=true trains on (r - running mean) / running std (every learner); "
        "reward=team|difference|team+difference (difference rewards D_i from rolling the simulator back; default_action=noop|INDEX), "
        "shaping=none|builtin|MODULE:FUNCTION (potential-based, F = gamma Phi(s') - Phi(s)), shaping_per_agent=true|false; "
        "docs/credit.md.\n\n"
        "Evaluation during training: eval_every=N greedy evaluations every N env steps (default: total steps / 20; "
        "0: off) on the same episodes each time (seed + 1000000), eval_during_episodes=K episodes each (default: "
        "--eval-episodes); written to eval.csv and TensorBoard (eval/...); training scalars are under train/....\n\n"
        "Seeds and sweeps: --seeds 0,1,2 and --grid KEY=V1,V2 (repeatable: the cartesian product) train one run "
        "directory per combination and seed under --out ROOT, --jobs J at a time, and print the final greedy "
        "return per combination (mean ± std over seeds, min, max; also ROOT/sweep.json and ROOT/sweep.md). "
        "--resume ROOT continues a sweep. A run's own config.json is a --config file: it trains the same run again.\n\n"
        "metrics.csv logs the exploration each learner reports: epsilon (iql and the mixer algorithms: vdn, qmix), noise (maddpg on a box). "
        "docs/training.md describes the algorithms and how to add one, or a mixer (train/mixers/)."
    )


def tuned_config(env: str, algo: str) -> Path | None:
    """The repository's tuned config for a gym: task and algorithm (configs/PACKAGE/TASK/ALGO.yaml), if there is one."""
    if not env.startswith("gym:") or env.count(":") != 2:
        return None
    _, package, task = env.split(":")
    path = Path(__file__).resolve().parent.parent / "configs" / package / task / f"{algo}.yaml"
    return path if path.is_file() else None


def split_overrides(sets: dict[str, str], algo_cls: type) -> tuple[dict, dict, dict]:
    from ..train.config import ConfigError, field_types

    env_opts, algo_ov, run_ov = {}, {}, {}
    algo_keys = field_types(algo_cls)
    for k, v in sets.items():
        if k.startswith("env."):
            env_opts[k[4:]] = v
        elif k in algo_keys:
            algo_ov[k] = v
        elif k in RUN_SET_KEYS:
            run_ov[k] = v
        else:
            raise ConfigError(
                f"unknown --set key {k!r}; algorithm keys: {', '.join(sorted(algo_keys))}; "
                f"run keys: {', '.join(RUN_SET_KEYS)}; env options as env.KEY"
            )
    return env_opts, algo_ov, run_ov


def _parse_env_options(env: str, raw: dict[str, str]) -> dict:
    """Env option strings -> values typed like the option's default."""
    from ..envs import env_options
    from ..train.config import _parse_literal

    known = env_options(env)
    out = {}
    for k, v in raw.items():
        val = _parse_literal(v)
        default = known.get(k)
        if isinstance(default, bool) and not isinstance(val, bool):
            from ..envs import EnvError

            raise EnvError(f"env option {k} must be true or false, got {v!r}")
        if isinstance(default, float) and isinstance(val, int) and not isinstance(val, bool):
            val = float(val)
        out[k] = val
    return out


DEFAULT_STEPS_HELP = (f"Env steps to train (default: the env's recommended budget, listed with the envs above; "
                      f"{get_entry(DEFAULT_ENV).train_steps:,} for the default env {DEFAULT_ENV}).")


@click.command(context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.option("--config", "config", type=click.Path(path_type=Path), default=None,
              help="A run config file (YAML or JSON: env, algo, steps, seed, n_envs, set: {key: value}), or a run's "
                   "own config.json (the same run again); flags and --set given on the command line override it. "
                   "Tuned configs: configs/.")
@click.option("--env", "env", default=DEFAULT_ENV, show_default=True, help="Env name (listed above).")
@click.option("--algo", "algo", default="qmix", show_default=True, help="Algorithm name (listed above).")
@click.option("--steps", type=int, default=None, help=DEFAULT_STEPS_HELP)
@click.option("--seed", type=int, default=0, show_default=True, help="Fixes the run: weights, exploration, episodes (the same seed gives the same metrics).")
@click.option("--n-envs", "n_envs", type=int, default=8, show_default=True, help="Parallel episodes per batched step.")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="Run directory (default runs/ENV_ALGO_sSEED_TIME); with --seeds or --grid the sweep's root "
                   "(default runs/ENV_ALGO_sweep_TIME).")
@click.option("--set", "sets", multiple=True, metavar="KEY=VALUE", help="Override a config key (repeatable).")
@click.option("--eval-episodes", type=int, default=32, show_default=True, help="Greedy evaluation episodes at the end.")
@click.option("--seeds", default=None, metavar="S1,S2,…",
              help="Train one run per seed (e.g. 0,1,2 or 0-4) under --out ROOT and print the aggregate over seeds.")
@click.option("--grid", "grid", multiple=True, metavar="KEY=V1,V2",
              help="Sweep a --set key over values (repeatable: every combination), one run per combination and seed.")
@click.option("--jobs", type=int, default=1, show_default=True,
              help="Runs of a sweep trained at once, each in its own process (each uses torch_threads threads).")
@click.option("--resume", type=click.Path(path_type=Path), default=None,
              help="Continue RUN_DIR from its last checkpoint, or every run of a sweep ROOT.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@click.option("--quiet", is_flag=True, help="No progress bar.")
@debug_option
def train_cmd(config, env, algo, steps, seed, n_envs, out, sets, eval_episodes, seeds, grid, jobs, resume, as_json, quiet, debug):
    from ..train.config import ConfigError, RunConfig, apply_overrides, parse_set, read_config_file
    from ..train.registry import get_algo
    from ..train.rundir import create_run_dir, load_run_spec, make_run_spec
    from ..train import checkpoint as ckpt
    from ..train import sweep as sw

    ctx = click.get_current_context()
    info = click.echo if not as_json else (lambda m: click.echo(m, err=True))

    def given(*names: str) -> list[str]:
        return [p for p in names if ctx.get_parameter_source(p) == click.core.ParameterSource.COMMANDLINE]

    if resume is not None:
        other = given("config", "env", "algo", "seed", "n_envs", "out", "sets", "eval_episodes", "seeds", "grid")
        if other:
            raise ConfigError(f"--resume continues the run with its own config; drop --{other[0].replace('_', '-')} (only --steps may extend it)")
        if (Path(resume) / sw.SWEEP_FILE).is_file():
            if steps is not None:
                raise ConfigError("--steps extends one run; resume the sweep without it (or each run with --resume RUN --steps N)")
            return _run_sweep(Path(resume), sw.read_sweep(resume), jobs, debug, info, as_json)
        if given("jobs"):
            raise ConfigError("--jobs runs the runs of a sweep in parallel; it does not apply to one run")
        rs = load_run_spec(resume)
        if steps is not None and steps != rs.total_steps:
            d = rs.to_dict()
            d["total_steps"] = int(steps)
            ckpt.write_atomic(Path(resume) / "config.json", json.dumps(d, indent=2))
            rs = load_run_spec(resume)
        run_dir = Path(resume)
    else:
        sets_d = parse_set(sets)
        if config is not None:  # the file's values, unless the command line gives them
            file_cfg = read_config_file(config)
            flags = {"env": env, "algo": algo, "steps": steps, "seed": seed, "n_envs": n_envs, "eval_episodes": eval_episodes}
            for k in flags:
                if k in file_cfg and k not in given(k):
                    flags[k] = file_cfg[k]
            env, algo, steps, seed, n_envs, eval_episodes = flags.values()
            sets_d = {**file_cfg["set"], **sets_d}
        get_entry(env)  # unknown env: clear error before anything else
        entry = get_algo(algo)

        def run_spec(run_seed: int, run_sets: dict[str, str]):
            env_raw, algo_ov, run_ov = split_overrides(run_sets, entry.config_cls)
            run = RunConfig(env=env, algo=algo, steps=steps, seed=run_seed, n_envs=n_envs, eval_episodes=eval_episodes,
                            env_options=_parse_env_options(env, env_raw))
            return make_run_spec(apply_overrides(run, run_ov, "run"), algo_ov)

        if seeds is not None or grid:
            if given("seed"):
                raise ConfigError("--seed is one run's seed; a sweep takes --seeds S1,S2,…")
            return _start_sweep(out, env, algo, sets_d, sw.parse_seeds(seeds) if seeds is not None else [seed],
                                sw.parse_grid(grid), run_spec, jobs, debug, info, as_json)
        if given("jobs"):
            raise ConfigError("--jobs runs the runs of a sweep in parallel; give --seeds or --grid")
        rs = run_spec(seed, sets_d)
        run_dir = create_run_dir(rs, out)
        tuned = tuned_config(env, algo) if config is None else None
        if tuned is not None:  # the library's defaults are not the field's settings for this task
            click.echo(f"hint     the library defaults are not tuned for {env}; tuned settings: marl-train --config {tuned}", err=True)
    return _train_one(run_dir, rs, resume is not None, quiet, info, as_json)


def _train_one(run_dir: Path, rs: Any, resume: bool, quiet: bool, info: Any, as_json: bool) -> int:
    """Train one run directory with a progress bar and print its summary."""
    from ..train.loop import train

    total = rs.total_steps
    bar = Progress(total, "steps", enabled=not quiet)

    def on_progress(row):
        ret = row.get("return_mean")
        extra = f"return {ret:.3g}" if ret is not None else ""
        if row.get("eval_return") is not None:
            extra += f"  eval {row['eval_return']:.3g}"
        if row.get("epsilon") is not None:
            extra += f"  eps {row['epsilon']:.2f}"
        if row.get("noise") is not None:
            extra += f"  noise {row['noise']:.2f}"
        bar.update(int(row["env_steps"]), extra)

    info(f"training {rs.run.algo} on {rs.run.env} (seed {rs.run.seed}, {total:,} env steps, {rs.run.n_envs} parallel envs) -> {run_dir}")
    if rs.comm is not None:
        v = rs.comm["volume"]
        info(
            f"messages {rs.comm['comm']} over {v['topology']}: d={v['d']}, {v['messages_per_step']:,} messages = "
            f"{v['bytes_per_step']:,} B per step{'' if v['exact'] else ' (at most)'}; broadcast would be "
            f"{v['broadcast_messages_per_step']:,} = {v['broadcast_bytes_per_step']:,} B"
        )
    try:
        summary = train(run_dir, resume=resume, progress=on_progress)
    finally:
        bar.close()
    info(f"run      {summary['run_dir']}")
    info(f"steps    {summary['env_steps']:,} env steps in {summary['wall_s']:.1f} s ({summary['steps_per_s']:,.0f} steps/s)")
    if "eval_return" in summary:
        import numpy as np

        r = summary["eval_returns"]
        info(f"eval     greedy return {np.mean(r):.3f} ± {np.std(r):.3f} over {len(r)} episodes (seed {rs.run.seed})")
    if summary.get("msgs_per_step") is not None:
        info(f"messages measured {summary['msgs_per_step']:,.2f} per step = {summary['msg_floats_per_step']:,.0f} floats "
             f"(broadcast: {summary['broadcast_floats_per_step']:,} floats)")
    if as_json:
        emit_json(summary)
    return 0


def _start_sweep(out: Path | None, env: str, algo: str, sets: dict[str, str], seeds: list[int], grid: dict[str, list[str]],
                 run_spec: Any, jobs: int, debug: bool, info: Any, as_json: bool) -> int:
    """Make every run directory of the sweep (a bad key fails here, before any training), then train them."""
    from ..train import sweep as sw
    from ..train.config import ConfigError
    from ..train.rundir import RunError, create_run_dir, default_sweep_dir

    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    root = Path(out) if out is not None else default_sweep_dir(env, algo)
    if (root / sw.SWEEP_FILE).exists():
        raise RunError(f"{root} already holds a sweep; continue it with --resume {root} or choose another --out")
    runs = sw.plan_sweep(seeds, grid)
    specs = [run_spec(r.seed, {**sets, **r.sets}) for r in runs]  # every config checked before any directory is made
    for r, rs in zip(runs, specs):
        create_run_dir(rs, root / r.dir)
    header = {"env": env, "algo": algo, "total_steps": specs[0].total_steps, "seeds": seeds, "grid": grid, "set": sets}
    sw.write_sweep(root, sw.aggregate(root, runs, [None] * len(runs), header))  # the plan: --resume ROOT reads it
    return _run_sweep(root, sw.read_sweep(root), jobs, debug, info, as_json)


def _run_sweep(root: Path, plan: dict[str, Any], jobs: int, debug: bool, info: Any, as_json: bool) -> int:
    """Train (or continue) every run of a sweep, each in its own process, and print the aggregate.
    Each run continues from its own checkpoints (a run not started yet starts), so this is
    also how a killed sweep goes on. Exit status 1 when a run failed."""
    from ..train import sweep as sw

    runs = sw.sweep_runs(plan)
    header = {k: plan[k] for k in ("env", "algo", "total_steps", "seeds", "grid", "set")}
    info(f"sweep    {len(runs)} runs of {plan['algo']} on {plan['env']} ({plan['total_steps']:,} env steps each), "
         f"{jobs} at a time -> {root}")
    # a finished run is not started again; any other continues from its checkpoints (or starts)
    commands = [[] if sw.run_finished(root / r.dir) else
                [sys.executable, "-m", "marl_edge.cli.train", "--resume", str(root / r.dir), "--quiet", *(["--debug"] if debug else [])]
                for r in runs]
    if not all(commands):
        info(f"sweep    {sum(not c for c in commands)} of {len(runs)} runs already finished")
    logs = [root / r.dir / sw.LOG_FILE for r in runs]
    finished = [0]

    def on_done(i: int, rc: int) -> None:
        finished[0] += 1
        res = sw.run_result(root, runs[i], rc)
        what = (f"return {res['eval_return']:.4g}" if res["eval_return"] is not None else "done") if rc == 0 else res["error"]
        click.echo(f"[{finished[0]}/{sum(map(bool, commands))}] {runs[i].dir}: {what}", err=True)

    codes = sw.run_processes(commands, logs, jobs, on_done)
    agg = sw.aggregate(root, runs, list(codes), header)
    sw.write_sweep(root, agg)
    info(sw.table(agg))
    info(f"sweep    {root / sw.SWEEP_FILE}, {root / 'sweep.md'}")
    if as_json:
        emit_json(agg)
    return 1 if agg["failed"] else 0


def main() -> None:
    require_train_extra("marl-train")  # an edge install has no torch: one line, not a traceback
    train_cmd.help = _help()  # built at run time so --help lists the registries
    run_command(train_cmd, prog_name="marl-train")


if __name__ == "__main__":
    main()
