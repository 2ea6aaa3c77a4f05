"""Weighted QMIX (Rashid et al. 2020): OW-QMIX and CW-QMIX.

QMIX's monotonic Q_tot cannot represent payoffs where an agent's best action
depends on the others' (the climbing and penalty games); trained by plain
least squares it settles on the safe joint action. WQMIX keeps the monotonic
QMIX mixer for acting, because its argmax is every agent's own argmax, and adds

- an unrestricted central value Q*(s, u): its own agent network (no messages;
  it is never exported) and a feed-forward ``CentralMixer`` of the state and
  those utilities, trained by plain least squares;
- bootstrap targets from Q*: ``y = r + gamma * Q*_target(s', u'*)``, where
  ``u'*`` is the greedy joint action of the QMIX agents (TD(lambda) as in QMIX);
- a *weighted* QMIX loss ``w(s, u) (Q_tot(s, u) - y)^2`` that spends Q_tot's
  limited capacity on the joint actions that matter. Weight 1 where they
  matter, ``alpha`` elsewhere:
  OW (optimistic): where Q_tot underestimates the target (``Q_tot < y``);
  CW (central): where ``u`` is Q_tot's own greedy joint action or the target
  beats Q* of that greedy action (``y > Q*_target(s, u*)``), i.e. where ``u``
  may be better than what the agents currently pick.

The agents act and are exported exactly as QMIX's; the QMIX mixer, Q* and every
target copy stay in checkpoints (``modules``) only.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..envs import EnvSpec
from ..envs.topology import Topology
from .config import ConfigError
from .mixers.central import CentralMixer
from .mixers.qmix import QMIXConfig
from .networks import RNNAgent, masked_greedy
from .q_learner import QLearner
from .returns import lambda_returns

WEIGHTINGS = ("ow", "cw")


@dataclass
class WQMIXConfig(QMIXConfig):
    """Weighted QMIX: the QMIX keys plus the weighting and the central Q*.

    ``double_q`` picks the bootstrap action ``u'*``: the online agents' greedy
    joint action (true, the paper's choice) or the target agents' (false)."""

    alpha: float = 0.1  # weight of the joint actions that do not matter (0 < alpha <= 1; 1: QMIX's loss with Q* targets)
    central_hidden_dim: int = 64  # hidden size of Q*'s own agent network (recurrent like the agents)
    central_embed_dim: int = 256  # width of Q*'s two hidden layers over [state, utilities]
    central_loss_weight: float = 1.0  # loss = qmix_loss_weight * weighted QMIX loss + central_loss_weight * Q* loss
    qmix_loss_weight: float = 1.0

    def validate(self) -> None:
        super().validate()
        if not 0.0 < self.alpha <= 1.0:
            raise ConfigError(f"alpha must be in (0, 1], got {self.alpha}")
        for k in ("central_hidden_dim", "central_embed_dim"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.central_loss_weight <= 0 or self.qmix_loss_weight <= 0:
            raise ConfigError("central_loss_weight and qmix_loss_weight must be > 0")
        if self.uses_difference:
            raise ConfigError(f"weighted QMIX learns the team reward only: reward={self.reward} is not supported "
                              "(use reward=team; shaping works)")


@dataclass
class OWQMIXConfig(WQMIXConfig):
    """OW-QMIX: weight 1 where Q_tot underestimates the Q* target, alpha elsewhere."""


@dataclass
class CWQMIXConfig(WQMIXConfig):
    """CW-QMIX: weight 1 on the greedy joint action and where the target beats Q* of it, alpha elsewhere."""


class WQMIXLearner(QLearner):
    """QLearner with a QMIX mixer, a central Q* and the weighted loss (``weighting``: ow or cw)."""

    def __init__(
        self, spec: EnvSpec, cfg: WQMIXConfig, weighting: str, n_envs: int, seed: int, total_steps: int, topology: Topology | None = None
    ) -> None:
        if weighting not in WEIGHTINGS:
            raise ValueError(f"weighting must be one of {WEIGHTINGS}, got {weighting!r}")
        super().__init__(spec, cfg, "qmix", n_envs, seed, total_steps, topology)
        self.weighting = weighting
        # Q*'s agent network reads the same inputs as the agents but sends no messages: it
        # is centralised anyway (the central mixer sees the state) and never leaves training.
        self.central_net = RNNAgent(
            spec.obs_dim, spec.n_actions, spec.n_agents, cfg.central_hidden_dim, cfg.agent_id, cfg.last_action, cfg.shared,
            recurrent=cfg.recurrent, max_agents=self.slots,
        )
        self.central_mixer = CentralMixer.from_config(self.slots, spec.state_dim_at(self.slots), cfg)
        self.target_central_net = copy.deepcopy(self.central_net)
        self.target_central_mixer = copy.deepcopy(self.central_mixer)
        self.params = self.params + list(self.central_net.parameters()) + list(self.central_mixer.parameters())
        self.optim = torch.optim.Adam(self.params, lr=cfg.lr)  # one optimiser over the agents, both mixers and Q*

    def _q_star(self, mixer: CentralMixer, utilities: torch.Tensor, joint: torch.Tensor, state: torch.Tensor) -> torch.Tensor:
        """Q*(s_t, joint_t) [B, T'] from Q*'s agent utilities [B, >= T', n, A] and a joint action
        per step ``joint`` [B, T', n]."""
        steps = joint.shape[1]
        return mixer(utilities[:, :steps].gather(3, joint.unsqueeze(-1)).squeeze(-1), state[:, :steps]).squeeze(-1)

    def loss_weights(self, q_tot: torch.Tensor, targets: torch.Tensor, actions: torch.Tensor, greedy: torch.Tensor,
                     q_star_greedy: torch.Tensor) -> torch.Tensor:
        """w(s, u) [B, T] of the QMIX loss: 1 where the joint action matters, ``alpha`` elsewhere.

        ``q_tot``, ``targets``: [B, T]; ``actions``, ``greedy``: the taken and Q_tot's greedy
        joint actions [B, T, n]; ``q_star_greedy``: Q*_target of the greedy one [B, T]."""
        if self.weighting == "ow":
            matters = q_tot < targets
        else:
            matters = (actions == greedy).all(dim=-1) | (targets > q_star_greedy)
        return torch.where(matters, torch.ones_like(q_tot), torch.full_like(q_tot, self.cfg.alpha))

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        c = self.cfg
        obs, state, avail, actions, reward, terminated, filled, inbox = self._batch_tensors(batch)
        q_all = self._unroll(self.net, obs, actions, inbox)  # [B, T+1, n, A]
        chosen = q_all[:, :-1].gather(3, actions.unsqueeze(-1)).squeeze(-1)  # [B, T, n]
        q_tot = self.mixer(chosen, state[:, :-1]).squeeze(-1)  # [B, T]
        q_star = self._q_star(self.central_mixer, self._unroll(self.central_net, obs, actions, None), actions, state)  # [B, T]
        with torch.no_grad():
            greedy = masked_greedy(q_all.detach(), avail)  # u*: Q_tot's greedy joint action at every step [B, T+1, n]
            boot = greedy[:, 1:]  # u'*: the bootstrap joint action after each step
            if not c.double_q:
                boot = masked_greedy(self._unroll(self.target_net, obs, actions, inbox)[:, 1:], avail[:, 1:])
            utilities_tgt = self._unroll(self.target_central_net, obs, actions, None)
            q_star_next = self._q_star(self.target_central_mixer, utilities_tgt[:, 1:], boot, state[:, 1:])  # [B, T]
            targets = lambda_returns(reward, terminated, filled, q_star_next, c.gamma, c.td_lambda)
            q_star_greedy = self._q_star(self.target_central_mixer, utilities_tgt, greedy[:, :-1], state)  # [B, T]
            w = self.loss_weights(q_tot.detach(), targets, actions, greedy[:, :-1], q_star_greedy)
        n_mask = filled.sum().clamp(min=1.0)
        td = (q_tot - targets) * filled
        central_td = (q_star - targets) * filled
        qmix_loss = (w * td**2).sum() / n_mask
        central_loss = (central_td**2).sum() / n_mask
        loss = c.qmix_loss_weight * qmix_loss + c.central_loss_weight * central_loss
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
        self.optim.step()
        self.updates += 1
        return {
            "loss": float(loss.detach()),
            "td_abs": float(td.detach().abs().sum() / n_mask),
            "q_taken": float((chosen.detach() * filled.unsqueeze(-1)).sum() / (n_mask * chosen.shape[-1])),
            "target_mean": float((targets * filled).sum() / n_mask),
            "grad_norm": float(grad_norm),
            "qmix_loss": float(qmix_loss.detach()),
            "central_loss": float(central_loss.detach()),
            "weight_mean": float((w * filled).sum() / n_mask),
        }

    def _central_pairs(self) -> list[tuple[nn.Module, nn.Module]]:
        return [(self.target_central_net, self.central_net), (self.target_central_mixer, self.central_mixer)]

    def sync_targets(self) -> None:
        super().sync_targets()
        for tgt, src in self._central_pairs():
            tgt.load_state_dict(src.state_dict())

    @torch.no_grad()
    def soft_update_targets(self, tau: float) -> None:
        super().soft_update_targets(tau)
        for tgt, src in self._central_pairs():
            for pt, ps in zip(tgt.parameters(), src.parameters()):
                pt.lerp_(ps, tau)

    def modules(self) -> dict[str, nn.Module]:
        return {
            **super().modules(),
            "central_agent": self.central_net,
            "target_central_agent": self.target_central_net,
            "central_mixer": self.central_mixer,
            "target_central_mixer": self.target_central_mixer,
        }
