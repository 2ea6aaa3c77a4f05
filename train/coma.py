"""COMA: counterfactual multi-agent policy gradients (Foerster et al. 2018).

The actor is the recurrent agent network with a logits head (shared, agent
id, optional messages), sampled while training, exported greedy. The
centralised critic sees the state, the agent's id and the *other* agents'
actions, and outputs in one forward pass the Q-value of every action of
agent i: ``Q_i(s, (a_-i, .)) [A]``. The counterfactual baseline of agent i is
then one dot product, ``b_i = sum_a' pi_i(a'|tau_i) Q_i(s, (a_-i, a'))``, and
the actor follows the advantage ``Q_i(s, a) - b_i`` of the action it took.
The critic learns TD(lambda) targets from a target copy, synced every
``target_update`` updates. On-policy: each update uses the last
``batch_episodes`` finished episodes.
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
from .networks import NEG_INF, RNNAgent, pad_agents, pad_state, team_slots
from .policy import TorchTeamPolicy
from .rewards import RewardConfig
from .returns import lambda_returns


@dataclass
class COMAConfig(AgentNetConfig, CommConfig, RewardConfig):
    hidden_dim: int = 64
    agent_id: bool = True
    shared: bool = True
    last_action: bool = False
    critic_hidden: int = 128
    lr: float = 5e-4
    critic_lr: float = 5e-4
    gamma: float = 0.99
    td_lambda: float = 0.8
    batch_episodes: int = 0  # finished episodes per update; 0: max(8, n_envs)
    critic_steps: int = 1  # critic passes over each batch before the actor step
    target_update: int = 20  # updates between target-critic copies
    ent_start: float = 0.01
    ent_end: float = 0.001
    grad_clip: float = 10.0

    def validate(self) -> None:
        self.validate_comm()
        self.validate_rewards()
        for k in ("hidden_dim", "critic_hidden", "critic_steps", "target_update"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.batch_episodes < 0:
            raise ConfigError(f"batch_episodes must be >= 0, got {self.batch_episodes}")
        for k in ("gamma", "td_lambda"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"{k} must be in [0, 1], got {getattr(self, k)}")
        if self.lr <= 0 or self.critic_lr <= 0:
            raise ConfigError("lr and critic_lr must be > 0")


class COMACritic(nn.Module):
    """Q_i(s, (a_-i, .)): every action's value for agent i in one pass.

    ``n_agents`` slots: the state is the slot-padded one (``pad_state``), the
    joint action is padded with all-zero one-hots for absent slots (which no
    present agent's action can look like), and agent i reads id i, so the same
    parameters serve any team of n <= slots."""

    def __init__(self, state_dim: int, n_agents: int, n_actions: int, hidden: int) -> None:
        super().__init__()
        self.n, self.A = n_agents, n_actions
        self.net = nn.Sequential(
            nn.Linear(state_dim + n_agents + n_agents * n_actions, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, n_actions)
        )
        self.register_buffer("ids", torch.eye(n_agents), persistent=False)
        # agent i's input hides its own action: others[i] = 1 everywhere except agent i's block
        others = 1.0 - torch.eye(n_agents).repeat_interleave(n_actions, dim=1)
        self.register_buffer("others", others, persistent=False)  # [n, n*A]

    def forward(self, state: torch.Tensor, actions_onehot: torch.Tensor) -> torch.Tensor:
        """state [B, T, s], actions_onehot [B, T, n, A] (n <= the slots) -> Q [B, T, n, A]."""
        B, T, n = actions_onehot.shape[:3]
        padded = pad_agents(actions_onehot, self.n, dim=2)
        joint = padded.reshape(B, T, 1, self.n * self.A).expand(B, T, n, -1) * self.others[:n]
        x = torch.cat([state.unsqueeze(2).expand(B, T, n, -1), self.ids[:n].expand(B, T, -1, -1), joint], dim=-1)
        return self.net(x)


def coma_baseline(q_all: torch.Tensor, pi: torch.Tensor) -> torch.Tensor:
    """b_i = sum_a' pi_i(a') Q_i(s, (a_-i, a')): one dot product over the last axis."""
    return (q_all * pi).sum(-1)


class COMALearner(LearnerBase):
    def __init__(self, spec: EnvSpec, cfg: COMAConfig, n_envs: int, seed: int, total_steps: int, topology: Topology | None = None) -> None:
        if not spec.discrete:
            raise ConfigError(f"coma needs discrete actions; env {spec.name!r} has a continuous box")
        super().__init__(spec, cfg, n_envs, seed, total_steps, topology)
        self.slots = team_slots(spec, cfg.max_agents)  # any team of n <= slots (docs/team-size.md)
        self.net = RNNAgent(spec.obs_dim, spec.n_actions, spec.n_agents, cfg.hidden_dim, cfg.agent_id, cfg.last_action, cfg.shared, cfg, self.k_max,
                            head="logits", recurrent=cfg.recurrent, max_agents=self.slots)
        self.critic = COMACritic(spec.state_dim_at(self.slots), self.slots, spec.n_actions, cfg.critic_hidden)
        self.target_critic = copy.deepcopy(self.critic)
        self.optim = torch.optim.Adam(
            [{"params": list(self.net.parameters()), "lr": cfg.lr}, {"params": list(self.critic.parameters()), "lr": cfg.critic_lr}]
        )
        self.batch_episodes = cfg.batch_episodes or max(8, n_envs)
        # on-policy: the episodes collected since the last update (kept with checkpoints for an exact resume)
        self.buffer = EpisodeBuffer(spec, self.batch_episodes, self.k_max, extras={"logp": ((spec.n_agents,), np.float32), **self.credit_fields()})
        self.policy = self.make_policy(self.net, sample=True)
        self.env_steps = 0

    def behaviour_policy(self, env_steps: int) -> TorchTeamPolicy:
        self.env_steps = env_steps
        return self.policy

    def acting_network(self) -> RNNAgent:
        return self.net

    def ent_coef(self) -> float:
        return linear_schedule(self.cfg.ent_start, self.cfg.ent_end, self.env_steps, max(1, self.total_steps))

    def observe(self, episodes: dict[str, np.ndarray]) -> list[dict[str, float]]:
        out = []
        for i in range(len(episodes["filled"])):
            self.buffer.add({name: v[i : i + 1] for name, v in episodes.items()})
            if len(self.buffer) >= self.batch_episodes:
                out.append(self.update(self.buffer.all()))
                self.buffer.clear()
        return out

    def modules(self) -> dict[str, nn.Module]:
        return {"agent": self.net, "critic": self.critic, "target_critic": self.target_critic}

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        c = self.cfg
        obs = torch.from_numpy(batch["obs"])
        state = pad_state(torch.from_numpy(batch["state"]), self.spec, self.slots)
        avail = torch.from_numpy(batch["avail"])
        actions = torch.from_numpy(batch["actions"])  # [E, T, n]
        E, T, n = actions.shape
        reward = self.learning_rewards(batch)  # [E, T, n] (per agent: mixed-motive tasks work too)
        terminated = torch.from_numpy(batch["terminated"]).float().unsqueeze(-1).expand(-1, -1, n)
        filled = torch.from_numpy(batch["filled"]).float().unsqueeze(-1).expand(-1, -1, n)
        onehot = F.one_hot(actions, self.spec.n_actions).float()  # [E, T, n, A]

        # ---- critic: TD(lambda) on Q_i(s_t, a_t) from the target critic ------------------------
        with torch.no_grad():
            q_tgt = self.target_critic(state[:, :T], onehot).gather(-1, actions.unsqueeze(-1)).squeeze(-1)  # [E, T, n]
            # next_q[:, t] = Q_target(s_{t+1}, a_{t+1}). After an episode's last step there is no next
            # joint action: a terminal end does not bootstrap; a time-limit end reuses the last step's
            # own estimate (a small bias; the built-in envs end by termination)
            shifted = torch.cat([q_tgt[:, 1:], q_tgt[:, -1:]], dim=1)
            nxt_real = torch.cat([filled[:, 1:], torch.zeros_like(filled[:, :1])], dim=1).bool()
            next_q = torch.where(nxt_real, shifted, q_tgt)
            targets = lambda_returns(reward, terminated, filled, next_q, c.gamma, c.td_lambda)
        denom = filled.sum().clamp(min=1.0)
        for _ in range(c.critic_steps):
            q_all = self.critic(state[:, :T], onehot)
            q_taken = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            critic_loss = (((q_taken - targets) ** 2) * filled).sum() / denom
            self.optim.zero_grad(set_to_none=True)
            critic_loss.backward()
            torch.nn.utils.clip_grad_norm_(self.critic.parameters(), c.grad_clip)
            self.optim.step()

        # ---- actor: counterfactual advantage ------------------------------------------------------------
        inbox = None
        if self.net.communicates:
            inbox = (torch.from_numpy(batch["inbox_idx"].astype(np.int64)), drop_messages(torch.from_numpy(batch["inbox_mask"]), c.msg_dropout, self.sample_rng))
        prev = None
        if self.net.last_action:
            prev = torch.cat([torch.zeros_like(onehot[:, :1]), onehot], dim=1)
        logits = self.net.unroll(obs, prev, *(inbox or (None, None)))[:, :T]
        logits = torch.where(avail[:, :T], logits, torch.full_like(logits, NEG_INF))
        logp_all = torch.log_softmax(logits, dim=-1)
        pi = logp_all.exp()
        with torch.no_grad():
            q_all = self.critic(state[:, :T], onehot)
            q_taken = q_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
            adv = q_taken - coma_baseline(q_all, pi.detach())
        logp = logp_all.gather(-1, actions.unsqueeze(-1)).squeeze(-1)
        entropy = -(pi * torch.where(avail[:, :T], logp_all, torch.zeros_like(logp_all))).sum(-1)
        ent = (entropy * filled).sum() / denom
        actor_loss = -((logp * adv) * filled).sum() / denom - self.ent_coef() * ent
        self.optim.zero_grad(set_to_none=True)
        actor_loss.backward()
        gn = torch.nn.utils.clip_grad_norm_(self.net.parameters(), c.grad_clip)
        self.optim.step()
        self.updates += 1
        if self.updates % c.target_update == 0:
            self.target_critic.load_state_dict(self.critic.state_dict())
        m = filled.bool()
        return {
            "loss": float(actor_loss.detach() + critic_loss.detach()),
            "entropy": float(ent.detach()),
            "grad_norm": float(gn),
            "td_abs": float((q_taken - targets)[m].abs().mean()),
            "q_taken": float(q_taken[m].mean()),
        }
