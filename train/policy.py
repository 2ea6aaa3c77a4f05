"""The team's acting policy in training (and torch evaluation): ``TorchTeamPolicy``
and ``sample_actions``, shared by every learner, evaluation and export verification."""

from __future__ import annotations

import numpy as np
import torch

from ..envs import TimeStep
from .comm import drop_messages
from .networks import NEG_INF, RNNAgent, masked_greedy


class TorchTeamPolicy:
    """The team's acting policy in training: one batched forward for B x n agents.

    A communicating team keeps each agent's last ``msg_out`` and hears it
    through the inbox routing the rollout puts on the timestep; ``msg_loss``
    drops each heard message with that probability (training dropout, or a
    lossy link at evaluation), drawn from ``loss_rng`` (default ``rng``).
    ``extra_fields``: the per-step extras the rollout records (name -> shape,
    dtype); default: ``logp`` when ``sample``, none otherwise.
    """

    def __init__(
        self,
        net: RNNAgent,
        n_envs: int,
        rng: np.random.Generator,
        msg_loss: float = 0.0,
        loss_rng: np.random.Generator | None = None,
        sample: bool = False,
        noise: float = 0.0,
        action_scale: float = 1.0,
        extra_fields: dict[str, tuple[tuple[int, ...], type]] | None = None,
    ) -> None:
        self.net, self.rng = net, rng
        self.epsilon = 0.0
        self.noise = noise  # continuous actors: Gaussian exploration noise (std, before clipping to the box)
        self.action_scale = action_scale
        self.sample = sample  # actor-critic: draw from softmax(logits) over available actions, record log-probs
        # per-step extras the rollout records (default: the log-probs a sampling actor draws)
        self.extra_fields = extra_fields if extra_fields is not None else ({"logp": ((net.n_agents,), np.float32)} if sample else {})
        self.step_extras: dict[str, np.ndarray] = {}
        self.msg_loss = msg_loss
        self.loss_rng = loss_rng or rng
        self.hidden = net.init_hidden(n_envs)
        self.last = torch.zeros(n_envs, net.n_agents, net.n_actions)
        self.msg = torch.zeros(n_envs, net.n_agents, max(1, net.msg_dim))
        self.heard = 0  # messages delivered to agents (after loss)

    def reset(self, mask: np.ndarray) -> None:
        m = torch.from_numpy(np.asarray(mask, dtype=bool))
        self.hidden[m] = 0.0
        self.last[m] = 0.0
        self.msg[m] = 0.0

    @torch.no_grad()
    def act(self, ts: TimeStep) -> np.ndarray:
        obs = torch.from_numpy(ts.obs)
        avail = torch.from_numpy(ts.avail_actions)
        last = self.last if self.net.last_action else None
        if self.net.communicates:
            if ts.inbox_idx is None or ts.inbox_mask is None:
                raise ValueError("a communicating policy needs the inbox routing: run it in a Rollout with a topology")
            mask = drop_messages(torch.from_numpy(ts.inbox_mask), self.msg_loss, self.loss_rng)
            self.heard += int(mask[torch.from_numpy(~ts.done)].sum())
            q, self.hidden, self.msg = self.net.step(obs, self.hidden, last, self.msg, torch.from_numpy(ts.inbox_idx), mask)
        else:
            q, self.hidden, _ = self.net(obs, self.hidden, last)
        self.q = q
        if self.net.continuous:
            a = torch.tanh(q).numpy() * self.action_scale
            if self.noise > 0:
                a = np.clip(a + self.rng.normal(0.0, self.noise, a.shape) * self.action_scale, -self.action_scale, self.action_scale)
            return a.astype(np.float32)
        if self.sample:
            actions, logp = sample_actions(q, avail, self.rng)
            self.step_extras = {"logp": logp}
        else:
            actions = masked_greedy(q, avail).numpy()
        if self.epsilon > 0:
            B, n, A = ts.avail_actions.shape
            explore = self.rng.random((B, n)) < self.epsilon
            if explore.any():
                r = self.rng.random((B, n, A))
                r[~ts.avail_actions] = -1.0
                actions = np.where(explore, r.argmax(-1), actions)
        if self.net.last_action:
            self.last = torch.nn.functional.one_hot(torch.from_numpy(actions), self.net.n_actions).float()
        return actions


def sample_actions(logits: torch.Tensor, avail: torch.Tensor, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """Draw from softmax(logits) over the available actions with ``rng`` (inverse CDF:
    one uniform per agent, so a seed fixes the draw); returns actions and their log-probs."""
    logp_all = torch.log_softmax(torch.where(avail.bool(), logits, torch.full_like(logits, NEG_INF)), dim=-1)
    p = logp_all.exp().double().numpy()
    cdf = np.cumsum(p, axis=-1)
    u = rng.random(p.shape[:-1])[..., None] * cdf[..., -1:]
    actions = np.minimum((cdf < u).sum(-1), p.shape[-1] - 1)
    actions = np.where(np.take_along_axis(avail.numpy(), actions[..., None], -1)[..., 0], actions, logits.argmax(-1).numpy())
    logp = np.take_along_axis(logp_all.numpy(), actions[..., None], -1)[..., 0].astype(np.float32)
    return actions.astype(np.int64), logp
