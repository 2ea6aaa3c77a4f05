"""marl-plot: learning curves of runs, pictures of a swarm run, frames of a swarm trace.

    marl-plot RUN_OR_SWEEP ... --out curves.png      (the same as ``marl-plot curves ...``)
    marl-plot swarm METRICS.jsonl --out swarm.png    (marl-swarm --metrics-out)
    marl-plot trace TRACE.jsonl --out ep.gif         (marl-swarm --trace)

Reads files only: no torch, no ONNX Runtime. Needs marl-edge[plot] (matplotlib).
"""

from __future__ import annotations

import sys
from pathlib import Path

import click

from .common import debug_option, emit_json, run_command

SUBCOMMANDS = ("curves", "swarm", "trace")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
def plot_cmd():
    """Pictures: learning curves (curves, the default), a swarm's metrics (swarm), a swarm trace (trace).

    \b
    marl-plot RUN_OR_SWEEP ... --out curves.png   (= marl-plot curves ...)
    marl-plot swarm METRICS.jsonl --out swarm.png
    marl-plot trace TRACE.jsonl --out ep.gif --episode K"""


@plot_cmd.command("curves")
@click.argument("paths", nargs=-1, required=True, type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The figure, FILE.png; the final-return table goes beside it, as Markdown and CSV (the same name ending in .md and .csv).")
@click.option("--group-by", type=click.Choice(["algo", "env", "config"]), default="config", show_default=True,
              help="One curve per algorithm, per env, or per config (everything but the seed).")
@click.option("--stat", type=click.Choice(["mean", "iqm"]), default="mean", show_default=True, help="Aggregate over seeds (iqm: interquartile mean).")
@click.option("--n-boot", type=int, default=2000, show_default=True, help="Bootstrap samples for the 95% CIs.")
@click.option("--boot-seed", type=int, default=0, show_default=True, help="Seed of the bootstrap's resampling (fixed: the same files give the same picture).")
@click.option("--source", type=click.Choice(["auto", "eval", "train"]), default="auto", show_default=True,
              help="eval: greedy returns of eval.csv; train: training returns of metrics.csv; auto: eval when every run has eval.csv.")
@click.option("--points", type=int, default=100, show_default=True, help="Env-step grid points the curves are interpolated to.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@debug_option
def curves_cmd(paths, out, group_by, stat, n_boot, boot_seed, source, points, as_json, debug):
    """Learning curves of run directories (or folders holding them: sweeps), seeds aggregated per group
    with stratified bootstrap 95% confidence intervals, plus a final-return table from each run's eval.json."""
    from ..viz import curves as C
    from ..viz.figure import check_out, pyplot
    from ..viz.stats import PlotError

    out = check_out(out, (".png",))
    if points < 2:
        raise PlotError("--points must be >= 2")
    pyplot()
    runs = [C.load_run(p) for p in C.find_runs(paths)]
    src = C.choose_source(runs, source)
    groups = C.group_runs(runs, group_by)
    curves = [C.aggregate_curve(g, src, stat, n_boot, boot_seed, points) for g in groups]
    C.plot_curves(curves, src, stat, out)
    rows = C.final_table(groups, stat, n_boot, boot_seed)
    md, csv_path = out.with_suffix(".md"), out.with_suffix(".csv")
    table = C.table_markdown(rows, stat)
    md.write_text(f"Final greedy return (eval.json `mean_return`), {stat} over seeds, 95% stratified bootstrap CI "
                  f"({n_boot} samples, seed {boot_seed}).\n\n{table}")
    C.write_table_csv(rows, stat, csv_path)
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    say(f"{len(runs)} runs in {len(groups)} groups; curves show the {C.SOURCE_TITLE[src]}")
    say(table.rstrip())
    say(f"wrote {out}, {md}, {csv_path}")
    if as_json:
        emit_json({"out": str(out), "table_md": str(md), "table_csv": str(csv_path), "source": src, "runs": len(runs),
                   "groups": [{"label": r.label, "runs": r.n_runs,
                               "final": None if r.estimate is None else [float(r.estimate.value), float(r.estimate.low), float(r.estimate.high)]}
                              for r in rows]})
    return 0


@plot_cmd.command("swarm")
@click.argument("metrics", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The figure, FILE.png.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@debug_option
def swarm_cmd(metrics, out, as_json, debug):
    """Latency, messages, absences and returns of a swarm run, from the file of marl-swarm --metrics-out."""
    from ..viz.swarm import plot_swarm

    res = plot_swarm(metrics, out)
    (click.echo if not as_json else (lambda m: click.echo(m, err=True)))(f"wrote {out} ({res['sessions']} agent sessions, {res['episodes']} episodes)")
    if as_json:
        emit_json(res)
    return 0


@plot_cmd.command("trace")
@click.argument("trace", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="FILE.gif (one frame per step, plus the start) or FILE.png (one sheet).")
@click.option("--episode", type=int, default=0, show_default=True, help="Which episode of the trace.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@debug_option
def trace_cmd(trace, out, episode, as_json, debug):
    """Replay one episode of a marl-swarm --trace file in its env (the recorded seed and joint actions) and draw
    it as marl-eval --render does, with who heard whom and who was absent as the swarm recorded them."""
    from ..viz.episode import read_trace
    from ..viz.figure import check_out, pyplot
    from ..viz.render import OUT_SUFFIXES, write_episode

    check_out(out, OUT_SUFFIXES)
    pyplot()
    res = write_episode(read_trace(trace, episode), out)
    (click.echo if not as_json else (lambda m: click.echo(m, err=True)))(
        f"episode {episode}: {res['steps']} steps, return {res['return']:.3f}; {res['frames']} frames in {out}")
    if as_json:
        emit_json(res | {"episode": episode})
    return 0


def main() -> None:
    """``marl-plot RUNS...`` is ``marl-plot curves RUNS...``."""
    argv = sys.argv[1:] or ["--help"]
    if argv[0] not in SUBCOMMANDS and argv[0] not in ("-h", "--help"):
        argv = ["curves", *argv]
    run_command(plot_cmd, argv, prog_name="marl-plot")


if __name__ == "__main__":
    main()
