"""The one place that imports matplotlib: lazily, with the file-only Agg backend.

matplotlib is the optional ``plot`` extra. Without it every drawing command
stops with one line that says how to install it, and nothing else in the
package notices that it is missing.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np

from .stats import PlotError

INSTALL_HINT = "pictures need matplotlib: pip install 'marl-edge[plot]'"


def pyplot() -> Any:
    """``matplotlib.pyplot`` on the Agg backend (no display needed)."""
    try:
        import matplotlib
    except ImportError:
        raise PlotError(INSTALL_HINT) from None
    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def new_figure(size: tuple[float, float], dpi: int = 100, ncols: int = 1, nrows: int = 1) -> tuple[Any, Any]:
    plt = pyplot()
    return plt.subplots(nrows, ncols, figsize=size, dpi=dpi, squeeze=(ncols == 1 and nrows == 1))


def check_out(out: Path, suffixes: tuple[str, ...]) -> Path:
    """``out`` when its suffix is one of ``suffixes`` and its folder exists."""
    out = Path(out)
    if out.suffix.lower() not in suffixes:
        raise PlotError(f"{out}: the output must end in {' or '.join(suffixes)}")
    if not out.parent.is_dir():
        raise PlotError(f"{out}: the folder {out.parent} does not exist")
    return out


def save_figure(fig: Any, out: Path) -> None:
    """Write the figure to ``out`` atomically (a temporary file, then a rename) and close it."""
    plt = pyplot()
    out = Path(out)
    tmp = out.with_name(f".{out.name}.tmp{out.suffix}")
    try:
        fig.savefig(tmp, dpi=fig.dpi)
        os.replace(tmp, out)
    finally:
        plt.close(fig)
        tmp.unlink(missing_ok=True)


def figure_rgb(fig: Any) -> np.ndarray:
    """The drawn figure as an ``[H, W, 3]`` uint8 array."""
    fig.canvas.draw()
    return np.asarray(fig.canvas.buffer_rgba())[..., :3].copy()


def save_frames(frames: list[np.ndarray], out: Path, fps: float = 4.0) -> None:
    """Frames as an animated GIF (one GIF frame per array, held ``1/fps`` s,
    the last one twice as long) written atomically."""
    from PIL import Image

    out = Path(out)
    images = [Image.fromarray(f).convert("P", palette=Image.Palette.ADAPTIVE, colors=255) for f in frames]
    ms = int(round(1000 / fps))
    tmp = out.with_name(f".{out.name}.tmp.gif")
    try:
        images[0].save(tmp, format="GIF", save_all=True, append_images=images[1:], duration=[ms] * (len(images) - 1) + [2 * ms],
                       loop=0, optimize=False, disposal=1)
        os.replace(tmp, out)
    finally:
        tmp.unlink(missing_ok=True)
