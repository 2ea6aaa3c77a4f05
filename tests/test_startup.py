"""The commands that do not train start without torch (nor onnx): ``marl-train --help``,
the other commands' help, and ``marl-eval BUNDLE``. The console scripts run as a user runs them, under
``python -X importtime``, which lists every module the process imported."""

from __future__ import annotations

import json
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from marl_edge.train.registry import ALGOS

BIN = Path(sys.executable).parent
HEAVY = ("torch", "onnx")
SCRIPTS = sorted(tomllib.loads((Path(__file__).resolve().parent.parent / "pyproject.toml").read_text())["project"]["scripts"])


def run_traced(cmd: str, *args: str) -> tuple[subprocess.CompletedProcess, set[str]]:
    """Run console script ``cmd`` under ``-X importtime``; its result and the top-level modules it imported."""
    proc = subprocess.run([sys.executable, "-X", "importtime", str(BIN / cmd), *args], capture_output=True, text=True, timeout=120)
    modules = {line.rsplit("|", 1)[1].strip().split(".")[0] for line in proc.stderr.splitlines() if line.startswith("import time:")}
    assert "click" in modules, proc.stderr[-2000:]  # the trace is there
    return proc, modules


def test_marl_train_help_lists_the_registries_without_torch():
    proc, modules = run_traced("marl-train", "--help")
    assert proc.returncode == 0, proc.stderr[-2000:]
    text = " ".join(proc.stdout.split())  # click wraps lines
    for algo in ALGOS.values():
        assert f"{algo.name} ({algo.description})" in text
    assert "two_step" in text and "pz:MODULE[:FACTORY]" in text
    assert not modules & set(HEAVY), (f"marl-train --help imported {sorted(modules & set(HEAVY))}: register algorithms and mixers "
                                      "with register_algo_lazily / register_mixer_lazily (train/registry.py, train/mixers/__init__.py)")


@pytest.mark.parametrize("cmd", [c for c in SCRIPTS if c != "marl-train"])
def test_help_of_every_other_command_loads_no_torch(cmd):
    proc, modules = run_traced(cmd, "--help")
    assert proc.returncode == 0 and "Usage:" in proc.stdout
    assert not modules & set(HEAVY)


def test_marl_eval_of_a_bundle_loads_no_torch(tmp_path, make_bundle):
    bundle = make_bundle(tmp_path, "bundle", steps=300, env="two_step")
    proc, modules = run_traced("marl-eval", str(bundle), "--episodes", "3", "--json")
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert len(json.loads(proc.stdout.strip().splitlines()[-1])["returns"]) == 3
    assert "onnxruntime" in modules and not modules & set(HEAVY), sorted(modules & set(HEAVY))
