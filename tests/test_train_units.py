"""Unit tests of the training pieces that are easy to get wrong."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marl_edge.envs import make
from marl_edge.train.buffer import EpisodeBuffer
from marl_edge.train.config import ConfigError, RunConfig, apply_overrides, parse_set
from marl_edge.train.mixers import QMIXConfig, QMixer, VDNMixer
from marl_edge.train.networks import RNNAgent, masked_greedy
from marl_edge.train.returns import lambda_returns


def test_lambda_zero_is_one_step_target():
    r = torch.tensor([[1.0, 2.0, 3.0]])
    term = torch.tensor([[0.0, 0.0, 1.0]])
    filled = torch.ones(1, 3)
    nq = torch.tensor([[10.0, 20.0, 30.0]])
    out = lambda_returns(r, term, filled, nq, gamma=0.5, lam=0.0)
    assert torch.allclose(out, torch.tensor([[1 + 5.0, 2 + 10.0, 3.0]]))


def test_lambda_returns_hand_computed():
    # three real steps then padding; terminal after step 2
    r = torch.tensor([[1.0, 0.0, 2.0, 0.0]])
    term = torch.tensor([[0.0, 0.0, 1.0, 0.0]])
    filled = torch.tensor([[1.0, 1.0, 1.0, 0.0]])
    nq = torch.tensor([[4.0, 6.0, 100.0, 0.0]])  # 100 must be ignored (terminal)
    g, lam = 0.9, 0.5
    G2 = 2.0
    # G2 = r2 (terminal); G1 = r1 + g*((1-lam)*nq1 + lam*G2); G0 = r0 + g*((1-lam)*nq0 + lam*G1)
    G1 = 0.0 + g * ((1 - lam) * 6.0 + lam * G2)
    G0 = 1.0 + g * ((1 - lam) * 4.0 + lam * G1)
    out = lambda_returns(r, term, filled, nq, g, lam)
    assert out[0, 0].item() == pytest.approx(G0)
    assert out[0, 1].item() == pytest.approx(G1)
    assert out[0, 2].item() == pytest.approx(G2)


def test_lambda_one_is_monte_carlo_on_terminated_episode():
    r = torch.tensor([[1.0, 1.0, 1.0]])
    term = torch.tensor([[0.0, 0.0, 1.0]])
    filled = torch.ones(1, 3)
    nq = torch.full((1, 3), 50.0)
    out = lambda_returns(r, term, filled, nq, 0.5, 1.0)
    assert out[0].tolist() == pytest.approx([1 + 0.5 + 0.25, 1 + 0.5, 1.0])


def test_truncated_episode_bootstraps_on_last_step():
    r = torch.tensor([[0.0, 0.0]])
    term = torch.zeros(1, 2)
    filled = torch.ones(1, 2)
    nq = torch.tensor([[3.0, 7.0]])
    out = lambda_returns(r, term, filled, nq, 1.0, 0.8)
    assert out[0, 1].item() == pytest.approx(7.0)
    assert out[0, 0].item() == pytest.approx(0.2 * 3.0 + 0.8 * 7.0)


def test_qmix_is_monotonic_in_every_agent_q():
    torch.manual_seed(0)
    mixer = QMixer(n_agents=3, state_dim=5)
    qs = torch.randn(64, 3, requires_grad=True)
    states = torch.randn(64, 5) * 3
    mixer(qs, states).sum().backward()
    assert (qs.grad >= 0).all()
    w1, w2 = mixer.mixing_weights(states)
    assert (w1 >= 0).all() and (w2 >= 0).all()
    # state-dependent bias: same qs, different states -> different outputs
    q0 = torch.zeros(2, 3)
    assert not torch.allclose(mixer(q0, states[:2])[0], mixer(q0, states[:2])[1])


def test_vdn_is_the_sum():
    qs = torch.tensor([[1.0, 2.0, 3.5]])
    assert VDNMixer()(qs, torch.zeros(1, 4)).item() == pytest.approx(6.5)


def test_masked_greedy_never_picks_unavailable():
    q = torch.tensor([[5.0, 1.0, 9.0], [0.0, -1.0, -2.0]])
    avail = torch.tensor([[True, True, False], [False, True, True]])
    assert masked_greedy(q, avail).tolist() == [0, 1]


@pytest.mark.parametrize("shared,last_action", [(True, False), (True, True), (False, False)])
def test_agent_policy_is_the_team_network(shared, last_action):
    """The per-agent graph (contract 4) computes exactly what the team forward does."""
    torch.manual_seed(1)
    n, o, A = 3, 6, 4
    net = RNNAgent(o, A, n, hidden_dim=16, agent_id=True, last_action=last_action, shared=shared)
    B, T = 5, 7
    obs = torch.randn(T, B, n, o)
    avail = torch.rand(T, B, n, A) > 0.3
    avail[..., 0] = True
    h_team = net.init_hidden(B)
    h_ag = [torch.zeros(B, 16) for _ in range(n)]
    pols = [net.agent_policy(i) for i in range(n)]
    prev = torch.zeros(B, n, A)
    for t in range(T):
        q_team, h_team, _ = net(obs[t], h_team, prev if last_action else None)
        a_team = masked_greedy(q_team, avail[t])
        for i in range(n):
            a, h_ag[i], q = pols[i](obs[t, :, i], avail[t, :, i], h_ag[i], prev[:, i] if last_action else None)
            torch.testing.assert_close(q, q_team[:, i])
            torch.testing.assert_close(h_ag[i], h_team[:, i])
            assert torch.equal(a, a_team[:, i])
        prev = torch.nn.functional.one_hot(a_team, A).float()


def test_agent_ids_distinguish_agents_with_shared_weights():
    torch.manual_seed(0)
    net = RNNAgent(4, 3, 2, hidden_dim=8)
    obs = torch.ones(1, 2, 4)
    q, _, _ = net(obs, net.init_hidden(1))
    assert not torch.allclose(q[0, 0], q[0, 1])


def test_buffer_ring_and_trimmed_samples():
    env = make("two_step")
    buf = EpisodeBuffer(env.spec, capacity=3)
    from marl_edge.envs.rollout import episode_layout

    def eps(k, fill_len):
        d = {name: np.zeros((k, *shape), dtype=dt) for name, (shape, dt) in episode_layout(env.spec).items()}
        d["filled"][:, :fill_len] = True
        d["reward"][:, 0, :] = np.arange(k)[:, None]
        return d

    buf.add(eps(2, 1))
    buf.add(eps(2, 1))
    assert len(buf) == 3 and buf.pos == 1
    s = buf.sample(8, np.random.default_rng(0))
    assert s["obs"].shape[1] == 2 and s["actions"].shape[1] == 1  # trimmed to the longest sampled episode


def test_config_overrides_are_typed():
    cfg = apply_overrides(QMIXConfig(), parse_set(["lr=1e-3", "td_lambda=0.6", "double_q=false", "batch_size=16"]), "qmix")
    assert cfg.lr == 1e-3 and cfg.td_lambda == 0.6 and cfg.double_q is False and cfg.batch_size == 16
    with pytest.raises(ConfigError, match="unknown qmix key 'nope'"):
        apply_overrides(QMIXConfig(), {"nope": "1"}, "qmix")
    with pytest.raises(ConfigError, match="batch_size must be an integer"):
        apply_overrides(QMIXConfig(), {"batch_size": "2.5"}, "qmix")
    with pytest.raises(ConfigError, match="td_lambda must be in"):
        apply_overrides(QMIXConfig(), {"td_lambda": "3"}, "qmix")
    with pytest.raises(ConfigError, match="steps must be >= 1"):
        apply_overrides(RunConfig(), {"steps": "0"}, "run")
    with pytest.raises(ConfigError, match="key=value"):
        parse_set(["lr"])


@pytest.mark.parametrize("shared,last_action", [(True, False), (True, True), (False, False)])
def test_unroll_equals_step_by_step(shared, last_action):
    """The learner's fused unroll computes what acting step by step computes."""
    torch.manual_seed(2)
    net = RNNAgent(7, 4, 3, hidden_dim=16, last_action=last_action, shared=shared)
    B, T = 4, 9
    obs = torch.randn(B, T, 3, 7)
    last = torch.randn(B, T, 3, 4) if last_action else None
    h, qs = net.init_hidden(B), []
    for t in range(T):
        q, h, _ = net(obs[:, t], h, None if last is None else last[:, t])
        qs.append(q)
    torch.testing.assert_close(net.unroll(obs, last), torch.stack(qs, 1), rtol=1e-5, atol=1e-6)
