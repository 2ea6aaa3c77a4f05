"""Seeds and sweeps: many run directories under one root, run in parallel processes,
and one aggregate table over them.

A sweep is the cartesian product of a grid over ``--set`` values with a list of
seeds. Every combination and seed is a normal run directory (``ROOT/s<seed>``, or
``ROOT/<key>=<value>,…/s<seed>`` with a grid), made before any training starts
(so a bad key fails at once, as one line) and trained by its own process: a run
that fails is one failed row of the table, not the end of the sweep, and a killed
sweep continues with ``marl-train --resume ROOT`` because each run continues from
its own checkpoints.

The aggregate (``ROOT/sweep.json`` and ``ROOT/sweep.md``) holds, per combination,
the final greedy evaluation return (each run's ``eval.json`` ``mean_return``) as
mean ± std (population std, as ``eval.json``'s ``std_return``), min and max over
its seeds, with the env steps and wall clock per run (``metrics.csv``'s last row).

This module starts processes from a command it is given (the CLI's), so it knows
nothing of the CLI.
"""

from __future__ import annotations

import csv
import itertools
import json
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np

from . import checkpoint as ckpt
from .config import ConfigError

SWEEP_FILE = "sweep.json"
SWEEP_FORMAT = "marl-edge-sweep"
LOG_FILE = "train.log"  # each run's stdout and stderr


@dataclass(frozen=True)
class SweepRun:
    """One run of a sweep: a combination of grid values and a seed."""

    label: str  # the combination, "key=value,…" ("" without a grid)
    sets: dict[str, str]  # the combination's --set values
    seed: int
    dir: str  # the run directory, relative to the sweep's root


def parse_seeds(text: str) -> list[int]:
    """``"0,1,2"`` -> ``[0, 1, 2]``; ``"0-4"`` is ``0,1,2,3,4``."""
    seeds: list[int] = []
    for part in text.split(","):
        part = part.strip()
        try:
            if "-" in part[1:]:
                lo, hi = part.split("-", 1)
                seeds.extend(range(int(lo), int(hi) + 1))
            else:
                seeds.append(int(part))
        except ValueError:
            raise ConfigError(f"--seeds expects integers such as 0,1,2 or 0-4, got {text!r}") from None
    if not seeds or min(seeds) < 0 or len(set(seeds)) != len(seeds):
        raise ConfigError(f"--seeds expects distinct integers >= 0, got {text!r}")
    return seeds


def parse_grid(items: list[str] | tuple[str, ...]) -> dict[str, list[str]]:
    """``["lr=1e-3,5e-4", "td_lambda=0,0.6"]`` -> ``{"lr": ["1e-3", "5e-4"], "td_lambda": ["0", "0.6"]}``."""
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, values = item.partition("=")
        key = key.strip()
        vals = [v.strip() for v in values.split(",")]
        if not sep or not key or not all(vals):
            raise ConfigError(f"--grid expects KEY=V1,V2,…, got {item!r}")
        if key in grid:
            raise ConfigError(f"--grid {key} is given twice; list all its values in one --grid {key}=V1,V2")
        if len(set(vals)) != len(vals):
            raise ConfigError(f"--grid {key} lists a value twice: {values!r}")
        grid[key] = vals
    return grid


def _dir_part(text: str) -> str:
    return text.replace("/", "_").replace("\\", "_")


def plan_sweep(seeds: list[int], grid: dict[str, list[str]]) -> list[SweepRun]:
    """Every combination of the grid (in the order given) times every seed."""
    keys = list(grid)
    runs = []
    for values in itertools.product(*(grid[k] for k in keys)):
        sets = dict(zip(keys, values))
        label = ",".join(f"{k}={v}" for k, v in sets.items())
        for seed in seeds:
            runs.append(SweepRun(label, sets, seed, f"{_dir_part(label)}/s{seed}" if label else f"s{seed}"))
    return runs


def run_processes(
    commands: list[list[str]], logs: list[Path], jobs: int, on_done: Callable[[int, int], None] | None = None
) -> list[int]:
    """Run each command with its output appended to its log file, at most ``jobs`` at a
    time (an empty command is skipped and counts as a success); returns the exit codes in order. Every process started is stopped on the way
    out, also when interrupted."""
    if jobs < 1:
        raise ConfigError(f"--jobs must be >= 1, got {jobs}")
    pending = [i for i in range(len(commands)) if commands[i]]  # an empty command: nothing to run (exit code 0)
    running: dict[int, tuple[subprocess.Popen, Any]] = {}
    codes: list[int] = [0] * len(commands)
    try:
        while pending or running:
            while pending and len(running) < jobs:
                i = pending.pop(0)
                log = open(logs[i], "ab")
                running[i] = (subprocess.Popen(commands[i], stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL), log)
            time.sleep(0.1)
            for i, (proc, log) in list(running.items()):
                rc = proc.poll()
                if rc is None:
                    continue
                log.close()
                del running[i]
                codes[i] = rc
                if on_done is not None:
                    on_done(i, rc)
    finally:
        for proc, log in running.values():
            proc.terminate()
        for proc, log in running.values():
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            log.close()
    return codes


def run_finished(run_dir: Path) -> bool:
    """Whether a run has trained its whole budget and written its final evaluation
    (a sweep continued with --resume does not start it again)."""
    from .rundir import RunError, load_run_spec

    try:
        rs = load_run_spec(run_dir)
    except RunError:
        return False
    cks = ckpt.list_checkpoints(Path(run_dir) / "checkpoints")
    trained = bool(cks) and cks[-1][0] >= rs.total_steps
    return trained and (rs.run.eval_episodes == 0 or (Path(run_dir) / "eval.json").is_file())


def _failure(log: Path, rc: int) -> str:
    """What went wrong in a run: its one-line error, else the last line of its log."""
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        lines = []
    errors = [ln for ln in lines if ln.startswith(("error:", "internal error:"))]
    if errors:
        return errors[-1]
    if rc < 0:
        return f"killed by signal {-rc}"
    return lines[-1] if lines else f"exit status {rc}"


def run_result(root: Path, run: SweepRun, rc: int | None) -> dict[str, Any]:
    """One run's row: its status, final greedy evaluation return, env steps and wall clock.
    ``rc`` None: not run yet."""
    run_dir = root / run.dir
    row: dict[str, Any] = {"seed": run.seed, "dir": run.dir, "status": "pending", "error": None,
                           "eval_return": None, "env_steps": None, "wall_s": None}
    if rc is None:
        return row
    if rc != 0:
        return {**row, "status": "failed", "error": _failure(run_dir / LOG_FILE, rc)}
    row["status"] = "ok"
    try:
        row["eval_return"] = float(json.loads((run_dir / "eval.json").read_text())["mean_return"])
    except FileNotFoundError:  # eval_episodes=0: no final evaluation
        pass
    try:
        with open(run_dir / "metrics.csv", newline="") as f:
            last = list(csv.DictReader(f))[-1]
        row["env_steps"], row["wall_s"] = int(last["env_steps"]), float(last["wall_s"])
    except (OSError, IndexError, KeyError, ValueError):
        pass
    return row


def aggregate(root: Path, runs: list[SweepRun], codes: list[int | None], header: dict[str, Any]) -> dict[str, Any]:
    """The sweep's summary: per combination, the statistics over its seeds' runs."""
    combos: dict[str, dict[str, Any]] = {}
    for run, rc in zip(runs, codes):
        c = combos.setdefault(run.label, {"label": run.label, "set": run.sets, "runs": []})
        c["runs"].append(run_result(root, run, rc))
    for c in combos.values():
        ok = [r for r in c["runs"] if r["status"] == "ok"]
        rets = [r["eval_return"] for r in ok if r["eval_return"] is not None]
        steps = [r["env_steps"] for r in ok if r["env_steps"] is not None]
        walls = [r["wall_s"] for r in ok if r["wall_s"] is not None]
        c.update({
            "seeds": len(rets),
            "failed": sum(r["status"] == "failed" for r in c["runs"]),
            "return_mean": float(np.mean(rets)) if rets else None,
            "return_std": float(np.std(rets)) if rets else None,
            "return_min": float(min(rets)) if rets else None,
            "return_max": float(max(rets)) if rets else None,
            "env_steps": float(np.mean(steps)) if steps else None,  # per run
            "wall_s": float(np.mean(walls)) if walls else None,  # per run
        })
    return {
        "format": SWEEP_FORMAT,
        "format_version": 1,
        **header,
        "runs": [asdict(r) for r in runs],
        "combinations": list(combos.values()),
        "failed": sum(c["failed"] for c in combos.values()),
    }


def read_sweep(root: Path) -> dict[str, Any]:
    path = Path(root) / SWEEP_FILE
    try:
        d = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise ConfigError(f"{path} is not a readable sweep file: {e}") from None
    if d.get("format") != SWEEP_FORMAT:
        raise ConfigError(f"{path} is not a marl-edge sweep file")
    return d


def sweep_runs(d: dict[str, Any]) -> list[SweepRun]:
    """The runs a sweep file plans."""
    return [SweepRun(r["label"], dict(r["sets"]), int(r["seed"]), r["dir"]) for r in d["runs"]]


def _num(v: float | None, fmt: str) -> str:
    return "-" if v is None else format(v, fmt)


def table(agg: dict[str, Any]) -> str:
    """The aggregate as a Markdown table (the terminal's and sweep.md's)."""
    lines = [
        "| combination | seeds | return mean ± std | min | max | env steps/run | wall s/run |",
        "|---|---|---|---|---|---|---|",
    ]
    for c in agg["combinations"]:
        ret = "-" if c["return_mean"] is None else f"{c['return_mean']:.4g} ± {c['return_std']:.3g}"
        seeds = f"{c['seeds']}" + (f" ({c['failed']} failed)" if c["failed"] else "")
        lines.append(f"| {c['label'] or '(base)'} | {seeds} | {ret} | {_num(c['return_min'], '.4g')} | "
                     f"{_num(c['return_max'], '.4g')} | {_num(c['env_steps'], ',.0f')} | {_num(c['wall_s'], '.1f')} |")
    failures = [(c["label"], r) for c in agg["combinations"] for r in c["runs"] if r["status"] == "failed"]
    if failures:
        lines.append("")
        lines.extend(f"failed: {r['dir']}: {r['error']}" for _, r in failures)
    return "\n".join(lines)


def write_sweep(root: Path, agg: dict[str, Any]) -> None:
    """sweep.json and sweep.md, each written atomically."""
    ckpt.write_atomic(root / SWEEP_FILE, json.dumps(agg, indent=2))
    title = f"# Sweep: {agg['algo']} on {agg['env']}, {agg['total_steps']:,} env steps per run\n\n"
    note = ("Return: the final greedy evaluation (each run's eval.json mean_return), "
            "mean ± std (population) over seeds.\n\n")
    ckpt.write_atomic(root / "sweep.md", title + note + table(agg) + "\n")
