"""The feed-forward agent (``--set recurrent=false``), end to end.

Units: the MLP core's batched unroll is the step-by-step forward (without
the fused GRU), with and without messages; the per-agent graph has no
``hidden`` input and no ``hidden_out`` output, for every aggregator and for
the continuous actor. Round trips: QMIX (silent and comm=mean) and MAPPO on
``scout``, MADDPG's box actor on continuous ``spread``: a tiny run trains,
exports with its parity checks passing, each file holds exactly the actor's
parameters (+ the agent-id one-hot), the bundle's returns equal the run's,
and the lock-step swarm's returns equal the bundle's.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from marl_edge.export.bundle import export_run
from marl_edge.export.graph import example_inputs, export_policy, io_specs, parameter_count
from marl_edge.runtime.bundle import BundleError, Manifest, load_bundle
from marl_edge.runtime.policy import OrtPolicy
from marl_edge.runtime.swarm import SwarmOptions, run_swarm
from marl_edge.runtime.team import evaluate_bundle
from marl_edge.train.comm import CommConfig, gather_inbox
from marl_edge.train.config import RunConfig
from marl_edge.train.networks import RNNAgent
from marl_edge.train.registry import algo_names, build_learner
from marl_edge.train.rundir import create_run_dir, make_run_spec
from marl_edge.train.loop import train
from marl_edge.train.evaluation import evaluate_run, load_policy_net


def _no_fused_gru(monkeypatch):
    def boom(*a, **k):
        raise AssertionError("a feed-forward agent must not run the GRU")

    monkeypatch.setattr(torch, "gru", boom)


# ---- units ----------------------------------------------------------------------------------


@pytest.mark.parametrize("shared,last_action", [(True, False), (True, True), (False, False)])
def test_feedforward_unroll_equals_step_by_step(shared, last_action, monkeypatch):
    _no_fused_gru(monkeypatch)
    torch.manual_seed(3)
    net = RNNAgent(7, 4, 3, hidden_dim=16, last_action=last_action, shared=shared, recurrent=False)
    assert all(not hasattr(c, "rnn") for c in net.cores)
    B, T = 4, 9
    obs = torch.randn(B, T, 3, 7)
    last = torch.randn(B, T, 3, 4) if last_action else None
    h, qs = net.init_hidden(B), []
    for t in range(T):
        q, h, _ = net(obs[:, t], torch.randn_like(h), None if last is None else last[:, t])  # the hidden input is ignored
        qs.append(q)
    torch.testing.assert_close(net.unroll(obs, last), torch.stack(qs, 1), rtol=1e-5, atol=1e-6)
    # no state: a step's output depends on that step's input only
    q0, _, _ = net(obs[:, 3], None, None if last is None else last[:, 3])
    torch.testing.assert_close(q0, qs[3])


@pytest.mark.parametrize("comm", ["mean", "attention"])
def test_feedforward_communicating_unroll_equals_step_by_step(comm, monkeypatch):
    _no_fused_gru(monkeypatch)
    torch.manual_seed(4)
    n, k = 4, 2
    net = RNNAgent(5, 3, n, hidden_dim=12, comm=CommConfig(comm=comm, msg_dim=4), k_max=k, recurrent=False)
    B, T = 3, 6
    obs = torch.randn(B, T, n, 5)
    idx = torch.randint(0, n, (B, T, n, k))
    mask = torch.rand(B, T, n, k) > 0.3
    msg, qs = torch.zeros(B, n, 4), []
    for t in range(T):
        mi, mm = gather_inbox(msg, idx[:, t], mask[:, t])
        q, _, msg = net(obs[:, t], None, None, mi, mm)
        qs.append(q)
    torch.testing.assert_close(net.unroll(obs, None, idx, mask), torch.stack(qs, 1), rtol=1e-5, atol=1e-6)


CONFIGS = [(None, "q", False), ("mean", "q", True), ("knn", "logits", False), ("attention", "q", False), (None, "action", False),
           ("attention", "action", False)]


@pytest.mark.parametrize("comm,head,last_action", CONFIGS, ids=[f"{c or 'silent'}-{h}" for c, h, _ in CONFIGS])
def test_feedforward_graph_has_no_hidden_state(comm, head, last_action):
    torch.manual_seed(5)
    n = 3
    cfg = CommConfig(comm=comm, msg_dim=4, top_k=1) if comm else None
    net = RNNAgent(6, 4, n, hidden_dim=16, comm=cfg, k_max=2 if comm else 0, head=head, last_action=last_action, recurrent=False).eval()
    pol = net.agent_policy(1).eval()
    ins, outs = io_specs(pol, 6, 4, 16)
    names_in, names_out = [x["name"] for x in ins], [x["name"] for x in outs]
    assert "hidden" not in names_in and "hidden_out" not in names_out
    want_in = ["obs"] + (["avail_actions"] if head != "action" else []) + (["msg_in", "msg_mask"] if comm else []) + (
        ["prev_action"] if last_action else [])
    assert names_in == want_in
    assert names_out == ["action"] + (["msg_out"] if comm else []) + ([head] if head != "action" else [])
    model = export_policy(pol, ins, outs)
    assert parameter_count(model) == sum(p.numel() for p in net.cores[0].parameters()) + n
    # the per-agent graph is the team forward's row for that agent, and ORT (through the wrapper) agrees
    args = example_inputs(ins, batch=3, seed=1)
    with torch.no_grad():
        out_t = pol(*args)
    ort = OrtPolicy(model, ins, outs, batch=3)
    assert not ort.recurrent and ort.hidden is None
    ort.reset()  # nothing to reset; must not fail
    kw = {x["name"]: a.numpy() for x, a in zip(ins, args)}
    a, m, q = ort.act(kw["obs"], kw.get("avail_actions"), kw.get("msg_in"), kw.get("msg_mask"), kw.get("prev_action"))
    if head == "action":
        np.testing.assert_allclose(a, out_t[0].numpy(), atol=1e-5)
    else:
        assert (a == out_t[0].numpy()).all()
        np.testing.assert_allclose(q, out_t[-1].numpy(), atol=1e-5)
    if comm:
        np.testing.assert_allclose(m, out_t[1].numpy(), atol=1e-5)


def test_recurrent_key_is_shared_by_every_learner_and_defaults_to_true():
    from marl_edge.train.registry import get_algo

    for name in algo_names():
        cls = get_algo(name).config_cls
        assert cls().recurrent is True, name
    run = RunConfig(env="scout", algo="mappo", steps=100, seed=0, eval_episodes=0, n_envs=2)
    rs = make_run_spec(run, {"recurrent": "false"})
    assert rs.algo_cfg.recurrent is False
    learner = build_learner("mappo", rs.env_spec, rs.algo_cfg, n_envs=2, seed=0, total_steps=100)
    assert learner.acting_network().recurrent is False


def test_manifest_recurrent_flag_must_match_the_graph_inputs(tmp_path):
    spec = {"name": "scout", "n_agents": 1, "obs_dim": 3, "state_dim": 3, "episode_limit": 10, "n_actions": 2, "action_dim": None,
            "action_low": -1.0, "action_high": 1.0, "has_positions": False, "pos_dim": 2, "shared_reward": True, "noop_action": 0, "options": {}}
    io = lambda name, *shape, dtype="float32": {"name": name, "shape": [None, *shape], "dtype": dtype}  # noqa: E731
    m = {"format": "marl-edge-bundle", "format_version": 1, "created": "2026-12-03T10:00:00+0000", "marl_edge_version": "0", "versions": {},
         "env": {"name": "scout", "options": {}}, "env_spec": spec, "algo": "qmix", "comm": "none", "topology": None, "msg_dim": 0, "k_max": 0,
         "recurrent": False, "hidden_dim": 8, "opset": 17, "quantize": "none",
         "inputs": [io("obs", 3), io("avail_actions", 2, dtype="bool"), io("hidden", 8)],
         "outputs": [io("action", dtype="int64"), io("hidden_out", 8), io("q", 2)], "parameters_per_agent": 10,
         "agents": [{"id": 0, "dir": "agent_0", "files": {"policy.onnx": "0" * 64, "agent.json": "1" * 64}}],
         "source": {"run_dir": "/r", "checkpoint_step": 0, "seed": 0, "git": {}}}
    with pytest.raises(BundleError, match="recurrent"):
        Manifest.parse(m, tmp_path / "swarm.json")
    m["recurrent"] = True
    Manifest.parse(m, tmp_path / "swarm.json")


# ---- round trips ------------------------------------------------------------------------------

CASES = [
    ("qmix", "scout", {}, {}),
    ("qmix", "scout", {}, {"comm": "mean", "topology": "knn:2", "msg_dim": "4"}),
    ("mappo", "scout", {}, {}),
    ("maddpg", "spread", {"continuous": True}, {}),
]


@pytest.mark.parametrize("algo,env,env_options,sets", CASES,
                         ids=[f"{a}-{e}{'-box' if o else ''}-{s.get('comm', 'silent')}" for a, e, o, s in CASES])
def test_feedforward_train_export_swarm_round_trip(algo, env, env_options, sets, tmp_path):
    run = RunConfig(env=env, algo=algo, steps=800, seed=2, eval_episodes=0, n_envs=4, env_options=env_options, save_buffer=False)
    rs = make_run_spec(run, {"recurrent": "false", **sets})
    d = create_run_dir(rs, tmp_path / "run")
    train(d)
    net, rs2, _ = load_policy_net(d)
    assert not net.recurrent and json.loads((d / "config.json").read_text())["algo"]["recurrent"] is False
    # it trained: the checkpoint's actor is not the seed's initial one
    fresh = build_learner(algo, rs2.env_spec, rs2.algo_cfg, n_envs=1, seed=rs2.run.seed, total_steps=rs2.total_steps,
                          topology=rs2.topology()).acting_network()
    assert any(not torch.equal(a, b) for a, b in zip(net.state_dict().values(), fresh.state_dict().values()))

    res = export_run(d, tmp_path / "bundle")
    par = res["parity"]
    assert par["action_agreement"] == 1.0 and max(par["max_abs_diff"].values()) <= 1e-5
    assert "hidden_out" not in par["max_abs_diff"] and res["reference_max_abs_diff"] <= 1e-5
    b = load_bundle(tmp_path / "bundle")
    assert b.manifest.recurrent is False and not b.recurrent
    assert "hidden" not in [x.name for x in b.inputs] and "hidden_out" not in [x.name for x in b.outputs]
    import onnx

    for i in range(b.n_agents):
        g = onnx.load(str(b.agent(i).policy_path)).graph
        assert "hidden" not in [v.name for v in g.input] and "hidden_out" not in [v.name for v in g.output]
        assert json.loads((b.agent(i).dir / "agent.json").read_text())["recurrent"] is False
    # the actor and nothing else
    own = sum(p.numel() for p in net.cores[0].parameters()) + (b.n_agents if net.agent_id else 0)
    assert all(parameter_count(b.agent(i).policy_path) == own for i in range(b.n_agents))

    ev = evaluate_bundle(tmp_path / "bundle", episodes=8, seed=4)
    tch = evaluate_run(d, episodes=8, seed=4)
    if env_options.get("continuous"):
        np.testing.assert_allclose(ev["returns"], tch["returns"], rtol=1e-4, atol=1e-3)  # float actions sum tiny differences
    else:
        assert ev["returns"] == tch["returns"]
    sw = run_swarm(tmp_path / "bundle", SwarmOptions(episodes=8, seed=4))
    assert sw["returns"] == ev["returns"]
    assert sw["invalid_frames"] == 0 and sw["dropped"] == 0 and sw["noop_actions"] == 0
