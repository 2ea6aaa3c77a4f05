"""An attacker without the link key, on the path between one agent and the
device (tests/test_udp_auth.py starts it as its own process).

    python tests/udp_attacker.py DEVICE_HOST DEVICE_PORT

It relays agent <-> device datagrams (the agent is pointed at the port it
prints first: ``listening udp://127.0.0.1:PORT``) and, on top of that:

- replays every datagram it relays, at once, from the same address;
- replays the first datagrams it captured again later (old counters);
- for the first few datagrams, forges a copy without the trailer (the
  unauthenticated format) and a copy with a flipped tag bit;
- forges unauthenticated HELLO/ACT datagrams to the device from its own
  address, and an unauthenticated STOP to the agent.

It runs until it is killed.
"""

from __future__ import annotations

import select
import socket
import struct
import sys

from marl_edge.wire import udp as U

FORGE_FIRST = 6  # forged copies for this many relayed datagrams each way
OLD_EVERY = 7  # every OLD_EVERY-th relayed datagram, replay the first captured one again


def strip(d: bytes) -> bytes:
    """The authenticated datagram in the unauthenticated format: what a forger without the key can make of it."""
    if len(d) < U.HEADER_SIZE + U.TRAILER_SIZE:
        return d
    b = bytearray(d[: -U.TRAILER_SIZE])
    flags = struct.unpack_from("<H", b, 6)[0] & ~U.FLAG_AUTH
    struct.pack_into("<H", b, 6, flags)
    return bytes(b)


def flip(d: bytes) -> bytes:
    b = bytearray(d)
    b[-1] ^= 0x01
    return bytes(b)


def main() -> None:
    device = (sys.argv[1], int(sys.argv[2]))
    to_agent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    to_device = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    loose = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)  # forgeries from an address no agent uses
    to_agent.bind(("127.0.0.1", 0))
    to_device.bind(("127.0.0.1", 0))
    loose.bind(("127.0.0.1", 0))
    print(f"listening udp://127.0.0.1:{to_agent.getsockname()[1]}", flush=True)
    for i in range(3):  # no key: the unauthenticated format, from a stranger's address
        loose.sendto(U.encode_hello(i, "tcp://127.0.0.1:1", "forged-swarm"), device)
        loose.sendto(U.encode_act(i, 0, 0, 0), device)
    agent = None
    captured = {"up": [], "down": []}
    relayed = {"up": 0, "down": 0}
    while True:
        ready, _, _ = select.select([to_agent, to_device], [], [])
        for s in ready:
            try:
                data, src = s.recvfrom(U.MAX_DATAGRAM + 1)
            except OSError:
                continue
            if s is to_agent:
                agent, way, out, dst = src, "up", to_device, device
            else:
                if agent is None:
                    continue
                way, out, dst = "down", to_agent, agent
            out.sendto(data, dst)
            out.sendto(data, dst)  # replayed at once
            n = relayed[way] = relayed[way] + 1
            cap = captured[way]
            if len(cap) < 3:
                cap.append(data)
            if n <= FORGE_FIRST:
                out.sendto(strip(data), dst)  # the same datagram, unauthenticated
                out.sendto(flip(data), dst)  # a forged tag
                if way == "up":  # forged in the agent's name, from the agent's (relay) address
                    who = struct.unpack_from("<H", data, 4)[0]
                    out.sendto(U.encode_act(who, 0, 0, 0), dst)
                    out.sendto(U.encode_hello(who, "tcp://127.0.0.1:1", "forged-swarm"), dst)
                else:
                    who = struct.unpack_from("<H", data, 4)[0]
                    out.sendto(U.encode_stop(who, "forged stop"), dst)
            if n % OLD_EVERY == 0:
                out.sendto(cap[0], dst)  # an old one, replayed later


if __name__ == "__main__":
    main()
