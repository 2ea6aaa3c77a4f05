"""MAPPO / IPPO pieces that are easy to get wrong, and the path to a bundle."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch

from marl_edge.envs import make
from marl_edge.envs.rollout import Rollout
from marl_edge.train.ppo import MAPPOConfig, PPOLearner, ValueNorm
from marl_edge.train.policy import sample_actions
from marl_edge.train.registry import build_learner, get_algo
from marl_edge.train.returns import gae


def test_gae_matches_a_hand_computed_case():
    g, lam = 0.9, 0.5
    # one agent, 3 real steps then padding; time-limit end (not terminated): bootstrap from V(s3)
    r = torch.tensor([[1.0, 0.0, 2.0, 0.0]]).unsqueeze(-1)
    v = torch.tensor([[0.5, 1.0, 1.5, 2.0, 9.0]]).unsqueeze(-1)
    term = torch.zeros(1, 4, 1)
    filled = torch.tensor([[1.0, 1.0, 1.0, 0.0]]).unsqueeze(-1)
    d2 = 2.0 + g * 2.0 - 1.5
    d1 = 0.0 + g * 1.5 - 1.0
    d0 = 1.0 + g * 1.0 - 0.5
    a2 = d2
    a1 = d1 + g * lam * a2
    a0 = d0 + g * lam * a1
    got = gae(r, v, term, filled, g, lam)[0, :, 0]
    torch.testing.assert_close(got, torch.tensor([a0, a1, a2, 0.0]))
    # the same episode ending by termination at step 2: no bootstrap
    term[0, 2] = 1.0
    got = gae(r, v, term, filled, g, lam)[0, :, 0]
    d2 = 2.0 - 1.5
    torch.testing.assert_close(got[2], torch.tensor(d2))
    torch.testing.assert_close(got[1], torch.tensor(d1 + g * lam * d2))


def test_ppo_clipping_stops_the_gradient_outside_the_trust_region():
    """The clipped surrogate: no gradient once the ratio left [1-eps, 1+eps] in the advantage's direction."""
    eps = 0.2
    for ratio0, adv, moves in [(1.5, 1.0, False), (1.1, 1.0, True), (0.5, -1.0, False), (0.9, -1.0, True), (0.5, 1.0, True)]:
        logr = torch.tensor(np.log(ratio0), requires_grad=True)
        ratio = logr.exp()
        surr = torch.min(ratio * adv, torch.clamp(ratio, 1 - eps, 1 + eps) * adv)
        (-surr).backward()
        assert (abs(float(logr.grad)) > 0) == moves, (ratio0, adv)


def test_value_norm_tracks_mean_and_variance():
    vn = ValueNorm()
    rng = np.random.default_rng(0)
    xs = [torch.from_numpy(rng.normal(5.0, 3.0, 500).astype(np.float32)) for _ in range(6)]
    for x in xs:
        vn.update(x)
    allx = torch.cat(xs)
    assert abs(float(vn.mean) - float(allx.mean())) < 1e-3 and abs(float(vn.var) - float(allx.var(unbiased=False))) < 1e-2
    torch.testing.assert_close(vn.denormalize(vn.normalize(allx)), allx, rtol=1e-5, atol=1e-4)


def test_sampling_respects_availability_and_reports_log_probs():
    logits = torch.tensor([[[0.0, 5.0, 1.0], [2.0, 2.0, 2.0]]])
    avail = torch.tensor([[[True, False, True], [True, True, True]]])
    rng = np.random.default_rng(0)
    counts = np.zeros((2, 3))
    for _ in range(3000):
        a, lp = sample_actions(logits, avail, rng)
        counts[0, a[0, 0]] += 1
        counts[1, a[0, 1]] += 1
        assert a[0, 0] != 1
    p0 = np.exp([0.0, 1.0]) / np.exp([0.0, 1.0]).sum()
    assert abs(counts[0, 2] / 3000 - p0[1]) < 0.03 and abs(counts[1] / 3000 - 1 / 3).max() < 0.03
    a, lp = sample_actions(logits, avail, np.random.default_rng(1))
    want = torch.log_softmax(torch.where(avail, logits, torch.full_like(logits, -1e10)), -1)[0, range(2), a[0]]
    np.testing.assert_allclose(lp[0], want.numpy(), rtol=1e-6)


@pytest.mark.parametrize("critic", ["state", "local"])
def test_one_update_moves_actor_and_critic_and_records_behaviour_log_probs(critic):
    torch.manual_seed(0)
    env = make("scout", n_envs=4)
    cfg = MAPPOConfig(comm="mean", batch_episodes=4, epochs=2, minibatches=2)
    learner = PPOLearner(env.spec, cfg, critic, n_envs=4, seed=0, total_steps=1000)
    seeds = iter(range(1000))
    ro = Rollout(env, learner.behaviour_policy(0), lambda k: np.array([next(seeds) for _ in range(k)]), record=True, topology=learner.topology)
    eps = []
    while len(eps) < 4:
        eps += ro.step()
    batch = {k: np.stack([e.data[k] for e in eps]) for k in eps[0].data}
    assert batch["logp"].shape == (4, 4, 4) and (batch["logp"] < 0).all() and (batch["logp"] > -np.log(4) * 10).all()
    before = [p.detach().clone() for p in list(learner.net.parameters()) + list(learner.critic.parameters())]
    out = learner.observe(batch)
    assert len(out) == 1 and learner.updates == 1 and len(learner.buffer) == 0
    after = list(learner.net.parameters()) + list(learner.critic.parameters())
    assert all(not torch.equal(a, b) for a, b in zip(before, after) if a.numel() > 1)
    assert 0.0 < out[0]["entropy"] <= np.log(4) + 1e-5


def test_mappo_cli_export_and_swarm_round_trip(cli, tmp_path):
    """The actor exports (logits head, critic left out) and runs as a swarm with the same returns."""
    run, bundle = tmp_path / "run", tmp_path / "bundle"
    cli("train", "--env", "scout", "--algo", "mappo", "--steps", "1200", "--set", "comm=attention", "--set", "topology=knn:2",
        "--out", str(run), "--eval-episodes", "4", "--quiet", check=True)
    cfg = json.loads((run / "config.json").read_text())
    assert cfg["algo"]["gae_lambda"] == 0.95 and cfg["run"]["algo"] == "mappo"
    p = cli("export", str(run), "--out", str(bundle), "--json", check=True)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["parity"]["action_agreement"] == 1.0
    m = json.loads((bundle / "swarm.json").read_text())
    assert [o["name"] for o in m["outputs"]] == ["action", "hidden_out", "msg_out", "logits"] and m["algo"] == "mappo"
    ev = json.loads(cli("evaluate", str(bundle), "--episodes", "6", "--seed", "3", "--json", check=True).stdout.strip().splitlines()[-1])
    sw = json.loads(cli("swarm", str(bundle), "--episodes", "6", "--seed", "3", "--json", "--quiet", check=True).stdout.strip().splitlines()[-1])
    assert sw["returns"] == ev["returns"]
    # greedy and sampled evaluation of the run: both available, labelled, and a seed fixes the draw
    last = lambda p: json.loads(p.stdout.strip().splitlines()[-1])  # noqa: E731
    greedy = last(cli("evaluate", str(run), "--episodes", "16", "--seed", "3", "--json", check=True))
    s1 = last(cli("evaluate", str(run), "--episodes", "16", "--seed", "3", "--sample", "--json", check=True))
    s2 = last(cli("evaluate", str(run), "--episodes", "16", "--seed", "3", "--sample", "--json", check=True))
    assert greedy["mode"] == "greedy" and s1["mode"] == "sampled" and s1["returns"] == s2["returns"]
    assert greedy["returns"][:6] == ev["returns"] and s1["returns"] != greedy["returns"]
    p = cli("evaluate", str(bundle), "--sample")
    assert p.returncode == 2 and "--sample applies to run directories" in p.stderr
    rows = (run / "metrics.csv").read_text().splitlines()
    header = rows[0].split(",")
    parsed = [dict(zip(header, r.split(","))) for r in rows[1:]]
    assert any(r["entropy"] and r["clip_frac"] for r in parsed) and all(r["epsilon"] == "" for r in parsed)


def test_ppo_config_errors(cli, tmp_path):
    p = cli("train", "--algo", "ippo", "--set", "clip=1.5", "--out", str(tmp_path / "r"))
    assert p.returncode == 2 and "clip must be in (0, 1)" in p.stderr
    p = cli("train", "--algo", "mappo", "--env", "spread", "--set", "env.continuous=true", "--out", str(tmp_path / "r2"))
    assert p.returncode == 2 and "needs discrete actions" in p.stderr


# ---- COMA ------------------------------------------------------------------------------------------


def test_coma_critic_gives_every_actions_q_and_ignores_the_agents_own_action():
    from marl_edge.train.coma import COMACritic

    torch.manual_seed(0)
    n, A, s = 3, 4, 5
    critic = COMACritic(s, n, A, 32)
    state = torch.randn(2, 6, s)
    acts = torch.randint(0, A, (2, 6, n))
    q = critic(state, torch.nn.functional.one_hot(acts, A).float())
    assert q.shape == (2, 6, n, A)
    # changing agent 1's own action leaves agent 1's row unchanged, but moves the others'
    acts2 = acts.clone()
    acts2[..., 1] = (acts2[..., 1] + 1) % A
    q2 = critic(state, torch.nn.functional.one_hot(acts2, A).float())
    torch.testing.assert_close(q2[:, :, 1], q[:, :, 1])
    assert not torch.allclose(q2[:, :, 0], q[:, :, 0])


def test_coma_baseline_is_the_explicit_counterfactual_sum():
    """b_i = sum_a' pi(a') Q(s, (a_-i, a')), where Q(s, (a_-i, a')) is read by actually
    substituting a' for agent i's action and calling the critic again."""
    from marl_edge.train.coma import COMACritic, coma_baseline

    torch.manual_seed(1)
    n, A = 3, 4
    critic = COMACritic(5, n, A, 32)
    state = torch.randn(1, 2, 5)
    acts = torch.randint(0, A, (1, 2, n))
    pi = torch.softmax(torch.randn(1, 2, n, A), -1)
    q_all = critic(state, torch.nn.functional.one_hot(acts, A).float())
    fast = coma_baseline(q_all, pi)
    slow = torch.zeros(1, 2, n)
    for i in range(n):
        for a in range(A):
            sub = acts.clone()
            sub[..., i] = a
            q_sub = critic(state, torch.nn.functional.one_hot(sub, A).float())[..., i, a]  # Q(s, (a_-i, a))
            slow[..., i] += pi[..., i, a] * q_sub
    torch.testing.assert_close(fast, slow)


def test_coma_update_trains_the_critic_towards_returns():
    from marl_edge.train.coma import COMAConfig, COMALearner

    torch.manual_seed(0)
    env = make("two_step", n_envs=8)
    learner = COMALearner(env.spec, COMAConfig(batch_episodes=8, critic_steps=4, critic_lr=1e-2), n_envs=8, seed=0, total_steps=1000)
    seeds = iter(range(10_000))
    errs = []
    for _ in range(15):
        ro = Rollout(env, learner.behaviour_policy(0), lambda k: np.array([next(seeds) for _ in range(k)]), record=True)
        eps = []
        while len(eps) < 8:
            eps += ro.step()
        batch = {k: np.stack([e.data[k] for e in eps[:8]]) for k in eps[0].data}
        errs.append(learner.observe(batch)[0]["td_abs"])
    assert np.mean(errs[-3:]) < 0.5 * np.mean(errs[:3])


@pytest.mark.parametrize("algo", ["mappo", "ippo", "coma"])
def test_greedy_evaluation_takes_the_training_actors_masked_argmax(algo):
    """Evaluation of a stochastic actor sees exactly what the training actor sees: the same
    network in eval mode, the same inputs (obs, agent id, hidden state) and the same
    availability masks; its action is the argmax of the training actor's masked distribution."""
    from marl_edge.envs import TimeStep, make
    from marl_edge.train.policy import TorchTeamPolicy

    spec = make("rendezvous").spec
    learner = build_learner(algo, spec, get_algo(algo).config_cls(), n_envs=4, seed=0, total_steps=1000)
    net = learner.acting_network()
    with torch.no_grad():  # sharpen the random actor so its argmax is not a near tie
        for p in net.parameters():
            p.mul_(3.0)
    train_pol = learner.behaviour_policy(0)
    rng = np.random.default_rng(0)
    train_pol.reset(np.ones(4, bool))
    net.eval()
    greedy = TorchTeamPolicy(net, 4, np.random.default_rng(1))
    greedy.reset(np.ones(4, bool))
    B, n, A = 4, spec.n_agents, spec.n_actions
    agree = 0
    for t in range(12):
        avail = rng.random((B, n, A)) < 0.6
        avail[..., rng.integers(0, A)] = True
        ts = TimeStep(obs=rng.normal(size=(B, n, spec.obs_dim)).astype(np.float32), state=np.zeros((B, spec.state_dim), np.float32),
                      avail_actions=avail, reward=np.zeros((B, n), np.float32), done=np.zeros(B, bool),
                      terminated=np.zeros(B, bool), positions=None, t=np.full(B, t))
        a_train = train_pol.act(ts)
        a_greedy = greedy.act(ts)
        np.testing.assert_array_equal(greedy.q.numpy(), train_pol.q.numpy())  # same inputs, same hidden state
        masked = np.where(avail, train_pol.q.numpy(), -np.inf)
        np.testing.assert_array_equal(a_greedy, masked.argmax(-1))
        assert np.take_along_axis(avail, a_train[..., None], -1).all() and np.take_along_axis(avail, a_greedy[..., None], -1).all()
        agree += int((a_train == a_greedy).sum())
    assert agree < 12 * B * n  # the training actor samples: it does not always take the argmax
