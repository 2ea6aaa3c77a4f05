"""The value-decomposition mixer interface (mixers live on the workstation only)."""

from __future__ import annotations

from typing import Any

import torch
from torch import nn


class Mixer(nn.Module):
    """Q_tot from the agents' chosen-action values and the global state.

    A mixer is built by ``from_config(n_agents, state_dim, cfg)`` (``cfg``: its
    algorithm's config dataclass, a ``QLearnerConfig``) and trained by
    ``QLearner`` on the team reward, with a target copy (``copy.deepcopy``).
    """

    @classmethod
    def from_config(cls, n_agents: int, state_dim: int, cfg: Any) -> "Mixer":
        return cls()

    def forward(self, qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        """qs [..., n], states [..., state_dim] -> Q_tot [..., 1]."""
        raise NotImplementedError
