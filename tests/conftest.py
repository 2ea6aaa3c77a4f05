from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def run_cli(module: str, *args: str, timeout: float = 300, check: bool = False) -> subprocess.CompletedProcess:
    """Run ``python -m marl_edge.cli.<module> ARGS`` as a user would; always reaped."""
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", f"marl_edge.cli.{module}", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )
    if check and proc.returncode != 0:
        raise AssertionError(f"marl-{module} {' '.join(args)} failed ({proc.returncode}):\n{proc.stderr[-3000:]}")
    return proc


@pytest.fixture
def cli():
    return run_cli
