"""A device that speaks the UDP datagram format of ``robots.udp``: a testbed
standing in for robots' bridges. torch-free.

It is the world simulator (``runtime.world.World``: a built-in env with batch
1, the bundle's topology, the per-episode seeds ``episode_seeds(seed,
episodes)``, lock-step or real-time stepping, liveness, absent robots no-op,
rejoins, returns) with the ZeroMQ transport swapped for one UDP socket:
``_open``, ``_poll``, ``_send`` and ``close`` are the only parts it replaces.
Agents run with ``marl-agent AGENT_DIR --robot udp://HOST:PORT`` and still
message each other peer to peer over ZeroMQ; the device hands them each
other's message endpoints in PEERS datagrams (learned from the HELLOs), as
the world does.

UDP specifics: an agent is known by the source address of its HELLO; any
other datagram claiming to be agent i must come from that address. A
HEARTBEAT from an agent that is not live (its HELLO was lost, or it missed a
lock-step deadline because a datagram was lost) takes it back, like a HELLO:
it rejoins with a fresh recurrent state. After the last episode, a
HEARTBEAT or ACT is answered with STOP again (in case the first was lost).

    python -m marl_edge.robots.udp_device BUNDLE --port 9000 --episodes 8

prints ``listening udp://HOST:PORT`` as its first stdout line, a short human
summary on stderr, and the result as one JSON object, the last stdout line.
"""

from __future__ import annotations

import argparse
import json
import select
import signal
import socket
import sys
import time
from pathlib import Path
from typing import Any

from ..runtime import protocol as P
from ..runtime.agent import bundle_id
from ..runtime.bundle import MANIFEST, Bundle, BundleError, load_bundle
from ..runtime.world import World, WorldOptions, WorldStats
from . import udp as U


class UdpDevice(World):
    """The world simulator behind a UDP socket bound at ``host:port`` (0: any free port)."""

    def __init__(self, bundle: Bundle, host: str = "127.0.0.1", port: int = 0, swarm: str | None = None,
                 opts: WorldOptions | None = None) -> None:
        self.spec = U.UdpSpec.from_manifest(bundle.manifest)
        self.bind_host, self.bind_port = host, port
        self.udp_addr: dict[int, tuple[Any, ...]] = {}  # agent -> its link's address (from its HELLO)
        self.link = U.LinkCounters()
        super().__init__(bundle, f"udp://{host}:{port}", swarm or bundle_id(Path(bundle.path) / MANIFEST), opts or WorldOptions())

    # ---- the transport --------------------------------------------------------------------
    def _open(self, endpoint: str) -> None:
        fam, sa = U.resolve(self.bind_host, self.bind_port)
        s = socket.socket(fam, socket.SOCK_DGRAM)
        try:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 << 20)  # capped by net.core.rmem_max
            s.bind(sa)
        except OSError as e:
            s.close()
            raise BundleError(f"cannot listen on {endpoint}: {e.strerror or e}; pick another --port") from None
        s.setblocking(False)
        self.sock = s
        host, port = s.getsockname()[:2]
        self.endpoint = f"udp://[{host}]:{port}" if fam == socket.AF_INET6 else f"udp://{host}:{port}"
        self.port = port

    def _poll(self, timeout_ms: int) -> None:
        try:
            ready, _, _ = select.select([self.sock], [], [], max(0, timeout_ms) / 1000)
        except InterruptedError:
            return
        if not ready:
            return
        while True:
            try:
                data, src = self.sock.recvfrom(U.MAX_DATAGRAM + 1)
            except (BlockingIOError, InterruptedError):
                return
            except OSError:  # an ICMP error for something we sent earlier: not a datagram
                self.link.send_errors += 1
                continue
            self._datagram(data, src)

    def _datagram(self, data: bytes, src: tuple[Any, ...]) -> None:
        c = self.stats.counters
        c.received += 1
        c.received_bytes += len(data)
        d = U.decode(data, self.spec, to_agent=False)
        if isinstance(d, str):
            c.bad(d)
            return
        i = d.agent
        known = self.udp_addr.get(i)
        from_known = known is not None and U.same_addr(src, known)
        if d.kind in (U.HELLO, U.HEARTBEAT):
            if d.swarm != self.swarm:
                c.bad("foreign swarm")
                return
            if self.finished:
                if i not in self.bye:
                    self._sendto(src, U.encode_stop(i, "done"))  # its STOP may have been lost
                return
            if d.kind == U.HELLO or not self.live[i]:  # a hello, or a heartbeat of one we lost: (re)join
                self.udp_addr[i] = src
                self._accept(i, {"k": "hello", "from": i, "ep": 0, "t": 0, "addr": d.addr, "pid": d.pid})
                return
        if not from_known:
            c.bad("sender does not match its address")
            return
        if d.kind == U.HEARTBEAT:
            self._accept(i, {"k": "hb", "from": i, "ep": d.episode, "t": d.step})
        elif d.kind == U.ACT:
            if self.finished and i not in self.bye:
                self._sendto(src, U.encode_stop(i, "done"))
            self._accept(i, {"k": "act", "from": i, "ep": d.episode, "t": d.step, "a": d.action})
        else:  # BYE
            self._accept(i, {"k": "bye", "from": i, "ep": d.episode, "t": d.step, "m": d.metrics or {}})

    def _sendto(self, addr: tuple[Any, ...], data: bytes) -> None:
        try:
            self.sock.sendto(data, addr)
            self.stats.counters.sent += 1
            self.stats.counters.sent_bytes += len(data)
        except OSError:  # a full buffer or a vanished route: the agent's deadline and heartbeat recover
            self.link.send_errors += 1

    def _send(self, i: int, kind: str, ep: int = 0, t: int = 0, **fields: Any) -> None:
        addr = self.udp_addr.get(i)
        if addr is None:
            return
        if kind == "obs":
            if "peers" in fields:
                self._sendto(addr, U.encode_peers(i, {int(j): str(a) for j, a in fields["peers"]}))
            av = fields["av"] if self.spec.n_actions else None
            self._sendto(addr, U.encode_obs(i, ep, t, fields["o"], av, fields["in"], fields["to"], bool(fields.get("first"))))
        elif kind == "stop":
            self._sendto(addr, U.encode_stop(i, str(fields.get("why", "stop"))))
        else:
            raise P.ProtocolError(f"the UDP device sends obs and stop, not {kind!r}")

    def close(self) -> None:
        self.sock.close()


def summary(device: UdpDevice, stats: WorldStats, seed: int) -> dict[str, Any]:
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
        "step_ms_p50": P.percentiles(stats.step_ms)["p50"],
        "noop_actions": stats.noop_actions,
        "late_actions": stats.late_actions,
        "absences": stats.absences,
        "rejoins": stats.rejoins,
        "device_link": stats.counters.as_dict() | {"send_errors": device.link.send_errors},
        "device_invalid_frames": stats.counters.invalid,
        "robot_invalid_frames": robot_invalid,
        "invalid_frames": stats.counters.invalid + robot_invalid + msg_invalid,
        "per_agent": agents,
    }


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m marl_edge.robots.udp_device", description=(
        "Serve a bundle's env to its agents over the UDP datagram link of marl_edge.robots.udp "
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
        b = load_bundle(args.bundle)
        seed = b.manifest.source.seed if args.seed is None else int(args.seed)
        opts = WorldOptions(episodes=args.episodes, seed=seed, start_timeout_s=args.start_timeout, act_timeout_s=args.act_timeout,
                            hb_timeout_s=args.hb_timeout, mode=args.mode, hz=args.hz)
        device = UdpDevice(b, args.host, args.port, args.swarm_id, opts)
        print(f"listening {device.endpoint}", flush=True)
        say(f"device   {b.n_agents} robots, swarm {device.swarm}, {args.mode}, {args.episodes} episodes (seed {seed}); waiting for HELLOs")
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
