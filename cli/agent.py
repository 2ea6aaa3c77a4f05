"""marl-agent: one exported agent as its own process (torch-free)."""

from __future__ import annotations

import json
import logging
import sys
from pathlib import Path

import click

from .common import debug_option, emit_json, run_command


def _load_profile(path: Path | None) -> dict:
    if path is None:
        return {}
    from ..runtime.bundle import BundleError

    try:
        d = json.loads(Path(path).read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise BundleError(f"profile {path}: cannot read it ({e})") from None
    if not isinstance(d, dict):
        raise BundleError(f"profile {path}: want a JSON object")
    return d


@click.command(context_settings={"help_option_names": ["-h", "--help"]})
@click.argument("agent_dir", type=click.Path(path_type=Path), required=False)
@click.option("--manifest", type=click.Path(path_type=Path), default=None, help="The bundle's swarm.json (default: next to AGENT_DIR).")
@click.option("--world", default=None, help="World simulator endpoint (the simulated robot connects there).")
@click.option("--robot", default=None, help="The robot link instead of --world: udp://HOST:PORT, a device speaking the UDP datagram format (docs/robots.md).")
@click.option("--link-key", type=click.Path(path_type=Path), default=None,
              help="--robot: authenticate every datagram with this shared key file (mode 0600; marl-keys link OUT), as the device does (or link_key in --profile).")
@click.option("--bind", default=None, help="Where this agent's message inbox listens (default tcp://127.0.0.1:*).")
@click.option("--peers", "peers_file", type=click.Path(path_type=Path), default=None, help='JSON {"<id>": "<endpoint>"} of the other agents\' inboxes.')
@click.option("--profile", type=click.Path(path_type=Path), default=None, help="A deployment profile (JSON) with any of these options.")
@click.option("--mode", type=click.Choice(["lockstep", "realtime"]), default=None,
              help="lockstep: wait for the world's every step and for the listed neighbours' messages; realtime: act on what has arrived (default lockstep; must match the world).")
@click.option("--hz", type=float, default=None, help="Realtime: the world's step rate, for the agent's timing (default 20).")
@click.option("--swarm-id", default=None, help="Frames from other swarms are refused (default: the bundle id).")
@click.option("--drop", type=float, default=None, help="Fault injection: lose each heard message with this probability.")
@click.option("--delay-steps", type=int, default=None, help="Fault injection: send every message this many steps late.")
@click.option("--msg-timeout", type=float, default=None, help="Lock-step: longest wait (s) for a neighbour's message (default 2).")
@click.option("--seed", type=int, default=None, help="Seeds this agent's --drop draws (default 0; marl-swarm passes the swarm's seed).")
@click.option("--metrics", "metrics_path", default=None, help="Append this agent's metrics as a JSON line here on exit.")
@click.option("--trusted-key", "trusted_keys", multiple=True, type=click.Path(path_type=Path),
              help="A public key (marl-keys signing OUT writes OUT.pub) the bundle must be signed with (repeatable: any one of them); unsigned, wrongly signed or changed bundles are refused. Needs marl-edge[crypto]. (or trusted_keys in --profile)")
@click.option("--world-timeout", type=float, default=None,
              help="Give up (exit 3) after this many seconds without a frame from the world or robot link (default 10; 0: wait forever).")
@click.option("--reconnect", is_flag=True, default=None, help="When the world falls silent, keep saying hello until it is back instead of giving up.")
@click.option("--secret-key", type=click.Path(path_type=Path), default=None,
              help="CURVE: this agent's secret key file (agent_<i>.key_secret, mode 0600; from marl-swarm --write-profiles).")
@click.option("--public-keys", type=click.Path(path_type=Path), default=None, help="CURVE: the swarm's public_keys.json.")
@click.option("--insecure", is_flag=True, help="Plain TCP without CURVE: anyone who reaches the sockets can join. Tests only.")
@click.option("--log-level", type=click.Choice(["debug", "info", "warning", "error"]), default=None,
              help="What the agent logs on stderr (default info: start-up, absences, rejoins, the world going silent and back, status lines).")
@click.option("--status-every", type=float, default=None,
              help="Log a status line every S seconds (info): step, episode, act latency, messages in/out, drops, invalid, reconnects (default 10; 0: never).")
@click.option("--report-every", type=float, default=None,
              help="Send the same counters to the world every S seconds as a status frame, for marl-swarm --live (default 0: never).")
@click.option("--json", "as_json", is_flag=True, help="Print the agent's metrics as one JSON object, the last line of stdout, on exit.")
@debug_option
def agent_cmd(agent_dir, manifest, world, robot, link_key, bind, peers_file, profile, mode, hz, swarm_id, drop, delay_steps, msg_timeout, seed, metrics_path,
              trusted_keys, world_timeout, reconnect, secret_key, public_keys, insecure, log_level, status_every, report_every, as_json, debug):
    """Run AGENT_DIR (agent_<i> of a bundle from marl-export) as one agent.

    It checks the folder against the bundle's swarm.json (sha256, version,
    shapes), then steps: observation and neighbours from its robot, the
    previous step's messages from its neighbours, act, message straight to
    its current neighbours, action to the robot. SIGINT/SIGTERM stop it.
    With --trusted-key, swarm.json must carry a signature (swarm.json.sig) by
    one of the keys, and every file must match the signed sha256.
    Counted absent by the world (a stall), it starts over and rejoins by
    itself; a world silent for --world-timeout seconds ends it with exit 3.
    Over TCP every link is CURVE-authenticated and encrypted: give
    --secret-key and --public-keys (a profile names them), or --insecure."""
    from ..robots.sim import SimRobot
    from ..wire import protocol as P
    from ..runtime.agent import AgentOptions, AgentProcess, bundle_id
    from ..runtime.bundle import MANIFEST, BundleError, read_manifest

    prof = _load_profile(profile)
    pick = lambda v, k, default=None: v if v is not None else prof.get(k, default)  # noqa: E731
    level = str(pick(log_level, "log_level", "info"))
    if level not in ("debug", "info", "warning", "error"):
        raise BundleError(f"profile {profile}: log_level must be debug, info, warning or error, got {level!r}")
    _setup_logging(level)
    agent_dir = pick(agent_dir, "agent_dir")
    if agent_dir is None:
        raise BundleError("give AGENT_DIR (or agent_dir in --profile)")
    agent_dir = Path(agent_dir)
    manifest = Path(pick(manifest, "manifest", agent_dir.parent / MANIFEST))
    if world is not None and robot is not None:
        raise BundleError("give either --world ENDPOINT (the simulated robot) or --robot udp://HOST:PORT, not both")
    if world is None and robot is None:  # the command line wins over the profile; a profile's robot over its world
        robot = prof.get("robot")
        world = prof.get("world") if robot is None else None
    if world is None and robot is None:
        raise BundleError("give --world ENDPOINT (the simulated robot) or --robot udp://HOST:PORT (a device; see docs/robots.md)")
    link = None
    if robot is not None:
        from ..wire.udp import UdpLinkError, parse_udp_url, resolve

        try:
            link = parse_udp_url(str(robot))
            resolve(*link)
        except UdpLinkError as e:
            raise BundleError(f"--robot: {e}") from None
    link_key = link_key if link_key is not None else (None if prof.get("link_key") is None else Path(profile).parent / prof["link_key"])
    auth = None
    if link_key is not None:
        if robot is None:
            raise BundleError("--link-key authenticates the UDP robot link: give --robot udp://HOST:PORT too")
        from ..wire.udp import UdpLinkError, link_auth

        try:
            auth = link_auth(link_key)
        except UdpLinkError as e:
            raise BundleError(f"--link-key: {e}") from None
    peers = None
    pf = pick(peers_file, "peers")
    if pf is not None:
        raw = pf if isinstance(pf, dict) else _load_profile(Path(pf))
        peers = {int(k): str(v) for k, v in raw.items()}
    keys = list(trusted_keys) or prof.get("trusted_keys") or []
    if isinstance(keys, str):
        keys = [keys]
    if not isinstance(keys, list) or not all(isinstance(k, (str, Path)) for k in keys):
        raise BundleError(f"profile {profile}: trusted_keys: expected a list of public-key files")
    trusted = None
    if keys:
        from ..runtime.signing import TrustedKeys

        trusted = TrustedKeys.load(keys)  # once: the checks below and the agent share it
    sid = pick(swarm_id, "swarm_id") or bundle_id(manifest)
    opts = AgentOptions(bind=pick(bind, "bind", "tcp://127.0.0.1:*"), mode=pick(mode, "mode", "lockstep"), hz=float(pick(hz, "hz", 20.0)),
                        drop=float(pick(drop, "drop", 0.0)), seed=int(pick(seed, "seed", 0)), metrics_path=pick(metrics_path, "metrics"), peers=peers,
                        delay_steps=int(pick(delay_steps, "delay_steps", 0)), msg_timeout_s=float(pick(msg_timeout, "msg_timeout", 2.0)),
                        trusted_keys=trusted,
                        world_timeout_s=float(pick(world_timeout, "world_timeout", 10.0)), reconnect=bool(pick(reconnect, "reconnect", False)),
                        status_every_s=float(pick(status_every, "status_every", 10.0)), report_every_s=float(pick(report_every, "report_every", 0.0)))
    if opts.delay_steps < 0 or opts.msg_timeout_s < 0 or not opts.hz > 0 or not opts.world_timeout_s >= 0:
        raise BundleError("--delay-steps, --msg-timeout and --world-timeout must be >= 0, --hz > 0")
    if not (opts.status_every_s >= 0 and opts.report_every_s >= 0):
        raise BundleError("--status-every and --report-every must be >= 0 (0: off)")
    if not 0.0 <= opts.drop < 1.0:
        raise BundleError(f"--drop must be in [0, 1), got {opts.drop}")
    if not manifest.is_file():
        raise BundleError(f"{manifest} is missing: pass --manifest BUNDLE/swarm.json")
    # CURVE keys: a profile's paths are relative to the profile's folder
    here = lambda v, k: v if v is not None else (None if prof.get(k) is None else Path(profile).parent / prof[k])  # noqa: E731
    secret_key, public_keys = here(secret_key, "secret_key"), here(public_keys, "public_keys")
    insecure = bool(insecure) or bool(prof.get("insecure", False))
    tcp = any(str(e).startswith("tcp://") for e in [world, opts.bind, *(peers or {}).values()] if e)
    if insecure:
        if secret_key is not None or public_keys is not None:
            raise BundleError("--insecure runs without keys: drop --secret-key/--public-keys (or --insecure)")
        if tcp:
            click.echo("WARNING: --insecure: plain TCP, no CURVE -- anyone who reaches these sockets can join and speak as any agent", err=True)
    elif secret_key is not None or public_keys is not None:
        if secret_key is None or public_keys is None:
            raise BundleError("CURVE needs both --secret-key FILE and --public-keys FILE")
        from ..runtime.keys import load_keys

        opts.keys = load_keys(secret_key, public_keys)
    m = read_manifest(manifest, trusted_keys=trusted)
    ex = P.Expect.for_bundle(m, sid)
    if link is not None:
        from ..robots.udp import UdpRobot
        from ..wire.udp import UdpSpec

        adapter = UdpRobot(link, UdpSpec.from_manifest(m), auth=auth)
    else:
        k = opts.keys
        adapter = SimRobot(world, ex, curve=None if k is None else (k.public, k.secret, k.public_of("world")))
    proc = AgentProcess(agent_dir, manifest, adapter, sid, opts)  # checks the folder (and that the key is this agent's)
    if tcp and opts.keys is None and not insecure:
        raise BundleError("tcp links are CURVE-secured: give --secret-key FILE --public-keys FILE "
                          "(marl-swarm --write-profiles writes them) or --insecure for plain TCP")
    logging.getLogger("marl_edge.agent").info(
        f"agent {proc.id}: started, {opts.mode}, swarm {sid}, {'world ' + str(world) if world is not None else 'robot ' + str(robot)}")
    res = proc.run()
    logging.getLogger("marl_edge.agent").info(f"agent {proc.id}: stopped ({res['stopped']}) after {res['steps']} steps")
    if as_json:
        emit_json(res)
    if proc.gave_up:
        click.echo(proc.gave_up, err=True)
        return 3
    return 0


def _setup_logging(level: str) -> None:
    """The agent's log: Python logging to stderr, one timestamped line per record.
    Only the marl_edge loggers take ``level``; other libraries stay at warning."""
    h = logging.StreamHandler(sys.stderr)
    h.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(message)s"))
    root = logging.getLogger("marl_edge")
    root.handlers[:] = [h]
    root.setLevel(getattr(logging, level.upper()))
    root.propagate = False


def main() -> None:
    run_command(agent_cmd, prog_name="marl-agent")


if __name__ == "__main__":
    main()
