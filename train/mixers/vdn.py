"""VDN: Q_tot = sum_i Q_i (Sunehag et al. 2018)."""

from __future__ import annotations

from dataclasses import dataclass

import torch

from ..q_learner import QLearnerConfig
from .base import Mixer


@dataclass
class VDNConfig(QLearnerConfig):
    """VDN: Q_tot is the sum of the agents' Q values."""


class VDNMixer(Mixer):
    def forward(self, qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """qs [..., n], states [..., s] -> [..., 1]: the sum over the agents present (any n)."""
        return qs.sum(dim=-1, keepdim=True)
