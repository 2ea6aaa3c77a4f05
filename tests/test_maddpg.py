"""MADDPG pieces, per-agent critics on a mixed-motive game, and its actor's export."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from marl_edge.envs import make
from marl_edge.train.maddpg import MADDPGConfig, MADDPGLearner, gumbel_softmax_hard, soft_update


def test_soft_update_moves_targets_by_tau():
    src, tgt = torch.nn.Linear(3, 2), torch.nn.Linear(3, 2)
    before = [p.detach().clone() for p in tgt.parameters()]
    soft_update(tgt, src, 0.25)
    for b, s, t in zip(before, src.parameters(), tgt.parameters()):
        torch.testing.assert_close(t, 0.75 * b + 0.25 * s)
    soft_update(tgt, src, 1.0)
    for s, t in zip(src.parameters(), tgt.parameters()):
        torch.testing.assert_close(t, s)


def test_gumbel_softmax_is_one_hot_forward_with_gradient_and_respects_availability():
    logits = torch.tensor([[0.0, 3.0, 1.0]], requires_grad=True)
    avail = torch.tensor([[True, False, True]])
    rng = np.random.default_rng(0)
    picks = []
    for _ in range(400):
        y = gumbel_softmax_hard(logits, avail, 1.0, rng)
        assert torch.equal(y.detach().sum(-1), torch.ones(1)) and set(y.detach().flatten().tolist()) <= {0.0, 1.0}
        picks.append(int(y.argmax()))
    assert 1 not in picks and 0 < picks.count(2) < 400
    y = gumbel_softmax_hard(logits, avail, 1.0, rng)
    (y * torch.tensor([[1.0, 2.0, 3.0]])).sum().backward()
    assert logits.grad is not None and logits.grad.abs().sum() > 0


def test_continuous_actions_stay_in_the_box_and_noise_anneals():
    env = make("spread", n_envs=2, continuous=True)
    learner = MADDPGLearner(env.spec, MADDPGConfig(), n_envs=2, seed=0, total_steps=1000)
    assert learner.noise(0) == pytest.approx(0.3) and learner.noise(10_000) == pytest.approx(0.05)
    pol = learner.behaviour_policy(0)
    pol.reset(np.ones(2, bool))
    a = pol.act(env.reset(0))
    assert a.shape == (2, 3, 2) and a.dtype == np.float32 and np.abs(a).max() <= 1.0


def test_per_agent_critics_learn_the_dilemmas_selfish_equilibrium(cli, tmp_path):
    """Each critic trains on its own agent's payoff, so both defect (1 per round each),
    where a team-reward learner (QMIX on the mean) cooperates (3 per round)."""
    p = cli("train", "--env", "dilemma", "--algo", "maddpg", "--steps", "6000", "--out", str(tmp_path / "m"), "--json", "--quiet",
            "--eval-episodes", "8", check=True, timeout=300)
    s = json.loads(p.stdout.strip().splitlines()[-1])
    assert s["eval_return"] == pytest.approx(10.0), s  # 10 rounds of mutual defection
    cfg = json.loads((tmp_path / "m" / "config.json").read_text())
    assert cfg["env_spec"]["shared_reward"] is False


def test_discrete_maddpg_actor_exports_and_runs_as_a_swarm(cli, tmp_path):
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    cli("train", "--env", "scout", "--algo", "maddpg", "--steps", "1500", "--set", "comm=mean", "--out", str(run), "--eval-episodes", "4",
        "--quiet", check=True, timeout=300)
    res = json.loads(cli("export", str(run), "--out", str(bundle), "--json", check=True).stdout.strip().splitlines()[-1])
    assert res["parity"]["action_agreement"] == 1.0
    ev = json.loads(cli("evaluate", str(bundle), "--episodes", "6", "--json", check=True).stdout.strip().splitlines()[-1])
    sw = json.loads(cli("swarm", str(bundle), "--episodes", "6", "--json", "--quiet", check=True).stdout.strip().splitlines()[-1])
    assert sw["returns"] == ev["returns"]


@pytest.mark.parametrize("comm", ["none", "attention"])
def test_continuous_actor_exports_as_a_float_vector_and_the_swarm_reproduces_it(comm, tmp_path):
    """Continuous spread: the graph outputs action [b, 2] (no availability input, no
    critic inside); ORT == torch to 1e-5; the swarm replays the bundle's returns."""
    from marl_edge.export.bundle import export_run
    from marl_edge.runtime.bundle import load_bundle
    from marl_edge.runtime.swarm import SwarmOptions, run_swarm
    from marl_edge.runtime.team import evaluate_bundle
    from marl_edge.train.config import RunConfig
    from marl_edge.train.rundir import create_run_dir, make_run_spec
    from marl_edge.train.loop import train
    from marl_edge.train.evaluation import evaluate_run

    sets = {} if comm == "none" else {"comm": comm, "topology": "knn:2"}
    run = RunConfig(env="spread", algo="maddpg", steps=1200, seed=0, eval_episodes=0, n_envs=4, env_options={"continuous": True})
    d = create_run_dir(make_run_spec(run, sets), tmp_path / "run")
    train(d)
    res = export_run(d, tmp_path / "b")
    assert res["parity"]["max_abs_diff"]["action"] <= 1e-5 and res["parity"]["action_agreement"] == 1.0
    b = load_bundle(tmp_path / "b")
    assert [x.name for x in b.inputs][:2] == ["obs", "hidden"] and "avail_actions" not in [x.name for x in b.inputs]
    assert b.outputs[0].to_dict() == {"name": "action", "shape": [None, 2], "dtype": "float32"}
    ev = evaluate_bundle(tmp_path / "b", episodes=6, seed=2)
    tch = evaluate_run(d, episodes=6, seed=2)
    np.testing.assert_allclose(ev["returns"], tch["returns"], rtol=1e-4, atol=1e-3)  # float actions: the env sums tiny differences
    sw = run_swarm(tmp_path / "b", SwarmOptions(episodes=6, seed=2))
    assert sw["returns"] == ev["returns"] and sw["invalid_frames"] == 0
