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


def _make_bundle(root: Path, name: str, steps: int = 1500, env_options: dict | None = None, env: str = "scout", **sets) -> Path:
    """Train a tiny QMIX run in process and export it to ``root/name`` (a bundle)."""
    from marl_edge.export.bundle import export_run
    from marl_edge.train.config import RunConfig
    from marl_edge.train.rundir import create_run_dir, make_run_spec
    from marl_edge.train.loop import train

    run = RunConfig(env=env, algo="qmix", steps=steps, seed=1, eval_episodes=0, n_envs=8, env_options=env_options or {})
    rs = make_run_spec(run, {k: str(v) for k, v in sets.items()})
    run_dir = create_run_dir(rs, root / f"run_{name}")
    train(run_dir)
    export_run(run_dir, root / name)
    return root / name


@pytest.fixture(scope="session")
def make_bundle():
    return _make_bundle
