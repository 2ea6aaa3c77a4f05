"""The unrestricted central mixer of weighted QMIX: Q*(s, u) as a feed-forward
network of the global state and the agents' central utilities, with no sign
constraint on any weight (Rashid et al. 2020).

It is not registered as an algorithm of its own: a non-monotonic Q_tot has no
per-agent argmax, so agents could not act greedily on it. WQMIX (``train/wqmix.py``)
trains it beside a monotonic QMIX mixer, uses it for the bootstrap targets, and
acts with the QMIX agents only.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from ..networks import pad_agents
from .base import Mixer


class CentralMixer(Mixer):
    """qs [..., n] (one utility per agent for its action), states [..., s] -> Q* [..., 1]:
    two hidden ReLU layers of ``embed_dim`` over ``[state, qs]``."""

    def __init__(self, n_agents: int, state_dim: int, embed_dim: int = 256) -> None:
        super().__init__()
        self.n_agents, self.state_dim = n_agents, state_dim
        self.net = nn.Sequential(
            nn.Linear(state_dim + n_agents, embed_dim), nn.ReLU(),
            nn.Linear(embed_dim, embed_dim), nn.ReLU(),
            nn.Linear(embed_dim, 1),
        )

    @classmethod
    def from_config(cls, n_agents: int, state_dim: int, cfg: Any) -> "CentralMixer":
        return cls(n_agents, state_dim, cfg.central_embed_dim)

    def forward(self, qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """qs [..., n] (n <= the slots; absent slots read 0), states [..., s] -> [..., 1]."""
        return self.net(torch.cat([states, pad_agents(qs, self.n_agents)], dim=-1))
