"""A device that speaks the UDP datagram format of ``wire.udp``: a testbed
standing in for robots' bridges. torch-free.

It is the world simulator (``runtime.world.World``: a built-in env with batch
1, the bundle's topology, the per-episode seeds ``episode_seeds(seed,
episodes)``, lock-step or real-time stepping, liveness, absent robots no-op,
rejoins, returns) over the UDP transport (``runtime.transport.UdpTransport``:
one UDP socket) instead of the ZeroMQ one. Agents run with ``marl-agent
AGENT_DIR --robot udp://HOST:PORT`` and still message each other peer to peer
over ZeroMQ; the device hands them each other's message endpoints in PEERS
datagrams (learned from the HELLOs), as the world does.

UDP specifics (the transport's): an agent is known by the source address of
its HELLO; any other datagram claiming to be agent i must come from that
address. A HEARTBEAT from an agent that is not live (its HELLO was lost, or it
missed a lock-step deadline because a datagram was lost) takes it back, like a
HELLO: it rejoins with a fresh recurrent state. After the last episode, a
HEARTBEAT or ACT is answered with STOP again (in case the first was lost).

    python -m marl_edge.runtime.udp_world BUNDLE --port 9000 --episodes 8 [--link-key FILE]

With ``--link-key`` (a shared key, ``marl-keys link OUT``) every datagram is
authenticated (HMAC-SHA256 tag, counter, replay window: ``wire.udp.LinkAuth``);
the agents take the same ``--link-key``.

prints ``listening udp://HOST:PORT`` as its first stdout line, a short human
summary on stderr, and the result as one JSON object, the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import time
from pathlib import Path
from typing import Any

from ..wire import udp as U
from .agent import bundle_id
from .bundle import MANIFEST, Bundle, BundleError, load_bundle
from .metrics import percentiles
from .transport import UdpTransport
from .world import World, WorldOptions, WorldStats


def udp_world(bundle: Bundle, host: str = "127.0.0.1", port: int = 0, swarm: str | None = None,
              opts: WorldOptions | None = None, link_key: bytes | None = None) -> World:
    """The world simulator behind a UDP socket bound at ``host:port`` (0: any free port);
    with ``link_key`` every datagram is authenticated (``wire.udp.LinkAuth``)."""
    auth = None if link_key is None else U.LinkAuth(link_key)
    transport = UdpTransport(U.UdpSpec.from_manifest(bundle.manifest), host, port, auth=auth)
    return World(bundle, transport, swarm or bundle_id(Path(bundle.path) / MANIFEST), opts or WorldOptions())


def summary(device: World, stats: WorldStats, seed: int) -> dict[str, Any]:
    agents = [{"agent": i, "metrics": device.bye.get(i)} for i in range(device.n)]
    robot_invalid = sum(int((a["metrics"] or {}).get("robot_invalid_frames") or 0) for a in agents)
    msg_invalid = sum(int(((a["metrics"] or {}).get("messages") or {}).get("invalid") or 0) for a in agents)
    return {
        "bundle": str(device.b.path),
        "endpoint": device.endpoint,
        "swarm": device.swarm,
        "agents": device.n,
        "mode": device.opts.mode,
        "episodes": len(stats.returns),
        "seed": seed,
        "returns": stats.returns,
        "lengths": stats.lengths,
        "steps": stats.steps,
        "steps_per_s": stats.steps / max(stats.wall_s, 1e-9),
        "step_ms_p50": percentiles(stats.step_ms)["p50"],
        "noop_actions": stats.noop_actions,
        "late_actions": stats.late_actions,
        "absences": stats.absences,
        "rejoins": stats.rejoins,
        "device_link": stats.counters.as_dict() | {"send_errors": device.transport.link.send_errors},
        "authenticated": device.transport.auth is not None,
        "device_invalid_frames": stats.counters.invalid,
        "robot_invalid_frames": robot_invalid,
        "invalid_frames": stats.counters.invalid + robot_invalid + msg_invalid,
        "per_agent": agents,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m marl_edge.runtime.udp_world", description=(
        "Serve a bundle's env to its agents over the UDP datagram link of marl_edge.wire.udp "
        "(run each agent with: marl-agent AGENT_DIR --robot udp://HOST:PORT)."))
    p.add_argument("bundle", type=Path, help="a bundle folder from marl-export")
    p.add_argument("--host", default="127.0.0.1", help="the address to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=0, help="the UDP port (default 0: any free port, printed on the first line)")
    p.add_argument("--episodes", type=int, default=8)
    p.add_argument("--seed", type=int, default=None, help="episode seeds come from this (default: the source run's seed)")
    p.add_argument("--swarm-id", default=None, help="agents with another swarm id are refused (default: the bundle id)")
    p.add_argument("--mode", choices=["lockstep", "realtime"], default="lockstep")
    p.add_argument("--hz", type=float, default=20.0)
    p.add_argument("--act-timeout", type=float, default=5.0, help="lock-step: longest wait (s) for a live agent's action")
    p.add_argument("--hb-timeout", type=float, default=1.0, help="an agent silent this long (s) is absent")
    p.add_argument("--start-timeout", type=float, default=60.0, help="longest wait (s) for every agent's HELLO")
    p.add_argument("--link-key", type=Path, default=None,
                   help="authenticate every datagram with this shared key file (mode 0600; marl-keys link OUT); the agents take the same --link-key")
    p.add_argument("--quiet", action="store_true")
    return p


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    say = (lambda m: None) if args.quiet else (lambda m: print(m, file=sys.stderr, flush=True))

    def on_signal(signum: int, frame: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, on_signal)
    device = None
    try:
        if args.episodes < 1 or not 0 <= args.port <= 65535 or not args.hz > 0:
            raise BundleError("--episodes must be >= 1, --port in 0..65535, --hz > 0")
        key = None if args.link_key is None else U.read_link_key(args.link_key)
        b = load_bundle(args.bundle)
        seed = b.manifest.source.seed if args.seed is None else int(args.seed)
        opts = WorldOptions(episodes=args.episodes, seed=seed, start_timeout_s=args.start_timeout, act_timeout_s=args.act_timeout,
                            hb_timeout_s=args.hb_timeout, mode=args.mode, hz=args.hz)
        device = udp_world(b, args.host, args.port, args.swarm_id, opts, link_key=key)
        print(f"listening {device.endpoint}", flush=True)
        say(f"device   {b.n_agents} robots, swarm {device.swarm}, {args.mode}, {args.episodes} episodes (seed {seed}), "
            f"{'authenticated (link key)' if key else 'unauthenticated'}; waiting for HELLOs")
        t0 = time.perf_counter()
        device.wait_for_agents()
        say(f"device   every robot said hello after {time.perf_counter() - t0:.2f} s")
        stats = device.run()
        device.stop()
        res = summary(device, stats, seed)
    except (BundleError, U.UdpLinkError, TimeoutError) as e:
        print(f"error: {e}", file=sys.stderr, flush=True)
        return 2
    except KeyboardInterrupt:
        if device is not None:
            device.stop(grace_s=1.0)  # tell the agents
        print("interrupted", file=sys.stderr, flush=True)
        return 130
    finally:
        if device is not None:
            device.close()
    say(f"return   {sum(res['returns']) / len(res['returns']):.3f} mean over {res['episodes']} episodes; "
        f"{res['steps_per_s']:,.0f} steps/s; invalid datagrams {res['device_invalid_frames']} at the device, "
        f"{res['robot_invalid_frames']} at the robots; no-op actions {res['noop_actions']}")
    print(json.dumps(res, default=str), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
