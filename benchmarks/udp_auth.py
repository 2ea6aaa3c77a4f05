"""The cost of the UDP link's authentication per datagram (docs/robots.md, "An authenticated link").

    .venv/bin/python benchmarks/udp_auth.py [--n 50000]

For an OBS (5-robot scout team: 6 floats, 4 actions, 56 bytes) and an ACT
(24 bytes), it prints microseconds per datagram for: sealing (counter + HMAC
tag), opening (tag check) + the replay window, and the full validating decode
with and without a key. Median of 5 repeats; timings are never asserted.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

from marl_edge.wire import udp as U


def per_call_us(fn, n: int) -> float:
    runs = []
    for _ in range(5):
        t = time.perf_counter()
        for _ in range(n):
            fn()
        runs.append((time.perf_counter() - t) / n * 1e6)
    return statistics.median(runs)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--n", type=int, default=50_000)
    n = ap.parse_args().n
    spec = U.UdpSpec(n_agents=5, obs_dim=6, n_actions=4, k_max=2)
    key = U.new_link_key()
    frames = {
        "obs": (U.encode_obs(1, 0, 1, np.linspace(-1, 1, 6).astype(np.float32), np.ones(4, bool), [0, 2], [3, 4]), True),
        "act": (U.encode_act(1, 0, 1, 2), False),
    }
    print(f"{'datagram':8} {'bytes':>9} {'seal us':>8} {'open+window us':>15} {'seal+verify us':>15} {'decode us':>10} {'decode+key us':>14}")
    for name, (plain, to_agent) in frames.items():
        tx, rx = U.LinkAuth(key), U.LinkAuth(key)
        sealed = tx.seal(plain)
        c = [0]

        def open_window():
            o = rx.open(sealed)
            c[0] += 1
            rx.accept(("bench", name), c[0])
            return o

        seal = per_call_us(lambda: tx.seal(plain), n)
        opn = per_call_us(open_window, n)
        both = per_call_us(lambda: rx.open(tx.seal(plain)), n)
        dec = per_call_us(lambda: U.decode(plain, spec, to_agent=to_agent, agent=1 if to_agent else None), n)
        rx2 = U.LinkAuth(key)
        dec_key = per_call_us(lambda: U.decode(tx.seal(plain), spec, to_agent=to_agent, agent=1 if to_agent else None, auth=rx2), n) - seal
        print(f"{name:8} {len(plain):>4}->{len(sealed):<4} {seal:8.2f} {opn:15.2f} {both:15.2f} {dec:10.2f} {dec_key:14.2f}")


if __name__ == "__main__":
    main()
