"""marl-export: a run's checkpoint -> a verified bundle of per-agent ONNX policies."""

from __future__ import annotations

from pathlib import Path

import click

from .common import debug_option, emit_json, run_command


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("run_dir", type=click.Path(path_type=Path))
@click.option("--out", type=click.Path(path_type=Path), required=True, help="The bundle folder to write (written to a temp folder, then renamed).")
@click.option("--checkpoint", "step", type=int, default=None, help="Env step of the checkpoint (default: latest).")
@click.option("--quantize", type=click.Choice(["none", "int8"]), default="none", show_default=True,
              help="int8: ONNX Runtime dynamic quantisation, checked against fp32.")
@click.option("--min-agreement", type=float, default=0.99, show_default=True,
              help="int8: refuse when fewer greedy actions than this agree with fp32 (unless --force).")
@click.option("--opset", type=int, default=17, show_default=True, help="The ONNX opset the graphs are written with.")
@click.option("--parity-steps", type=int, default=200, show_default=True, help="Team steps replayed through torch and ONNX Runtime.")
@click.option("--force", is_flag=True, help="Replace an existing bundle; keep an int8 export below --min-agreement.")
@click.option("--sign-key", type=click.Path(path_type=Path), default=None,
              help="Sign swarm.json with this Ed25519 private key (marl-keys signing OUT); writes swarm.json.sig. Needs marl-edge[crypto].")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@debug_option
def export_cmd(run_dir, out, step, quantize, min_agreement, opset, parity_steps, force, sign_key, as_json, debug):
    """Export the per-agent policies of RUN_DIR (made by marl-train) as a bundle.

    Each agent gets agent_<i>/policy.onnx (inputs obs [, avail_actions]
    [, hidden] [, msg_in, msg_mask]; outputs action [, hidden_out]
    [, msg_out] [, q | logits]; see docs/export.md) and
    agent_<i>/agent.json; swarm.json describes the team. Mixers and target
    networks are left out. The export is checked (onnx.checker, a torch vs
    ONNX Runtime replay of recurrent rollouts with messages, onnx.reference)
    and fails if any output differs by more than 1e-5 (onnx.reference: 1e-4)
    or any action differs. With --sign-key the manifest is signed
    (swarm.json.sig); robots check it with --trusted-key KEY.pub."""
    from ..export.bundle import export_run
    from ..train.config import ConfigError

    if parity_steps < 1:
        raise ConfigError("--parity-steps must be >= 1")
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    say(f"exporting {run_dir} -> {out}")
    res = export_run(run_dir, out, step, quantize, opset, force, min_agreement, parity_steps, say=say, sign_key=sign_key)
    p = res["parameters_per_agent"]
    say(f"bundle   {res['bundle']}: {res['agents']} agents, {p if isinstance(p, int) else max(p):,} parameters and "
        f"{res['onnx_bytes']:,} B per policy (checkpoint at {res['checkpoint_step']:,} env steps) in {res['wall_s']:.1f} s")
    say(f"next     marl-eval {res['bundle']}" + (f" --trusted-key {sign_key}.pub" if sign_key is not None else ""))
    if as_json:
        emit_json(res)
    return 0


def main() -> None:
    run_command(export_cmd, prog_name="marl-export")


if __name__ == "__main__":
    main()
