"""marl-swarm: the world simulator and one process per agent, on one host."""

from __future__ import annotations

import math
import signal
import sys
import time
from pathlib import Path
from typing import Any, TextIO

import click

from .common import Progress, debug_option, emit_json, run_command


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("bundle_dir", type=click.Path(path_type=Path))
@click.option("--opponent", "opponent_dir", type=click.Path(path_type=Path), default=None,
              help="A match: BUNDLE_DIR's team against this bundle's team in the two-team game both were trained on (bundles from "
                   "marl-league); every agent of both is its own process. Reports both teams' returns and BUNDLE_DIR's wins/draws/losses.")
@click.option("--episodes", type=int, default=8, show_default=True, help="How many episodes the world plays.")
@click.option("--seed", type=int, default=None, help="Episode seeds come from this (default: the source run's seed, as in marl-eval).")
@click.option("--transport", type=click.Choice(["ipc", "tcp"]), default="ipc", show_default=True,
              help="ipc: unix sockets in a private folder (one host); tcp: loopback or --world-bind, CURVE-secured.")
@click.option("--mode", type=click.Choice(["lockstep", "realtime"]), default="lockstep", show_default=True,
              help="lockstep: each step waits for every live agent (reproduces marl-eval); realtime: the world ticks at --hz and late agents no-op.")
@click.option("--hz", type=float, default=20.0, show_default=True, help="Realtime: steps per second.")
@click.option("--drop", type=float, default=0.0, show_default=True, help="Each heard message lost with this probability.")
@click.option("--delay-steps", type=int, default=0, show_default=True, help="Every message sent D steps late: it arrives stale and is masked.")
@click.option("--metrics-out", type=click.Path(path_type=Path), default=None, help="Write every agent's metrics (JSON lines) and the summary here.")
@click.option("--kill", "kills", multiple=True, help="AGENT@STEP: SIGKILL that agent at that global step (repeatable).")
@click.option("--restart", "restarts", multiple=True, help="AGENT@STEP: start a killed agent again (repeatable).")
@click.option("--world-bind", default=None, help="Where the world listens (default: a private ipc socket or tcp://127.0.0.1:*).")
@click.option("--no-spawn", is_flag=True, help="Run only the world; agents are started elsewhere (marl-agent --profile).")
@click.option("--swarm-id", default=None, help="With --no-spawn: the id the agents use (default: the bundle id).")
@click.option("--start-timeout", type=float, default=60.0, show_default=True, help="Seconds to wait for every agent's hello.")
@click.option("--write-profiles", type=click.Path(path_type=Path), default=None,
              help="Write one deployment profile per agent into this folder and exit (with --hosts, --base-port, --world-bind).")
@click.option("--hosts", default="127.0.0.1", show_default=True, help="Comma-separated robot hosts for --write-profiles (agent i on host i mod len).")
@click.option("--base-port", type=int, default=5600, show_default=True, help="Agent i listens on base-port + i.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(path_type=Path),
              help="A public key (marl-keys signing OUT writes OUT.pub) the bundle must be signed with (repeatable: any one of them); unsigned, wrongly signed or changed bundles are refused. Needs marl-edge[crypto]. Every agent checks it too; --write-profiles records it.")
@click.option("--insecure", is_flag=True, help="Plain TCP without CURVE (and profiles without keys): anyone who reaches the sockets can join.")
@click.option("--curve", "curve_ipc", is_flag=True, help="CURVE on ipc too (tcp always has it unless --insecure).")
@click.option("--secret-key", type=click.Path(path_type=Path), default=None, help="With --no-spawn over tcp: the world's secret key file (world.key_secret).")
@click.option("--public-keys", type=click.Path(path_type=Path), default=None, help="With --no-spawn over tcp: the swarm's public_keys.json.")
@click.option("--trace", "trace_path", type=click.Path(path_type=Path), default=None,
              help="Write every step (applied actions, rewards, positions, routed messages, absences) to this JSON-lines file as it runs (docs/robots.md).")
@click.option("--live", is_flag=True,
              help="Show a per-agent table (live/absent, step, act latency, messages, drops, invalid) on stderr, refreshed twice a second.")
@click.option("--json", "as_json", is_flag=True, help="Print one JSON object as the last line of stdout.")
@click.option("--quiet", is_flag=True, help="No progress bar (the summary lines still print).")
@debug_option
def swarm_cmd(bundle_dir, opponent_dir, episodes, seed, transport, mode, hz, drop, delay_steps, metrics_out, kills, restarts, world_bind, no_spawn,
              swarm_id, start_timeout, write_profiles, hosts, base_port, trusted_keys, insecure, curve_ipc, secret_key, public_keys, trace_path,
              live, as_json, quiet, debug):
    """Run BUNDLE_DIR (from marl-export) as a swarm: one OS process per agent,
    messages peer to peer over ZeroMQ, a world simulator stepping the env.

    Over tcp every link is CURVE-authenticated and encrypted with fresh keys
    per run (--no-spawn: the keys --write-profiles wrote); ipc relies on its
    private 0700 folder (--curve adds CURVE there too)."""
    from ..runtime.bundle import BundleError, load_bundle
    from ..runtime.agent import bundle_id
    from ..runtime.swarm import SwarmOptions, parse_at, run_swarm
    from ..runtime.swarm import write_profiles as write_profiles_fn

    if episodes < 1:
        raise BundleError("--episodes must be >= 1")
    _signals_raise()
    keys = tuple(str(k) for k in trusted_keys)
    b = load_bundle(bundle_dir, trusted_keys=list(keys) or None)
    n_agents = b.n_agents
    if opponent_dir is not None:
        from ..runtime.match import plan_match

        if write_profiles is not None:
            raise BundleError("--write-profiles is not supported with --opponent yet: write each bundle's profiles on its own")
        n_agents = plan_match(b, load_bundle(opponent_dir, trusted_keys=list(keys) or None)).spec.n_agents  # --kill/--restart name the game's agents
    if insecure and (curve_ipc or secret_key is not None or public_keys is not None):
        raise BundleError("--insecure runs without keys: drop --curve/--secret-key/--public-keys (or --insecure)")
    if insecure:
        click.echo("WARNING: --insecure: plain TCP, no CURVE -- anyone who reaches the swarm's sockets can join and speak as any agent", err=True)
    if write_profiles is not None:
        if world_bind is None:
            raise BundleError("--write-profiles needs --world-bind tcp://WORLD_HOST:PORT (where the robots reach the world)")
        paths = write_profiles_fn(bundle_dir, write_profiles, world_bind, [h for h in hosts.split(",") if h], base_port, mode, hz, swarm_id,
                                  trusted_keys=keys, insecure=insecure)
        click.echo(f"profiles {len(paths)} written to {write_profiles}; on robot i: marl-agent --profile agent_i.json")
        port = world_bind.rsplit(":", 1)[-1]
        if insecure:
            click.echo(f"world    marl-swarm {bundle_dir} --no-spawn --world-bind tcp://*:{port} --transport tcp --insecure")
        else:
            click.echo("keys     copy agent_i.json, agent_i.key_secret and public_keys.json to robot i only; world.key_secret stays on the world host")
            click.echo(f"world    marl-swarm {bundle_dir} --no-spawn --world-bind tcp://*:{port} --transport tcp "
                       f"--secret-key {write_profiles / 'world.key_secret'} --public-keys {write_profiles / 'public_keys.json'}")
        return 0
    opts = SwarmOptions(episodes=episodes, seed=seed, transport=transport, mode=mode, hz=hz, drop=drop, delay_steps=delay_steps,
                        kills=[parse_at(k, n_agents, "kill") for k in kills], restarts=[parse_at(r, n_agents, "restart") for r in restarts],
                        world_bind=world_bind, spawn=not no_spawn, start_timeout_s=start_timeout, trusted_keys=keys,
                        swarm_id=(swarm_id or bundle_id(Path(bundle_dir) / "swarm.json")) if no_spawn else swarm_id,
                        security="insecure" if insecure else "curve" if curve_ipc else "auto", secret_key=secret_key, public_keys=public_keys,
                        trace=trace_path, report_every_s=LiveView.EVERY_S if live else 0.0)
    if no_spawn and transport == "ipc" and world_bind is None:
        raise BundleError("--no-spawn needs --world-bind (where the agents connect)")
    say = (lambda m: click.echo(m, err=True)) if as_json else click.echo
    if b.signer:
        say(f"signed   by trusted key {b.signer}; every agent checks the signature too")
    say(f"swarm    {n_agents} agent {'processes' if not no_spawn else 'processes started elsewhere'} + world, {transport}, {mode}, {episodes} episodes")
    bar = Progress(episodes, "episodes", enabled=not quiet and not live)  # the live table shows the episode
    view = LiveView(sys.stderr, episodes) if live else None
    try:
        res = run_swarm(bundle_dir, opts, progress=lambda r: bar.update(r["episode"], _episode_note(r)), watch=view,
                        opponent=opponent_dir)
    finally:
        bar.close()
        if view is not None:
            view.finish()
    if trace_path is not None:
        say(f"trace    {trace_path}: {res['steps']} steps")
    if metrics_out is not None:
        import json

        with open(metrics_out, "w") as f:
            for a in res["per_agent"]:
                for sess in a["sessions"]:
                    f.write(json.dumps(_finite(sess)) + "\n")
            f.write(json.dumps(_finite({"summary": {k: v for k, v in res.items() if k != "per_agent"}})) + "\n")
    if "match" in res:
        for k, t in enumerate(res["match"]["teams"]):
            rs = res["returns" if k == 0 else "opponent_returns"]
            say(f"team {'AB'[k]}   {t['bundle']}: team {t['team']} of {res['match']['game']} (trained as team {t['trained_as']}), "
                f"return {sum(rs) / max(1, len(rs)):.3f} mean")
        say(f"match    team A: {res['wins']} wins, {res['draws']} draws, {res['losses']} losses over {res['episodes']} episodes (seed {res['seed']})")
    else:
        say(f"return   {res['mean_return']:.3f} mean over {res['episodes']} episodes (seed {res['seed']})")
    say(f"speed    {res['steps_per_s']:,.0f} steps/s, step p50 {res['step_ms_p50']:.2f} ms / p99 {res['step_ms_p99']:.2f} ms; "
        f"act p50 {res['act_latency_us_p50']:.1f} µs / p99 {res['act_latency_us_p99']:.1f} µs; start-up {res['startup_s']:.2f} s")
    if res["msg_frame_bytes"]:
        say(f"messages {res['msgs_per_step']:.2f} per step, {res['msg_bytes_per_step']:,.1f} B per step ({res['msg_frame_bytes']} B frames); "
            f"dropped {res['dropped']}, stale {res['stale']}, invalid {res['invalid_frames']}")
    if res["invalid_frames"]:
        reasons = ", ".join(f"{k} {v}" for k, v in res["invalid_reasons"].items())
        say(f"invalid  {res['invalid_frames']} frames ({reasons or 'no reasons reported'}); the world's: {res['world_invalid_frames']}")
    if res["late_actions"]:
        say(f"late     {res['late_actions']} actions missed their tick (those robots no-op'd)")
    for a in res["absences"]:
        say(f"fault    agent {a['agent']} absent from step {a['step']} ({a['why']}); its robot no-ops, neighbours mask it")
    for r in res["rejoins"]:
        say(f"fault    agent {r['agent']} rejoined at step {r['step']} ({r.get('why') or 'absent'}, gone {r.get('absent_s', 0):g} s)")
    if as_json:
        emit_json(_finite({k: v for k, v in res.items() if k != "per_agent"} | {"per_agent": res["per_agent"]}))
    if res["nobody_acted"]:
        click.echo(f"error: no agent acted in {res['steps']} steps: every robot played the no-op (see the absences above)", err=True)
        return 1
    return 0


class LiveView:
    """``marl-swarm --live``: the world's per-agent table (``runtime.swarm.live_rows``)
    on ``stream`` at most every ``EVERY_S``. On a terminal it is redrawn in place
    (ANSI: cursor up, clear to the end); otherwise one plain line per refresh,
    so a log or a pipe gets a readable history."""

    EVERY_S = 0.5

    def __init__(self, stream: TextIO, episodes: int) -> None:
        self.stream, self.episodes = stream, episodes
        self.tty = stream.isatty()
        self.drawn = 0  # lines of the last table (a terminal)
        self.at = -1e9
        self.t0 = time.perf_counter()
        self.world: Any = None

    def __call__(self, world: Any) -> None:
        self.world = world
        if time.perf_counter() - self.at >= self.EVERY_S:
            self.draw()

    def finish(self) -> None:
        """The last state, whenever the previous one was drawn."""
        if self.world is not None:
            self.draw()

    def draw(self) -> None:
        from ..runtime.swarm import live_line, live_rows, live_table

        w = self.world
        self.at = now = time.perf_counter()
        head = f"{now - self.t0:.1f} s, step {w.global_step}, episode {min(w.cur[0] + 1, self.episodes)}/{self.episodes}"
        rows = live_rows(w, now)
        if self.tty:
            lines = live_table(rows, "live     " + head)
            up = f"\x1b[{self.drawn}F\x1b[J" if self.drawn else ""
            self.stream.write(up + "\n".join(lines) + "\n")
            self.drawn = len(lines)
        else:
            self.stream.write(live_line(rows, head) + "\n")
        self.stream.flush()


def _episode_note(r: dict[str, Any]) -> str:
    """The progress bar's note on a finished episode: its return (a match: each team's)."""
    if "team_returns" in r:
        a, b = r["team_returns"]
        return f"returns A {a:.3g}, B {b:.3g}"
    return f"return {r['return']:.3g}"


def _finite(o: Any) -> Any:
    """``o`` with every NaN or infinite float as None (JSON has neither)."""
    if isinstance(o, float):
        return o if math.isfinite(o) else None
    if isinstance(o, dict):
        return {k: _finite(v) for k, v in o.items()}
    if isinstance(o, (list, tuple)):
        return [_finite(v) for v in o]
    return o


def _signals_raise() -> None:
    """SIGTERM (and SIGINT) become exceptions, once, so every ``finally`` runs: the
    agents are stopped and the temporary folder is removed. A second signal
    during that clean-up is ignored."""
    seen = []

    def handler(signum: int, frame: Any) -> None:
        if seen:
            return
        seen.append(signum)
        if signum == signal.SIGINT:
            raise KeyboardInterrupt  # run_command says "interrupted", exit 130
        click.echo("terminated", err=True)
        raise SystemExit(128 + signum)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, handler)


def main() -> None:
    run_command(swarm_cmd, prog_name="marl-swarm")


if __name__ == "__main__":
    main()
