"""docs/export.md's plain-onnxruntime example is right.

The test takes the ```python block after ``<!-- example: plain-onnxruntime -->``
and runs it as written, in a subprocess where torch, onnx and marl_edge cannot
be imported. It runs on three bundles: a talking discrete team with a
previous-action input, a silent discrete team, and a talking continuous
actor. The example prints each step's inputs and outputs. The runtime's own
wrapper, ``OrtPolicy``, replays the same inputs with its own recurrent state
and must give the same actions and outputs. The test also checks the
feeding rules the doc states (zeros at the start, ``hidden_out`` fed back,
an empty inbox at t = 0, the previous action as a one-hot).
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

DOC = Path(__file__).resolve().parent.parent / "docs" / "export.md"

PRELUDE = r"""
import importlib.abc, runpy, sys
BLOCKED = ("torch", "onnx", "marl_edge")
class _Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ModuleNotFoundError(f"{name} is blocked: the example must run without it")
        return None
sys.meta_path.insert(0, _Block())
example, sys.argv = sys.argv[1], [sys.argv[1]] + sys.argv[2:]
runpy.run_path(example, run_name="__main__")
leaked = sorted(m for m in sys.modules if m.split(".")[0] in BLOCKED)
assert not leaked, leaked
"""


def example_code() -> str:
    text = DOC.read_text()
    m = re.search(r"<!-- example: plain-onnxruntime -->\s*```python\n(.*?)```", text, re.S)
    assert m, "docs/export.md lost its marked example block"
    return m.group(1)


def _make_continuous_bundle(root: Path, name: str) -> Path:
    """make_bundle trains QMIX only; the box actor needs MADDPG (same steps otherwise)."""
    from marl_edge.export.bundle import export_run
    from marl_edge.train.config import RunConfig
    from marl_edge.train.rundir import create_run_dir, make_run_spec
    from marl_edge.train.loop import train

    run = RunConfig(env="spread", algo="maddpg", steps=300, seed=1, eval_episodes=0, n_envs=8, env_options={"continuous": True, "n_agents": 3})
    rs = make_run_spec(run, {"comm": "mean", "topology": "knn:2"})
    run_dir = create_run_dir(rs, root / f"run_{name}")
    train(run_dir)
    export_run(run_dir, root / name)
    return root / name


@pytest.fixture(scope="module")
def bundles(tmp_path_factory, make_bundle):
    root = tmp_path_factory.mktemp("export_doc")
    four = {"n_agents": 4, "episode_limit": 5}
    return {
        "talk-prev": make_bundle(root, "talk_prev", steps=600, env_options=four, comm="attention", topology="knn:2", top_k=1, last_action=True),
        "silent": make_bundle(root, "silent", steps=600, env_options=four),
        "ff-talk": make_bundle(root, "ff_talk", steps=600, env_options=four, comm="mean", topology="knn:2", recurrent="false"),
        "box-talk": _make_continuous_bundle(root, "box_talk"),
    }


def test_the_example_is_short_and_needs_only_numpy_and_onnxruntime():
    code = example_code()
    lines = [x for x in code.splitlines() if x.strip()]
    assert len(lines) <= 30
    imports = {w for x in lines if x.startswith(("import ", "from ")) for w in re.findall(r"[A-Za-z_][\w.]*", x.split(" as ")[0])[1:]}
    assert imports <= {"json", "sys", "numpy", "onnxruntime"}, imports


@pytest.mark.parametrize("case", ["talk-prev", "silent", "ff-talk", "box-talk"])
def test_the_example_acts_like_the_runtime_wrapper(bundles, case, tmp_path):
    from marl_edge.runtime.policy import OrtPolicy

    bundle = bundles[case]
    manifest = json.loads((bundle / "swarm.json").read_text())
    agent = 1
    script = tmp_path / "example.py"
    script.write_text(example_code())
    proc = subprocess.run([sys.executable, "-c", PRELUDE, str(script), str(bundle), str(agent)], capture_output=True, text=True,
                          timeout=120, cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    steps = [json.loads(x) for x in proc.stdout.splitlines() if x.strip()]
    assert len(steps) == 6

    names_in = [x["name"] for x in manifest["inputs"]]
    names_out = [x["name"] for x in manifest["outputs"]]
    spec = manifest["env_spec"]
    continuous = not spec.get("n_actions")
    want_in = {"talk-prev": ["obs", "avail_actions", "hidden", "msg_in", "msg_mask", "prev_action"],
               "silent": ["obs", "avail_actions", "hidden"], "box-talk": ["obs", "hidden", "msg_in", "msg_mask"],
               "ff-talk": ["obs", "avail_actions", "msg_in", "msg_mask"]}[case]
    want_out = {"talk-prev": ["action", "hidden_out", "msg_out", "q"], "silent": ["action", "hidden_out", "q"],
                "box-talk": ["action", "hidden_out", "msg_out"], "ff-talk": ["action", "msg_out", "q"]}[case]
    assert names_in == want_in and names_out == want_out  # the tables of section 2, for these cases

    pol = OrtPolicy.from_agent_dir(bundle / f"agent_{agent}")
    pol.reset()
    prev_out = None
    for t, s in enumerate(steps):
        assert set(s) == set(names_in) | set(names_out)
        arr = {k: np.asarray(v, dtype=np.float32) for k, v in s.items() if k not in ("avail_actions", "msg_mask", "action")}
        # the feeding rules of section 2, as the example applied them
        if "hidden" not in s:
            assert manifest["recurrent"] is False and pol.hidden is None  # a feed-forward agent carries no state
        elif t == 0:
            assert not arr["hidden"].any()
        else:
            assert np.array_equal(arr["hidden"], np.asarray(prev_out["hidden_out"], np.float32))
        if "msg_mask" in s:
            mask = np.asarray(s["msg_mask"], dtype=bool)
            assert mask.shape == (1, manifest["k_max"])
            assert not mask.any() if t == 0 else mask.any()
            assert not arr["msg_in"][~mask].any()  # empty slots hold zeros
        if "prev_action" in s:
            want = np.zeros((1, spec["n_actions"]), np.float32)
            if t > 0:
                want[0, prev_out["action"][0]] = 1.0
            assert np.array_equal(arr["prev_action"], want)
        # the runtime wrapper on the same inputs, with its own recurrent state
        a, msg, diag = pol.act(
            arr["obs"],
            None if continuous else np.asarray(s["avail_actions"], dtype=bool),
            arr.get("msg_in"),
            None if "msg_mask" not in s else np.asarray(s["msg_mask"], dtype=bool),
            arr.get("prev_action"),
        )
        if continuous:
            assert np.asarray(s["action"]).shape == (1, spec["action_dim"])
            np.testing.assert_allclose(np.asarray(s["action"], np.float32), a, rtol=1e-5, atol=1e-6)
            assert np.abs(a).max() <= spec["action_high"]
        else:
            assert s["action"] == a.tolist()
            assert np.asarray(s["avail_actions"], bool)[0, s["action"][0]]  # the greedy action is an available one
        if "hidden_out" in s:
            np.testing.assert_allclose(arr["hidden_out"], pol.hidden, rtol=1e-5, atol=1e-6)
        if "msg_out" in s:
            np.testing.assert_allclose(arr["msg_out"], msg, rtol=1e-5, atol=1e-6)
            assert np.abs(arr["msg_out"]).max() <= 1.0
        if "q" in s:
            np.testing.assert_allclose(arr["q"], diag, rtol=1e-5, atol=1e-5)
        prev_out = s
