"""Every registered learner, the whole path: train -> export -> in-process
bundle evaluation -> lock-step swarm of processes.

Parametrised over the algorithm registry (a new learner is covered the day
it is registered). For each: a communicating recurrent team on ``scout``
(continuous ``spread`` for MADDPG's box actor as well), exported; the bundle
holds only the actor (its parameter count is the acting network's, so no
mixer, critic or target network is inside), ORT matches torch, the bundle's
returns equal the run's, and the swarm's returns equal the bundle's."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from marl_edge.export.bundle import export_run
from marl_edge.export.graph import parameter_count
from marl_edge.runtime.bundle import load_bundle
from marl_edge.runtime.swarm import SwarmOptions, run_swarm
from marl_edge.runtime.team import evaluate_bundle
from marl_edge.train.config import RunConfig
from marl_edge.train.registry import algo_names
from marl_edge.train.rundir import create_run_dir, make_run_spec
from marl_edge.train.loop import train
from marl_edge.train.evaluation import evaluate_run, load_policy_net

CASES = [(a, "scout", {}) for a in algo_names()] + [("maddpg", "spread", {"continuous": True})]


@pytest.mark.parametrize("algo,env,env_options", CASES, ids=[f"{a}-{e}{'-box' if o else ''}" for a, e, o in CASES])
def test_train_export_swarm_round_trip(algo, env, env_options, tmp_path):
    run = RunConfig(env=env, algo=algo, steps=800, seed=2, eval_episodes=0, n_envs=4, env_options=env_options, save_buffer=False)
    d = create_run_dir(make_run_spec(run, {"comm": "attention", "topology": "knn:2", "msg_dim": "4"}), tmp_path / "run")
    train(d)
    res = export_run(d, tmp_path / "bundle")
    par = res["parity"]
    assert par["action_agreement"] == 1.0 and max(par["max_abs_diff"].values()) <= 1e-5
    b = load_bundle(tmp_path / "bundle")
    assert b.manifest.algo == algo
    # the actor and nothing else: each file's parameters are the acting network's (+ the folded agent-id one-hot)
    net, _, _ = load_policy_net(d)
    core = net.cores[0]
    own = sum(p.numel() for p in core.parameters()) + (b.n_agents if net.agent_id else 0)
    assert all(parameter_count(b.agent(i).policy_path) == own for i in range(b.n_agents))
    files = sorted(p.name for p in Path(tmp_path / "bundle").rglob("*") if p.is_file())
    assert files == sorted(["swarm.json"] + ["policy.onnx", "agent.json"] * b.n_agents)
    ev = evaluate_bundle(tmp_path / "bundle", episodes=8, seed=4)
    tch = evaluate_run(d, episodes=8, seed=4)
    if env_options.get("continuous"):
        np.testing.assert_allclose(ev["returns"], tch["returns"], rtol=1e-4, atol=1e-3)  # float actions sum tiny differences
    else:
        assert ev["returns"] == tch["returns"]
    sw = run_swarm(tmp_path / "bundle", SwarmOptions(episodes=8, seed=4))
    assert sw["returns"] == ev["returns"]
    assert sw["invalid_frames"] == 0 and sw["dropped"] == 0 and sw["noop_actions"] == 0
