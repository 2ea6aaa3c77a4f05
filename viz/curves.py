"""Learning curves and final-performance tables of many runs.

A run directory (marl-train) holds ``config.json``, ``metrics.csv`` (the
training return per log interval), ``eval.csv`` when training evaluated
greedily along the way, and ``eval.json`` (the final greedy evaluation).
This module reads them as plain files: it needs neither torch nor the
training code, so it runs wherever the run directories were copied to.

Runs are grouped (by algorithm, env, or the whole config but the seed); the
seeds of a group are aggregated with ``viz.stats`` at each point of a common
env-step grid, on which every curve is linearly interpolated (the grid spans
the steps all runs of the group reached, so nothing is extrapolated).
"""

from __future__ import annotations

import csv
import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .stats import Estimate, PlotError, bootstrap

GROUP_BY = ("algo", "env", "config")
SOURCES = ("auto", "eval", "train")
SOURCE_TITLE = {
    "eval": "greedy evaluation return during training (eval.csv)",
    "train": "training return (metrics.csv: exploring policy, no eval.csv)",
}


@dataclass
class Run:
    path: Path
    config: dict[str, Any]
    curves: dict[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)  # source -> (env_steps, return)
    final: float | None = None  # eval.json mean_return

    @property
    def algo(self) -> str:
        return str(self.config.get("run", {}).get("algo", "?"))

    @property
    def env(self) -> str:
        return str(self.config.get("run", {}).get("env", "?"))

    @property
    def seed(self) -> int:
        return int(self.config.get("run", {}).get("seed", 0))

    def settings(self) -> dict[str, str]:
        """Every setting of the run except its seed, flattened (``algo.lr``, ``env.grid`` ...)."""
        out: dict[str, str] = {}
        run = dict(self.config.get("run", {}))
        run.pop("seed", None)
        opts = run.pop("env_options", {}) or {}
        for k, v in run.items():
            out[k] = json.dumps(v, sort_keys=True)
        for k, v in (opts or {}).items():
            out[f"env.{k}"] = json.dumps(v, sort_keys=True)
        for k, v in (self.config.get("algo") or {}).items():
            out[f"algo.{k}"] = json.dumps(v, sort_keys=True)
        return out


def find_runs(paths: Sequence[Path]) -> list[Path]:
    """Run directories among ``paths``: each one itself when it holds a
    ``config.json``, otherwise every run directory below it (a sweep root)."""
    found: list[Path] = []
    for p in paths:
        p = Path(p)
        if not p.is_dir():
            raise PlotError(f"{p} is not a directory (give run directories or folders that hold them)")
        if (p / "config.json").is_file():
            found.append(p)
            continue
        below = sorted(c.parent for c in p.rglob("config.json") if "checkpoints" not in c.relative_to(p).parts)
        if not below:
            raise PlotError(f"{p} holds no run directory (no config.json in it or below it)")
        found += below
    return list(dict.fromkeys(found))


def _read_csv_curve(path: Path, column: str = "return_mean") -> tuple[np.ndarray, np.ndarray] | None:
    """(env_steps, column) of the rows where both are numbers; None if the file is missing."""
    if not path.is_file():
        return None
    xs, ys = [], []
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            try:
                x, y = float(row["env_steps"]), float(row[column])
            except (KeyError, TypeError, ValueError):
                continue  # an interval in which no episode ended has an empty return
            if math.isfinite(x) and math.isfinite(y):
                xs.append(x)
                ys.append(y)
    if not xs:
        return None
    x, y = np.asarray(xs), np.asarray(ys)
    order = np.argsort(x, kind="stable")
    return x[order], y[order]


def load_run(path: Path) -> Run:
    try:
        config = json.loads((path / "config.json").read_text())
    except (OSError, json.JSONDecodeError) as e:
        raise PlotError(f"{path}/config.json cannot be read: {e}") from None
    run = Run(path, config)
    for source, name in (("eval", "eval.csv"), ("train", "metrics.csv")):
        curve = _read_csv_curve(path / name)
        if curve is not None:
            run.curves[source] = curve
    ev = path / "eval.json"
    if ev.is_file():
        try:
            run.final = float(json.loads(ev.read_text())["mean_return"])
        except (OSError, ValueError, KeyError, TypeError):
            run.final = None
    return run


def choose_source(runs: Sequence[Run], source: str) -> str:
    """``eval`` when every run has eval.csv (or when asked), else ``train``:
    one plot never mixes greedy and exploring returns."""
    if source not in SOURCES:
        raise PlotError(f"--source must be one of {', '.join(SOURCES)}, got {source!r}")
    if source == "auto":
        source = "eval" if all("eval" in r.curves for r in runs) else "train"
    missing = [str(r.path) for r in runs if source not in r.curves]
    if missing:
        what = "eval.csv" if source == "eval" else "metrics.csv with a return_mean"
        raise PlotError(f"{len(missing)} run(s) have no {what}, e.g. {missing[0]}")
    return source


@dataclass
class Group:
    label: str
    runs: list[Run]
    strata: list[str]  # one per run: its settings without the seed


def group_runs(runs: Sequence[Run], by: str) -> list[Group]:
    """Runs grouped by algorithm, env or full config (all but the seed), sorted by label.

    With ``config`` the label names the algorithm and env plus the settings
    that differ between groups, so two learning rates read ``lr=...``."""
    if by not in GROUP_BY:
        raise PlotError(f"--group-by must be one of {', '.join(GROUP_BY)}, got {by!r}")
    settings = [r.settings() for r in runs]
    strata = [json.dumps(s, sort_keys=True) for s in settings]
    if by == "algo":
        keys = [r.algo for r in runs]
    elif by == "env":
        keys = [r.env for r in runs]
    else:
        keys = strata
    order = list(dict.fromkeys(keys))
    labels = {k: k for k in order}
    if by == "config":
        first = {k: settings[keys.index(k)] for k in order}
        names = sorted({n for s in first.values() for n in s})
        varying = [n for n in names if n not in ("algo", "env") and len({first[k].get(n) for k in order}) > 1]
        for k in order:
            r = runs[keys.index(k)]
            extra = " ".join(f"{n.split('.', 1)[-1]}={first[k].get(n, '-')}" for n in varying)
            labels[k] = f"{r.algo} {r.env}" + (f" {extra}" if extra else "")
    groups = []
    for k in order:
        members = [i for i, key in enumerate(keys) if key == k]
        groups.append(Group(labels[k], [runs[i] for i in members], [strata[i] for i in members]))
    return sorted(groups, key=lambda g: g.label)


@dataclass
class Curve:
    label: str
    n_runs: int
    steps: np.ndarray
    estimate: Estimate


def aggregate_curve(group: Group, source: str, stat: str, n_boot: int, seed: int, points: int = 100) -> Curve:
    """The group's curves on a common grid of ``points`` env steps, with the
    statistic over seeds and its stratified bootstrap CI at each point."""
    curves = [r.curves[source] for r in group.runs]
    lo = max(float(x[0]) for x, _ in curves)
    hi = min(float(x[-1]) for x, _ in curves)
    if hi < lo:
        raise PlotError(f"the runs of {group.label!r} share no env-step range ({lo:g} > {hi:g}); plot them separately")
    grid = np.linspace(lo, hi, points) if hi > lo else np.array([lo])
    ys = np.stack([np.interp(grid, x, y) for x, y in curves])
    return Curve(group.label, len(curves), grid, bootstrap(ys, stat, group.strata, n_boot, seed))


@dataclass
class FinalRow:
    label: str
    n_runs: int
    n_missing: int  # runs of the group without eval.json
    estimate: Estimate | None


def final_table(groups: Sequence[Group], stat: str, n_boot: int, seed: int) -> list[FinalRow]:
    rows = []
    for g in groups:
        have = [(r.final, s) for r, s in zip(g.runs, g.strata) if r.final is not None]
        est = bootstrap(np.array([v for v, _ in have]), stat, [s for _, s in have], n_boot, seed) if have else None
        rows.append(FinalRow(g.label, len(have), len(g.runs) - len(have), est))
    return rows


def table_markdown(rows: Sequence[FinalRow], stat: str, level: float = 0.95) -> str:
    head = f"| group | runs | {stat} final return | {level:.0%} CI |\n|---|---:|---:|---|\n"
    lines = []
    for r in rows:
        runs = f"{r.n_runs}" + (f" ({r.n_missing} without eval.json)" if r.n_missing else "")
        if r.estimate is None:
            lines.append(f"| {r.label} | {runs} | – | – |")
        else:
            e = r.estimate
            lines.append(f"| {r.label} | {runs} | {float(e.value):.4g} | [{float(e.low):.4g}, {float(e.high):.4g}] |")
    return head + "\n".join(lines) + "\n"


def write_table_csv(rows: Sequence[FinalRow], stat: str, path: Path) -> None:
    with open(path, "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["group", "runs", "runs_without_eval", "stat", "value", "ci_low", "ci_high"])
        for r in rows:
            e = r.estimate
            vals = ["", "", ""] if e is None else [repr(float(e.value)), repr(float(e.low)), repr(float(e.high))]
            w.writerow([r.label, r.n_runs, r.n_missing, stat, *vals])


def plot_curves(curves: Sequence[Curve], source: str, stat: str, out: Path, size: tuple[float, float] = (8.0, 5.0), dpi: int = 100) -> None:
    """Lines: the statistic over seeds; bands: its bootstrap 95 % CI."""
    from .figure import new_figure, save_figure

    fig, ax = new_figure(size, dpi)
    for c in curves:
        e = c.estimate
        (line,) = ax.plot(c.steps, e.value, label=f"{c.label} (n={c.n_runs})", lw=1.8)
        ax.fill_between(c.steps, e.low, e.high, color=line.get_color(), alpha=0.2, lw=0)
    ax.set_xlabel("env steps")
    ax.set_ylabel(f"return ({stat} over seeds, 95% bootstrap CI)")
    ax.set_title(SOURCE_TITLE[source], fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="best")
    save_figure(fig, out)
