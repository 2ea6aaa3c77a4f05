"""Pictures of a swarm run from ``marl-swarm --metrics-out FILE``.

That file is JSON lines: one line per agent session (what each agent
process reported when it stopped: its steps, ``act_us``/``step_us``/
``wait_us`` as p50, p99, mean and count, and its message counters), then
one ``{"summary": ...}`` line (returns per episode, world step latency
p50/p99, absences and rejoins with the world step they happened at).

What the file does *not* hold: per-step samples. Agents keep their
latencies in fixed memory and report only percentiles, and message counts
are totals per session. So the latency panel shows p50/mean/p99 per agent
session (not a histogram), messages are per-step averages, and the only
timeline is the absences and rejoins. A killed agent writes nothing, so its
first session is missing; a restarted one appears with its later session.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np

from .figure import check_out, new_figure, save_figure
from .stats import PlotError


def read_swarm_metrics(path: Path) -> tuple[list[dict[str, Any]], dict[str, Any]]:
    """(agent sessions, summary) of a ``--metrics-out`` file."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as e:
        raise PlotError(f"cannot read {path}: {e.strerror or e}") from None
    sessions, summary = [], None
    for n, line in enumerate(lines, 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise PlotError(f"{path}:{n}: not a JSON line ({e.msg}); give the file of marl-swarm --metrics-out") from None
        if isinstance(row, dict) and isinstance(row.get("summary"), dict):
            summary = row["summary"]
        elif isinstance(row, dict) and "agent" in row and isinstance(row.get("act_us"), dict):
            sessions.append(row)
    if summary is None:
        raise PlotError(f"{path}: no summary line (is it the file of marl-swarm --metrics-out?)")
    return sessions, summary


def _num(x: Any) -> float:
    return float(x) if isinstance(x, (int, float)) and x is not None and math.isfinite(x) else math.nan


def plot_swarm(path: Path, out: Path, dpi: int = 100) -> dict[str, Any]:
    """Four panels: latency per agent session, messages per step per agent,
    absences and rejoins over world steps, return per episode."""
    out = check_out(out, (".png",))
    sessions, s = read_swarm_metrics(path)
    fig, axes = new_figure((12.0, 8.5), dpi, ncols=2, nrows=2)
    (lat, msg), (faults, ret) = axes
    seen: dict[int, int] = {}
    names = []
    for row in sessions:
        a = int(row["agent"])
        seen[a] = seen.get(a, 0) + 1
        names.append(f"{a}" + ("" if seen[a] == 1 else f" (#{seen[a]})"))
    x = np.arange(len(sessions))

    # latency: the agents report percentiles, not samples
    w = 0.2
    for k, (key, q, colour) in enumerate((("act_us", "p50", "#4c72b0"), ("act_us", "p99", "#9ab3d9"),
                                          ("step_us", "p50", "#dd8452"), ("step_us", "p99", "#f0bd99"))):
        vals = [_num(r.get(key, {}).get(q)) for r in sessions]
        lat.bar(x + (k - 1.5) * w, vals, w, color=colour, label=f"{key[:-3]} {q}")
    means = [_num(r.get("act_us", {}).get("mean")) for r in sessions]
    lat.scatter(x - 1.5 * w + w / 2, means, marker="_", s=150, c="black", zorder=3, label="act mean")
    lat.set_yscale("log")
    lat.set_xticks(x, names)
    lat.set_xlabel("agent (session)")
    lat.set_ylabel("µs")
    lat.set_title("latency per agent: act = policy only, step = obs in to action out\n(p50/p99/mean only: the agents keep no per-step samples)", fontsize=9)
    lat.legend(fontsize=7, ncols=3)

    # messages: totals per session, divided by its steps
    steps = np.array([max(1, int(r.get("steps") or 0)) for r in sessions], dtype=float)
    bottom = np.zeros(len(sessions))
    for key, colour in (("sent", "#55a868"), ("dropped", "#c44e52"), ("stale", "#8172b3"), ("invalid", "#937860")):
        v = np.array([_num(r.get("messages", {}).get(key)) for r in sessions]) / steps
        if key == "sent":
            msg.bar(x - 0.2, v, 0.4, color=colour, label="sent")
        else:
            msg.bar(x + 0.2, v, 0.4, bottom=bottom, color=colour, label=key)
            bottom += np.nan_to_num(v)
    msg.set_xticks(x, names)
    msg.set_xlabel("agent (session)")
    msg.set_ylabel("messages per step")
    msg.set_title(f"messages per step per agent (swarm: {_num(s.get('msgs_per_step')):.2f} sent per world step)", fontsize=9)
    msg.legend(fontsize=7)

    # absences over world steps
    n_agents = int(s.get("agents") or (max(seen) + 1 if seen else 1))
    total = int(s.get("steps") or 0)
    back = {}
    for r in s.get("rejoins") or []:
        back.setdefault(int(r["agent"]), []).append(int(r["step"]))
    for ab in s.get("absences") or []:
        a, t0 = int(ab["agent"]), int(ab["step"])
        later = [t for t in back.get(a, []) if t >= t0]
        t1 = min(later) if later else total
        faults.plot([t0, t1], [a, a], color="#c44e52", lw=6, alpha=0.6, solid_capstyle="butt")
        faults.scatter([t0], [a], marker="x", c="#c44e52", s=60, zorder=3)
        faults.annotate(str(ab.get("why", "")), (t0, a), xytext=(3, 6), textcoords="offset points", fontsize=7)
    for a, ts in back.items():
        faults.scatter(ts, [a] * len(ts), marker="o", facecolors="none", edgecolors="#55a868", s=60, zorder=3)
    faults.set_xlim(0, max(1, total))
    faults.set_ylim(-0.5, n_agents - 0.5)
    faults.set_yticks(range(n_agents))
    faults.set_xlabel("world step")
    faults.set_ylabel("agent")
    n_abs = len(s.get("absences") or [])
    faults.set_title(f"absences (red, x: left) and rejoins (green o): {n_abs} absence(s)"
                     f"{'' if n_abs else ' - none'}", fontsize=9)
    faults.grid(alpha=0.3)

    returns = [_num(v) for v in s.get("returns") or []]
    ret.plot(range(len(returns)), returns, marker="o", lw=1)
    if returns:
        ret.axhline(float(np.nanmean(returns)), color="grey", ls="--", lw=1, label=f"mean {np.nanmean(returns):.3g}")
        ret.legend(fontsize=7)
    ret.set_xlabel("episode")
    ret.set_ylabel("return")
    ret.set_title(f"return per episode; world step p50 {_num(s.get('step_ms_p50')):.2f} ms, p99 {_num(s.get('step_ms_p99')):.2f} ms", fontsize=9)
    ret.grid(alpha=0.3)
    fig.suptitle(f"swarm {s.get('swarm', '?')}: {n_agents} agents, {s.get('transport', '?')}, {s.get('mode', '?')}, "
                 f"{s.get('episodes', len(returns))} episodes", fontsize=10)
    fig.tight_layout()
    save_figure(fig, out)
    return {"out": str(out), "sessions": len(sessions), "episodes": len(returns), "absences": n_abs}
