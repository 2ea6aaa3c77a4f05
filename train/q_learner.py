"""IQL, VDN and QMIX: one value-based learner; VDN, QMIX and any other mixer
come from the mixer registry (``train.mixers``).

Recurrent agents unrolled over whole episodes sampled from an episode replay
buffer; double-Q targets from a target network (agents and mixer); optional
TD(lambda) returns; epsilon-greedy exploration with linear annealing; gradient
norm clipping. IQL trains each agent's Q on its own reward, VDN and QMIX train
Q_tot = mixer(Q_1..Q_n, s) on the team reward.

Difference rewards with a mixer (``reward=difference`` or ``team+difference``,
docs/credit.md). Q_tot keeps learning the team reward: the mixer's
factorisation (additive, monotonic) is what makes the agents' greedy actions
the team's, and a sum of D_i is not the team's return. The per-agent reward
enters beside it, as an auxiliary TD loss on each agent's own utility Q_i
(the IQL loss on D_i, or the env's reward plus D_i), weighted by
``difference_weight``: it gives each utility a signal about its own agent's
contribution without changing what Q_tot estimates.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch
from torch import nn

from ..envs import EnvSpec
from ..envs.topology import Topology
from .buffer import EpisodeBuffer
from .comm import CommConfig, drop_messages
from .config import AgentNetConfig, ConfigError
from .learner import LearnerBase, linear_schedule
from .networks import NEG_INF, RNNAgent, masked_greedy, pad_state, team_slots
from .policy import TorchTeamPolicy
from .rewards import RewardConfig, RunningMeanStd
from .returns import lambda_returns

if TYPE_CHECKING:
    from .mixers import Mixer


@dataclass
class QLearnerConfig(AgentNetConfig, CommConfig, RewardConfig):
    """Settings shared by IQL, VDN and QMIX (defaults after PyMARL/EPyMARL);
    the message keys (comm, topology, msg_dim, ...) come from ``CommConfig``."""

    hidden_dim: int = 64
    agent_id: bool = True  # agent-id one-hot input (with shared parameters)
    shared: bool = True  # one network for all agents
    last_action: bool = False  # previous action one-hot as input
    lr: float = 5e-4
    gamma: float = 0.99
    td_lambda: float = 0.0  # TD(lambda) targets; 0: one-step (lambda > 0 biases towards the exploring policy)
    double_q: bool = True
    batch_size: int = 32  # episodes per update
    buffer_size: int = 5000  # episodes
    episodes_per_update: int = 0  # collected episodes per gradient update; 0: max(1, n_envs // 4)
    target_update_episodes: int = 200  # collected episodes between hard target-network copies
    target_tau: float = 0.0  # > 0: soft (Polyak) target updates after every gradient step instead of hard copies
    grad_clip: float = 10.0
    eps_start: float = 1.0
    eps_finish: float = 0.05
    eps_anneal_frac: float = 0.4  # fraction of the run's steps to anneal over
    eps_anneal_steps: int = 0  # if > 0, overrides eps_anneal_frac
    difference_weight: float = 1.0  # mixers with reward=difference|team+difference: weight of the per-agent utility TD loss

    def validate(self) -> None:
        self.validate_comm()
        self.validate_rewards()
        if not 0.0 <= self.td_lambda <= 1.0:
            raise ConfigError(f"td_lambda must be in [0, 1], got {self.td_lambda}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in [0, 1], got {self.gamma}")
        for k in ("hidden_dim", "batch_size", "buffer_size", "episodes_per_update", "target_update_episodes"):
            if getattr(self, k) < (0 if k == "episodes_per_update" else 1):
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0.0 <= self.target_tau <= 1.0:
            raise ConfigError(f"target_tau must be in [0, 1], got {self.target_tau}")
        if not 0 <= self.eps_finish <= 1 or not 0 <= self.eps_start <= 1:
            raise ConfigError("eps_start and eps_finish must be in [0, 1]")
        if self.difference_weight < 0:
            raise ConfigError(f"difference_weight must be >= 0, got {self.difference_weight}")


@dataclass
class IQLConfig(QLearnerConfig):
    """Independent Q-learning: each agent learns its own Q on its own reward."""


class QLearner(LearnerBase):
    """Shared learner for IQL (``mixer=""``: no mixer) and every registered mixer
    (``mixer``: its name in ``train.mixers``: vdn, qmix, ...)."""

    counter_names = ("pending", "since_sync")

    def __init__(
        self, spec: EnvSpec, cfg: QLearnerConfig, mixer: str, n_envs: int, seed: int, total_steps: int, topology: Topology | None = None
    ) -> None:
        if not spec.discrete:
            raise ConfigError(f"{mixer or 'iql'} needs discrete actions; env {spec.name!r} has a continuous box")
        super().__init__(spec, cfg, n_envs, seed, total_steps, topology)
        self.mixer_name = mixer
        # agent slots (docs/team-size.md): the networks and the mixer take any team of n <= slots
        self.slots = team_slots(spec, cfg.max_agents)
        self.net = RNNAgent(
            spec.obs_dim, spec.n_actions, spec.n_agents, cfg.hidden_dim, cfg.agent_id, cfg.last_action, cfg.shared, cfg, self.k_max,
            recurrent=cfg.recurrent, max_agents=self.slots,
        )
        self.mixer: Mixer | None = None
        if mixer:
            from .mixers import get_mixer  # the mixer modules import this one (QLearnerConfig)

            # over the state laid out for every slot: one width for any team size
            self.mixer = get_mixer(mixer).mixer_cls.from_config(self.slots, spec.state_dim_at(self.slots), cfg)
        self.target_net = copy.deepcopy(self.net)
        self.target_mixer = copy.deepcopy(self.mixer)
        params = list(self.net.parameters()) + (list(self.mixer.parameters()) if self.mixer is not None else [])
        self.params = params
        self.optim = torch.optim.Adam(params, lr=cfg.lr)
        self.buffer = EpisodeBuffer(spec, cfg.buffer_size, self.k_max, extras=self.credit_fields())
        self.policy = self.make_policy(self.net)
        self.episodes_per_update = cfg.episodes_per_update or max(1, n_envs // 4)
        # a mixer learning the per-agent reward beside the team's (module docstring)
        self.aux_difference = self.mixer is not None and cfg.uses_difference and cfg.difference_weight > 0
        if self.aux_difference and cfg.standardise_rewards:
            self.aux_reward_stats = RunningMeanStd()

    # ---- acting ---------------------------------------------------------
    def epsilon(self, env_steps: int) -> float:
        c = self.cfg
        span = c.eps_anneal_steps or max(1, int(c.eps_anneal_frac * self.total_steps))
        return linear_schedule(c.eps_start, c.eps_finish, env_steps, span)

    def exploration(self, env_steps: int) -> dict[str, float]:
        return {"epsilon": self.epsilon(env_steps)}

    def behaviour_policy(self, env_steps: int) -> TorchTeamPolicy:
        self.policy.epsilon = self.epsilon(env_steps)
        return self.policy

    def acting_network(self) -> RNNAgent:
        return self.net

    # ---- learning -------------------------------------------------------
    def observe(self, episodes: dict[str, np.ndarray]) -> list[dict[str, float]]:
        """Store finished episodes; run the updates they pay for."""
        k = len(episodes["filled"])
        if k == 0:
            return []
        self.buffer.add(episodes)
        self.pending += k
        self.since_sync += k
        out = []
        while self.pending >= self.episodes_per_update and len(self.buffer) >= self.cfg.batch_size:
            self.pending -= self.episodes_per_update
            out.append(self.update(self.buffer.sample(self.cfg.batch_size, self.sample_rng)))
            if self.cfg.target_tau > 0:
                self.soft_update_targets(self.cfg.target_tau)
            elif self.since_sync >= self.cfg.target_update_episodes:
                self.since_sync = 0
                self.sync_targets()
        return out

    def _unroll(
        self, net: RNNAgent, obs: torch.Tensor, actions: torch.Tensor, inbox: tuple[torch.Tensor, torch.Tensor] | None
    ) -> torch.Tensor:
        """Q values [B, T+1, n, A] of an episode batch from a zero hidden state."""
        prev = None
        if net.last_action:
            onehot = torch.nn.functional.one_hot(actions, net.n_actions).float()
            zeros = torch.zeros(obs.shape[0], 1, obs.shape[2], net.n_actions)
            prev = torch.cat([zeros, onehot], dim=1)  # prev[:, t] = action at t-1
        if inbox is None:
            return net.unroll(obs, prev)
        return net.unroll(obs, prev, *inbox)

    def _batch_tensors(self, batch: dict[str, np.ndarray]) -> tuple[torch.Tensor, ...]:
        """An episode batch as tensors: obs, state, avail, actions, the learning rewards
        ([B, T] team with a mixer, [B, T, n] for IQL), terminated and filled (float
        [B, T]), and the inbox routing with this update's message dropout (None
        without messages). The state is laid out for the run's agent slots
        (``pad_state``; unchanged when the team fills them). Its own method so
        learners built on this one (WQMIX) read batches the same way."""
        inbox = None
        if self.net.communicates:  # the same dropped messages for the online and the target unroll
            idx = torch.from_numpy(batch["inbox_idx"].astype(np.int64))
            inbox = (idx, drop_messages(torch.from_numpy(batch["inbox_mask"]), self.cfg.msg_dropout, self.sample_rng))
        return (
            torch.from_numpy(batch["obs"]),
            pad_state(torch.from_numpy(batch["state"]), self.spec, self.slots),
            torch.from_numpy(batch["avail"]),
            torch.from_numpy(batch["actions"]),
            self.learning_rewards(batch, team=self.mixer is not None),
            torch.from_numpy(batch["terminated"]).float(),
            torch.from_numpy(batch["filled"]).float(),
            inbox,
        )

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        c = self.cfg
        obs, state, avail, actions, reward, terminated, filled, inbox = self._batch_tensors(batch)
        q_all = self._unroll(self.net, obs, actions, inbox)  # [B, T+1, n, A]
        chosen = q_all[:, :-1].gather(3, actions.unsqueeze(-1)).squeeze(-1)  # [B, T, n]
        with torch.no_grad():
            q_tgt_all = self._unroll(self.target_net, obs, actions, inbox)
            avail_next = avail[:, 1:]
            if c.double_q:
                a_star = masked_greedy(q_all[:, 1:].detach(), avail_next)
                next_q = q_tgt_all[:, 1:].gather(3, a_star.unsqueeze(-1)).squeeze(-1)
            else:
                next_q = torch.where(avail_next, q_tgt_all[:, 1:], torch.full_like(q_tgt_all[:, 1:], NEG_INF)).max(-1).values
            aux_targets = None
            if self.aux_difference:  # each utility Q_i on its agent's own reward (IQL targets)
                r_i = self._standardised(self.agent_rewards(batch), batch, self.aux_reward_stats)
                aux_targets = lambda_returns(r_i, terminated.unsqueeze(-1), filled.unsqueeze(-1), next_q, c.gamma, c.td_lambda)
            if self.mixer is not None:
                next_q = self.target_mixer(next_q, state[:, 1:]).squeeze(-1)  # [B, T]
                term, mask_f = terminated, filled
            else:
                term, mask_f = terminated.unsqueeze(-1), filled.unsqueeze(-1)
            targets = lambda_returns(reward, term, mask_f, next_q, c.gamma, c.td_lambda)
        if self.mixer is not None:
            pred = self.mixer(chosen, state[:, :-1]).squeeze(-1)
            mask = filled
        else:
            pred = chosen
            mask = filled.unsqueeze(-1).expand_as(chosen)
        td = (pred - targets) * mask
        loss = (td**2).sum() / mask.sum().clamp(min=1.0)
        if aux_targets is not None:
            m_i = filled.unsqueeze(-1).expand_as(chosen)
            loss = loss + c.difference_weight * (((chosen - aux_targets) * m_i) ** 2).sum() / m_i.sum().clamp(min=1.0)
        self.optim.zero_grad(set_to_none=True)
        loss.backward()
        grad_norm = torch.nn.utils.clip_grad_norm_(self.params, c.grad_clip)
        self.optim.step()
        self.updates += 1
        n_mask = mask.sum().clamp(min=1.0)
        return {
            "loss": float(loss.detach()),
            "td_abs": float(td.detach().abs().sum() / n_mask),
            "q_taken": float((chosen.detach() * filled.unsqueeze(-1)).sum() / (filled.sum().clamp(min=1.0) * chosen.shape[-1])),
            "target_mean": float((targets * mask).sum() / n_mask),
            "grad_norm": float(grad_norm),
        }

    def sync_targets(self) -> None:
        self.target_net.load_state_dict(self.net.state_dict())
        if self.mixer is not None:
            self.target_mixer.load_state_dict(self.mixer.state_dict())

    @torch.no_grad()
    def soft_update_targets(self, tau: float) -> None:
        pairs = [(self.target_net, self.net)] + ([(self.target_mixer, self.mixer)] if self.mixer is not None else [])
        for tgt, src in pairs:
            for pt, ps in zip(tgt.parameters(), src.parameters()):
                pt.lerp_(ps, tau)

    # ---- checkpointing --------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods = {"agent": self.net, "target_agent": self.target_net}
        if self.mixer is not None:
            mods["mixer"] = self.mixer
            mods["target_mixer"] = self.target_mixer
        return mods
