"""What every command shares: one-line errors, progress, JSON output."""

from __future__ import annotations

import json
import math
import os
import sys
import time
import traceback
from typing import Any, Callable

import click

from ..errors import UserError


def is_user_error(e: BaseException) -> bool:
    """Errors a user can cause derive from ``marl_edge.errors.UserError`` (each room
    has its own subclass); everything else is a bug."""
    return isinstance(e, UserError)


# What the training extra adds to the edge install (pyproject.toml). A robot's
# ``pip install marl-edge`` has none of them; marl-train and marl-export need them.
TRAIN_EXTRA_MODULES = ("torch", "onnx", "safetensors", "tensorboard")


def missing_extra_message(prog: str, module: str) -> str:
    return (f"error: {prog} needs {module}, which the edge install (pip install marl-edge) leaves out; "
            "install the training extra: pip install 'marl-edge[train]'")


def missing_train_module(e: BaseException) -> str | None:
    """The training-extra module whose absence raised ``e`` (None for any other error)."""
    if not isinstance(e, ImportError):
        return None
    top = (getattr(e, "name", None) or "").split(".")[0]
    return top if top in TRAIN_EXTRA_MODULES else None


def require_train_extra(prog: str, modules: tuple[str, ...] = ("torch",)) -> None:
    """Exit with one line (status 2) if any of ``modules`` cannot be imported,
    before anything imports them (no traceback on an edge install)."""
    import importlib.util

    for m in modules:
        try:
            found = importlib.util.find_spec(m) is not None
        except (ImportError, ValueError):
            found = False
        if not found:
            click.echo(missing_extra_message(prog, m), err=True)
            sys.exit(2)


def run_command(cmd: click.Command, argv: list[str] | None = None, prog_name: str | None = None) -> None:
    """Run a click command: user errors are one line on stderr and exit 2;
    a traceback only with ``--debug``."""
    args = list(sys.argv[1:] if argv is None else argv)
    debug = "--debug" in args or os.environ.get("MARL_EDGE_DEBUG") == "1"
    try:
        rv = cmd.main(args=args, prog_name=prog_name, standalone_mode=False)
    except click.exceptions.Exit as e:
        sys.exit(e.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as e:
        if debug:
            raise
        click.echo(f"error: {e.format_message()}", err=True)
        sys.exit(2)
    except KeyboardInterrupt:
        click.echo("interrupted", err=True)
        sys.exit(130)
    except Exception as e:  # noqa: BLE001
        if debug:
            raise
        missing = missing_train_module(e)
        if missing is not None:
            click.echo(missing_extra_message(prog_name or cmd.name or "this command", missing), err=True)
            sys.exit(2)
        if is_user_error(e):
            click.echo(f"error: {e}", err=True)
            sys.exit(2)
        click.echo(f"internal error: {type(e).__name__}: {e} (run again with --debug for the traceback)", err=True)
        sys.exit(1)
    sys.exit(rv if isinstance(rv, int) else 0)


def debug_option(f: Callable) -> Callable:
    return click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")(f)


def emit_json(obj: dict[str, Any]) -> None:
    """The machine-readable result: one JSON object as the last line of stdout."""
    click.echo(json.dumps(obj, default=_jsonable, allow_nan=False))


def _jsonable(o: Any) -> Any:
    try:
        import numpy as np

        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    return str(o)


def fmt_duration(s: float) -> str:
    if not math.isfinite(s):
        return "?"
    s = int(round(s))
    h, rem = divmod(s, 3600)
    m, sec = divmod(rem, 60)
    return f"{h}:{m:02d}:{sec:02d}" if h else f"{m}:{sec:02d}"


class Progress:
    """A progress bar on stderr (rate, ETA, latest value); plain lines when
    stderr is not a terminal (CI logs), at most one per ``every_s`` seconds."""

    def __init__(self, total: int, label: str = "steps", enabled: bool = True, every_s: float = 10.0) -> None:
        self.total, self.label, self.enabled = max(1, total), label, enabled
        self.tty = sys.stderr.isatty()
        self.every_s = every_s
        self.t0 = time.perf_counter()
        self.start_done: int | None = None
        self.last_print = -1e9

    def update(self, done: int, extra: str = "") -> None:
        if not self.enabled:
            return
        now = time.perf_counter()
        if self.start_done is None:
            self.start_done = done
        rate = (done - self.start_done) / max(now - self.t0, 1e-9)
        eta = (self.total - done) / rate if rate > 0 else float("inf")
        frac = min(1.0, done / self.total)
        text = f"{frac * 100:5.1f}% {done:,}/{self.total:,} {self.label}  {rate:,.0f}/s  ETA {fmt_duration(eta)}"
        if extra:
            text += f"  {extra}"
        if self.tty:
            width = 24
            bar = "#" * int(frac * width) + "." * (width - int(frac * width))
            sys.stderr.write(f"\r[{bar}] {text}\033[K")
            sys.stderr.flush()
        elif now - self.last_print >= self.every_s or done >= self.total:
            self.last_print = now
            sys.stderr.write(text + "\n")
            sys.stderr.flush()

    def close(self) -> None:
        if self.enabled and self.tty:
            sys.stderr.write("\n")
            sys.stderr.flush()
