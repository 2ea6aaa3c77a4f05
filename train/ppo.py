"""MAPPO and IPPO: one clipped-surrogate learner, two critics.

The actor is the same recurrent agent network as the value learners' (shared
parameters + agent id, optional messages), with a logits head: it samples
from softmax(logits) over the available actions while training and records
the behaviour log-probs; the exported graph acts greedily (masked argmax).

    MAPPO  critic V(s, id): an MLP on the global state plus the agent's id
           (centralised: training only, never exported)
    IPPO   critic V(o_1..o_t): a recurrent network on the agent's own
           observations (decentralised), so the two compare on one task

Each update takes the last ``batch_episodes`` finished episodes: GAE(lambda)
advantages from the critic (a time-limit end bootstraps from the last
observation, a terminal one does not), normalised; ``epochs`` passes over
``minibatches`` episode minibatches of the clipped surrogate, an entropy
bonus annealed linearly from ``ent_start`` to ``ent_end`` over the run, and
the critic's MSE against normalised returns (running mean/std value
normalisation, as in MAPPO). One Adam, two parameter groups (actor, critic).
"""

from __future__ import annotations

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
from .networks import NEG_INF, RNNAgent, pad_state, team_slots
from .policy import TorchTeamPolicy
from .rewards import RewardConfig
from .returns import gae


@dataclass
class PPOConfig(AgentNetConfig, CommConfig, RewardConfig):
    """Settings shared by MAPPO and IPPO (defaults after Yu et al. 2022's MAPPO)."""

    hidden_dim: int = 64
    agent_id: bool = True
    shared: bool = True
    last_action: bool = False
    critic_hidden: int = 128
    lr: float = 5e-4  # actor
    critic_lr: float = 5e-4
    gamma: float = 0.99
    gae_lambda: float = 0.95
    clip: float = 0.2
    epochs: int = 5
    minibatches: int = 2  # episode minibatches per epoch
    batch_episodes: int = 0  # finished episodes per update; 0: max(16, 2 * n_envs)
    ent_start: float = 0.01
    ent_end: float = 0.001
    value_coef: float = 1.0
    value_norm: bool = True
    grad_clip: float = 10.0

    def validate(self) -> None:
        self.validate_comm()
        self.validate_rewards()
        for k in ("hidden_dim", "critic_hidden", "epochs", "minibatches"):
            if getattr(self, k) < 1:
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.batch_episodes < 0:
            raise ConfigError(f"batch_episodes must be >= 0, got {self.batch_episodes}")
        for k in ("gamma", "gae_lambda"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise ConfigError(f"{k} must be in [0, 1], got {getattr(self, k)}")
        if not 0.0 < self.clip < 1.0:
            raise ConfigError(f"clip must be in (0, 1), got {self.clip}")
        if self.lr <= 0 or self.critic_lr <= 0:
            raise ConfigError("lr and critic_lr must be > 0")
        if self.ent_start < 0 or self.ent_end < 0:
            raise ConfigError("ent_start and ent_end must be >= 0")


@dataclass
class MAPPOConfig(PPOConfig):
    """MAPPO: shared recurrent actor, centralised critic V(s, agent id)."""


@dataclass
class IPPOConfig(PPOConfig):
    """IPPO: shared recurrent actor, a local recurrent critic per agent."""


class ValueNorm(nn.Module):
    """Running mean/variance of the value targets (kept in the checkpoint)."""

    def __init__(self) -> None:
        super().__init__()
        self.register_buffer("mean", torch.zeros(()))
        self.register_buffer("var", torch.ones(()))
        self.register_buffer("count", torch.zeros((), dtype=torch.float64))

    def update(self, x: torch.Tensor) -> None:
        n = x.numel()
        if n == 0:
            return
        m, v = x.mean().double(), x.var(unbiased=False).double()
        c = self.count
        tot = c + n
        delta = m - self.mean.double()
        mean = self.mean.double() + delta * n / tot
        var = (self.var.double() * c + v * n + delta**2 * c * n / tot) / tot
        self.mean.copy_(mean.float())
        self.var.copy_(var.clamp(min=1e-8).float())
        self.count.copy_(tot)

    def normalize(self, x: torch.Tensor) -> torch.Tensor:
        return (x - self.mean) / self.var.sqrt()

    def denormalize(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.var.sqrt() + self.mean


class StateCritic(nn.Module):
    """V(s, id): the centralised critic of MAPPO. ``n_agents`` slots: the state is the
    slot-padded one (``pad_state``) and the id a one-hot over the slots, so the same
    parameters value any team of n <= slots (the first n ids)."""

    def __init__(self, state_dim: int, n_agents: int, hidden: int) -> None:
        super().__init__()
        self.n = n_agents
        self.net = nn.Sequential(nn.Linear(state_dim + n_agents, hidden), nn.ReLU(), nn.Linear(hidden, hidden), nn.ReLU(), nn.Linear(hidden, 1))
        self.register_buffer("ids", torch.eye(n_agents), persistent=False)

    def forward(self, state: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        """state [B, T, s], obs [B, T, n, o] -> V [B, T, n] (n: the team present)."""
        B, T, n = obs.shape[:3]
        x = torch.cat([state.unsqueeze(2).expand(B, T, n, -1), self.ids[:n].expand(B, T, -1, -1)], dim=-1)
        return self.net(x).squeeze(-1)


class LocalCritic(nn.Module):
    """V(o_1..o_t): IPPO's recurrent critic on each agent's own observations."""

    def __init__(self, obs_dim: int, n_agents: int, hidden: int, shared: bool, max_agents: int = 0) -> None:
        super().__init__()
        self.rnn = RNNAgent(obs_dim, 1, n_agents, hidden, agent_id=True, shared=shared, max_agents=max_agents)

    def forward(self, state: torch.Tensor, obs: torch.Tensor) -> torch.Tensor:
        return self.rnn.unroll(obs).squeeze(-1)


class PPOLearner(LearnerBase):
    def __init__(self, spec: EnvSpec, cfg: PPOConfig, critic: str, n_envs: int, seed: int, total_steps: int, topology: Topology | None = None) -> None:
        if not spec.discrete:
            raise ConfigError(f"{'mappo' if critic == 'state' else 'ippo'} here needs discrete actions; env {spec.name!r} has a continuous box")
        super().__init__(spec, cfg, n_envs, seed, total_steps, topology)
        self.slots = team_slots(spec, cfg.max_agents)  # any team of n <= slots (docs/team-size.md)
        self.net = RNNAgent(spec.obs_dim, spec.n_actions, spec.n_agents, cfg.hidden_dim, cfg.agent_id, cfg.last_action, cfg.shared, cfg, self.k_max,
                            head="logits", recurrent=cfg.recurrent, max_agents=self.slots)
        if critic == "state":
            self.critic: nn.Module = StateCritic(spec.state_dim_at(self.slots), self.slots, cfg.critic_hidden)
        else:
            self.critic = LocalCritic(spec.obs_dim, spec.n_agents, cfg.critic_hidden, cfg.shared, self.slots)
        self.value_norm = ValueNorm()
        self.optim = torch.optim.Adam(
            [{"params": list(self.net.parameters()), "lr": cfg.lr}, {"params": list(self.critic.parameters()), "lr": cfg.critic_lr}]
        )
        self.batch_episodes = cfg.batch_episodes or max(16, 2 * n_envs)
        # on-policy: the episodes collected since the last update (kept with checkpoints for an exact resume)
        self.buffer = EpisodeBuffer(spec, self.batch_episodes, self.k_max, extras={"logp": ((spec.n_agents,), np.float32), **self.credit_fields()})
        self.policy = self.make_policy(self.net, sample=True)
        self.env_steps = 0

    # ---- the learner interface (train.learner.Learner) ------------------------------------
    def behaviour_policy(self, env_steps: int) -> TorchTeamPolicy:
        self.env_steps = env_steps
        return self.policy

    def acting_network(self) -> RNNAgent:
        return self.net

    def ent_coef(self) -> float:
        return linear_schedule(self.cfg.ent_start, self.cfg.ent_end, self.env_steps, max(1, self.total_steps))

    def observe(self, episodes: dict[str, np.ndarray]) -> list[dict[str, float]]:
        out = []
        k = len(episodes["filled"])
        for i in range(k):  # one at a time so an update happens exactly at batch_episodes
            self.buffer.add({name: v[i : i + 1] for name, v in episodes.items()})
            if len(self.buffer) >= self.batch_episodes:
                out.append(self.update(self.buffer.all()))
                self.buffer.clear()
        return out

    def modules(self) -> dict[str, nn.Module]:
        return {"agent": self.net, "critic": self.critic, "value_norm": self.value_norm}

    # ---- learning ---------------------------------------------------------------------------------
    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        c = self.cfg
        obs = torch.from_numpy(batch["obs"])  # [E, T+1, n, o]
        state = pad_state(torch.from_numpy(batch["state"]), self.spec, self.slots)
        avail = torch.from_numpy(batch["avail"])
        actions = torch.from_numpy(batch["actions"])  # [E, T, n]
        reward = self.learning_rewards(batch)
        n = self.spec.n_agents
        terminated = torch.from_numpy(batch["terminated"]).float().unsqueeze(-1).expand(-1, -1, n)
        filled = torch.from_numpy(batch["filled"]).float().unsqueeze(-1).expand(-1, -1, n)
        logp_old = torch.from_numpy(batch["logp"])
        E, T = actions.shape[:2]
        inbox = None
        if self.net.communicates:
            inbox = (torch.from_numpy(batch["inbox_idx"].astype(np.int64)), torch.from_numpy(batch["inbox_mask"]))

        with torch.no_grad():
            v_norm = self.critic(state, obs)  # [E, T+1, n]
            v = self.value_norm.denormalize(v_norm) if c.value_norm else v_norm
            adv = gae(reward, v, terminated, filled, c.gamma, c.gae_lambda)
            returns = adv + v[:, :T]
            mask = filled
            if c.value_norm:
                self.value_norm.update(returns[mask.bool()])
            target = self.value_norm.normalize(returns) if c.value_norm else returns
            m = mask.bool()
            adv = (adv - adv[m].mean()) / (adv[m].std() + 1e-8) * mask

        stats = {"loss": [], "entropy": [], "clip_frac": [], "grad_norm": []}
        order = np.arange(E)
        for _ in range(c.epochs):
            self.sample_rng.shuffle(order)
            for mb in np.array_split(order, min(c.minibatches, E)):
                idx = torch.from_numpy(mb)
                mb_inbox = None
                if inbox is not None:
                    mb_inbox = (inbox[0][idx], drop_messages(inbox[1][idx], c.msg_dropout, self.sample_rng))
                prev = None
                if self.net.last_action:
                    onehot = F.one_hot(actions[idx], self.spec.n_actions).float()
                    prev = torch.cat([torch.zeros_like(onehot[:, :1]), onehot], dim=1)
                logits = self.net.unroll(obs[idx], prev, *(mb_inbox or (None, None)))[:, :T]
                logits = torch.where(avail[idx, :T], logits, torch.full_like(logits, NEG_INF))
                logp_all = torch.log_softmax(logits, dim=-1)
                logp = logp_all.gather(-1, actions[idx].unsqueeze(-1)).squeeze(-1)
                probs = logp_all.exp()
                entropy = -(probs * torch.where(avail[idx, :T], logp_all, torch.zeros_like(logp_all))).sum(-1)
                mk = mask[idx]
                denom = mk.sum().clamp(min=1.0)
                ratio = torch.exp(logp - logp_old[idx])
                a = adv[idx]
                surr = torch.min(ratio * a, torch.clamp(ratio, 1 - c.clip, 1 + c.clip) * a)
                policy_loss = -(surr * mk).sum() / denom
                ent = (entropy * mk).sum() / denom
                v_pred = self.critic(state[idx], obs[idx])[:, :T]
                value_loss = (((v_pred - target[idx]) ** 2) * mk).sum() / denom
                loss = policy_loss - self.ent_coef() * ent + c.value_coef * value_loss
                self.optim.zero_grad(set_to_none=True)
                loss.backward()
                gn = torch.nn.utils.clip_grad_norm_(list(self.net.parameters()) + list(self.critic.parameters()), c.grad_clip)
                self.optim.step()
                stats["loss"].append(float(loss.detach()))
                stats["entropy"].append(float(ent.detach()))
                stats["clip_frac"].append(float((((ratio - 1).abs() > c.clip).float() * mk).sum() / denom))
                stats["grad_norm"].append(float(gn))
        self.updates += 1
        m = mask.bool()
        return {
            "loss": float(np.mean(stats["loss"])),
            "entropy": float(np.mean(stats["entropy"])),
            "clip_frac": float(np.mean(stats["clip_frac"])),
            "grad_norm": float(np.mean(stats["grad_norm"])),
            "td_abs": float((returns - v[:, :T])[m].abs().mean()),
            "q_taken": float(v[:, :T][m].mean()),
        }
