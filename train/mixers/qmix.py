"""QMIX: Q_tot = f_s(Q_1..Q_n), a one-hidden-layer network whose weights are
produced by hypernetworks of the global state and made non-negative (abs), so
dQ_tot/dQ_i >= 0 (monotonic); the final bias is a state-value V(s)
(Rashid et al. 2018).

Team size (docs/team-size.md): the mixer has ``n_agents`` slots; a smaller
team's utilities are padded with zeros for the absent slots (``pad_agents``),
so an absent agent adds nothing to the hidden layer, and the state is the
slot-padded state of the learner (``pad_state``): one set of parameters mixes
any team of n <= slots.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn import functional as F

from ..q_learner import QLearnerConfig
from ..networks import pad_agents
from .base import Mixer


@dataclass
class QMIXConfig(QLearnerConfig):
    """QMIX: monotonic state-conditioned mixing by hypernetworks."""

    mixing_embed_dim: int = 32
    hypernet_hidden: int = 64


class QMixer(Mixer):
    def __init__(self, n_agents: int, state_dim: int, embed_dim: int = 32, hypernet_hidden: int = 64) -> None:
        super().__init__()
        self.n_agents, self.state_dim, self.embed_dim = n_agents, state_dim, embed_dim
        self.hyper_w1 = nn.Sequential(
            nn.Linear(state_dim, hypernet_hidden), nn.ReLU(), nn.Linear(hypernet_hidden, n_agents * embed_dim)
        )
        self.hyper_b1 = nn.Linear(state_dim, embed_dim)
        self.hyper_w2 = nn.Sequential(nn.Linear(state_dim, hypernet_hidden), nn.ReLU(), nn.Linear(hypernet_hidden, embed_dim))
        self.value = nn.Sequential(nn.Linear(state_dim, embed_dim), nn.ReLU(), nn.Linear(embed_dim, 1))

    @classmethod
    def from_config(cls, n_agents: int, state_dim: int, cfg: Any) -> "QMixer":
        return cls(n_agents, state_dim, cfg.mixing_embed_dim, cfg.hypernet_hidden)

    def mixing_weights(self, states: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """The (non-negative) weights the hypernetworks give for ``states`` [N, s]."""
        w1 = self.hyper_w1(states).abs().view(-1, self.n_agents, self.embed_dim)
        w2 = self.hyper_w2(states).abs().view(-1, self.embed_dim, 1)
        return w1, w2

    def forward(self, qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """qs [..., n] (n <= the slots; absent slots read 0), states [..., s] -> [..., 1]."""
        lead = qs.shape[:-1]
        qs = pad_agents(qs, self.n_agents).reshape(-1, 1, self.n_agents)
        states = states.reshape(-1, self.state_dim)
        w1, w2 = self.mixing_weights(states)
        b1 = self.hyper_b1(states).view(-1, 1, self.embed_dim)
        hidden = F.elu(torch.bmm(qs, w1) + b1)
        y = torch.bmm(hidden, w2) + self.value(states).view(-1, 1, 1)
        return y.view(*lead, 1)
