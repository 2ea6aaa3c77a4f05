"""What the training loop, evaluation, checkpointing and export ask of a learner.

``Learner`` is the interface (a ``typing.Protocol``, checkable at run time);
``LearnerBase`` is what every learner here shares: the topology (recorded, or
parsed from the config), ``k_max``, the seeded numpy streams ``sample_rng``
(batches, message dropout in updates, shuffles) and ``explore_rng`` (acting),
the update counter and named integer counters saved with checkpoints, and the
acting-policy factory.

Determinism: both streams are seeded from ``[seed, 1]`` and ``[seed, 2]``; a
learner creates its torch modules in a fixed order after ``LearnerBase``'s
constructor (which draws nothing from torch), so a seed fixes the weights.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable

import numpy as np
import torch
from torch import nn

from ..envs import EnvSpec
from ..envs.base import scalarise
from ..envs.credit import CreditSpec, credit_fields
from ..envs.topology import Topology
from .buffer import EpisodeBuffer
from .networks import RNNAgent
from .policy import TorchTeamPolicy
from .rewards import RewardConfig, RunningMeanStd


@runtime_checkable
class Learner(Protocol):
    """A learner as the loop (``train.loop``), evaluation, checkpoints and export use it."""

    topology: Topology | None  # the message topology the team acts over; None: no messages
    credit: CreditSpec | None  # what the training rollout records besides the reward (docs/credit.md); None: nothing
    updates: int  # gradient updates so far (metrics, summary)
    optim: torch.optim.Optimizer  # saved and restored with checkpoints

    def behaviour_policy(self, env_steps: int) -> TorchTeamPolicy:
        """The acting policy, with its exploration set for ``env_steps``."""
        ...

    def exploration(self, env_steps: int) -> dict[str, float]:
        """The exploration settings at ``env_steps`` as metric name -> value
        (Q-learners ``epsilon``, continuous MADDPG ``noise``; empty when none apply)."""
        ...

    def acting_network(self) -> RNNAgent:
        """The network agents act with (evaluated, loaded from checkpoints, exported)."""
        ...

    def observe(self, episodes: dict[str, np.ndarray]) -> list[dict[str, float]]:
        """Take finished episodes (a batch: name -> [k, ...]); return the metrics of
        the updates they paid for, one dict each."""
        ...

    def modules(self) -> dict[str, nn.Module]:
        """The torch modules a checkpoint holds, by name (``agent`` is the acting network)."""
        ...

    def counters(self) -> dict[str, Any]:
        """Counters and RNG states a checkpoint holds (JSON-able)."""
        ...

    def load_counters(self, d: dict[str, Any]) -> None: ...

    def checkpoint_buffer(self) -> EpisodeBuffer | None:
        """The stored episodes an exact resume needs (saved as ``buffer.npz`` when
        ``save_buffer``): the replay buffer, or an on-policy learner's episodes not
        yet used by an update; None when the learner keeps none."""
        ...


def linear_schedule(start: float, end: float, step: int, span: int) -> float:
    """``start`` moved linearly to ``end`` over ``span`` steps, then held."""
    frac = min(1.0, step / span)
    return start + frac * (end - start)


class LearnerBase:
    """Shared setup of the learners: see the module docstring.

    Subclasses call ``super().__init__`` first, then build their networks, and
    name the integer attributes to checkpoint besides ``updates`` in
    ``counter_names``.
    """

    counter_names: tuple[str, ...] = ()

    def __init__(self, spec: EnvSpec, cfg: Any, n_envs: int, seed: int, total_steps: int, topology: Topology | None = None) -> None:
        self.spec, self.cfg = spec, cfg
        self.n_envs, self.total_steps = n_envs, total_steps
        self.topology: Topology | None = topology if topology is not None or not cfg.communicates else cfg.build_topology(spec)
        self.k_max = self.topology.k_max if self.topology is not None else 0
        self.sample_rng = np.random.default_rng([seed, 1])
        self.explore_rng = np.random.default_rng([seed, 2])
        self.updates = 0
        self.buffer: EpisodeBuffer | None = None
        for name in self.counter_names:
            setattr(self, name, 0)
        self.reward_stats = RunningMeanStd() if getattr(cfg, "standardise_rewards", False) else None
        self.aux_reward_stats: RunningMeanStd | None = None  # a mixer's per-agent term (QLearner), when standardised
        self.credit: CreditSpec | None = cfg.credit_spec(cfg.gamma) if isinstance(cfg, RewardConfig) else None

    def learning_rewards(self, batch: dict[str, np.ndarray], team: bool = False) -> torch.Tensor:
        """The rewards an update learns from: per agent ``[B, T, n]``, or with
        ``team`` the team's ``[B, T]`` (the env's ``reward_scalarisation``: sum or
        mean over agents). Per agent, ``reward`` picks the env's reward, the
        difference rewards D_i or their sum; the team's is the env's. Either gets
        its shaping term F when ``shaping`` is set (docs/credit.md). Standardised
        (``standardise_rewards``) after that, by running statistics of the filled
        steps, as the field does."""
        if team:
            r = scalarise(batch["reward"], self.spec.reward_scalarisation, axis=-1)
            if self.credit is not None and self.credit.shaping != "none":
                r = r + batch["shaping_team"]
        else:
            r = self.agent_rewards(batch)
        return self._standardised(r, batch, self.reward_stats)

    def agent_rewards(self, batch: dict[str, np.ndarray]) -> np.ndarray:
        """[B, T, n] what each agent learns from (``reward``, plus its shaping), not standardised."""
        mode = getattr(self.cfg, "reward", "team")
        r = batch["reward"]
        if mode == "difference":
            r = batch["reward_diff"]
        elif mode == "team+difference":
            r = r + batch["reward_diff"]
        if self.credit is not None and self.credit.shaping != "none":
            r = r + batch["shaping"]
        return r

    @staticmethod
    def _standardised(r: np.ndarray, batch: dict[str, np.ndarray], stats: RunningMeanStd | None) -> torch.Tensor:
        if stats is None:
            return torch.from_numpy(np.ascontiguousarray(r, dtype=np.float32))
        stats.update(r[batch["filled"].astype(bool)])
        return torch.from_numpy(stats.normalise(r).astype(np.float32))

    def credit_fields(self) -> dict[str, tuple[tuple[int, ...], type]]:
        """The per-step fields the rollout records for ``credit`` (the buffer stores them too)."""
        return credit_fields(self.credit, self.spec.n_agents) if self.credit is not None else {}

    def make_policy(
        self, net: RNNAgent, *, sample: bool = False, action_scale: float = 1.0, extra_fields: dict[str, tuple[tuple[int, ...], type]] | None = None
    ) -> TorchTeamPolicy:
        """The team's acting policy over ``net``: ``n_envs`` parallel episodes, exploring
        with ``explore_rng``, dropping heard messages at the config's ``msg_dropout``."""
        return TorchTeamPolicy(
            net, self.n_envs, self.explore_rng, msg_loss=self.cfg.msg_dropout, sample=sample, action_scale=action_scale, extra_fields=extra_fields
        )

    # ---- defaults of the interface --------------------------------------------------------
    def exploration(self, env_steps: int) -> dict[str, float]:
        return {}

    def checkpoint_buffer(self) -> EpisodeBuffer | None:
        return self.buffer

    def counters(self) -> dict[str, Any]:
        return {
            "updates": self.updates,
            **{name: getattr(self, name) for name in self.counter_names},
            "sample_rng": self.sample_rng.bit_generator.state,
            "explore_rng": self.explore_rng.bit_generator.state,
            **({"reward_stats": self.reward_stats.state()} if self.reward_stats is not None else {}),
            **({"aux_reward_stats": self.aux_reward_stats.state()} if self.aux_reward_stats is not None else {}),
        }

    def load_counters(self, d: dict[str, Any]) -> None:
        self.updates = int(d["updates"])
        for name in self.counter_names:
            setattr(self, name, int(d[name]))
        self.sample_rng.bit_generator.state = d["sample_rng"]
        self.explore_rng.bit_generator.state = d["explore_rng"]
        if self.reward_stats is not None:
            self.reward_stats.load(d["reward_stats"])
        if self.aux_reward_stats is not None:
            self.aux_reward_stats.load(d["aux_reward_stats"])
