"""Reward standardisation (``standardise_rewards``), shared by every learner."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marl_edge.envs import make
from marl_edge.train.registry import algo_names, get_algo, build_learner
from marl_edge.train.config import apply_overrides
from marl_edge.train.rewards import RunningMeanStd


def test_running_mean_std_equals_the_statistics_of_everything_seen():
    rng = np.random.default_rng(0)
    rms = RunningMeanStd(count=0.0)
    seen = []
    for k in (5, 1, 300, 17, 2):
        x = rng.normal(3.0, 2.0, size=k)
        seen.append(x)
        rms.update(x)
    allx = np.concatenate(seen)
    assert rms.mean == pytest.approx(allx.mean(), rel=1e-12)
    assert rms.var == pytest.approx(allx.var(), rel=1e-12)
    z = rms.normalise(allx)
    assert z.mean() == pytest.approx(0.0, abs=1e-9) and z.std() == pytest.approx(1.0, rel=1e-6)


@pytest.mark.parametrize("algo", algo_names())
def test_every_learner_standardises_filled_steps_and_checkpoints_the_statistics(algo):
    env = make("spread" if algo == "maddpg" else "two_step", n_envs=2)
    spec = env.spec
    cfg = apply_overrides(get_algo(algo).config_cls(), {"standardise_rewards": "true"}, algo)
    learner = build_learner(algo, spec, cfg, n_envs=2, seed=0, total_steps=1000)
    B, T, n = 3, 4, spec.n_agents
    reward = np.zeros((B, T, n), np.float32)
    reward[0, :2] = 8.0
    reward[1, :3] = 2.0
    filled = np.zeros((B, T), bool)
    filled[0, :2] = filled[1, :3] = filled[2, :1] = True
    r = learner.learning_rewards({"reward": reward, "filled": filled}).numpy()
    vals = reward[filled]  # padding (zeros after the end) is not a reward
    want = (reward - vals.mean()) / vals.std()
    np.testing.assert_allclose(r[filled], want[filled], rtol=1e-3)
    # the statistics survive a checkpoint (JSON) round trip: resume stays exact
    other = build_learner(algo, spec, cfg, n_envs=2, seed=0, total_steps=1000)
    other.load_counters(json.loads(json.dumps(learner.counters())))
    np.testing.assert_array_equal(other.learning_rewards({"reward": reward, "filled": filled}).numpy(),
                                  learner.learning_rewards({"reward": reward, "filled": filled}).numpy())
    # off by default: the env's reward as it is
    plain = build_learner(algo, spec, get_algo(algo).config_cls(), n_envs=2, seed=0, total_steps=1000)
    np.testing.assert_array_equal(plain.learning_rewards({"reward": reward, "filled": filled}).numpy(), reward)
    assert "reward_stats" not in plain.counters()


@pytest.mark.parametrize("how", ["sum", "mean"])
def test_team_learners_scalarise_then_standardise(how):
    """VDN/QMIX learn from the env's team reward (sum or mean over agents, as the spec says);
    standardisation applies to that team reward, as EPyMARL does with common rewards."""
    spec = make("two_step", reward_scalarisation=how).spec
    reward = np.zeros((2, 3, spec.n_agents), np.float32)
    reward[0, 0] = [1.0, 3.0]
    reward[1, 1] = [2.0, 0.0]
    filled = np.ones((2, 3), bool)
    team = reward.sum(-1) if how == "sum" else reward.mean(-1)
    plain = build_learner("vdn", spec, get_algo("vdn").config_cls(), n_envs=2, seed=0, total_steps=1000)
    np.testing.assert_array_equal(plain.learning_rewards({"reward": reward, "filled": filled}, team=True).numpy(), team)
    cfg = apply_overrides(get_algo("vdn").config_cls(), {"standardise_rewards": "true"}, "vdn")
    std = build_learner("vdn", spec, cfg, n_envs=2, seed=0, total_steps=1000)
    got = std.learning_rewards({"reward": reward, "filled": filled}, team=True).numpy()
    np.testing.assert_allclose(got, (team - team.mean()) / team.std(), rtol=1e-3)  # the prior weighs 1e-4
