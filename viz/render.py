"""Episode frames: one picture per env step, as a GIF or a PNG contact sheet.

Each built-in env has a *scene* that reads what it draws from the env's own
attributes (the goal block of rendezvous, the shelves and packages of the
warehouse, the landmarks of spread, the target and scout of scout, the walls,
flags and both teams of tag, the payoff table of a matrix game). One team's
view of a game (``team_view``) is drawn with the game's scene. Any other env
falls back to dots at its positions, or, without positions, to a table of the
last steps' actions and rewards; so a new env renders from day one.

Frame ``t`` shows the world after ``t`` steps; the actions, rewards, who
heard whom and who was absent are those of the step that led to it. Lines
run from each sender to every agent that heard its message when choosing
that step's action; an absent agent is drawn hollow and grey.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..envs import EnvSpec
from .episode import EpisodeRecord, Frame, replay
from .figure import check_out, figure_rgb, new_figure, pyplot, save_frames

OUT_SUFFIXES = (".gif", ".png")
SHEET_COLUMNS = 6
TRAIL = 8  # steps of trail behind each agent


def _patches() -> Any:
    pyplot()  # matplotlib present, Agg selected
    import matplotlib.patches

    return matplotlib.patches


def _colour(i: int) -> Any:
    return pyplot().get_cmap("tab10")(i % 10)


@dataclass(frozen=True)
class Scene:
    """How one kind of env is drawn: ``capture(env)`` copies what the
    picture needs out of the (batch-1) env after each step; ``draw(ax,
    frames, k, spec)`` draws frame ``k`` (earlier frames give trails)."""

    capture: Callable[[Any], dict[str, Any]]
    draw: Callable[[Any, Sequence[Frame], int, EnvSpec], None]


# ---- drawing helpers ---------------------------------------------------------------------------


def _agents(ax: Any, pos: np.ndarray, absent: Sequence[int], size: float = 180.0, labels: Sequence[str] | None = None) -> None:
    """Agents as numbered discs; absent ones hollow and grey."""
    for i, (x, y) in enumerate(pos[:, :2]):
        gone = i in absent
        ax.scatter([x], [y], s=size, facecolors="none" if gone else [_colour(i)], edgecolors="grey" if gone else "black",
                   linewidths=1.5 if gone else 0.8, linestyle="--" if gone else "-", zorder=4)
        ax.annotate(str(i) if labels is None else labels[i], (x, y), ha="center", va="center", fontsize=8,
                    color="grey" if gone else "white", weight="bold", zorder=5)


def _heard(ax: Any, pos: np.ndarray, heard: list[list[int]] | None, size: float = 180.0) -> None:
    """A line from each sender to each agent that heard it, its head at the hearer's disc
    (``size``: the discs' marker area, as ``_agents`` draws them)."""
    if not heard:
        return
    gap = np.sqrt(size) / 2 + 1.0  # points from a disc's centre to just outside its edge
    for i, senders in enumerate(heard):
        for j in senders or []:
            if 0 <= j < len(pos) and j != i:
                ax.annotate("", xy=pos[i, :2], xytext=pos[j, :2], zorder=3,
                            arrowprops={"arrowstyle": "-|>", "mutation_scale": 10, "color": _colour(j), "alpha": 0.7, "lw": 1.2,
                                            "shrinkA": gap, "shrinkB": gap})


def _title(frames: Sequence[Frame], k: int, spec: EnvSpec, label: str) -> str:
    f = frames[k]
    head = f"{spec.name}{' · ' + label if label else ''}"
    if f.reward is None:
        return f"{head}\nt=0 (start)   return 0"
    r = np.asarray(f.reward)
    rtxt = f"{r[0]:.3g}" if np.allclose(r, r[0]) else "[" + " ".join(f"{v:.3g}" for v in r) + "]"
    end = "  (end)" if f.done else ""
    return f"{head}\nt={f.t}   reward {rtxt}   return {f.ret:.4g}{end}"


def _footer(f: Frame, spec: EnvSpec) -> str:
    parts = []
    if f.actions is not None:
        a = np.asarray(f.actions)
        parts.append("actions " + (" ".join(str(int(v)) for v in a) if spec.discrete else " ".join("(" + ",".join(f"{x:+.2f}" for x in v) + ")" for v in a)))
    if f.absent:
        parts.append("absent " + ",".join(str(i) for i in f.absent))
    if f.dropped is not None and any(f.dropped):
        parts.append("dropped " + " ".join(str(int(d)) for d in f.dropped))
    if f.heard is not None:
        parts.append(f"heard {sum(len(h or []) for h in f.heard)} msgs")
    return "   ".join(parts)


# ---- the built-in envs' scenes -----------------------------------------------------------------


def _grid_capture(env: Any) -> dict[str, Any]:
    return {"grid": int(env.grid), "goal": np.asarray(env.goal[0]).copy(), "goal_size": int(env.goal_size)}


def _grid_draw(ax: Any, frames: Sequence[Frame], k: int, spec: EnvSpec) -> None:
    sc = frames[k].scene
    gx, gy = sc["goal"]
    ax.add_patch(_patches().Rectangle((gx - 0.5, gy - 0.5), sc["goal_size"], sc["goal_size"], color="#9be39b", zorder=0))
    _grid_agents(ax, frames, k, sc["grid"])


def _grid_agents(ax: Any, frames: Sequence[Frame], k: int, g: int, carrying: np.ndarray | None = None) -> None:
    """The cell grid, trails, heard messages and the agents of frame ``k`` on a ``g x g`` grid
    (agents sharing a cell sit side by side inside it; ``carrying`` [n]: a thick ring)."""
    f = frames[k]
    ax.set_xticks(np.arange(-0.5, g, 1.0), minor=True)
    ax.set_yticks(np.arange(-0.5, g, 1.0), minor=True)
    ax.grid(which="minor", color="#cccccc", lw=0.8)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_xlim(-0.5, g - 0.5)
    ax.set_ylim(-0.5, g - 0.5)
    pos = f.positions.astype(np.float64)
    shown = pos.copy()
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(pos):
        cells.setdefault((int(x), int(y)), []).append(i)
    for members in cells.values():
        if len(members) > 1:
            ang = np.linspace(0, 2 * np.pi, len(members), endpoint=False)
            shown[members] += 0.22 * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    _trail(ax, frames, k, lambda fr: fr.positions.astype(np.float64))
    size = min(400.0, 2400.0 / g)
    _heard(ax, shown, f.heard, size)
    if carrying is not None and carrying.any():
        ax.scatter(shown[carrying, 0], shown[carrying, 1], s=size * 2.2, facecolors="none", edgecolors="#8b5a2b", linewidths=2.5, zorder=3.5)
    _agents(ax, shown, f.absent, size=size)


def _warehouse_capture(env: Any) -> dict[str, Any]:
    return {"grid": int(env.grid), "shelves": env.shelves.copy(), "waiting": env.waiting[0].copy(), "carrying": env.carrying[0].copy()}


def _warehouse_draw(ax: Any, frames: Sequence[Frame], k: int, spec: EnvSpec) -> None:
    """The delivery row (green), shelves (grey), waiting packages (brown) and robots; a
    robot that carries a package has a brown ring."""
    sc = frames[k].scene
    g, patches = sc["grid"], _patches()
    ax.add_patch(patches.Rectangle((-0.5, -0.5), g, 1.0, color="#9be39b", zorder=0))
    for (x, y), waits in zip(sc["shelves"], sc["waiting"]):
        ax.add_patch(patches.Rectangle((x - 0.45, y - 0.45), 0.9, 0.9, color="#d0d0d0", zorder=0.5))
        if waits:
            ax.add_patch(patches.Rectangle((x - 0.25, y - 0.25), 0.5, 0.5, color="#8b5a2b", zorder=1))
    _grid_agents(ax, frames, k, g, carrying=np.asarray(sc["carrying"], dtype=bool))


TEAM_COLOURS = ("#1f77b4", "#d62728")  # team 0 blue, team 1 red
HOME_SHADES = ("#e3eefa", "#fbe5e5")


def _tag_capture(env: Any) -> dict[str, Any]:
    """The tag game, alone or seen by one team (``team_view``, whose ``inner`` is the game):
    every agent's cell, so the other team is drawn too."""
    game = getattr(env, "inner", env)
    return {"grid": int(game.grid), "pos": game.pos[0].copy(), "wall": game.wall.copy(), "flags": game.flags.copy(),
            "team_of": game.team_of.copy(), "outcome": int(game.outcome[0]),
            "mine": list(getattr(env, "mine", range(len(game.team_of)))), "seat": getattr(env, "team", None)}


def _tag_draw(ax: Any, frames: Sequence[Frame], k: int, spec: EnvSpec) -> None:
    """Both homes (shaded in their team's colour), walls (dark), the flags (triangles) and every
    agent as a disc in its team's colour, numbered by its index in the game; the learning team's
    agents (``team_view``) have a black ring."""
    f, sc, patches = frames[k], frames[k].scene, _patches()
    g, team_of = sc["grid"], np.asarray(sc["team_of"])
    for y in range(g):  # team 0's home is the rows with 2y < g-1, team 1's those with 2y > g-1
        if 2 * y != g - 1:
            ax.add_patch(patches.Rectangle((-0.5, y - 0.5), g, 1.0, color=HOME_SHADES[int(2 * y > g - 1)], zorder=0))
    for x, y in np.argwhere(sc["wall"]):
        ax.add_patch(patches.Rectangle((x - 0.5, y - 0.5), 1.0, 1.0, color="#555555", zorder=0.5))
    for t, (x, y) in enumerate(sc["flags"]):
        ax.scatter([x], [y], marker="^", s=260, c=TEAM_COLOURS[t], edgecolors="black", zorder=1)
    ax.set_xticks(np.arange(-0.5, g, 1.0), minor=True)
    ax.set_yticks(np.arange(-0.5, g, 1.0), minor=True)
    ax.grid(which="minor", color="#cccccc", lw=0.8)
    ax.tick_params(which="both", length=0, labelbottom=False, labelleft=False)
    ax.set_xlim(-0.5, g - 0.5)
    ax.set_ylim(-0.5, g - 0.5)
    pos = np.asarray(sc["pos"], dtype=np.float64)
    shown = pos.copy()
    cells: dict[tuple[int, int], list[int]] = {}
    for i, (x, y) in enumerate(pos):
        cells.setdefault((int(x), int(y)), []).append(i)
    for members in cells.values():
        if len(members) > 1:
            ang = np.linspace(0, 2 * np.pi, len(members), endpoint=False)
            shown[members] += 0.22 * np.stack([np.cos(ang), np.sin(ang)], axis=1)
    if k > 0:
        path = np.stack([np.asarray(fr.scene["pos"], dtype=np.float64) for fr in frames[max(0, k - TRAIL) : k + 1]])
        for i in range(path.shape[1]):
            ax.plot(path[:, i, 0], path[:, i, 1], color=TEAM_COLOURS[team_of[i]], alpha=0.5, lw=1.4, ls=":", zorder=1)
    mine = list(sc["mine"])
    size = min(400.0, 2400.0 / g)
    if f.heard:  # heard lists index the learning team's agents: map them to the game's indices
        _heard(ax, shown[mine], f.heard, size)
    absent = {mine[i] for i in f.absent if 0 <= i < len(mine)}
    for i, (x, y) in enumerate(shown):
        gone = i in absent
        ring = sc["seat"] is not None and i in mine
        ax.scatter([x], [y], s=size, facecolors="none" if gone else [TEAM_COLOURS[team_of[i]]],
                   edgecolors="grey" if gone else "black", linewidths=2.2 if ring else 0.8, linestyle="--" if gone else "-", zorder=4)
        ax.annotate(str(i), (x, y), ha="center", va="center", fontsize=8, color="grey" if gone else "white", weight="bold", zorder=5)
    result = {1: "team 0 (blue) wins", -1: "team 1 (red) wins"}.get(sc["outcome"], "draw")
    if f.done:
        ax.text(0.01, 0.99, result, transform=ax.transAxes, va="top", fontsize=9, weight="bold", zorder=6)


def _spread_capture(env: Any) -> dict[str, Any]:
    return {"landmarks": np.asarray(env.landmarks[0]).copy(), "agent_size": float(env.agent_size)}


def _spread_draw(ax: Any, frames: Sequence[Frame], k: int, spec: EnvSpec) -> None:
    f, sc = frames[k], frames[k].scene
    lm = sc["landmarks"]
    ax.scatter(lm[:, 0], lm[:, 1], marker="s", s=70, c="#444444", zorder=2, label="landmarks")
    ax.set_xlim(-1.1, 1.1)
    ax.set_ylim(-1.1, 1.1)
    ax.add_patch(_patches().Rectangle((-1, -1), 2, 2, fill=False, ec="#999999", lw=0.8))
    _trail(ax, frames, k, lambda fr: fr.positions)
    # the disc is the agent's collision size (two discs that overlap collide)
    r_pts = sc["agent_size"] / 2.2 * ax.get_window_extent().width / ax.figure.dpi * 72
    size = max(60.0, (2 * r_pts) ** 2)
    _heard(ax, f.positions, f.heard, size)
    _agents(ax, f.positions, f.absent, size=size)


def _scout_capture(env: Any) -> dict[str, Any]:
    return {"target": int(env._goal[0]), "scout": int(env._scout[0]), "n_targets": int(env.K)}  # noqa: SLF001


def _scout_draw(ax: Any, frames: Sequence[Frame], k: int, spec: EnvSpec) -> None:
    f, sc = frames[k], frames[k].scene
    pos = f.positions
    ax.set_xlim(-0.1, 1.1)
    ax.set_ylim(-0.1, 1.15)
    s = sc["scout"]
    ax.scatter([pos[s, 0]], [pos[s, 1]], marker="*", s=900, c="gold", edgecolors="black", zorder=3)
    _heard(ax, pos, f.heard)
    _agents(ax, pos, f.absent)
    if f.actions is not None:
        for i, a in enumerate(np.asarray(f.actions)):
            ok = int(a) == sc["target"]
            ax.annotate(f"names {int(a)}", pos[i, :2], xytext=(0, 14), textcoords="offset points", ha="center", fontsize=8,
                        color="green" if ok else "red", zorder=6)
    ax.text(0.01, 0.99, f"target {sc['target']} of {sc['n_targets']}, known to the scout (star): agent {s}",
            transform=ax.transAxes, va="top", fontsize=8)


def _matrix_capture(env: Any) -> dict[str, Any]:
    return {"table": np.asarray(env.table, dtype=np.float64)}


def _matrix_draw(ax: Any, frames: Sequence[Frame], k: int, spec: EnvSpec) -> None:
    f, table = frames[k], frames[k].scene["table"]
    if table.ndim != 2:  # three or more agents: no grid to draw
        _table_draw(ax, frames, k, spec)
        return
    ax.imshow(table, cmap="RdYlGn", origin="upper")
    for (r, c), v in np.ndenumerate(table):
        ax.text(c, r, f"{v:g}", ha="center", va="center", fontsize=11)
    if f.actions is not None:
        a0, a1 = (int(v) for v in f.actions)
        ax.add_patch(_patches().Rectangle((a1 - 0.5, a0 - 0.5), 1, 1, fill=False, ec="black", lw=3))
    ax.set_xticks(range(table.shape[1]))
    ax.set_yticks(range(table.shape[0]))
    ax.set_xlabel("agent 1's action")
    ax.set_ylabel("agent 0's action")


# ---- the fallbacks ----------------------------------------------------------------------------


def _trail(ax: Any, frames: Sequence[Frame], k: int, get: Callable[[Frame], np.ndarray]) -> None:
    """Each agent's path over the last ``TRAIL`` steps up to frame ``k``: faint and dotted,
    so it does not read as a message arrow."""
    if k == 0:
        return
    path = np.stack([get(fr) for fr in frames[max(0, k - TRAIL) : k + 1]])  # [<=TRAIL+1, n, d]
    for i in range(path.shape[1]):
        ax.plot(path[:, i, 0], path[:, i, 1], color=_colour(i), alpha=0.5, lw=1.4, ls=":", zorder=1)


def _dots_draw(ax: Any, frames: Sequence[Frame], k: int, spec: EnvSpec) -> None:
    """Any env with positions: dots, trails and heard lines, axes fixed over the episode."""
    f = frames[k]
    every = np.concatenate([fr.positions[:, :2] for fr in frames])
    lo, hi = every.min(axis=0), every.max(axis=0)
    pad = np.maximum(0.1 * (hi - lo), 0.5)
    ax.set_xlim(lo[0] - pad[0], hi[0] + pad[0])
    ax.set_ylim(lo[1] - pad[1], hi[1] + pad[1])
    _trail(ax, frames, k, lambda fr: fr.positions)
    _heard(ax, f.positions, f.heard)
    _agents(ax, f.positions, f.absent)


TABLE_ROWS = 12


def _table_draw(ax: Any, frames: Sequence[Frame], k: int, spec: EnvSpec) -> None:
    """Any env: the last steps' actions and rewards as a table (the newest row bold)."""
    ax.axis("off")
    ax.set_aspect("auto")
    n = spec.n_agents
    rows = [fr for fr in frames[1 : k + 1]][-TABLE_ROWS:]
    cols = ["t"] + [f"a{i}" for i in range(n)] + ["reward"] + ["return"]
    cells = []
    for fr in rows:
        acts = [str(int(a)) if spec.discrete else ",".join(f"{x:+.1f}" for x in a) for a in np.asarray(fr.actions)]
        acts = [f"{a} ✗" if i in fr.absent else a for i, a in enumerate(acts)]
        r = np.asarray(fr.reward)
        rtxt = f"{r[0]:.3g}" if np.allclose(r, r[0]) else " ".join(f"{v:.3g}" for v in r)
        cells.append([str(fr.t - 1)] + acts + [rtxt, f"{fr.ret:.4g}"])
    if not cells:
        ax.text(0.5, 0.5, "start: no step taken yet", ha="center", va="center", fontsize=11, transform=ax.transAxes)
        return
    tab = ax.table(cellText=cells, colLabels=cols, loc="upper center", cellLoc="center")
    tab.auto_set_font_size(False)
    tab.set_fontsize(9)
    tab.scale(1.0, 1.3)
    for c in range(len(cols)):
        tab[(len(cells), c)].set_text_props(weight="bold")
        tab[(0, c)].set_facecolor("#e6e6e6")


SCENES: dict[str, Scene] = {
    "rendezvous": Scene(_grid_capture, _grid_draw),
    "spread": Scene(_spread_capture, _spread_draw),
    "warehouse": Scene(_warehouse_capture, _warehouse_draw),
    "warehouse_sparse": Scene(_warehouse_capture, _warehouse_draw),
    "scout": Scene(_scout_capture, _scout_draw),
    "tag": Scene(_tag_capture, _tag_draw),
    "matrix": Scene(_matrix_capture, _matrix_draw),
    "climbing": Scene(_matrix_capture, _matrix_draw),
    "penalty": Scene(_matrix_capture, _matrix_draw),
}
DOTS = Scene(lambda env: {}, _dots_draw)
TABLE = Scene(lambda env: {}, _table_draw)


def scene_for(env_name: str, has_positions: bool) -> Scene:
    """The env's own scene, else dots (positions) or the table (none). One team's view of a
    game (``team_view``, named ``GAME[team k]``) is drawn with the game's scene."""
    return SCENES.get(env_name) or SCENES.get(env_name.split("[team ")[0]) or (DOTS if has_positions else TABLE)


# ---- frames and files ------------------------------------------------------------------------


def render_frames(record: EpisodeRecord, dpi: int = 80, size: tuple[float, float] = (5.0, 5.4)) -> tuple[list[np.ndarray], list[Frame]]:
    """Replay ``record`` and draw each of its frames: ``[H, W, 3]`` uint8 arrays."""
    frames, spec = replay(record, lambda env: scene_for(env.spec.name, env.spec.has_positions).capture(env))
    scene = scene_for(spec.name, spec.has_positions)
    fig, ax = new_figure(size, dpi)
    images = []
    try:
        for k, f in enumerate(frames):
            fig.clf()
            ax = fig.add_axes((0.1, 0.14, 0.84, 0.72))
            ax.set_aspect("equal")
            scene.draw(ax, frames, k, spec)
            fig.suptitle(_title(frames, k, spec, record.label), fontsize=9)
            fig.text(0.5, 0.015, _footer(f, spec), ha="center", fontsize=7, wrap=True)
            images.append(figure_rgb(fig))
    finally:
        pyplot().close(fig)
    return images, frames


def contact_sheet(images: Sequence[np.ndarray], columns: int = SHEET_COLUMNS) -> np.ndarray:
    """Frames tiled left to right, top to bottom, on white."""
    h, w, _ = images[0].shape
    cols = min(columns, len(images))
    rows = -(-len(images) // cols)
    sheet = np.full((rows * h, cols * w, 3), 255, dtype=np.uint8)
    for k, im in enumerate(images):
        r, c = divmod(k, cols)
        sheet[r * h : (r + 1) * h, c * w : (c + 1) * w] = im
    return sheet


def write_episode(record: EpisodeRecord, out: Path, fps: float = 4.0) -> dict[str, Any]:
    """``out.gif``: one GIF frame per frame (steps + 1); ``out.png``: all of
    them on one contact sheet. Returns what was written (frames, size, return)."""
    import os

    from PIL import Image

    out = check_out(out, OUT_SUFFIXES)
    images, frames = render_frames(record)
    if out.suffix.lower() == ".gif":
        save_frames(images, out, fps=fps)
        size = images[0].shape[1], images[0].shape[0]
    else:
        sheet = contact_sheet(images)
        tmp = out.with_name(f".{out.name}.tmp.png")
        try:
            Image.fromarray(sheet).save(tmp, format="PNG")
            os.replace(tmp, out)
        finally:
            tmp.unlink(missing_ok=True)
        size = sheet.shape[1], sheet.shape[0]
    return {"out": str(out), "frames": len(images), "steps": len(frames) - 1, "return": frames[-1].ret, "size": list(size)}
