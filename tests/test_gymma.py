"""The field's benchmarks by name: gymnasium multi-agent envs (LBF, RWARE) as marl-edge envs."""

from __future__ import annotations

import numpy as np
import pytest

pytest.importorskip("gymnasium")
pytest.importorskip("lbforaging")
pytest.importorskip("rware")

from marl_edge.envs import EnvError, make  # noqa: E402

LBF = "gym:lbforaging:Foraging-5x5-2p-1f-coop-v3"
RWARE = "gym:rware:rware-tiny-2ag-v2"


@pytest.mark.parametrize("name,n,obs_dim,n_actions,limit", [
    (LBF, 2, 9, 6, 50),
    ("gym:lbforaging:Foraging-8x8-3p-2f-v3", 3, 15, 6, 50),
    (RWARE, 2, 71, 5, 500),
])
def test_spec_comes_from_the_env(name, n, obs_dim, n_actions, limit):
    env = make(name, n_envs=2)
    s = env.spec
    assert (s.n_agents, s.obs_dim, s.n_actions, s.episode_limit) == (n, obs_dim, n_actions, limit)
    assert s.state_dim == n * obs_dim and not s.shared_reward and s.has_positions
    ts = env.reset(0)
    assert ts.obs.shape == (2, n, obs_dim) and ts.positions.shape == (2, n, 2) and ts.avail_actions.all()
    env.close()


def _play(name: str, seeds: np.ndarray, steps: int, n_envs: int) -> tuple[np.ndarray, np.ndarray]:
    """Random play (actions drawn from a generator seeded per slot); obs and rewards of slot 0.. per step."""
    env = make(name, n_envs=n_envs)
    ts = env.reset(seeds)
    rngs = [np.random.default_rng(int(s)) for s in seeds]
    obs, rew = [ts.obs.copy()], []
    for _ in range(steps):
        a = np.stack([r.integers(0, env.spec.n_actions, size=env.spec.n_agents) for r in rngs])
        ts = env.step(a)
        obs.append(ts.obs.copy())
        rew.append(ts.reward.copy())
    env.close()
    return np.stack(obs, 1), np.stack(rew, 1)


@pytest.mark.parametrize("name", [LBF, RWARE])
def test_slot_plays_what_a_batch_1_env_plays_with_its_seed(name):
    seeds = np.array([11, 22, 33])
    obs3, rew3 = _play(name, seeds, 40, 3)
    for b, s in enumerate(seeds):
        obs1, rew1 = _play(name, np.array([s]), 40, 1)
        np.testing.assert_array_equal(obs3[b], obs1[0])
        np.testing.assert_array_equal(rew3[b], rew1[0])


@pytest.mark.parametrize("time_limit", ["terminal", "bootstrap"])
def test_the_env_time_limit_ends_episodes_as_configured(time_limit):
    """LBF's own time limit (50): terminal by default (no bootstrap, as EPyMARL reads it: the task
    scores 50 steps and the agents do not see the clock); with time_limit=bootstrap a truncation,
    unless the food was eaten on that step. Food eaten earlier is always a termination."""
    env = make(LBF, n_envs=64, **({} if time_limit == "terminal" else {"time_limit": time_limit}))
    ts = env.reset(0)
    rng = np.random.default_rng(0)
    ret = np.zeros(64)
    for _ in range(50):
        ts = env.step(np.where(rng.random((64, 2)) < 0.5, 5, rng.integers(0, 5, size=(64, 2))))
        ret += ts.reward.sum(1)
    assert ts.done.all()
    ate = ret > 0
    assert ate.any() and (~ate).any()
    assert (ts.t[~ate] == 50).all() and (ts.t[ate] < 50).all()  # nobody ate on the last step with this seed
    if time_limit == "terminal":
        assert ts.terminated.all() and "time_limit" not in env.spec.options
    else:
        np.testing.assert_array_equal(ts.terminated, ate)  # the limit is a truncation: learners bootstrap
        assert env.spec.options["time_limit"] == "bootstrap"
    env.close()


def test_names_and_options_give_clear_errors():
    with pytest.raises(EnvError, match="gym:MODULE:ENV_ID"):
        make("gym:")
    with pytest.raises(EnvError, match="install|cannot import"):
        make("gym:no_such_pkg_xyz:Thing-v0")
    with pytest.raises(EnvError, match="gymnasium cannot make"):
        make("gym:lbforaging:Foraging-NotAThing-v9")
    with pytest.raises(EnvError, match="above the env's own limit"):
        make(LBF, episode_limit=80)
    assert make(LBF, episode_limit=20).spec.episode_limit == 20  # a shorter limit is fine
    with pytest.raises(EnvError, match="time_limit must be one of terminal, bootstrap"):
        make(LBF, time_limit="sometimes")


def test_train_export_and_evaluate_by_name(tmp_path):
    """A gym: env trains, exports (bundle) and evaluates with ORT to the same returns; a knn topology uses its positions."""
    from marl_edge.export.bundle import export_run
    from marl_edge.runtime.swarm import SwarmOptions, run_swarm
    from marl_edge.runtime.team import evaluate_bundle
    from marl_edge.train.config import RunConfig
    from marl_edge.train.evaluation import evaluate_run
    from marl_edge.train.loop import train
    from marl_edge.train.rundir import create_run_dir, make_run_spec

    run = RunConfig(env="gym:lbforaging:Foraging-5x5-3p-1f-coop-v3", algo="qmix", steps=600, seed=0, eval_episodes=0,
                    n_envs=4, save_buffer=False)
    d = create_run_dir(make_run_spec(run, {"comm": "mean", "topology": "knn:1", "msg_dim": "4"}), tmp_path / "run")
    train(d)
    res = export_run(d, tmp_path / "bundle")
    assert res["parity"]["action_agreement"] == 1.0
    ev = evaluate_bundle(tmp_path / "bundle", episodes=6, seed=3)
    assert ev["returns"] == evaluate_run(d, episodes=6, seed=3)["returns"]
    sw = run_swarm(tmp_path / "bundle", SwarmOptions(episodes=6, seed=3))
    assert sw["returns"] == ev["returns"] and sw["invalid_frames"] == 0 and sw["noop_actions"] == 0


def test_team_reward_is_the_sum_for_adapted_envs_and_can_be_the_mean():
    """The field reports LBF/RWARE returns summed over agents; built-in envs keep the mean;
    an explicit choice is recorded with the options, so a rebuilt env (eval, bundles) matches."""
    from marl_edge.envs.rollout import evaluate

    class Random:  # a team policy: load (5) half the time, else a random move
        rng = np.random.default_rng(0)

        def reset(self, mask):
            pass

        def act(self, ts):
            shape = ts.avail_actions.shape[:2]
            return np.where(self.rng.random(shape) < 0.5, 5, self.rng.integers(0, 5, size=shape))

    def returns(how):
        env = make(LBF, n_envs=16, **({} if how is None else {"reward_scalarisation": how}))
        Random.rng = np.random.default_rng(0)
        out = np.array([e.ret for e in evaluate(env, Random(), np.arange(96))])
        return env.spec, out

    spec, summed = returns(None)
    assert spec.reward_scalarisation == "sum" and "reward_scalarisation" not in spec.options
    spec_mean, meaned = returns("mean")
    assert spec_mean.options["reward_scalarisation"] == "mean"
    assert summed.max() > 0.0  # random play eats the food sometimes
    np.testing.assert_allclose(summed, 2 * meaned, rtol=1e-6)
    mean = make(LBF, reward_scalarisation="mean")
    assert mean.spec.reward_scalarisation == "mean" and mean.spec.options["reward_scalarisation"] == "mean"
    assert make("rendezvous").spec.reward_scalarisation == "mean"
    with pytest.raises(EnvError, match="reward_scalarisation must be one of sum, mean"):
        make(LBF, reward_scalarisation="max")
