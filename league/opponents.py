"""Frozen opponents: league members' bundles played by the runtime's ONNX Runtime policy.

A member is an exported bundle (docs/design.md contract 5), loaded and
checked by ``runtime.bundle.load_bundle`` and run by ``runtime.policy.OrtPolicy``:
exactly what a robot would run. The bundle's agent ``j`` plays the other
team's ``j``-th agent.

**Mixed strategies.** A bundle's ``action`` output is the greedy argmax, a
pure strategy. Self-play in a game with a cycle needs the policy's mixed
strategy, so an actor-critic's bundle (it also outputs ``logits``, contract 4)
is played by sampling from the masked softmax of those logits, with the
slot's seeded generator (``TeamView``), so the same seed plays the same
episode. A bundle without ``logits`` (a value learner's ``q``) plays greedily.
``action_probabilities`` is the same distribution, for exact
exploitability.

The sampler that picks a member per episode is the mode's (``naive.py``,
``fictitious.py``): anything with ``probabilities(n_members) -> [n]``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Protocol, Sequence

import numpy as np

from ..errors import UserError
from ..runtime.bundle import Bundle, load_bundle
from ..runtime.policy import OrtPolicy


class LeagueError(UserError, ValueError):
    """A user-facing league problem (bad mode, bad option, unusable member)."""


class Sampler(Protocol):
    """A self-play mode's opponent distribution over the members so far (oldest first)."""

    def probabilities(self, n_members: int) -> np.ndarray: ...


def masked_softmax(logits: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """Action probabilities ``[b, A]`` from logits, unavailable actions at 0."""
    z = np.where(avail, logits.astype(np.float64), -np.inf)
    z = z - z.max(axis=-1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=-1, keepdims=True)


class Member:
    """One loaded bundle: a policy per agent at a fixed batch size."""

    def __init__(self, bundle_dir: Path, batch: int, n_agents: int, sample: bool = True) -> None:
        b: Bundle = load_bundle(bundle_dir)
        m = b.manifest
        if m.n_agents != n_agents:
            raise LeagueError(f"{bundle_dir}: the bundle has {m.n_agents} agents, the opposing team {n_agents}")
        if m.communicates or "prev_action" in m.input_names:
            raise LeagueError(f"{bundle_dir}: opponents that communicate or take prev_action are not supported yet")
        self.policies = [OrtPolicy(b.agent(i).policy_path, m.inputs, m.outputs, batch=batch, where=str(b.agent(i).policy_path))
                         for i in range(n_agents)]
        self.sample = sample and "logits" in m.output_names

    def reset(self, mask: np.ndarray) -> None:
        for p in self.policies:
            p.reset(mask)

    def act(self, obs: np.ndarray, avail: np.ndarray, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """Actions ``[len(rows), n]``; obs ``[B, n, o]`` and avail ``[B, n, A]`` hold every slot
        (the policies run at their fixed batch; only ``rows`` are read)."""
        out = np.zeros((len(rows), len(self.policies)), dtype=np.int64)
        for j, p in enumerate(self.policies):
            action, _, logits = p.act(obs[:, j], avail[:, j])
            if not self.sample:
                out[:, j] = action[rows]
                continue
            probs = masked_softmax(logits[rows], avail[rows, j])
            out[:, j] = [rng.choice(probs.shape[1], p=pr) for rng, pr in zip(rngs, probs)]
        return out


class Pool:
    """The league's members as ``TeamView``'s opponents, picked per episode by ``sampler``.

    Members load lazily (a bundle's sessions are made the first time it is
    picked) and stay loaded: a pool grows by ``add`` as snapshots are taken."""

    def __init__(self, sampler: Sampler, batch: int, n_agents: int, sample: bool = True) -> None:
        self.sampler, self.batch, self.n_agents, self.sample = sampler, batch, n_agents, sample
        self.paths: list[Path] = []
        self._loaded: dict[int, Member] = {}

    def add(self, bundle_dir: Path) -> None:
        self.paths.append(Path(bundle_dir))

    def _member(self, m: int) -> Member:
        if m not in self._loaded:
            self._loaded[m] = Member(self.paths[m], self.batch, self.n_agents, self.sample)
        return self._loaded[m]

    def choose(self, rng: np.random.Generator) -> int:
        if not self.paths:
            raise LeagueError("the opponent pool is empty; take a snapshot first")
        p = self.sampler.probabilities(len(self.paths))
        return int(rng.choice(len(p), p=p))

    def reset(self, member: int, mask: np.ndarray) -> None:
        self._member(member).reset(mask)

    def act(self, member: int, obs: np.ndarray, avail: np.ndarray, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        return self._member(member).act(obs, avail, rows, rngs)


def action_probabilities(bundle_dir: Path, obs: np.ndarray, avail: np.ndarray) -> np.ndarray:
    """The mixed strategy ``[b, n_agents, A]`` a member plays at observations ``obs [b, n, o]``:
    the masked softmax of its logits (one-hot of its greedy action without logits)."""
    b = load_bundle(bundle_dir)
    m = b.manifest
    out = np.zeros((obs.shape[0], m.n_agents, avail.shape[-1]))
    for i in range(m.n_agents):
        p = OrtPolicy(b.agent(i).policy_path, m.inputs, m.outputs, batch=obs.shape[0])
        action, _, logits = p.act(obs[:, i], avail[:, i])
        if "logits" in m.output_names:
            out[:, i] = masked_softmax(logits, avail[:, i])
        else:
            out[np.arange(obs.shape[0]), i, action] = 1.0
    return out
