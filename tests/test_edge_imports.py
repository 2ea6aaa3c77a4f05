"""Rules of the house for the edge: the modules an agent, a world or a robot
link runs never import torch or onnx (nor, until a key is used, cryptography), and the packages import one way only
(``wire`` needs nothing of marl_edge but ``errors``; ``robots`` needs
``envs`` and ``wire``, never ``runtime``)."""

import json
import subprocess
import sys

import pytest

EDGE = [
    "marl_edge.envs", "marl_edge.envs.rollout",
    "marl_edge.wire", "marl_edge.wire.protocol", "marl_edge.wire.udp", "marl_edge.wire.keyfile",
    "marl_edge.robots.base", "marl_edge.robots.sim", "marl_edge.robots.udp",
    "marl_edge.runtime.agent", "marl_edge.runtime.policy", "marl_edge.runtime.world", "marl_edge.runtime.swarm",
    "marl_edge.runtime.team", "marl_edge.runtime.bundle", "marl_edge.runtime.transport", "marl_edge.runtime.udp_world",
    "marl_edge.runtime.metrics", "marl_edge.runtime.signing", "marl_edge.runtime.keys",
    "marl_edge.cli.agent", "marl_edge.cli.swarm", "marl_edge.cli.evaluate", "marl_edge.cli.keys",
]

# what each package may load of marl_edge (besides itself, the root package and errors)
ALLOWED = {
    "marl_edge.wire": set(),
    "marl_edge.robots": {"envs", "wire"},
    "marl_edge.envs": set(),
}


def _load(module: str) -> dict:
    code = (
        "import importlib, json, sys\n"
        f"importlib.import_module({module!r})\n"
        "from marl_edge.envs import make\n"
        "make('rendezvous', n_envs=2).reset(0)\n"
        "print(json.dumps(sorted(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


@pytest.mark.parametrize("module", EDGE)
def test_edge_modules_load_no_torch(module):
    loaded = _load(module)
    assert module in loaded
    bad = sorted(m for m in loaded if m.split(".")[0] in ("torch", "onnx"))
    assert not bad, f"{module} pulled in {bad[:5]}"
    # cryptography (the crypto extra) is imported only when a key is used: unsigned bundles run without it
    assert not any(m.split(".")[0] == "cryptography" for m in loaded), f"{module} imports cryptography eagerly"


@pytest.mark.parametrize("module", [m for m in EDGE if m.startswith(tuple(ALLOWED))])
def test_packages_import_one_way(module):
    pkg = next(p for p in ALLOWED if module.startswith(p))
    own = pkg.split(".")[1]
    code = f"import importlib, json, sys\nimportlib.import_module({module!r})\nprint(json.dumps(sorted(sys.modules)))\n"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    loaded = json.loads(out.stdout.strip().splitlines()[-1])
    used = {m.split(".")[1] for m in loaded if m.startswith("marl_edge.")} - {own, "errors"}
    assert used <= ALLOWED[pkg], f"{module} loads marl_edge.{sorted(used - ALLOWED[pkg])}"
