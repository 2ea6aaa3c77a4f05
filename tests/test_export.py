"""marl-export: per-agent ONNX bundles. Parity with torch over recurrent
rollouts with messages, nothing but the agent network inside, ORT evaluation
== torch evaluation, int8, and bad input."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from marl_edge.export.bundle import export_run
from marl_edge.export.graph import ExportError, parameter_count
from marl_edge.runtime.bundle import BundleError, load_bundle
from marl_edge.runtime.team import evaluate_bundle
from marl_edge.train.config import RunConfig
from marl_edge.train.rundir import create_run_dir, make_run_spec
from marl_edge.train.loop import train
from marl_edge.train.evaluation import evaluate_run


def make_run(root: Path, name: str, env: str = "scout", algo: str = "qmix", steps: int = 400, **sets) -> Path:
    env_options = {k[4:]: v for k, v in sets.items() if k.startswith("env.")}
    run = RunConfig(env=env, algo=algo, steps=steps, seed=3, eval_episodes=0, n_envs=4, env_options=env_options)
    rs = make_run_spec(run, {k: str(v) for k, v in sets.items() if not k.startswith("env.")})
    out = create_run_dir(rs, root / name)
    train(out)
    return out


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """A communicating QMIX run shared by the tests that do not train their own."""
    root = tmp_path_factory.mktemp("runs")
    return {"comm": make_run(root, "comm", comm="attention", topology="knn:2", top_k=1, msg_dim=4)}


CASES = [
    ("iql", "scout", {}),
    ("vdn", "scout", {"comm": "mean"}),
    ("qmix", "scout", {"comm": "attention", "topology": "knn:2", "top_k": 1}),
    ("iql", "scout", {"comm": "knn", "topology": "range:0.5", "comm_k": 2, "last_action": True}),
    ("vdn", "rendezvous", {}),
    ("vdn", "rendezvous", {"env.n_agents": 1}),  # a team of one: its id one-hot is a single float
    ("qmix", "spread", {"comm": "mean", "topology": "knn:1", "shared": False}),
]


@pytest.mark.parametrize("algo,env,sets", CASES, ids=[f"{a}-{e}-{s.get('comm', 'none')}{'-n1' if s.get('env.n_agents') == 1 else ''}" for a, e, s in CASES])
def test_bundle_is_the_trained_team(algo, env, sets, tmp_path):
    run = make_run(tmp_path, "run", env=env, algo=algo, steps=300, **sets)
    res = export_run(run, tmp_path / "bundle")
    b = load_bundle(tmp_path / "bundle")
    n = b.n_agents
    # parity over >= 200 recurrent team steps, several episodes, messages routed
    par = res["parity"]
    assert par["steps"] >= 200 and par["episodes"] >= 8
    assert max(par["max_abs_diff"].values()) <= 1e-5 and par["action_agreement"] == 1.0
    assert set(par["max_abs_diff"]) == ({"q", "hidden_out", "msg_out"} if "comm" in sets else {"q", "hidden_out"})
    assert res["reference_max_abs_diff"] <= 1e-5
    # the graphs' I/O is contract 4
    names = [x.name for x in b.inputs]
    want = ["obs", "avail_actions", "hidden"] + (["msg_in", "msg_mask"] if "comm" in sets else []) + (["prev_action"] if sets.get("last_action") else [])
    assert names == want
    assert [x.name for x in b.outputs] == ["action", "hidden_out"] + (["msg_out"] if "comm" in sets else []) + ["q"]
    # nothing but the agent network: parameter count of each file == the agent core's (+ the folded id one-hot)
    from marl_edge.train.evaluation import load_policy_net

    net, _, _ = load_policy_net(run)
    for i in range(n):
        core = net.cores[0 if net.shared else i]
        own = sum(p.numel() for p in core.parameters())
        assert parameter_count(b.agent(i).policy_path) == own + (n if net.agent_id and n > 1 else 0)
    if algo == "qmix":  # the mixer is large; it is not there
        assert parameter_count(b.agent(0).policy_path) < sum(p.numel() for p in net.parameters()) + n + 1000
    # ORT bundle evaluation == torch evaluation, episode for episode
    ort = evaluate_bundle(tmp_path / "bundle", episodes=24, seed=5)
    torch_ev = evaluate_run(run, episodes=24, seed=5)
    assert ort["returns"] == torch_ev["returns"]


def test_returns_also_match_under_message_loss(runs, tmp_path):
    export_run(runs["comm"], tmp_path / "b")
    for loss in (0.2, 0.5):
        ort = evaluate_bundle(tmp_path / "b", episodes=16, seed=1, msg_loss=loss)
        tch = evaluate_run(runs["comm"], episodes=16, seed=1, msg_loss=loss)
        assert ort["returns"] == tch["returns"] and ort["msgs_heard_per_step"] == tch["msgs_heard_per_step"]


def test_manifest_records_what_the_runtime_needs(runs, tmp_path):
    export_run(runs["comm"], tmp_path / "b")
    m = json.loads((tmp_path / "b" / "swarm.json").read_text())
    assert m["format"] == "marl-edge-bundle" and m["format_version"] == 1
    assert m["topology"]["spec"] == "knn:2" and m["msg_dim"] == 4 and m["k_max"] == 2
    assert m["env"]["name"] == "scout" and m["env_spec"]["n_agents"] == 4
    assert m["source"]["checkpoint_step"] >= 400 and m["source"]["seed"] == 3
    for a in m["agents"]:
        card = json.loads((tmp_path / "b" / a["dir"] / "agent.json").read_text())
        assert card["agent"] == a["id"] and set(a["files"]) == {"policy.onnx", "agent.json"}
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".tmp-")]


def test_a_failed_verification_leaves_no_bundle(runs, tmp_path, monkeypatch):
    from marl_edge.export import verify

    real = verify.parity

    def off_by_a_bit(*a, **kw):
        r = real(*a, **kw)
        r["max_abs_diff"]["q"] = 3e-4
        return r

    monkeypatch.setattr(verify, "parity", off_by_a_bit)
    with pytest.raises(ExportError, match="parity failed: max"):
        export_run(runs["comm"], tmp_path / "b")
    assert not (tmp_path / "b").exists() and not list(tmp_path.iterdir())


def test_verify_bundle_is_a_library_call(runs, tmp_path):
    from marl_edge.export.bundle import verify_bundle

    export_run(runs["comm"], tmp_path / "b")
    res = verify_bundle(tmp_path / "b")
    assert res["ok"] and res["parity"]["steps"] >= 200


def test_parity_catches_a_wrong_graph(runs, tmp_path):
    """The check is not vacuous: a bundle from other weights is flagged."""
    import torch

    from marl_edge.export import verify
    from marl_edge.train.evaluation import load_policy_net

    export_run(runs["comm"], tmp_path / "b")
    net, _, _ = load_policy_net(runs["comm"])
    with torch.no_grad():
        net.cores[0].msg.emit_layer.weight.add_(1e-3)
    par = verify.parity(net, load_bundle(tmp_path / "b"), min_steps=50)
    assert par["max_abs_diff"]["msg_out"] > 1e-5


def test_int8_reports_and_refuses_below_the_agreement_threshold(runs, tmp_path):
    res = export_run(runs["comm"], tmp_path / "q", quantize="int8")
    q = res["int8"]
    assert 0.0 <= q["action_agreement"] <= 1.0 and q["bytes_int8"] < q["bytes_fp32"]
    assert q["act_us_p50_fp32"] > 0 and q["act_us_p50_int8"] > 0
    m = json.loads((tmp_path / "q" / "swarm.json").read_text())
    assert m["quantize"] == "int8" and m["verification"]["int8"]["action_agreement"] == q["action_agreement"]
    ev = evaluate_bundle(tmp_path / "q", episodes=8, seed=0)
    assert len(ev["returns"]) == 8
    # an impossible threshold is refused, unless forced
    with pytest.raises(ExportError, match="min-agreement"):
        export_run(runs["comm"], tmp_path / "q2", quantize="int8", min_agreement=1.0 + 1e-9)
    assert not (tmp_path / "q2").exists()


# ---- the runtime side: torch-free, checks the bundle ---------------------------------------


def test_runtime_runs_a_bundle_with_torch_blocked(runs, tmp_path):
    export_run(runs["comm"], tmp_path / "b")
    code = f"""
import sys
class Block:
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith("torch."):
            raise ImportError("torch is blocked in this test")
sys.meta_path.insert(0, Block())
import numpy as np
from marl_edge.runtime.policy import OrtPolicy
from marl_edge.runtime.team import evaluate_bundle
pol = OrtPolicy.from_agent_dir({str(tmp_path / 'b' / 'agent_2')!r})
a, m, q = pol.act(np.zeros((1, 6), np.float32), np.ones((1, 4), bool), np.zeros((1, 2, 4), np.float32), np.zeros((1, 2), bool))
assert a.shape == (1,) and m.shape == (1, 4) and q.shape == (1, 4)
res = evaluate_bundle({str(tmp_path / 'b')!r}, episodes=8, seed=0)
assert "torch" not in sys.modules
print(res["mean_return"])
"""
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert float(p.stdout.strip().splitlines()[-1]) == pytest.approx(evaluate_run(runs["comm"], 8, 0)["mean_return"])


def test_marl_eval_of_a_bundle_loads_no_torch(runs, tmp_path):
    export_run(runs["comm"], tmp_path / "b")
    code = (
        "import sys, runpy; sys.argv = ['marl-eval', sys.argv[1], '--episodes', '4'];"
        "from marl_edge.cli import evaluate;"
        "import click\n"
        "try:\n    evaluate.eval_cmd.main(args=sys.argv[1:], standalone_mode=False)\n"
        "finally:\n    print('TORCH' if 'torch' in sys.modules else 'NO-TORCH')"
    )
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "b")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0, p.stderr
    assert p.stdout.strip().splitlines()[-1] == "NO-TORCH"


def test_tampered_bundles_are_refused_with_the_reason(runs, tmp_path):
    import shutil

    export_run(runs["comm"], tmp_path / "b")
    bad = tmp_path / "sha"
    shutil.copytree(tmp_path / "b", bad)
    f = bad / "agent_1" / "policy.onnx"
    data = bytearray(f.read_bytes())
    data[-10] ^= 0xFF
    f.write_bytes(bytes(data))
    with pytest.raises(BundleError, match=r"agent_1/policy.onnx: sha256 .* does not match"):
        load_bundle(bad)
    ver = tmp_path / "ver"
    shutil.copytree(tmp_path / "b", ver)
    m = json.loads((ver / "swarm.json").read_text())
    m["format_version"] = 99
    (ver / "swarm.json").write_text(json.dumps(m))
    with pytest.raises(BundleError, match="format version 99 is not supported"):
        load_bundle(ver)
    shape = tmp_path / "shape"
    shutil.copytree(tmp_path / "b", shape)
    m = json.loads((shape / "swarm.json").read_text())
    m["inputs"][0]["shape"] = [None, 7]
    m["env_spec"]["obs_dim"] = 7  # a consistent manifest (its own checks pass), not the graph's
    for a in range(4):  # keep the cards consistent so the graph check is what fails
        cpath = shape / f"agent_{a}" / "agent.json"
        c = json.loads(cpath.read_text())
        c["inputs"] = m["inputs"]
        cpath.write_text(json.dumps(c))
        from marl_edge.runtime.bundle import sha256_file

        m["agents"][a]["files"]["agent.json"] = sha256_file(cpath)
    (shape / "swarm.json").write_text(json.dumps(m))
    from marl_edge.runtime.policy import OrtPolicy

    with pytest.raises(BundleError, match="graph inputs .* do not match the manifest"):
        OrtPolicy.from_agent_dir(shape / "agent_0")


# ---- the CLI as a user runs it ------------------------------------------------------------


def test_cli_export_then_eval(runs, cli, tmp_path):
    out = tmp_path / "bundle"
    p = cli("export", str(runs["comm"]), "--out", str(out), "--json", check=True)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["bundle"] == str(out) and res["parity"]["action_agreement"] == 1.0
    assert "parity" in p.stderr and "onnx.checker" in p.stderr
    e1 = cli("evaluate", str(out), "--episodes", "8", "--seed", "4", "--json", check=True)
    e2 = cli("evaluate", str(runs["comm"]), "--episodes", "8", "--seed", "4", "--json", check=True)
    assert json.loads(e1.stdout.strip().splitlines()[-1])["returns"] == json.loads(e2.stdout.strip().splitlines()[-1])["returns"]


def _corrupt_checkpoint(run: Path, dst: Path) -> Path:
    import shutil

    shutil.copytree(run, dst)
    ck = sorted((dst / "checkpoints").iterdir())[-1]
    w = ck / "weights.safetensors"
    w.write_bytes(w.read_bytes()[:100])
    return dst


@pytest.mark.parametrize("case", ["not-a-run", "no-checkpoint", "corrupt", "unknown-step", "exists", "unwritable", "opset"])
def test_cli_export_bad_input_is_one_line(case, runs, cli, tmp_path):
    run, out, extra = str(runs["comm"]), tmp_path / "out", []
    if case == "not-a-run":
        run, msg = str(tmp_path), "not a run directory"
    elif case == "no-checkpoint":
        import shutil

        d = tmp_path / "empty_run"
        shutil.copytree(runs["comm"], d)
        shutil.rmtree(d / "checkpoints")
        run, msg = str(d), "no checkpoint"
    elif case == "corrupt":
        run, msg = str(_corrupt_checkpoint(runs["comm"], tmp_path / "corrupt")), "corrupt"
    elif case == "unknown-step":
        extra, msg = ["--checkpoint", "7"], "no checkpoint at step 7"
    elif case == "exists":
        out.mkdir()
        (out / "swarm.json").write_text("{}")
        msg = "already exists; pass --force"
    elif case == "unwritable":
        if os.geteuid() == 0:
            out, msg = Path("/proc/marl-bundle"), "cannot write the bundle"
        else:
            ro = tmp_path / "ro"
            ro.mkdir(mode=0o500)
            out, msg = ro / "b", "cannot write the bundle"
    else:
        extra, msg = ["--opset", "9"], "--opset must be in"
    p = cli("export", run, "--out", str(out), *extra)
    assert p.returncode == 2, p.stderr
    lines = p.stderr.strip().splitlines()
    assert lines[-1].startswith("error: ") and msg in lines[-1], p.stderr
    assert "Traceback" not in p.stderr
    assert not [x for x in tmp_path.rglob(".tmp-*")]
