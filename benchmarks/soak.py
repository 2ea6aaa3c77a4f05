"""Soak: a real-time swarm with message loss over CURVE, for minutes, watching
every process's memory.

An 8-agent scout bundle with messages (the one ``benchmarks/swarm.py`` builds:
QMIX, ``comm=mean``, ``topology=knn:3``; or ``--bundle DIR``, which must send
messages) plays ``marl-swarm --transport tcp --mode realtime --hz 50 --drop 0.2``
(CURVE on every link, as users run tcp) for ``--minutes`` (default 30). A
sampler thread reads the resident set size (``VmRSS`` in ``/proc/PID/status``)
of the world (this process) and of every agent process every ``--sample-s``
seconds. At the end it prints, per process, the RSS when the warm-up ended
(``--warmup-minutes``, default 2), at the end, the largest, the drift (end -
warm-up) and the verdict: flat if every sample after the warm-up stays within
``--tolerance-mb`` (default 2 MB) of the warm-up value. Then the run's steps/s
against the rate asked for, late actions, dropped, stale and invalid frames.
``--json PATH`` writes every sample and the summary. Never asserted.

    .venv/bin/python benchmarks/soak.py                                  # 30 min
    .venv/bin/python benchmarks/soak.py --minutes 2 --json soak.json      # a smoke run
    .venv/bin/python benchmarks/soak.py --bundle /tmp/swarm-bundles/bundle8 --minutes 60
"""

from __future__ import annotations

import argparse
import json
import math
import os
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from marl_edge.runtime.bundle import load_bundle  # noqa: E402
from marl_edge.runtime.swarm import Launcher, SwarmOptions  # noqa: E402


def header() -> str:
    """Versions and git revision, without importing torch or onnxruntime here:
    whatever this process loads counts in the world's RSS."""
    from importlib.metadata import version

    import zmq

    here = Path(__file__).resolve().parent
    try:
        rev = subprocess.run(["git", "-C", str(here), "rev-parse", "--short=10", "HEAD"], capture_output=True, text=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(here), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True).stdout
        rev = f"{rev or '?'}{' (dirty)' if dirty.strip() else ''}"
    except OSError:
        rev = "?"
    return (f"python {sys.version.split()[0]}, onnxruntime {version('onnxruntime')} (in the agents), pyzmq {zmq.__version__} "
            f"(libzmq {zmq.zmq_version()}), git {rev}")


def build_bundle(n: int, root: Path) -> Path:
    """``benchmarks/swarm.py``'s bundle, built in a child process: training loads
    torch, which would stay in this process (the world's) RSS."""
    out = root / f"bundle{n}"
    if not (out / "swarm.json").is_file():
        code = f"import sys; sys.path.insert(0, {str(Path(__file__).resolve().parent)!r}); from swarm import bundle_for; from pathlib import Path; " \
               f"bundle_for({n}, Path({str(root)!r}))"
        subprocess.run([sys.executable, "-c", code], check=True)
    return out


def rss_kb(pid: int) -> int | None:
    """VmRSS of ``pid`` in kB, None if it is gone (or a zombie: no VmRSS line)."""
    try:
        with open(f"/proc/{pid}/status") as f:
            for line in f:
                if line.startswith("VmRSS:"):
                    return int(line.split()[1])
    except (OSError, ValueError):
        return None
    return None


class Sampler:
    """Samples the RSS of the world and of every agent process every ``every`` seconds in a thread."""

    def __init__(self, launcher: Launcher, every: float, t0: float, log_every: float = 60.0) -> None:
        self.launcher, self.every, self.t0, self.log_every = launcher, every, t0, log_every
        self.samples: list[dict[str, Any]] = []
        self.stop_ev = threading.Event()
        self.thread = threading.Thread(target=self._loop, daemon=True)
        self.world = None

    def names(self) -> list[str]:
        return ["world"] + [f"agent_{i}" for i in range(self.launcher.n)]

    def sample(self) -> None:
        pids = {"world": os.getpid(), **{f"agent_{i}": p.pid for i, p in sorted(self.launcher.procs.items())}}
        row: dict[str, Any] = {"t_s": round(time.perf_counter() - self.t0, 2),
                               "steps": self.world.stats.steps if self.world is not None else 0}
        row["rss_kb"] = {name: rss_kb(pid) for name, pid in pids.items()}
        self.samples.append(row)

    def _loop(self) -> None:
        next_log = self.log_every
        while not self.stop_ev.wait(self.every):
            self.sample()
            s = self.samples[-1]
            if s["t_s"] >= next_log:
                next_log += self.log_every
                agents = [v for k, v in s["rss_kb"].items() if k != "world" and v]
                print(f"  {s['t_s'] / 60:5.1f} min: {s['steps']:,} steps, world {s['rss_kb']['world'] / 1024:.1f} MB, "
                      f"agents {min(agents) / 1024:.1f}-{max(agents) / 1024:.1f} MB", flush=True)

    def start(self, world: Any) -> None:
        self.world = world
        self.sample()
        self.thread.start()

    def stop(self) -> None:
        self.stop_ev.set()
        if self.thread.is_alive():
            self.thread.join()


def table(samples: list[dict[str, Any]], names: list[str], warmup_s: float, tol_kb: float) -> list[dict[str, Any]]:
    """Per process: RSS at the end of the warm-up, at the end, max, drift, verdict."""
    rows = []
    for name in names:
        series = [(s["t_s"], s["rss_kb"].get(name)) for s in samples if s["rss_kb"].get(name)]
        if not series:
            rows.append({"process": name, "verdict": "no samples"})
            continue
        after = [(t, v) for t, v in series if t >= warmup_s]
        warm = after[0][1] if after else None
        end = series[-1][1]
        row = {"process": name, "first_kb": series[0][1], "warmup_kb": warm, "end_kb": end, "max_kb": max(v for _, v in series),
               "drift_kb": None if warm is None else end - warm,
               "max_dev_after_warmup_kb": None if warm is None else max(abs(v - warm) for _, v in after),
               "samples": len(series), "samples_after_warmup": len(after)}
        if warm is None or len(after) < 2:
            row["verdict"] = "too short"
        else:
            row["verdict"] = "flat" if row["max_dev_after_warmup_kb"] <= tol_kb else "GROWS" if row["drift_kb"] > tol_kb else "NOT FLAT"
        rows.append(row)
    return rows


def no_nan(x: Any) -> Any:
    """NaN (e.g. no act latency) as null: strict JSON."""
    if isinstance(x, float) and not math.isfinite(x):
        return None
    if isinstance(x, dict):
        return {k: no_nan(v) for k, v in x.items()}
    if isinstance(x, (list, tuple)):
        return [no_nan(v) for v in x]
    return x


def mb(kb: float | None) -> str:
    return "n/a" if kb is None else f"{kb / 1024:.1f}"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--minutes", type=float, default=30.0, help="how long the swarm plays (default 30)")
    ap.add_argument("--warmup-minutes", type=float, default=2.0,
                    help="the RSS baseline is the first sample after this (default 2; at most half of --minutes)")
    ap.add_argument("--sample-s", type=float, default=5.0, help="seconds between RSS samples (default 5)")
    ap.add_argument("--tolerance-mb", type=float, default=2.0, help="flat: every sample after the warm-up within this of it (default 2)")
    ap.add_argument("--n", type=int, default=8, help="agents (default 8; ignored with --bundle)")
    ap.add_argument("--hz", type=float, default=50.0)
    ap.add_argument("--drop", type=float, default=0.2)
    ap.add_argument("--mode", default="realtime", choices=["realtime", "lockstep"])
    ap.add_argument("--transport", default="tcp", choices=["tcp", "ipc"])
    ap.add_argument("--security", default="auto", choices=["auto", "curve", "insecure"], help="auto: CURVE on tcp (default)")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--bundle", type=Path, default=None, help="a bundle with messages (default: build benchmarks/swarm.py's)")
    ap.add_argument("--bundles", type=Path, default=None, help="build (and reuse) the default bundle here (default: a temporary directory)")
    ap.add_argument("--json", type=Path, default=None, help="write every sample and the summary here")
    args = ap.parse_args()

    with tempfile.TemporaryDirectory(prefix="marl-bench-soak-") as tmp:
        root = args.bundles or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        bdir = args.bundle or build_bundle(args.n, root)
        b = load_bundle(bdir)
        if b.msg_dim == 0:
            sys.exit(f"error: {bdir} sends no messages (msg_dim 0): a soak needs a bundle with messages")
        ep_len = b.manifest.env_spec.episode_limit or 25
        rate = args.hz if args.mode == "realtime" else 100.0  # lock-step: a guess, the run is as long as it is
        episodes = max(1, math.ceil(args.minutes * 60 * rate / ep_len))
        warmup_s = min(args.warmup_minutes * 60, args.minutes * 30)
        opts = SwarmOptions(episodes=episodes, seed=args.seed, transport=args.transport, mode=args.mode, hz=args.hz, drop=args.drop,
                            security=args.security)
        launcher = Launcher(bdir, opts)
        load0 = os.getloadavg()
        print(f"# soak: {b.n_agents} agents, {args.mode} at {args.hz:g} Hz, drop {args.drop:g}, {args.transport} "
              f"({'CURVE' if launcher.secure else 'plain'}), {episodes:,} episodes of <= {ep_len} steps (~{args.minutes:g} min), "
              f"RSS every {args.sample_s:g} s, warm-up {warmup_s / 60:g} min\n# bundle {bdir}\n"
              f"# nproc {os.cpu_count()}, {header()}\n"
              f"# load average at start {load0[0]:.2f} / {load0[1]:.2f} / {load0[2]:.2f}\n", flush=True)
        box: dict[str, Sampler] = {}

        def on_start(launcher: Launcher, world: Any) -> None:
            s = box["s"] = Sampler(launcher, args.sample_s, time.perf_counter())
            run = world.run

            def run_and_sample(on_step=None, progress=None):  # the last sample while every agent still runs
                try:
                    return run(on_step=on_step, progress=progress)
                finally:
                    s.stop()
                    s.sample()

            world.run = run_and_sample
            s.start(world)

        try:
            res = launcher.run(on_start=on_start)
        finally:
            if "s" in box:
                box["s"].stop()
        sampler = box["s"]
    rows = table(sampler.samples, sampler.names(), warmup_s, args.tolerance_mb * 1024)
    load1 = os.getloadavg()
    minutes = res["steps"] / max(res["steps_per_s"], 1e-9) / 60  # the episodes' wall time (start-up excluded)
    print(f"\n| process | RSS first MB | RSS at warm-up end MB | RSS at end MB | max MB | drift (end - warm-up) MB | "
          f"largest deviation after warm-up MB | flat within {args.tolerance_mb:g} MB after warm-up |")
    print("|---" * 8 + "|")
    for r in rows:
        if "first_kb" not in r:
            print(f"| {r['process']} | n/a | n/a | n/a | n/a | n/a | n/a | {r['verdict']} |")
            continue
        drift = "n/a" if r["drift_kb"] is None else f"{r['drift_kb'] / 1024:+.1f}"
        print(f"| {r['process']} | {mb(r['first_kb'])} | {mb(r['warmup_kb'])} | {mb(r['end_kb'])} | {mb(r['max_kb'])} | {drift} | "
              f"{mb(r['max_dev_after_warmup_kb'])} | {r['verdict']} |")
    steps, n = res["steps"], res["agents"]
    late = res["late_actions"]
    print(f"\n{steps:,} steps in {minutes:.1f} min: {res['steps_per_s']:.2f} steps/s"
          + (f" ({res['steps_per_s'] / args.hz:.1%} of the {args.hz:g} Hz target)" if args.mode == "realtime" else "")
          + f"; late actions {late:,} ({late / max(1, steps * n):.2%} of {steps * n:,} agent-steps), no-op actions {res['noop_actions']:,}")
    sent = res["msgs_per_step"] * steps
    reasons = ", ".join(f"{k} {v:,}" for k, v in res["invalid_reasons"].items())
    print(f"messages: {res['msgs_per_step']:.1f} sent per step, dropped {res['dropped']:,} ({res['dropped'] / max(1.0, sent):.1%} of those sent; "
          f"--drop {args.drop:g}), stale {res['stale']:,}; invalid frames {res['invalid_frames']:,}{f' ({reasons})' if reasons else ''} "
          f"(the world's: {res['world_invalid_frames']:,}); "
          f"absences {len(res['absences'])}, rejoins {len(res['rejoins'])}")
    print(f"step ms p50 / p99 {res['step_ms_p50']:.2f} / {res['step_ms_p99']:.2f}; act µs p50 / p99 {res['act_latency_us_p50']:.0f} / "
          f"{res['act_latency_us_p99']:.0f}; mean return {res['mean_return']:.3f} over {res['episodes']:,} episodes")
    print(f"load average at end {load1[0]:.2f} / {load1[1]:.2f} / {load1[2]:.2f}")
    if args.json:
        summary = {k: v for k, v in res.items() if k not in ("returns", "lengths", "per_agent", "endpoints")}
        summary["per_agent"] = [{"agent": a["agent"], "sessions": [{k: v for k, v in s.items() if k != "act_us"} for s in a["sessions"]]}
                                for a in res["per_agent"]]
        out = {"args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()}, "warmup_s": warmup_s,
               "load_start": load0, "load_end": load1, "minutes": minutes, "processes": rows, "run": summary,
               "samples": sampler.samples}
        args.json.write_text(json.dumps(no_nan(out), indent=2, allow_nan=False, default=str))
        print(f"samples and summary written to {args.json}")


if __name__ == "__main__":
    main()
