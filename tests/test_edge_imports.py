"""Rule of the house: the edge packages never import torch or onnx."""

import subprocess
import sys

import pytest


@pytest.mark.parametrize("module", ["marl_edge.envs", "marl_edge.envs.rollout", "marl_edge.runtime", "marl_edge.robots"])
def test_edge_modules_load_no_torch(module):
    code = (
        f"import sys, {module}\n"
        "from marl_edge.envs import make\n"
        "make('rendezvous', n_envs=2).reset(0)\n"
        "bad = sorted(m for m in ('torch', 'onnx') if m in sys.modules)\n"
        "print(','.join(bad))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60)
    assert out.stdout.strip() == "", f"{module} pulled in {out.stdout.strip()}"
