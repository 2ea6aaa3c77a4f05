"""MADDPG (Lowe et al. 2017): deterministic actors, a centralised critic per agent.

Actor: the recurrent agent network (shared parameters + id, or one per agent;
optional messages). Continuous boxes: ``action = high * tanh(output)``,
explored with Gaussian noise annealed from ``noise_start`` to ``noise_end``.
Discrete actions: logits, explored by sampling softmax(logits) (the
Gumbel-max trick) and trained through a straight-through Gumbel-softmax
(``gumbel_tau``); greedy execution is the masked argmax.

Critic i: an MLP ``Q_i(s, a_1..a_n)`` on the global state and the joint action
(one-hot for discrete), one network per agent trained on agent i's own
reward, so cooperative and mixed-motive tasks both work. Targets come from
target actors and critics updated softly (``tau``). Replay holds whole
episodes (the actor is recurrent); each update samples ``batch_size`` of them.
Noise for exploration and for the Gumbel samples is drawn from seeded numpy
generators, so ``--resume`` stays exact.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.nn import functional as F

from ..envs import EnvSpec
from ..envs.topology import Topology
from .buffer import EpisodeBuffer
from .comm import CommConfig, drop_messages
from .config import AgentNetConfig, ConfigError
from .learner import LearnerBase, linear_schedule
from .networks import NEG_INF, RNNAgent
from .rewards import RewardConfig
from .policy import TorchTeamPolicy


@dataclass
class MADDPGConfig(AgentNetConfig, CommConfig, RewardConfig):
    hidden_dim: int = 64
    agent_id: bool = True
    shared: bool = True
    critic_hidden: int = 128
    lr: float = 5e-4  # actor
    critic_lr: float = 1e-3
    gamma: float = 0.95
    tau: float = 0.01  # soft target update
    batch_size: int = 32  # episodes per update
    buffer_size: int = 5000  # episodes
    episodes_per_update: int = 0  # 0: max(1, n_envs // 4)
    noise_start: float = 0.3  # continuous: exploration noise std (fraction of the box), annealed
    noise_end: float = 0.05
    noise_anneal_frac: float = 0.5
    gumbel_tau: float = 1.0  # discrete: Gumbel-softmax temperature
    action_reg: float = 1e-3  # penalty on the actor's pre-activation (as in MADDPG)
    grad_clip: float = 0.5

    def validate(self) -> None:
        self.validate_comm()
        self.validate_rewards()
        for k in ("hidden_dim", "critic_hidden", "batch_size", "buffer_size"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        if not 0.0 < self.tau <= 1.0:
            raise ConfigError(f"tau must be in (0, 1], got {self.tau}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in [0, 1], got {self.gamma}")
        if self.lr <= 0 or self.critic_lr <= 0 or self.gumbel_tau <= 0:
            raise ConfigError("lr, critic_lr and gumbel_tau must be > 0")


class JointCritic(nn.Module):
    """Q_i(s, a_1..a_n) for every agent i: one MLP per agent."""

    def __init__(self, state_dim: int, n_agents: int, act_dim: int, hidden: int) -> None:
        super().__init__()
        self.n = n_agents
        self.nets = nn.ModuleList(
            nn.Sequential(nn.Linear(state_dim + n_agents * act_dim, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
            for _ in range(n_agents)
        )

    def q(self, i: int, state: torch.Tensor, joint: torch.Tensor) -> torch.Tensor:
        """state [..., s], joint [..., n, a] -> Q_i [...]."""
        return self.nets[i](torch.cat([state, joint.flatten(-2)], dim=-1)).squeeze(-1)


def soft_update(target: nn.Module, source: nn.Module, tau: float) -> None:
    with torch.no_grad():
        for t, s in zip(target.parameters(), source.parameters()):
            t.mul_(1.0 - tau).add_(s, alpha=tau)


def gumbel_softmax_hard(logits: torch.Tensor, avail: torch.Tensor, tau: float, rng: np.random.Generator) -> torch.Tensor:
    """Straight-through Gumbel-softmax over the available actions, noise from ``rng``."""
    u = torch.from_numpy(rng.random(tuple(logits.shape)).astype(np.float32)).clamp(1e-10, 1.0 - 1e-7)
    g = -torch.log(-torch.log(u))
    y = torch.softmax(torch.where(avail, (logits + g) / tau, torch.full_like(logits, NEG_INF)), dim=-1)
    hard = F.one_hot(y.argmax(-1), logits.shape[-1]).to(y.dtype)
    return hard - y.detach() + y


class MADDPGLearner(LearnerBase):
    counter_names = ("pending",)

    def __init__(self, spec: EnvSpec, cfg: MADDPGConfig, n_envs: int, seed: int, total_steps: int, topology: Topology | None = None) -> None:
        self.discrete = spec.discrete
        self.act_dim = spec.n_actions if spec.discrete else spec.action_dim
        self.high = 1.0 if spec.discrete else float(spec.action_high)
        if not spec.discrete and (spec.action_low != -spec.action_high):
            raise ConfigError(f"maddpg needs a symmetric box [-h, h]; env {spec.name} has [{spec.action_low}, {spec.action_high}]")
        if cfg.max_agents not in (0, spec.n_agents):
            raise ConfigError(f"maddpg trains a fixed team (its critic has one head per agent); max_agents must be 0 or {spec.n_agents}")
        super().__init__(spec, cfg, n_envs, seed, total_steps, topology)
        self.net = RNNAgent(spec.obs_dim, self.act_dim, spec.n_agents, cfg.hidden_dim, cfg.agent_id, False, cfg.shared, cfg, self.k_max,
                            head="logits" if self.discrete else "action", action_scale=self.high, recurrent=cfg.recurrent)
        self.critic = JointCritic(spec.state_dim, spec.n_agents, self.act_dim, cfg.critic_hidden)
        self.target_net = copy.deepcopy(self.net)
        self.target_critic = copy.deepcopy(self.critic)
        self.optim = torch.optim.Adam(
            [{"params": list(self.net.parameters()), "lr": cfg.lr}, {"params": list(self.critic.parameters()), "lr": cfg.critic_lr}]
        )
        self.buffer = EpisodeBuffer(spec, cfg.buffer_size, self.k_max, extras=self.credit_fields())
        # discrete: sampled actions, but no log-probs recorded (off-policy)
        self.policy = self.make_policy(self.net, sample=self.discrete, action_scale=self.high, extra_fields={})
        self.episodes_per_update = cfg.episodes_per_update or max(1, n_envs // 4)

    # ---- the learner interface (train.learner.Learner) -------------------------------------
    def noise(self, env_steps: int) -> float:
        c = self.cfg
        return linear_schedule(c.noise_start, c.noise_end, env_steps, max(1, int(c.noise_anneal_frac * self.total_steps)))

    def behaviour_policy(self, env_steps: int) -> TorchTeamPolicy:
        self.policy.noise = 0.0 if self.discrete else self.noise(env_steps)
        return self.policy

    def exploration(self, env_steps: int) -> dict[str, float]:
        """Continuous: the Gaussian noise std; discrete actions explore by sampling (nothing to report)."""
        return {} if self.discrete else {"noise": self.noise(env_steps)}

    def acting_network(self) -> RNNAgent:
        return self.net

    def observe(self, episodes: dict[str, np.ndarray]) -> list[dict[str, float]]:
        k = len(episodes["filled"])
        if k == 0:
            return []
        self.buffer.add(episodes)
        self.pending += k
        out = []
        while self.pending >= self.episodes_per_update and len(self.buffer) >= self.cfg.batch_size:
            self.pending -= self.episodes_per_update
            out.append(self.update(self.buffer.sample(self.cfg.batch_size, self.sample_rng)))
        return out

    def modules(self) -> dict[str, nn.Module]:
        return {"agent": self.net, "critic": self.critic, "target_agent": self.target_net, "target_critic": self.target_critic}

    # ---- learning ------------------------------------------------------------------------------------
    def _act(self, out: torch.Tensor, avail: torch.Tensor, train: bool) -> torch.Tensor:
        """Network outputs -> the joint-action encoding the critic takes."""
        if not self.discrete:
            return torch.tanh(out) * self.high
        if train:
            return gumbel_softmax_hard(out, avail, self.cfg.gumbel_tau, self.sample_rng)
        masked = torch.where(avail, out, torch.full_like(out, NEG_INF))
        return F.one_hot(masked.argmax(-1), self.act_dim).float()

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        c = self.cfg
        obs = torch.from_numpy(batch["obs"])
        state = torch.from_numpy(batch["state"])
        avail = torch.from_numpy(batch["avail"])
        actions = torch.from_numpy(batch["actions"])
        E, T = actions.shape[:2]
        n = self.spec.n_agents
        reward = self.learning_rewards(batch)  # [E, T, n]: each critic its own agent's reward
        not_term = 1.0 - torch.from_numpy(batch["terminated"]).float()
        filled = torch.from_numpy(batch["filled"]).float()
        taken = F.one_hot(actions, self.act_dim).float() if self.discrete else actions  # [E, T, n, a]
        inbox = None
        if self.net.communicates:
            inbox = (torch.from_numpy(batch["inbox_idx"].astype(np.int64)), drop_messages(torch.from_numpy(batch["inbox_mask"]), c.msg_dropout, self.sample_rng))
        args = inbox or (None, None)

        with torch.no_grad():
            next_a = self._act(self.target_net.unroll(obs, None, *args)[:, 1:], avail[:, 1:], train=False)  # a'_{t+1}
        denom = filled.sum().clamp(min=1.0)
        critic_loss = torch.zeros(())
        td_abs, q_mean = [], []
        for i in range(n):
            with torch.no_grad():
                y = reward[..., i] + c.gamma * not_term * self.target_critic.q(i, state[:, 1:], next_a)
            q = self.critic.q(i, state[:, :T], taken)
            critic_loss = critic_loss + (((q - y) ** 2) * filled).sum() / denom
            td_abs.append(float(((q.detach() - y).abs() * filled).sum() / denom))
            q_mean.append(float((q.detach() * filled).sum() / denom))
        self.optim.zero_grad(set_to_none=True)
        critic_loss.backward()
        torch.nn.utils.clip_grad_norm_(self.critic.parameters(), c.grad_clip)
        self.optim.step()

        out = self.net.unroll(obs, None, *args)[:, :T]
        mine = self._act(out, avail[:, :T], train=True)  # [E, T, n, a], differentiable
        actor_loss = torch.zeros(())
        for i in range(n):
            joint = torch.cat([taken[:, :, :i], mine[:, :, i : i + 1], taken[:, :, i + 1 :]], dim=2)
            actor_loss = actor_loss - (self.critic.q(i, state[:, :T], joint) * filled).sum() / denom
        actor_loss = actor_loss + c.action_reg * ((out**2).mean(-1).mean(-1) * filled).sum() / denom
        self.optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        for p in self.critic.parameters():  # the actor's objective must not move the critic
            p.grad = None
        gn = torch.nn.utils.clip_grad_norm_(self.net.parameters(), c.grad_clip)
        self.optim.step()
        soft_update(self.target_net, self.net, c.tau)
        soft_update(self.target_critic, self.critic, c.tau)
        self.updates += 1
        return {
            "loss": float(critic_loss.detach() + actor_loss.detach()),
            "td_abs": float(np.mean(td_abs)),
            "q_taken": float(np.mean(q_mean)),
            "grad_norm": float(gn),
        }
