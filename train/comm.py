"""Learned messages: the config keys, the message head and three aggregators.

Timing (docs/design.md contract 3): at step ``t`` every agent emits ``msg_out``
(``msg_dim`` floats, ``tanh``-bounded) from its new recurrent state; its
neighbours hear it at step ``t + 1``. An agent's input at step ``t`` is its
observation plus ``msg_in [k_max, d]`` -- the step ``t-1`` messages of the
agents in its inbox (slot order as the topology gives it, nearest first where
the env has positions) -- and ``msg_mask [k_max]`` (False: nobody there, or
the message was lost). A missing message is masked, never invented.

Aggregators turn ``(msg_in, msg_mask)`` into one vector that joins the
observation at the input layer:

    mean       CommNet-like: the mean of every heard message (0 if none)
    knn        the mean (or sum) of the ``comm_k`` nearest heard messages:
               the first ``comm_k`` valid slots
    attention  TarMAC-like: a query from the receiver's input and previous
               hidden state, keys and values from the messages, softmax over
               the heard ones; ``top_k > 0`` keeps only the ``top_k`` largest
               weights (renormalised)

Everything here is one agent's graph on any leading batch shape, so the team
forward and the exported per-agent policy run the same code.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import torch
from torch import nn

from ..envs import EnvSpec
from ..envs.topology import Topology, check_topology, parse_topology
from .config import ConfigError

AGGREGATORS = ("mean", "knn", "attention")
COMM_KINDS = ("none",) + AGGREGATORS
MASKED = -1e9  # attention score of an empty slot (finite: ONNX- and fp16-safe)


@dataclass
class CommConfig:
    """Message keys shared by every learner (``--set comm=... topology=...``)."""

    comm: str = "none"  # none | mean | knn | attention
    topology: str = "broadcast"  # broadcast | knn:K | range:R | graph:ring|grid|FILE
    msg_dim: int = 8  # d: floats per message
    comm_k: int = 3  # knn aggregator: how many of the nearest heard messages
    comm_reduce: str = "mean"  # knn aggregator: mean | sum
    top_k: int = 0  # attention: keep the top_k weights (0: all)
    attn_dim: int = 16  # attention: query/key size
    msg_dropout: float = 0.0  # training: each message lost with this probability

    @property
    def communicates(self) -> bool:
        return self.comm != "none"

    def validate_comm(self) -> None:
        if self.comm not in COMM_KINDS:
            raise ConfigError(f"comm must be one of {', '.join(COMM_KINDS)}; got {self.comm!r}")
        if self.comm_reduce not in ("mean", "sum"):
            raise ConfigError(f"comm_reduce must be mean or sum; got {self.comm_reduce!r}")
        for k, lo in (("msg_dim", 1), ("comm_k", 1), ("attn_dim", 1), ("top_k", 0)):
            if getattr(self, k) < lo:
                raise ConfigError(f"{k} must be >= {lo}, got {getattr(self, k)}")
        if not 0.0 <= self.msg_dropout < 1.0:
            raise ConfigError(f"msg_dropout must be in [0, 1), got {self.msg_dropout}")

    def build_topology(self, spec: EnvSpec) -> Topology | None:
        """The parsed topology for ``spec`` (None without messages); a clear error if it cannot run there."""
        if not self.communicates:
            return None
        if spec.n_agents < 2:
            raise ConfigError(f"comm={self.comm} needs at least 2 agents; env {spec.name} has {spec.n_agents}")
        topo = parse_topology(self.topology, spec.n_agents)
        check_topology(topo, spec)
        return topo


class MeanAggregator(nn.Module):
    def __init__(self, msg_dim: int) -> None:
        super().__init__()
        self.out_dim = msg_dim

    def forward(self, x: torch.Tensor, h: torch.Tensor, msg_in: torch.Tensor, msg_mask: torch.Tensor) -> torch.Tensor:
        m = msg_mask.to(msg_in.dtype).unsqueeze(-1)
        return (msg_in * m).sum(-2) / m.sum(-2).clamp(min=1.0)


class KNNAggregator(nn.Module):
    def __init__(self, msg_dim: int, k: int, reduce: str) -> None:
        super().__init__()
        self.out_dim, self.k, self.reduce = msg_dim, k, reduce

    def forward(self, x: torch.Tensor, h: torch.Tensor, msg_in: torch.Tensor, msg_mask: torch.Tensor) -> torch.Tensor:
        valid = msg_mask.to(msg_in.dtype)
        keep = valid * (torch.cumsum(valid, dim=-1) <= self.k).to(msg_in.dtype)  # the first k heard slots
        s = (msg_in * keep.unsqueeze(-1)).sum(-2)
        return s if self.reduce == "sum" else s / keep.sum(-1, keepdim=True).clamp(min=1.0)


class AttentionAggregator(nn.Module):
    def __init__(self, in_dim: int, hidden_dim: int, msg_dim: int, attn_dim: int, top_k: int) -> None:
        super().__init__()
        self.out_dim, self.top_k, self.scale = msg_dim, top_k, 1.0 / math.sqrt(attn_dim)
        self.query = nn.Linear(in_dim + hidden_dim, attn_dim)
        self.key = nn.Linear(msg_dim, attn_dim)
        self.value = nn.Linear(msg_dim, msg_dim)

    def weights(self, x: torch.Tensor, h: torch.Tensor, msg_in: torch.Tensor, msg_mask: torch.Tensor) -> torch.Tensor:
        """Attention weights [..., k_max]; zero on empty and pruned slots."""
        q = self.query(torch.cat([x, h], dim=-1)).unsqueeze(-1)  # [..., a, 1]
        scores = (self.key(msg_in) @ q).squeeze(-1) * self.scale  # [..., k_max]
        mask = msg_mask.bool()
        scores = torch.where(mask, scores, torch.full_like(scores, MASKED))
        k_max = scores.shape[-1]
        if 0 < self.top_k < k_max:
            top = torch.topk(scores, self.top_k, dim=-1).indices
            keep = torch.zeros_like(mask).scatter(-1, top, torch.ones_like(top, dtype=torch.bool))
            mask = mask & keep
            scores = torch.where(mask, scores, torch.full_like(scores, MASKED))
        return torch.softmax(scores, dim=-1) * mask.to(scores.dtype)  # all-empty inbox -> all zero

    def forward(self, x: torch.Tensor, h: torch.Tensor, msg_in: torch.Tensor, msg_mask: torch.Tensor) -> torch.Tensor:
        w = self.weights(x, h, msg_in, msg_mask)
        return (w.unsqueeze(-1) * self.value(msg_in)).sum(-2)


class MessageHead(nn.Module):
    """Emits ``msg_out`` from the new hidden state and aggregates ``msg_in``."""

    def __init__(self, cfg: CommConfig, in_dim: int, hidden_dim: int) -> None:
        super().__init__()
        d = cfg.msg_dim
        self.msg_dim = d
        if cfg.comm == "mean":
            self.agg: nn.Module = MeanAggregator(d)
        elif cfg.comm == "knn":
            self.agg = KNNAggregator(d, cfg.comm_k, cfg.comm_reduce)
        elif cfg.comm == "attention":
            self.agg = AttentionAggregator(in_dim, hidden_dim, d, cfg.attn_dim, cfg.top_k)
        else:
            raise ConfigError(f"no aggregator for comm={cfg.comm!r}")
        self.out_dim = self.agg.out_dim
        self.emit_layer = nn.Linear(hidden_dim, d)

    def aggregate(self, x: torch.Tensor, h: torch.Tensor, msg_in: torch.Tensor, msg_mask: torch.Tensor) -> torch.Tensor:
        return self.agg(x, h, msg_in, msg_mask)

    def emit(self, h: torch.Tensor) -> torch.Tensor:
        return torch.tanh(self.emit_layer(h))


def gather_inbox(msg: torch.Tensor, idx: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Team-side routing: ``msg [B, n, d]`` emitted last step, ``idx/mask [B, n, k]``
    -> ``msg_in [B, n, k, d]`` (zeros in empty slots) and ``msg_mask [B, n, k]``.
    Differentiable in ``msg``: a receiver's loss reaches its senders."""
    B, n, d = msg.shape
    k = idx.shape[-1]
    mask = mask.bool()
    safe = torch.where(mask, idx.long(), torch.zeros_like(idx, dtype=torch.long))
    flat = safe.reshape(B, n * k, 1).expand(B, n * k, d)
    msg_in = torch.gather(msg, 1, flat).reshape(B, n, k, d)
    return msg_in * mask.unsqueeze(-1).to(msg.dtype), mask


def drop_messages(mask: torch.Tensor, p: float, rng: np.random.Generator) -> torch.Tensor:
    """Each message lost independently with probability ``p`` (the mask says so).
    Draws from a numpy generator so a run's checkpoint can carry its state."""
    if p <= 0.0:
        return mask
    keep = torch.from_numpy(rng.random(tuple(mask.shape)) >= p)
    return mask.bool() & keep


