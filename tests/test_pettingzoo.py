"""PettingZoo adapters: built-in envs as ParallelEnvs, PettingZoo envs as batched envs."""

from __future__ import annotations

import functools
import itertools
import warnings

import numpy as np
import pytest

pettingzoo = pytest.importorskip("pettingzoo")
gymnasium = pytest.importorskip("gymnasium")

with warnings.catch_warnings():  # pettingzoo.test imports its classic envs, which warn about their old API
    warnings.simplefilter("ignore", DeprecationWarning)
    from pettingzoo.test import parallel_api_test, parallel_seed_test  # noqa: E402
from pettingzoo.utils.env import ParallelEnv  # noqa: E402

from marl_edge.envs import EnvError, env_names, make  # noqa: E402
from marl_edge.envs.pettingzoo import from_pettingzoo, to_pettingzoo  # noqa: E402

BUILTINS = [(name, {}) for name in env_names()] + [("spread", {"continuous": True}), ("matrix", {"payoff": [[1, 2, 3], [4, 5, 6]]})]
IDS = [f"{n}{'-' + '-'.join(o) if o else ''}" for n, o in BUILTINS]


# ---------------------------------------------------------------------------
# to_pettingzoo
# ---------------------------------------------------------------------------
@pytest.mark.parametrize("name,opts", BUILTINS, ids=IDS)
def test_parallel_api_test_passes(name, opts):
    env = to_pettingzoo(name, **opts)
    assert isinstance(env, ParallelEnv)
    parallel_api_test(env, num_cycles=60)
    parallel_seed_test(functools.partial(to_pettingzoo, name, **opts), num_cycles=30)


@pytest.mark.parametrize("name,opts", BUILTINS, ids=IDS)
def test_wrapper_plays_the_same_episode_as_the_env(name, opts):
    pz = to_pettingzoo(name, **opts)
    native = make(name, n_envs=1, **opts)
    obs, infos = pz.reset(seed=123)
    ts = native.reset([123])
    agents = pz.possible_agents
    assert agents == [f"agent_{i}" for i in range(native.spec.n_agents)] and pz.agents == agents
    np.testing.assert_array_equal(pz.state(), ts.state[0])
    for i, a in enumerate(agents):
        np.testing.assert_array_equal(obs[a], ts.obs[0, i])
        assert pz.observation_space(a).contains(obs[a])
        if native.spec.discrete:
            mask = infos[a]["action_mask"]
            assert mask.dtype == np.int8
            np.testing.assert_array_equal(mask, ts.avail_actions[0, i])
    rng = np.random.default_rng(0)
    steps = 0
    while pz.agents:
        if native.spec.discrete:
            acts = np.array([[rng.choice(np.flatnonzero(ts.avail_actions[0, i])) for i in range(len(agents))]])
        else:
            acts = rng.uniform(-1, 1, size=(1, len(agents), native.spec.action_dim)).astype(np.float32)
        obs, rew, term, trunc, infos = pz.step({a: acts[0, i] for i, a in enumerate(agents)})
        ts = native.step(acts)
        steps += 1
        for i, a in enumerate(agents):
            np.testing.assert_array_equal(obs[a], ts.obs[0, i])
            assert rew[a] == ts.reward[0, i]
            assert term[a] == ts.terminated[0] and trunc[a] == (ts.done[0] and not ts.terminated[0])
        np.testing.assert_array_equal(pz.state(), ts.state[0])
    assert ts.done[0] and steps == ts.t[0]


def test_unavailable_action_is_replaced_by_noop():
    pz = to_pettingzoo("matrix", payoff=[[1, 2, 3], [4, 5, 6]])  # agent 0 has only actions 0, 1
    pz.reset(seed=0)
    _, rew, _, _, infos = pz.step({"agent_0": 2, "agent_1": 2})
    assert rew["agent_0"] == 3  # played (0, 2)
    assert infos["agent_0"].get("replaced_action") and "replaced_action" not in infos["agent_1"]


def test_reset_without_seed_follows_the_last_seed():
    a, b = to_pettingzoo("spread"), to_pettingzoo("spread")
    a.reset(seed=5)
    b.reset(seed=5)
    oa, _ = a.reset()
    ob, _ = b.reset()
    np.testing.assert_array_equal(oa["agent_0"], ob["agent_0"])
    first, _ = a.reset(seed=5)
    assert not np.array_equal(first["agent_0"], oa["agent_0"])


def test_to_pettingzoo_rejects_batches_and_renders_text():
    with pytest.raises(EnvError, match="batch-1"):
        to_pettingzoo(make("spread", n_envs=2))
    pz = to_pettingzoo(make("rendezvous", n_envs=1), render_mode="ansi")
    pz.reset(seed=0)
    text = pz.render()
    assert "rendezvous t=0" in text and "positions" in text
    pz.close()


# ---------------------------------------------------------------------------
# round trip: built-in -> PettingZoo -> batched
# ---------------------------------------------------------------------------
def test_round_trip_two_step_payoffs():
    env = from_pettingzoo(lambda: to_pettingzoo("two_step"), n_envs=8)
    assert (env.spec.n_agents, env.spec.obs_dim, env.spec.state_dim, env.spec.n_actions, env.spec.episode_limit) == (2, 3, 3, 2, 2)
    env.reset(0)
    ts = env.step(np.array([[0, 0]] * 4 + [[1, 0]] * 4))
    assert (ts.reward == 0).all() and not ts.done.any()
    joint = list(itertools.product([0, 1], repeat=2))
    ts = env.step(np.array(joint * 2))
    np.testing.assert_array_equal(ts.reward[:, 0], [7, 7, 7, 7, 0, 1, 1, 8])
    np.testing.assert_array_equal(ts.reward[:, 1], ts.reward[:, 0])
    assert ts.done.all() and ts.terminated.all()


def test_round_trip_rendezvous_matches_native_batch():
    B = 4
    wrapped = from_pettingzoo(lambda **kw: to_pettingzoo("rendezvous", **kw), n_envs=B, episode_limit=25, grid=5)
    native = make("rendezvous", n_envs=B, grid=5)
    rng = np.random.default_rng(0)
    tw, tn = wrapped.reset(3), native.reset(3)
    for _ in range(30):
        np.testing.assert_array_equal(tw.obs, tn.obs)
        np.testing.assert_array_equal(tw.state, tn.state)
        np.testing.assert_array_equal(tw.reward, tn.reward)
        np.testing.assert_array_equal(tw.done, tn.done)
        np.testing.assert_array_equal(tw.terminated, tn.terminated)
        if tn.done.any():
            seeds = rng.integers(0, 1000, size=B)
            tw, tn = wrapped.reset(seeds, mask=tn.done), native.reset(seeds, mask=tn.done)
        a = rng.integers(0, 5, size=(B, 4))
        tw, tn = wrapped.step(a), native.step(a)


# ---------------------------------------------------------------------------
# from_pettingzoo on a hand-made env whose agents leave at different times
# ---------------------------------------------------------------------------
class Relay(ParallelEnv):
    """agent_1 terminates after 2 steps, agent_0 after ``last`` steps (truncated if ``truncate``).

    Observations are [t, agent index]; agent_0 may only use actions 0 and 2 of Discrete(3);
    agent_1 has Discrete(2). Reward = action + 10 * t.
    """

    metadata = {"name": "relay"}

    def __init__(self, last: int = 4, truncate: bool = False):
        self.possible_agents = ["agent_0", "agent_1"]
        self.last, self.truncate = last, truncate
        self._obs_spaces = {a: gymnasium.spaces.Box(-np.inf, np.inf, (2,), np.float32) for a in self.possible_agents}
        self._act_spaces = {"agent_0": gymnasium.spaces.Discrete(3), "agent_1": gymnasium.spaces.Discrete(2)}

    def observation_space(self, agent):
        return self._obs_spaces[agent]

    def action_space(self, agent):
        return self._act_spaces[agent]

    def _obs(self):
        return {a: np.array([self.t, i], np.float32) for i, a in enumerate(self.possible_agents) if a in self.agents}

    def _infos(self):
        return {"agent_0": {"action_mask": np.array([1, 0, 1], np.int8)}, "agent_1": {}}

    def reset(self, seed=None, options=None):
        self.t = 0
        self.agents = list(self.possible_agents)
        return self._obs(), self._infos()

    def step(self, actions):
        assert set(actions) == set(self.agents), (actions, self.agents)
        self.t += 1
        rew = {a: float(actions[a] + 10 * self.t) for a in self.agents}
        term = {a: False for a in self.agents}
        trunc = {a: False for a in self.agents}
        if self.t == 2:
            term["agent_1"] = True
        if self.t == self.last:
            (trunc if self.truncate else term)["agent_0"] = True
        obs, infos = self._obs(), {a: self._infos()[a] for a in self.agents}
        self.agents = [a for a in self.agents if not (term[a] or trunc[a])]
        return obs, rew, term, trunc, infos


@pytest.mark.parametrize("truncate", [False, True])
def test_agents_leaving_mid_episode(truncate):
    env = from_pettingzoo(Relay, n_envs=2, truncate=truncate)
    spec = env.spec
    assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions, spec.episode_limit) == (2, 2, 4, 3, 100)
    assert spec.name == "relay" and not spec.shared_reward and spec.noop_action == 0
    ts = env.reset(0)
    np.testing.assert_array_equal(ts.avail_actions[0], [[1, 0, 1], [1, 1, 0]])
    np.testing.assert_array_equal(ts.state[0], [0, 0, 0, 1])  # no state(): the observations, concatenated
    with pytest.raises(EnvError, match="unavailable"):
        env.step(np.array([[1, 0], [0, 0]]))
    ts = env.step(np.array([[2, 1], [0, 0]]))
    np.testing.assert_array_equal(ts.reward, [[12, 11], [10, 10]])
    ts = env.step(np.array([[0, 1], [2, 0]]))  # agent_1 leaves: keeps its final obs this step
    np.testing.assert_array_equal(ts.reward, [[20, 21], [22, 20]])
    np.testing.assert_array_equal(ts.obs[0], [[2, 0], [2, 1]])
    np.testing.assert_array_equal(ts.avail_actions[0, 1], [True, False, False])
    assert not ts.done.any()
    ts = env.step(np.array([[0, 0], [0, 0]]))  # then zeros and reward 0
    np.testing.assert_array_equal(ts.obs[0], [[3, 0], [0, 0]])
    np.testing.assert_array_equal(ts.reward[0], [30, 0])
    ts = env.step(np.array([[2, 0], [0, 0]]))
    np.testing.assert_array_equal(ts.reward[0], [42, 0])
    assert ts.done.all()
    assert ts.terminated.all() == (not truncate) and ts.terminated.any() == (not truncate)
    # finished slots are frozen, and a masked reset brings one back
    ts2 = env.step(np.zeros((2, 2), dtype=np.int64))
    assert (ts2.reward == 0).all() and ts2.done.all()
    ts3 = env.reset([5, 6], mask=np.array([False, True]))
    np.testing.assert_array_equal(ts3.obs[1], [[0, 0], [0, 1]])
    assert ts3.done.tolist() == [True, False]


def test_episode_limit_option_truncates():
    env = from_pettingzoo(Relay, n_envs=1, episode_limit=3, last=10)
    env.reset(0)
    for _ in range(3):
        ts = env.step(np.zeros((1, 2), dtype=np.int64))
    assert ts.done[0] and not ts.terminated[0]


def test_unsupported_action_space():
    class Multi(Relay):
        def action_space(self, agent):
            return gymnasium.spaces.MultiDiscrete([2, 2])

    with pytest.raises(EnvError, match="Discrete or Box"):
        from_pettingzoo(Multi)


# ---------------------------------------------------------------------------
# a real PettingZoo env: mpe2 simple_spread
# ---------------------------------------------------------------------------
def test_mpe2_simple_spread_batched():
    simple_spread_v3 = pytest.importorskip("mpe2.simple_spread_v3")
    B = 3
    env = from_pettingzoo(simple_spread_v3.parallel_env, n_envs=B, N=3, max_cycles=10, continuous_actions=False)
    spec = env.spec
    assert (spec.n_agents, spec.obs_dim, spec.state_dim, spec.n_actions, spec.episode_limit) == (3, 18, 54, 5, 10)
    seeds = np.array([10, 11, 12])
    ts = env.reset(seeds)
    # slot b plays copy.reset(seed=seeds[b])
    ref = simple_spread_v3.parallel_env(N=3, max_cycles=10, continuous_actions=False)
    obs, _ = ref.reset(seed=11)
    np.testing.assert_allclose(ts.obs[1], np.stack([obs[a] for a in ref.possible_agents]), rtol=1e-6)
    np.testing.assert_allclose(ts.state[1], ref.state(), rtol=1e-6)
    rng = np.random.default_rng(0)
    for episode in range(2):
        for t in range(10):
            a = rng.integers(0, 5, size=(B, 3))
            ts = env.step(a)
            if episode == 0:
                obs, rew, *_ = ref.step({ag: int(a[1, i]) for i, ag in enumerate(ref.possible_agents)})
                np.testing.assert_allclose(ts.reward[1], [rew[ag] for ag in ref.possible_agents], rtol=1e-5)
            assert ts.obs.shape == (B, 3, 18) and ts.state.shape == (B, 54)
            assert ts.done.all() == (t == 9) and not ts.terminated.any()
            assert np.isfinite(ts.obs).all() and (ts.reward < 0).all()
        ts = env.reset(seeds + 100 * (episode + 1))
        assert not ts.done.any() and (ts.t == 0).all()
    env.close()


def test_mpe2_continuous_and_registry_names():
    pytest.importorskip("mpe2.simple_spread_v3")
    env = make("pz:mpe2.simple_spread_v3", n_envs=2, N=2, max_cycles=5, continuous_actions=True)
    assert env.spec.name == "pz:mpe2.simple_spread_v3"
    assert (env.spec.action_dim, env.spec.action_low, env.spec.action_high, env.spec.n_actions) == (5, 0.0, 1.0, None)
    env.reset(0)
    for _ in range(5):
        ts = env.step(np.random.default_rng(0).uniform(-1, 2, size=(2, 2, 5)))
    assert ts.done.all()
    env = make("pz:mpe2.simple_spread_v3:parallel_env", N=2, episode_limit=7)
    assert env.spec.episode_limit == 7


def test_pz_names_give_clear_errors():
    with pytest.raises(EnvError, match="pip install no_such_pkg_xyz"):
        make("pz:no_such_pkg_xyz.env_v0")
    with pytest.raises(EnvError, match="has no callable 'nope'"):
        make("pz:itertools:nope")
    with pytest.raises(EnvError, match="pz:MODULE"):
        make("pz:")
