"""IQL, VDN and QMIX: one value-based learner, three mixers.

Recurrent agents unrolled over whole episodes sampled from an episode replay
buffer; double-Q targets from a target network (agents and mixer); optional
TD(lambda) returns; epsilon-greedy exploration with linear annealing; gradient
norm clipping. IQL trains each agent's Q on its own reward, VDN and QMIX train
Q_tot = mixer(Q_1..Q_n, s) on the team reward.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..envs import EnvSpec, TimeStep
from ..envs.topology import Topology
from .buffer import EpisodeBuffer
from .comm import CommConfig, drop_messages
from .config import AgentNetConfig, ConfigError
from .mixers import QMixer, VDNMixer
from .networks import NEG_INF, RNNAgent, masked_greedy


@dataclass
class QLearnerConfig(AgentNetConfig, CommConfig):
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
    grad_clip: float = 10.0
    eps_start: float = 1.0
    eps_finish: float = 0.05
    eps_anneal_frac: float = 0.4  # fraction of the run's steps to anneal over
    eps_anneal_steps: int = 0  # if > 0, overrides eps_anneal_frac

    def validate(self) -> None:
        self.validate_comm()
        if not 0.0 <= self.td_lambda <= 1.0:
            raise ConfigError(f"td_lambda must be in [0, 1], got {self.td_lambda}")
        if not 0.0 <= self.gamma <= 1.0:
            raise ConfigError(f"gamma must be in [0, 1], got {self.gamma}")
        for k in ("hidden_dim", "batch_size", "buffer_size", "episodes_per_update", "target_update_episodes"):
            if getattr(self, k) < (0 if k == "episodes_per_update" else 1):
                raise ConfigError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.lr <= 0:
            raise ConfigError(f"lr must be > 0, got {self.lr}")
        if not 0 <= self.eps_finish <= 1 or not 0 <= self.eps_start <= 1:
            raise ConfigError("eps_start and eps_finish must be in [0, 1]")


@dataclass
class IQLConfig(QLearnerConfig):
    """Independent Q-learning: each agent learns its own Q on its own reward."""


@dataclass
class VDNConfig(QLearnerConfig):
    """VDN: Q_tot is the sum of the agents' Q values."""


@dataclass
class QMIXConfig(QLearnerConfig):
    """QMIX: monotonic state-conditioned mixing by hypernetworks."""

    mixing_embed_dim: int = 32
    hypernet_hidden: int = 64


class TorchTeamPolicy:
    """The team's acting policy in training: one batched forward for B x n agents.

    A communicating team keeps each agent's last ``msg_out`` and hears it
    through the inbox routing the rollout puts on the timestep; ``msg_loss``
    drops each heard message with that probability (training dropout, or a
    lossy link at evaluation), drawn from ``loss_rng`` (default ``rng``).
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
    ) -> None:
        self.net, self.rng = net, rng
        self.epsilon = 0.0
        self.noise = noise  # continuous actors: Gaussian exploration noise (std, before clipping to the box)
        self.action_scale = action_scale
        self.sample = sample  # actor-critic: draw from softmax(logits) over available actions, record log-probs
        self.extra_fields = {"logp": ((net.n_agents,), np.float32)} if sample else {}
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


def lambda_returns(
    reward: torch.Tensor, terminated: torch.Tensor, filled: torch.Tensor, next_q: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """TD(lambda) targets, computed backwards over time.

    ``reward, terminated, filled``: [B, T, ...]; ``next_q``: [B, T, ...], the
    target value of the state after step t. At the last real step (and with
    lam = 0 everywhere) this is the one-step target r + gamma * next_q, with no
    bootstrap after a terminal step.
    """
    not_term = 1.0 - terminated
    if lam == 0.0:
        return reward + gamma * not_term * next_q
    T = reward.shape[1]
    out = torch.zeros_like(reward)
    g_next = next_q[:, T - 1]
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            # continue the lambda-return only if step t+1 is real
            cont = filled[:, t + 1]
            g_next = cont * ((1 - lam) * next_q[:, t] + lam * out[:, t + 1]) + (1 - cont) * next_q[:, t]
        else:
            g_next = next_q[:, t]
        out[:, t] = reward[:, t] + gamma * not_term[:, t] * g_next
    return out


class QLearner:
    """Shared learner for IQL (no mixer), VDN and QMIX."""

    def __init__(
        self, spec: EnvSpec, cfg: QLearnerConfig, mixer: str, n_envs: int, seed: int, total_steps: int, topology: Topology | None = None
    ) -> None:
        if not spec.discrete:
            raise ConfigError(f"{mixer or 'iql'} needs discrete actions; env {spec.name!r} has a continuous box")
        self.spec, self.cfg, self.mixer_name = spec, cfg, mixer
        self.total_steps = total_steps
        self.topology = topology if topology is not None or not cfg.communicates else cfg.build_topology(spec)
        k_max = self.topology.k_max if self.topology is not None else 0
        self.net = RNNAgent(
            spec.obs_dim, spec.n_actions, spec.n_agents, cfg.hidden_dim, cfg.agent_id, cfg.last_action, cfg.shared, cfg, k_max,
            recurrent=cfg.recurrent,
        )
        if mixer == "qmix":
            assert isinstance(cfg, QMIXConfig)
            self.mixer: nn.Module | None = QMixer(spec.n_agents, spec.state_dim, cfg.mixing_embed_dim, cfg.hypernet_hidden)
        elif mixer == "vdn":
            self.mixer = VDNMixer()
        else:
            self.mixer = None
        self.target_net = copy.deepcopy(self.net)
        self.target_mixer = copy.deepcopy(self.mixer)
        params = list(self.net.parameters()) + (list(self.mixer.parameters()) if self.mixer is not None else [])
        self.params = params
        self.optim = torch.optim.Adam(params, lr=cfg.lr)
        self.buffer = EpisodeBuffer(spec, cfg.buffer_size, k_max)
        self.sample_rng = np.random.default_rng([seed, 1])
        self.explore_rng = np.random.default_rng([seed, 2])
        self.policy = TorchTeamPolicy(self.net, n_envs, self.explore_rng, msg_loss=cfg.msg_dropout)
        self.updates = 0
        self.pending = 0  # episodes collected since the last update
        self.since_sync = 0  # episodes collected since the last target copy
        self.episodes_per_update = cfg.episodes_per_update or max(1, n_envs // 4)

    # ---- acting ---------------------------------------------------------
    def epsilon(self, env_steps: int) -> float:
        c = self.cfg
        span = c.eps_anneal_steps or max(1, int(c.eps_anneal_frac * self.total_steps))
        frac = min(1.0, env_steps / span)
        return c.eps_start + frac * (c.eps_finish - c.eps_start)

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
            if self.since_sync >= self.cfg.target_update_episodes:
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
            zeros = torch.zeros(obs.shape[0], 1, net.n_agents, net.n_actions)
            prev = torch.cat([zeros, onehot], dim=1)  # prev[:, t] = action at t-1
        if inbox is None:
            return net.unroll(obs, prev)
        return net.unroll(obs, prev, *inbox)

    def update(self, batch: dict[str, np.ndarray]) -> dict[str, float]:
        c = self.cfg
        obs = torch.from_numpy(batch["obs"])
        state = torch.from_numpy(batch["state"])
        avail = torch.from_numpy(batch["avail"])
        actions = torch.from_numpy(batch["actions"])
        reward_agents = torch.from_numpy(batch["reward"])  # [B, T, n]
        terminated = torch.from_numpy(batch["terminated"]).float()  # [B, T]
        filled = torch.from_numpy(batch["filled"]).float()  # [B, T]
        inbox = None
        if self.net.communicates:  # the same dropped messages for the online and the target unroll
            idx = torch.from_numpy(batch["inbox_idx"].astype(np.int64))
            inbox = (idx, drop_messages(torch.from_numpy(batch["inbox_mask"]), c.msg_dropout, self.sample_rng))

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
            if self.mixer is not None:
                next_q = self.target_mixer(next_q, state[:, 1:]).squeeze(-1)  # [B, T]
                reward = reward_agents.mean(-1)
                term, mask_f = terminated, filled
            else:
                reward = reward_agents
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

    # ---- checkpointing --------------------------------------------------
    def modules(self) -> dict[str, nn.Module]:
        mods = {"agent": self.net, "target_agent": self.target_net}
        if self.mixer is not None:
            mods["mixer"] = self.mixer
            mods["target_mixer"] = self.target_mixer
        return mods

    def counters(self) -> dict:
        return {
            "updates": self.updates,
            "pending": self.pending,
            "since_sync": self.since_sync,
            "sample_rng": self.sample_rng.bit_generator.state,
            "explore_rng": self.explore_rng.bit_generator.state,
        }

    def load_counters(self, d: dict) -> None:
        self.updates = int(d["updates"])
        self.pending = int(d["pending"])
        self.since_sync = int(d["since_sync"])
        self.sample_rng.bit_generator.state = d["sample_rng"]
        self.explore_rng.bit_generator.state = d["explore_rng"]
