"""Run a team policy on a batched env: the one rollout loop of the project.

numpy only, so training (torch policy), in-process bundle evaluation (ONNX
Runtime policy) and the world simulator all play episodes the same way.

A ``TeamPolicy`` keeps its own recurrent state per slot: ``reset(mask)``
clears the slots that start a new episode, ``act(ts)`` returns actions
``[B, n]`` for every slot (ignored for finished ones).

Messages (docs/design.md contracts 2 and 3). Given a ``Topology``, the loop
decides who hears whom with ``topology.neighbours(positions at step t)`` and
routes by it the messages the agents emit at step ``t``: they are heard at
``t + 1``. Before each ``act`` the timestep carries ``inbox_idx`` /
``inbox_mask`` ``[B, n, k_max]``: the senders whose step ``t-1`` messages
each agent hears now, slot order as the topology gives it (nearest first
where there are positions). At an episode's first step the inbox is empty.
The policy keeps its own last ``msg_out`` and gathers by the inbox; message
*loss* is the policy's (training dropout) or the channel's business, not
this loop's. The world simulator routes with this same code.

Credit (training only, docs/credit.md). Given a ``CreditSpec``, each step
also records what ``envs.credit.RewardSignals`` computes around it: the
difference rewards (a snapshot before the step, the counterfactual step
after it) and the shaping terms (the potential before and after). The
returns an ``Episode`` reports stay the env's own.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Protocol

import numpy as np

from .base import EnvSpec, MultiAgentEnv, TimeStep
from .credit import CreditSpec, RewardSignals
from .topology import Topology, check_topology


class TeamPolicy(Protocol):
    def reset(self, mask: np.ndarray) -> None: ...

    def act(self, ts: TimeStep) -> np.ndarray: ...


@dataclass
class Episode:
    index: int  # order in which it was started
    seed: int
    ret: float  # sum over steps of the team reward (spec.reward_scalarisation over agents)
    length: int
    data: dict[str, np.ndarray] | None = None  # padded arrays (see train.buffer) when recording
    # per-agent sums over the episode of what the env reports in ``info["agent_stats"]`` ([n] each)
    agent_stats: dict[str, np.ndarray] | None = None


def episode_layout(
    spec: EnvSpec, k_max: int = 0, extras: dict[str, tuple[tuple[int, ...], type]] | None = None
) -> dict[str, tuple[tuple[int, ...], type]]:
    """Shapes and dtypes of one padded episode (T = episode limit); with
    ``k_max > 0`` also each step's inbox routing (``inbox_idx`` as int16);
    ``extras`` are per-step values a policy records (``name: (shape, dtype)``,
    stored as ``[T, *shape]``, e.g. the behaviour log-probs of actor-critics)."""
    T, n = spec.episode_limit, spec.n_agents
    A = spec.n_actions or 1
    comm = {"inbox_idx": ((T + 1, n, k_max), np.int16), "inbox_mask": ((T + 1, n, k_max), bool)} if k_max else {}
    comm |= {name: ((T, *shape), dt) for name, (shape, dt) in (extras or {}).items()}
    return comm | {
        "obs": ((T + 1, n, spec.obs_dim), np.float32),
        "state": ((T + 1, spec.state_dim), np.float32),
        "avail": ((T + 1, n, A), bool),
        "actions": (((T, n) if spec.discrete else (T, n, spec.action_dim)), np.int64 if spec.discrete else np.float32),
        "reward": ((T, n), np.float32),
        "terminated": ((T,), bool),
        "filled": ((T,), bool),
    }


class Rollout:
    """Steps ``env`` with ``policy``, restarting each slot as soon as it ends.

    ``next_seeds(k)`` gives the seeds of the next ``k`` episodes; it returns
    fewer (or none) when no more episodes should start, and the idle slots
    then stay finished.
    """

    def __init__(
        self,
        env: MultiAgentEnv,
        policy: TeamPolicy,
        next_seeds: Callable[[int], np.ndarray],
        record: bool = False,
        topology: Topology | None = None,
        credit: CreditSpec | None = None,
    ) -> None:
        self.env, self.policy, self.next_seeds, self.record = env, policy, next_seeds, record
        B = env.n_envs
        self.spec = env.spec
        self.topology = topology
        k = 0
        if topology is not None:
            check_topology(topology, self.spec)
            k = topology.k_max
            self.inbox_idx = np.full((B, self.spec.n_agents, k), -1, dtype=np.int64)
            self.inbox_mask = np.zeros((B, self.spec.n_agents, k), dtype=bool)
        self.slot_index = np.full(B, -1, dtype=np.int64)
        self.slot_seed = np.zeros(B, dtype=np.int64)
        self.slot_return = np.zeros(B, dtype=np.float64)
        self.started = 0
        self.env_steps = 0
        self.msgs_sent = 0  # messages routed (emitted x hearers), summed over active slot-steps
        self.slot_stats: dict[str, np.ndarray] = {}  # per-slot, per-agent sums of info["agent_stats"]
        self.signals = RewardSignals(env, credit) if credit is not None and credit.active else None
        if record:
            self.extras = dict(getattr(policy, "extra_fields", {}) or {})
            if self.signals is not None:
                self.extras |= self.signals.fields
            self.stage = {name: np.zeros((B, *shape), dtype=dt) for name, (shape, dt) in episode_layout(self.spec, k, self.extras).items()}
        seeds = np.asarray(next_seeds(B), dtype=np.int64)
        if len(seeds) == 0:
            raise ValueError("no episodes to run")
        all_seeds = np.zeros(B, dtype=np.int64)
        all_seeds[: len(seeds)] = seeds
        self.ts = env.reset(all_seeds)
        idle = np.arange(B) >= len(seeds)
        if idle.any():  # more slots than episodes: park the extras as finished
            env._done[idle] = True  # noqa: SLF001 (the env's own bookkeeping)
            self.ts.done[idle] = True
        self._assign(np.flatnonzero(~idle), seeds)
        self._attach_inbox()
        policy.reset(np.ones(B, dtype=bool))
        if record:
            self._record_obs(np.flatnonzero(~idle))

    @property
    def active(self) -> np.ndarray:
        return self.slot_index >= 0

    def _assign(self, slots: np.ndarray, seeds: np.ndarray) -> None:
        for s, seed in zip(slots, seeds):
            self.slot_index[s] = self.started
            self.slot_seed[s] = seed
            self.slot_return[s] = 0.0
            self.started += 1

    def _record_obs(self, slots: np.ndarray) -> None:
        ts, st = self.ts, self.stage
        t = ts.t[slots]
        st["obs"][slots, t] = ts.obs[slots]
        st["state"][slots, t] = ts.state[slots]
        st["avail"][slots, t] = ts.avail_actions[slots]
        if self.topology is not None:
            st["inbox_idx"][slots, t] = self.inbox_idx[slots]
            st["inbox_mask"][slots, t] = self.inbox_mask[slots]

    def _attach_inbox(self) -> None:
        if self.topology is not None:
            self.ts.inbox_idx = self.inbox_idx.copy()
            self.ts.inbox_mask = self.inbox_mask.copy()

    def _add_agent_stats(self, ts: TimeStep, idx: np.ndarray) -> None:
        """Adds the step's ``info["agent_stats"]`` (``name: [B, n]``, any env may report them)
        to the running slots' episode sums."""
        for name, value in (ts.info.get("agent_stats") or {}).items():
            acc = self.slot_stats.get(name)
            if acc is None:
                acc = self.slot_stats[name] = np.zeros((self.env.n_envs, self.spec.n_agents), dtype=np.float64)
            acc[idx] += np.asarray(value, dtype=np.float64)[idx]

    def step(self) -> list[Episode]:
        """One batched step; returns the episodes that ended in it."""
        active = self.active
        if not active.any():
            return []
        actions = self.policy.act(self.ts)
        t_before = self.ts.t.copy()
        if self.topology is not None:  # route the messages just emitted by this step's neighbours
            self.inbox_idx, self.inbox_mask = self.topology.neighbours(self.ts.positions, batch=self.env.n_envs)
            self.msgs_sent += int(self.inbox_mask[active].sum())
        pre = self.signals.before() if self.signals is not None else None
        avail_before = self.ts.avail_actions
        ts = self.env.step(actions)
        signals = self.signals.after(pre, np.asarray(actions), avail_before, ts) if self.signals is not None else {}
        self.ts = ts
        self._attach_inbox()
        idx = np.flatnonzero(active)
        self.env_steps += len(idx)
        self.slot_return[idx] += ts.team_reward(self.spec.reward_scalarisation)[idx]
        self._add_agent_stats(ts, idx)
        if self.record:
            st = self.stage
            t = t_before[idx]
            st["actions"][idx, t] = np.asarray(actions)[idx]
            for name in self.extras:  # what the policy recorded about this step (e.g. log-probs), and the credit signals
                st[name][idx, t] = (signals[name] if name in signals else self.policy.step_extras[name])[idx]
            st["reward"][idx, t] = ts.reward[idx]
            st["terminated"][idx, t] = ts.terminated[idx]
            st["filled"][idx, t] = True
            self._record_obs(idx)
        ended = idx[ts.done[idx]]
        if len(ended) == 0:
            return []
        if self.topology is not None:  # nothing crosses an episode boundary
            self.inbox_idx[ended] = -1
            self.inbox_mask[ended] = False
            self._attach_inbox()
        out = []
        for s in ended:
            data = None
            if self.record:
                data = {k: v[s].copy() for k, v in self.stage.items()}
                for v in self.stage.values():
                    v[s] = 0
            stats = {k: v[s].copy() for k, v in self.slot_stats.items()} or None
            out.append(Episode(int(self.slot_index[s]), int(self.slot_seed[s]), float(self.slot_return[s]), int(ts.t[s]), data, stats))
        for v in self.slot_stats.values():
            v[ended] = 0.0
        self.slot_index[ended] = -1
        seeds = np.asarray(self.next_seeds(len(ended)), dtype=np.int64)
        restart = ended[: len(seeds)]
        if len(restart):
            mask = np.zeros(self.env.n_envs, dtype=bool)
            mask[restart] = True
            all_seeds = np.zeros(self.env.n_envs, dtype=np.int64)
            all_seeds[restart] = seeds
            self.ts = self.env.reset(all_seeds, mask=mask)
            self._attach_inbox()
            self._assign(restart, seeds)
            self.policy.reset(mask)
            if self.record:
                self._record_obs(restart)
        return out


def evaluate(env: MultiAgentEnv, policy: TeamPolicy, seeds: np.ndarray, topology: Topology | None = None) -> list[Episode]:
    """Play one episode per seed (in ``env.n_envs`` slots); episodes in seed order."""
    seeds = np.asarray(seeds, dtype=np.int64)
    cursor = 0

    def next_seeds(k: int) -> np.ndarray:
        nonlocal cursor
        out = seeds[cursor : cursor + k]
        cursor += len(out)
        return out

    ro = Rollout(env, policy, next_seeds, topology=topology)
    done: list[Episode] = []
    while ro.active.any():
        done.extend(ro.step())
    return sorted(done, key=lambda e: e.index)


def agent_stats_summary(episodes: list[Episode]) -> dict[str, list[float]] | None:
    """Per-agent means over ``episodes`` of what the env reported in ``info["agent_stats"]``;
    None when it reported nothing.

    Each stat is a per-step count (``idle``: the agent did nothing; ``deliveries``).
    ``NAME`` is its mean total per episode and ``NAME_share`` its mean share of the
    episode's steps, so a robot that idled through every episode reads
    ``idle_share`` 1.0 whatever the episodes' lengths."""
    eps = [e for e in episodes if e.agent_stats]
    if not eps:
        return None
    out: dict[str, list[float]] = {}
    for name in eps[0].agent_stats or {}:
        totals = np.stack([(e.agent_stats or {})[name] for e in eps])  # [E, n]
        lengths = np.array([max(1, e.length) for e in eps], dtype=np.float64)[:, None]
        out[name] = [float(v) for v in totals.mean(axis=0)]
        out[f"{name}_share"] = [float(v) for v in (totals / lengths).mean(axis=0)]
    return out
