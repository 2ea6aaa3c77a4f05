"""Learned messages: aggregators, one-step-delayed routing, gradients from
receivers into senders, the per-agent graph, dropout, and the rollout's inbox."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from marl_edge.envs import episode_seeds, make
from marl_edge.envs.rollout import Rollout
from marl_edge.envs.topology import parse_topology
from marl_edge.train.comm import (
    AttentionAggregator,
    CommConfig,
    KNNAggregator,
    MeanAggregator,
    drop_messages,
    gather_inbox,
)
from marl_edge.train.config import ConfigError
from marl_edge.train.networks import RNNAgent, masked_greedy
from marl_edge.train.mixers import QMIXConfig
from marl_edge.train.policy import TorchTeamPolicy
from marl_edge.train.q_learner import QLearner

AGGS = ["mean", "knn", "attention"]


def comm_net(comm: str, n=4, o=5, A=3, shared=True, last_action=False, k_max=3, **kw) -> RNNAgent:
    cfg = CommConfig(comm=comm, msg_dim=4, **kw)
    return RNNAgent(o, A, n, hidden_dim=12, shared=shared, last_action=last_action, comm=cfg, k_max=k_max)


def broadcast_inbox(B: int, T: int, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """[B, T, n, n-1] routing: everyone hears everyone, nothing at t = 0."""
    idx, mask = parse_topology("broadcast", n).neighbours(batch=B)
    idx = torch.from_numpy(idx)[:, None].expand(B, T, n, n - 1).clone()
    mask = torch.from_numpy(mask)[:, None].expand(B, T, n, n - 1).clone()
    mask[:, 0] = False
    return idx, mask


# ---- aggregators -----------------------------------------------------------------


def test_mean_aggregator_averages_only_heard_messages():
    msgs = torch.tensor([[[1.0, 0.0], [3.0, 2.0], [100.0, 100.0]]])
    mask = torch.tensor([[True, True, False]])
    out = MeanAggregator(2)(None, None, msgs, mask)
    torch.testing.assert_close(out, torch.tensor([[2.0, 1.0]]))
    assert MeanAggregator(2)(None, None, msgs, torch.zeros(1, 3, dtype=torch.bool)).abs().sum() == 0  # nobody heard: zeros


@pytest.mark.parametrize("reduce,expect", [("mean", [2.0]), ("sum", [4.0])])
def test_knn_aggregator_takes_the_first_k_heard_slots(reduce, expect):
    msgs = torch.tensor([[[1.0], [50.0], [3.0], [7.0]]])
    mask = torch.tensor([[True, False, True, True]])  # slot 1 lost: the 2 nearest heard are slots 0 and 2
    out = KNNAggregator(1, k=2, reduce=reduce)(None, None, msgs, mask)
    torch.testing.assert_close(out, torch.tensor([expect]))


def test_attention_weights_are_a_softmax_over_heard_messages_with_top_k():
    torch.manual_seed(0)
    x, h = torch.randn(6, 5), torch.randn(6, 7)
    msgs = torch.randn(6, 4, 3)
    mask = torch.tensor([[1, 1, 1, 1], [1, 0, 1, 0], [0, 0, 0, 1], [0, 0, 0, 0], [1, 1, 1, 0], [0, 1, 1, 1]], dtype=torch.bool)
    full = AttentionAggregator(5, 7, 3, attn_dim=8, top_k=0)
    w = full.weights(x, h, msgs, mask)
    assert (w[~mask] == 0).all()
    torch.testing.assert_close(w.sum(-1), mask.any(-1).float())  # sums to 1, or 0 with an empty inbox
    assert full(x, h, msgs, mask)[3].abs().sum() == 0
    pruned = AttentionAggregator(5, 7, 3, attn_dim=8, top_k=2)
    pruned.load_state_dict(full.state_dict())
    wp = pruned.weights(x, h, msgs, mask)
    assert ((wp > 0).sum(-1) == mask.sum(-1).clamp(max=2)).all()
    for b in range(6):  # the kept ones are the two largest of the full weights, renormalised
        keep = wp[b] > 0
        if keep.any():
            top = torch.topk(w[b], int(keep.sum())).indices
            assert set(top.tolist()) == set(keep.nonzero().flatten().tolist())
            torch.testing.assert_close(wp[b][keep], w[b][keep] / w[b][keep].sum())


def test_gather_inbox_routes_by_sender_and_masks_empty_slots():
    msg = torch.arange(3 * 2, dtype=torch.float32).view(1, 3, 2)  # agent j says [2j, 2j+1]
    idx = torch.tensor([[[2, -1], [0, 2], [1, 0]]])
    mask = idx >= 0
    msg_in, m = gather_inbox(msg, idx, mask)
    assert msg_in[0, 0].tolist() == [[4.0, 5.0], [0.0, 0.0]]
    assert msg_in[0, 1].tolist() == [[0.0, 1.0], [4.0, 5.0]]
    assert m.tolist() == mask.tolist()


# ---- timing and gradients ----------------------------------------------------------


@pytest.mark.parametrize("comm", AGGS)
def test_a_message_is_heard_one_step_later(comm):
    """Changing agent 0's observation at step t changes agent 1's Q at t+1, never at t."""
    torch.manual_seed(3)
    net = comm_net(comm)
    B, T, n = 2, 5, 4
    obs = torch.randn(B, T, n, 5)
    idx, mask = broadcast_inbox(B, T, n)
    q = net.unroll(obs, None, idx, mask)
    obs2 = obs.clone()
    obs2[:, 2, 0] += 1.0
    q2 = net.unroll(obs2, None, idx, mask)
    torch.testing.assert_close(q2[:, :3, 1:], q[:, :3, 1:])  # others unaffected up to and including step 2
    assert not torch.allclose(q2[:, 3, 1:], q[:, 3, 1:])  # heard at step 3
    # with nobody hearing anybody, agent 0 never reaches the others
    q3 = net.unroll(obs2, None, idx, torch.zeros_like(mask))
    torch.testing.assert_close(net.unroll(obs, None, idx, torch.zeros_like(mask))[:, :, 1:], q3[:, :, 1:])


@pytest.mark.parametrize("comm", AGGS)
def test_gradients_flow_from_a_receiver_into_the_senders_message_head(comm):
    """Separate networks per agent: agent 1's loss trains agent 0's message head through the unroll."""
    torch.manual_seed(4)
    net = comm_net(comm, shared=False)
    B, T, n = 3, 4, 4
    obs = torch.randn(B, T, n, 5)
    idx, mask = broadcast_inbox(B, T, n)
    q = net.unroll(obs, None, idx, mask)
    q[:, -1, 1].sum().backward()  # receiver 1's Q at the last step
    g = net.cores[0].msg.emit_layer.weight.grad
    assert g is not None and g.abs().sum() > 0
    net.zero_grad()
    q = net.unroll(obs, None, idx, torch.zeros_like(mask))  # silence: no path from 0 to 1
    q[:, -1, 1].sum().backward()
    g = net.cores[0].msg.emit_layer.weight.grad
    assert g is None or g.abs().sum() == 0


@pytest.mark.parametrize("comm", AGGS)
@pytest.mark.parametrize("shared,last_action", [(True, False), (False, True)])
def test_agent_policy_with_messages_is_the_team_network(comm, shared, last_action):
    """Contract 4: per-agent graphs fed their own inbox reproduce the team step by step."""
    torch.manual_seed(5)
    n, A, k = 4, 3, 2
    net = comm_net(comm, n=n, A=A, shared=shared, last_action=last_action, k_max=k, top_k=1 if comm == "attention" else 0)
    topo = parse_topology("knn:2", n)
    B, T = 3, 6
    rng = np.random.default_rng(0)
    h_team, msg_team = net.init_hidden(B), torch.zeros(B, n, 4)
    pols = [net.agent_policy(i) for i in range(n)]
    assert pols[0].input_names == ["obs", "avail_actions", "hidden", "msg_in", "msg_mask"] + (["prev_action"] if last_action else [])
    assert pols[0].output_names == ["action", "hidden_out", "msg_out", "q"]
    h_ag = [torch.zeros(B, 12) for _ in range(n)]
    out_msgs = torch.zeros(B, n, 4)
    idx = torch.full((B, n, k), -1)
    mask = torch.zeros(B, n, k, dtype=torch.bool)
    prev = torch.zeros(B, n, A)
    for t in range(T):
        obs = torch.randn(B, n, 5)
        avail = torch.ones(B, n, A, dtype=torch.bool)
        q_team, h_team, msg_team_new = net.step(obs, h_team, prev if last_action else None, msg_team, idx, mask)
        a_team = masked_greedy(q_team, avail)
        new_msgs = torch.zeros(B, n, 4)
        for i in range(n):
            # agent i's own inbox: the messages of its senders, by slot
            safe = idx[:, i].clamp(min=0)
            msg_in = torch.stack([out_msgs[b, safe[b]] for b in range(B)]) * mask[:, i, :, None]
            extra = [prev[:, i]] if last_action else []
            a, h_ag[i], m_out, q = pols[i](obs[:, i], avail[:, i], h_ag[i], msg_in, mask[:, i], *extra)
            torch.testing.assert_close(q, q_team[:, i], rtol=1e-5, atol=1e-6)
            torch.testing.assert_close(m_out, msg_team_new[:, i], rtol=1e-5, atol=1e-6)
            assert torch.equal(a, a_team[:, i])
            new_msgs[:, i] = m_out
        msg_team, out_msgs = msg_team_new, new_msgs
        pos = rng.random((B, n, 2))
        i_np, m_np = topo.neighbours(pos)
        idx, mask = torch.from_numpy(i_np), torch.from_numpy(m_np)
        mask = mask & torch.from_numpy(rng.random(mask.shape) > 0.3)  # some lost
        prev = torch.nn.functional.one_hot(a_team, A).float()


def test_a_communicating_policy_refuses_to_run_without_its_inbox():
    net = comm_net("mean")
    with pytest.raises(ValueError, match="msg_in"):
        net.agent_policy(0)(torch.zeros(1, 5), torch.ones(1, 3, dtype=torch.bool), torch.zeros(1, 12))
    with pytest.raises(ValueError, match="inbox routing"):
        net.unroll(torch.zeros(1, 2, 4, 5))


# ---- dropout --------------------------------------------------------------------------


def test_message_dropout_rate_and_no_invention():
    mask = torch.ones(200, 8, 3, dtype=torch.bool)
    mask[:, :, 2] = False
    out = drop_messages(mask, 0.2, np.random.default_rng(0))
    assert not out[:, :, 2].any()  # a missing message stays missing
    assert abs(out[:, :, :2].float().mean().item() - 0.8) < 0.02
    assert drop_messages(mask, 0.0, np.random.default_rng(0)) is mask


# ---- the rollout's inbox: contract 3 ---------------------------------------------------


def test_rollout_inbox_is_last_steps_neighbours_and_empty_at_episode_start():
    env = make("scout", n_envs=3, episode_limit=3)
    topo = parse_topology("knn:2", 4)
    seen = []

    class Spy:
        def reset(self, mask):
            pass

        def act(self, ts):
            seen.append((ts.t.copy(), ts.positions.copy(), ts.inbox_idx.copy(), ts.inbox_mask.copy()))
            return np.zeros((3, 4), dtype=np.int64)

    seeds = iter(range(100))
    ro = Rollout(env, Spy(), lambda k: np.array([next(seeds) for _ in range(k)]), record=True, topology=topo)
    eps = []
    for _ in range(7):
        eps += ro.step()
    for (t, pos, idx, mask), (t_prev, pos_prev, _, _) in zip(seen[1:], seen[:-1]):
        for b in range(3):
            if t[b] == 0:
                assert not mask[b].any() and (idx[b] == -1).all()  # a new episode hears nothing
            else:
                want_idx, want_mask = topo.neighbours(pos_prev[b : b + 1])
                assert (idx[b] == want_idx[0]).all() and (mask[b] == want_mask[0]).all()
    assert not seen[0][3].any()
    # the recorded episode holds the same routing, step by step
    ep = eps[0].data
    assert ep["inbox_idx"].dtype == np.int16 and not ep["inbox_mask"][0].any() and ep["inbox_mask"][1:3].all()
    assert ro.msgs_sent == 4 * 2 * ro.env_steps  # knn:2 -> n * k messages per step


def test_training_time_and_deployment_time_routing_agree():
    """The rollout (training) and a batch-1 caller (the world simulator) get the same neighbours."""
    env = make("scout", n_envs=5)
    ts = env.reset(9)
    topo = parse_topology("range:0.5", 4)
    idx, mask = topo.neighbours(ts.positions)
    for b in range(5):
        one = make("scout", n_envs=1).reset([episode_seeds(9, 5)[b]])
        i1, m1 = parse_topology("range:0.5", 4).neighbours(one.positions)
        assert (i1[0] == idx[b]).all() and (m1[0] == mask[b]).all()


# ---- learner plumbing -------------------------------------------------------------------


def test_comm_config_errors_are_clear():
    with pytest.raises(ConfigError, match="comm must be one of none, mean, knn, attention"):
        QMIXConfig(comm="shout").validate()
    with pytest.raises(ConfigError, match="msg_dropout must be in"):
        QMIXConfig(comm="mean", msg_dropout=1.0).validate()
    with pytest.raises(ConfigError, match="msg_dim must be >= 1"):
        QMIXConfig(comm="mean", msg_dim=0).validate()
    spec = make("two_step").spec
    with pytest.raises(Exception, match="knn:1 needs agent positions"):
        QMIXConfig(comm="mean", topology="knn:1").build_topology(spec)


@pytest.mark.parametrize("mixer", ["", "vdn", "qmix"])
@pytest.mark.parametrize("comm", AGGS)
def test_every_learner_updates_message_heads(mixer, comm):
    """One update per learner and aggregator: the message head gets a gradient and moves."""
    torch.manual_seed(0)
    env = make("scout", n_envs=4)
    cfg = QMIXConfig(comm=comm, topology="knn:2", batch_size=4, msg_dropout=0.2)
    learner = QLearner(env.spec, cfg, mixer, n_envs=4, seed=0, total_steps=1000)
    seeds = iter(range(1000))
    ro = Rollout(env, learner.behaviour_policy(0), lambda k: np.array([next(seeds) for _ in range(k)]), record=True, topology=learner.topology)
    eps = []
    while len(eps) < 4:
        eps += ro.step()
    batch = {k: np.stack([e.data[k] for e in eps]) for k in eps[0].data}
    learner.buffer.add(batch)
    before = learner.net.cores[0].msg.emit_layer.weight.detach().clone()
    learner.update(learner.buffer.sample(4, learner.sample_rng))
    assert not torch.equal(before, learner.net.cores[0].msg.emit_layer.weight)


def test_eval_policy_counts_heard_messages_under_loss():
    env = make("scout", n_envs=2)
    net = comm_net("mean", o=env.spec.obs_dim, A=env.spec.n_actions)
    topo = parse_topology("broadcast", 4)
    from marl_edge.envs.rollout import evaluate

    heard = []
    for loss in (0.0, 0.5, 1.0):
        pol = TorchTeamPolicy(net, 2, np.random.default_rng(0), msg_loss=loss)
        evaluate(env, pol, np.arange(10), topology=topo)
        heard.append(pol.heard / (10 * 4))  # per step (episode limit 4)
    assert heard[0] == 12 * 3 / 4  # 12 messages on each of steps 1..3
    assert heard[2] == 0 and 0.3 * heard[0] < heard[1] < 0.7 * heard[0]
