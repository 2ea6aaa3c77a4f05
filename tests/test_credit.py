"""Difference rewards by rollback and potential-based shaping (docs/credit.md)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import torch

from marl_edge.envs import EnvError, EnvSpec, MultiAgentEnv, make
from marl_edge.envs.base import scalarise
from marl_edge.envs.credit import CreditSpec, RewardSignals
from marl_edge.envs.rollout import Rollout
from marl_edge.train.config import ConfigError, apply_overrides
from marl_edge.train.registry import build_learner, get_algo


class RandomTeam:
    """Uniform random actions over the available ones (or in the box), from a seeded stream."""

    def __init__(self, spec: EnvSpec, seed: int = 0) -> None:
        self.spec, self.rng = spec, np.random.default_rng(seed)

    def reset(self, mask: np.ndarray) -> None:
        pass

    def act(self, ts) -> np.ndarray:
        if not self.spec.discrete:
            B, n = ts.obs.shape[:2]
            return self.rng.uniform(-1.0, 1.0, (B, n, self.spec.action_dim)).astype(np.float32)
        r = self.rng.random(ts.avail_actions.shape)
        return np.where(ts.avail_actions, r, -1.0).argmax(-1)


class Drift(MultiAgentEnv):
    """A toy env whose step draws from the slot generators (a random drift per agent):
    the counterfactual must replay the very draws the real step made."""

    snapshot_fields = ("x",)

    def __init__(self, n_envs: int = 1, n_agents: int = 3) -> None:
        super().__init__(n_envs)
        self.spec = EnvSpec(name="drift", n_agents=n_agents, obs_dim=1, state_dim=n_agents, episode_limit=6, n_actions=3,
                            options={"n_agents": n_agents})
        self.x = np.zeros((n_envs, n_agents))

    def _reset_slots(self, idx: np.ndarray) -> None:
        for i in idx:
            self.x[i] = self.rng(int(i)).normal(size=self.spec.n_agents)

    def _step(self, actions, active):
        noise = np.stack([self.rng(int(b)).normal(size=self.spec.n_agents) if active[b] else np.zeros(self.spec.n_agents)
                          for b in range(self.n_envs)])
        self.x = np.where(active[:, None], self.x + (actions - 1) + noise, self.x)
        r = -np.abs(self.x).sum(axis=1)
        return np.repeat(r[:, None], self.spec.n_agents, axis=1), np.zeros(self.n_envs, bool)

    def _obs(self):
        return self.x[:, :, None].astype(np.float32)

    def _state(self):
        return self.x.astype(np.float32)


ENVS = [
    ("rendezvous", {}),
    ("warehouse", {}),
    ("warehouse_sparse", {"n_agents": 3}),
    ("spread", {}),
    ("spread", {"continuous": True}),
    ("scout", {}),
    ("two_step", {}),
    ("climbing", {}),
    ("dilemma", {}),
    ("matrix", {"payoff": [[[1, 2], [3, 4]], [[0, 9], [5, 6]]], "episode_limit": 3}),
    ("drift", {}),
]


def _play(env: MultiAgentEnv, credit: CreditSpec | None, count: int, policy=None) -> list:
    """``count`` recorded episodes of ``policy`` (default: a random team), with the credit signals of ``credit``."""
    started = [0]

    def next_seeds(k: int) -> np.ndarray:
        k = min(k, count - started[0])
        started[0] += k
        return np.arange(started[0] - k, started[0])

    ro = Rollout(env, policy or RandomTeam(env.spec, 1), next_seeds, record=True, credit=credit)
    episodes = []
    while ro.active.any():
        episodes.extend(ro.step())
    return sorted(episodes, key=lambda e: e.index)


def _make(name: str, n_envs: int, **options) -> MultiAgentEnv:
    return Drift(n_envs) if name == "drift" else make(name, n_envs=n_envs, **options)


def _random_actions(env: MultiAgentEnv, rng: np.random.Generator) -> np.ndarray:
    spec = env.spec
    if not spec.discrete:
        return rng.uniform(-1.5, 1.5, (env.n_envs, spec.n_agents, spec.action_dim)).astype(np.float32)
    av = env._avail()
    return np.where(av, rng.random(av.shape), -1.0).argmax(-1)


@pytest.mark.parametrize("name,options", ENVS, ids=[f"{n}{'-cont' if o.get('continuous') else ''}" for n, o in ENVS])
def test_batched_counterfactual_equals_a_step_by_step_rollback(name, options):
    """counterfactual_rewards (one step of a B*n env) == deepcopy the env and step it with
    agent i's action swapped, one agent at a time; on random states, some slots finished."""
    B = 5
    env = _make(name, B, **options)
    spec = env.spec
    rng = np.random.default_rng(7)
    env.reset(11)
    checked = 0
    for _ in range(15):
        actions = _random_actions(env, rng)
        default = _random_actions(env, rng)  # any c_i, varying by slot and agent
        want = np.zeros((B, spec.n_agents))
        for i in range(spec.n_agents):
            rolled = copy.deepcopy(env)
            swapped = actions.copy()
            swapped[:, i] = default[:, i]
            want[:, i] = scalarise(rolled.step(swapped).reward, spec.reward_scalarisation, axis=1)
        checked += int((~env._done).sum())
        snap = env.snapshot()
        ts = env.step(actions)
        got = env.counterfactual_rewards(snap, actions, default)
        np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
        if ts.done.all():  # leave some finished slots frozen in the batch, restart when all have ended
            env.reset(rng.integers(0, 10_000, B))
    assert checked > 0


@pytest.mark.parametrize("name", ["rendezvous", "drift"])
def test_restore_puts_back_the_state_and_the_generators(name):
    """Restoring a snapshot and stepping again gives exactly the TimeStep of the first step."""
    env = _make(name, 4)
    env.reset(3)
    rng = np.random.default_rng(0)
    for _ in range(2):
        env.step(_random_actions(env, rng))
    snap = env.snapshot()
    actions = _random_actions(env, rng)
    first = env.step(actions)
    env.step(_random_actions(env, rng))
    env.restore(snap)
    again = env.step(actions)
    for field in ("obs", "state", "reward", "done", "terminated", "t"):
        np.testing.assert_array_equal(getattr(again, field), getattr(first, field))


def test_difference_reward_is_zero_for_an_agent_that_cannot_change_the_reward():
    """A matrix game whose every row is constant: agent 1's action never matters (D_1 = 0),
    agent 0's does. The rollout records it; the episodes' returns stay the env's."""
    payoff = [[1.0, 1.0, 1.0], [5.0, 5.0, 5.0], [0.0, 0.0, 0.0]]
    env = make("matrix", n_envs=4, payoff=payoff, episode_limit=3)
    episodes = _play(env, CreditSpec(difference=True, default_action="noop"), 40)
    assert len(episodes) == 40
    diff = np.stack([e.data["reward_diff"] for e in episodes])  # [E, T, n]
    acts = np.stack([e.data["actions"] for e in episodes])
    reward = np.stack([e.data["reward"] for e in episodes])
    assert np.all(diff[..., 1] == 0.0)
    table = np.asarray(payoff)
    np.testing.assert_allclose(diff[..., 0], table[acts[..., 0], 0] - table[0, 0])  # c_0 = noop = 0
    assert np.abs(diff[..., 0]).max() > 0
    # returns are the env's own: the same with and without credit signals
    np.testing.assert_allclose([e.ret for e in episodes], reward.mean(-1).sum(-1))


def test_unavailable_default_action_gives_zero_difference():
    """Where c_i is masked out for agent i, its counterfactual is its own action: D_i = 0."""
    # agent 1 has 2 actions, agent 0 three; default_action=2 is unavailable to agent 1
    env = make("matrix", n_envs=2, payoff=[[0.0, 4.0], [1.0, 2.0], [3.0, 7.0]])
    sig = RewardSignals(env, CreditSpec(difference=True, default_action="2"))
    ts = env.reset(0)
    pre = sig.before()
    actions = np.array([[0, 1], [1, 0]])
    out = sig.after(pre, actions, ts.avail_actions, env.step(actions))
    np.testing.assert_allclose(out["reward_diff"], [[4.0 - 7.0, 0.0], [1.0 - 3.0, 0.0]])


# ---- shaping ---------------------------------------------------------------------------------
class Chain(MultiAgentEnv):
    """One agent on a chain 0..N-1: action 0 left, 1 right; entering N-1 pays 1 and ends."""

    N = 6
    snapshot_fields = ("pos",)

    def __init__(self, n_envs: int = 1) -> None:
        super().__init__(n_envs)
        self.spec = EnvSpec(name="chain", n_agents=1, obs_dim=1, state_dim=1, episode_limit=1000, n_actions=2)
        self.pos = np.zeros(n_envs, dtype=np.int64)

    def _reset_slots(self, idx):
        self.pos[idx] = 1

    def _step(self, actions, active):
        nxt = np.clip(self.pos + np.where(actions[:, 0] == 1, 1, -1), 0, self.N - 1)
        self.pos = np.where(active, nxt, self.pos)
        goal = self.pos == self.N - 1
        return goal[:, None].astype(np.float32), goal

    def potential(self):
        return self.pos.astype(np.float64)  # favours the right: its shaping is large where it matters

    def _obs(self):
        return self.pos[:, None, None].astype(np.float32)

    def _state(self):
        return self.pos[:, None].astype(np.float32)


def _tables(gamma: float) -> tuple[np.ndarray, ...]:
    """Every (state, action) of the chain stepped once through RewardSignals (one slot each):
    next state, reward, terminal, and the recorded shaping F."""
    S, A = Chain.N - 1, 2  # non-terminal states 0..N-2
    env = Chain(S * A)
    sig = RewardSignals(env, CreditSpec(shaping="builtin", gamma=gamma))
    env.reset(0)
    env.pos[:] = np.repeat(np.arange(S), A)
    actions = np.tile(np.arange(A), S)[:, None]
    pre = sig.before()
    ts = env.step(actions)
    out = sig.after(pre, actions, ts.avail_actions, ts)
    shape = (S, A)
    return env.pos.reshape(shape), ts.reward[:, 0].reshape(shape), ts.terminated.reshape(shape), out["shaping"][:, 0].reshape(shape)


def _greedy(nxt: np.ndarray, r: np.ndarray, term: np.ndarray, gamma: float) -> np.ndarray:
    """Value iteration to convergence; the greedy action of each non-terminal state."""
    V = np.zeros(Chain.N)
    for _ in range(2000):
        Q = r + gamma * np.where(term, 0.0, V[nxt])
        V[: Chain.N - 1] = Q.max(1)
    return (r + gamma * np.where(term, 0.0, V[nxt])).argmax(1)


def test_potential_shaping_keeps_the_optimal_policy_and_a_bonus_of_the_same_size_does_not():
    gamma = 0.9
    nxt, r, term, F = _tables(gamma)
    np.testing.assert_allclose(F, gamma * np.where(term, 0.0, nxt) - np.arange(Chain.N - 1)[:, None], rtol=1e-6)  # Phi(terminal) = 0
    plain = _greedy(nxt, r, term, gamma)
    assert (plain == 1).all()  # go right
    shaped = _greedy(nxt, r + F, term, gamma)
    np.testing.assert_array_equal(shaped, plain)
    bonus = np.abs(F)  # the same size, not the difference of a potential: pays going back and forth
    assert np.abs(bonus).max() == pytest.approx(np.abs(F).max())
    assert (_greedy(nxt, r + bonus, term, gamma) != plain).any()


def test_time_limit_keeps_the_real_potential_and_termination_zeroes_it():
    env = make("rendezvous", n_envs=3, episode_limit=2, grid=5, goal_size=1)
    sig = RewardSignals(env, CreditSpec(shaping="builtin", gamma=0.5, shaping_per_agent=True))
    env.reset(4)
    for _ in range(2):
        phi = env.potential().astype(np.float64)
        pre = sig.before()
        actions = np.zeros((3, env.spec.n_agents), dtype=np.int64)
        ts = env.step(actions)
        out = sig.after(pre, actions, ts.avail_actions, ts)
        nxt = np.where(ts.terminated[:, None], 0.0, env.potential())
        np.testing.assert_allclose(out["shaping"], 0.5 * nxt - phi, rtol=1e-6)
        np.testing.assert_allclose(out["shaping_team"], 0.5 * nxt.mean(1) - phi.mean(1), rtol=1e-6)
    assert ts.terminated.all()  # rendezvous' limit is terminal: Phi(s') = 0 there
    # spread ends by its horizon too; a truncating env keeps Phi(s'): checked with Chain's limit
    chain = Chain(2)
    chain.spec = EnvSpec(name="chain", n_agents=1, obs_dim=1, state_dim=1, episode_limit=1, n_actions=2)
    sig = RewardSignals(chain, CreditSpec(shaping="builtin", gamma=1.0))
    chain.reset(0)
    pre = sig.before()
    ts = chain.step(np.array([[1], [0]]))
    assert ts.done.all() and not ts.terminated.any()
    np.testing.assert_allclose(sig.after(pre, np.array([[1], [0]]), ts.avail_actions, ts)["shaping"][:, 0], [2 - 1, 0 - 1])


def team_potential(env: MultiAgentEnv) -> np.ndarray:
    """A user potential for ``shaping=MODULE:FUNCTION``: [B]."""
    return -env.goal_distance().max(axis=1).astype(np.float64)


def test_user_potential_by_name_and_its_shape_checks():
    env = make("rendezvous", n_envs=2)
    sig = RewardSignals(env, CreditSpec(shaping="test_credit:team_potential", gamma=0.9))
    env.reset(0)
    pre = sig.before()
    np.testing.assert_allclose(pre["phi"][1], team_potential(env))
    with pytest.raises(EnvError, match=r"needs a potential of shape \[B, n\]"):
        RewardSignals(env, CreditSpec(shaping="test_credit:team_potential", shaping_per_agent=True)).before()
    with pytest.raises(EnvError, match="no function 'nope'"):
        RewardSignals(env, CreditSpec(shaping="test_credit:nope"))
    scout = make("scout")
    scout.reset(0)
    with pytest.raises(EnvError, match="has no built-in potential"):
        RewardSignals(scout, CreditSpec(shaping="builtin")).before()


# ---- refusals and config -------------------------------------------------------------------------
def test_envs_that_cannot_roll_back_refuse_in_one_line():
    pytest.importorskip("pettingzoo")
    env = make("pz:pz_toy", n_envs=2)
    with pytest.raises(EnvError, match="cannot roll back") as e:
        RewardSignals(env, CreditSpec(difference=True))
    assert "\n" not in str(e.value)
    with pytest.raises(EnvError, match="has no noop action"):
        RewardSignals(make("scout"), CreditSpec(difference=True))
    RewardSignals(make("scout"), CreditSpec(difference=True, default_action="1"))


def test_marl_train_refuses_difference_rewards_on_a_pettingzoo_env_in_one_line(cli, tmp_path):
    pytest.importorskip("mpe2")
    p = cli("train", "--env", "pz:mpe2.simple_spread_v3", "--set", "reward=difference", "--steps", "50", "--out", str(tmp_path / "r"))
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "cannot roll back its state" in lines[0], p.stderr


@pytest.mark.parametrize("key,value,message", [
    ("reward", "best", r"reward must be one of team, difference, team\+difference"),
    ("default_action", "left", "default_action must be noop or an action index"),
    ("shaping", "yes", "shaping must be none, builtin or MODULE:FUNCTION"),
    ("shaping_per_agent", "true", "needs a potential"),
])
def test_bad_reward_keys_are_config_errors(key, value, message):
    with pytest.raises(ConfigError, match=message):
        apply_overrides(get_algo("mappo").config_cls(), {key: value}, "mappo")


# ---- learners --------------------------------------------------------------------------------------
def _episodes(algo: str, overrides: dict[str, str], n: int = 8) -> tuple[object, dict[str, np.ndarray]]:
    env = make("rendezvous", n_envs=4, episode_limit=6)
    cfg = apply_overrides(get_algo(algo).config_cls(), overrides, algo)
    learner = build_learner(algo, env.spec, cfg, n_envs=4, seed=0, total_steps=1000)
    eps = _play(env, learner.credit, n, learner.behaviour_policy(0))
    return learner, {k: np.stack([e.data[k] for e in eps]) for k in eps[0].data}


@pytest.mark.parametrize("algo", ["iql", "mappo", "ippo", "coma"])
def test_per_agent_learners_learn_the_chosen_reward(algo):
    learner, batch = _episodes(algo, {"reward": "difference", "shaping": "builtin", "shaping_per_agent": "true"})
    got = learner.learning_rewards(batch).numpy()
    np.testing.assert_allclose(got, batch["reward_diff"] + batch["shaping"], rtol=1e-6)
    learner, batch = _episodes(algo, {"reward": "team+difference"})
    np.testing.assert_allclose(learner.learning_rewards(batch).numpy(), batch["reward"] + batch["reward_diff"], rtol=1e-6)
    assert set(learner.buffer.fields) >= {"reward_diff"}
    learner.observe(batch)  # the buffer takes the recorded signals


def test_maddpg_learns_difference_rewards_on_continuous_spread():
    env = make("spread", n_envs=2, continuous=True)
    cfg = apply_overrides(get_algo("maddpg").config_cls(), {"reward": "difference"}, "maddpg")
    learner = build_learner("maddpg", env.spec, cfg, n_envs=2, seed=0, total_steps=100)
    eps = _play(env, learner.credit, 2, learner.behaviour_policy(0))
    batch = {k: np.stack([e.data[k] for e in eps]) for k in eps[0].data}
    np.testing.assert_allclose(learner.learning_rewards(batch).numpy(), batch["reward_diff"])
    assert np.abs(batch["reward_diff"][batch["filled"]]).max() > 0


def test_qmix_keeps_the_team_target_and_adds_the_per_agent_term():
    learner, batch = _episodes("qmix", {"reward": "difference", "shaping": "builtin", "batch_size": "8"})
    team = learner.learning_rewards(batch, team=True).numpy()
    np.testing.assert_allclose(team, batch["reward"].mean(-1) + batch["shaping_team"], rtol=1e-6)
    assert learner.aux_difference

    def loss(weight: str) -> float:
        torch.manual_seed(0)
        lr, b = _episodes("qmix", {"reward": "difference", "difference_weight": weight, "batch_size": "8"})
        return lr.update(b)["loss"]

    assert loss("1.0") > loss("0.0")  # the per-agent TD term adds to the loss; weight 0 is the plain team loss
    plain, b = _episodes("qmix", {"batch_size": "8"})
    assert not plain.aux_difference and "reward_diff" not in b
