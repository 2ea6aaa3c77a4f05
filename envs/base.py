"""The env contract (docs/design.md contract 1): a spec and a batched Markov game.

numpy only. Every env runs ``B`` parallel episodes (``n_envs``) as arrays
``[B, n_agents, ...]``. Each slot has its own episode seed and its own RNG,
drawn only at reset, so an episode is a pure function of its seed: slot 3 of a
batch of 32 plays exactly what a batch-1 env plays with the same seed. That is
what lets the in-process evaluation and the deployed swarm agree.

Slots end independently. A finished slot is frozen (reward 0, ``done`` stays
True) until the caller resets it with ``reset(seeds, mask=done)``; the runner
does that at once, so a batch never waits for its slowest episode.
"""

from __future__ import annotations

import dataclasses
import inspect
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any, Sequence

import numpy as np
from ..errors import UserError


class EnvError(UserError, ValueError):
    """A user-facing env error (bad option, bad action, bad topology...)."""


SCALARISATIONS = ("sum", "mean")


def scalarise(reward: np.ndarray, how: str, axis: int = -1) -> np.ndarray:
    """The team reward from per-agent rewards: their sum or their mean over ``axis``."""
    if how == "sum":
        return reward.sum(axis=axis)
    if how == "mean":
        return reward.mean(axis=axis)
    raise EnvError(f"reward_scalarisation must be one of {', '.join(SCALARISATIONS)}, got {how!r}")


@dataclass(frozen=True)
class EnvSpec:
    """What every room needs to know about a Markov game."""

    name: str
    n_agents: int
    obs_dim: int
    state_dim: int
    episode_limit: int
    n_actions: int | None = None  # discrete action space (with availability masks)
    action_dim: int | None = None  # continuous box action space
    action_low: float = -1.0
    action_high: float = 1.0
    has_positions: bool = False  # positions [B, n, pos_dim] each step (topology needs them)
    pos_dim: int = 2
    shared_reward: bool = True  # every agent gets the team reward
    noop_action: int | None = 0  # what a dead / absent agent does (discrete)
    options: dict[str, Any] = field(default_factory=dict)  # the kwargs that built the env
    # how the agents' rewards make the team's: "mean" (built-in envs, whose agents share
    # the team reward) or "sum" (the field's convention for adapted envs: LBF, RWARE, MPE)
    reward_scalarisation: str = "mean"
    # the teams, each a tuple of agent indices; () means one team of every agent (cooperative
    # envs). Competitive envs (envs/rps.py) list one tuple per side; the league trains one side.
    teams: tuple[tuple[int, ...], ...] = ()
    # the team size can change (docs/team-size.md): the option n_agents rebuilds the env at another
    # n, and obs_dim, n_actions and every other per-agent size stay the same for any n
    resizable: bool = False
    # the state's layout for a resizable env: it starts with one block per entry, entry w being
    # w features for each agent (agent-major, n * w floats), and whatever follows does not depend
    # on n; so a learner pads the state to a team of max_agents slots (``state_dim_at``)
    state_agent_blocks: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        object.__setattr__(self, "teams", tuple(tuple(int(i) for i in t) for t in self.teams))  # JSON lists -> tuples
        object.__setattr__(self, "state_agent_blocks", tuple(int(w) for w in self.state_agent_blocks))
        if sum(self.state_agent_blocks) * self.n_agents > self.state_dim or any(w < 1 for w in self.state_agent_blocks):
            raise EnvError(f"{self.name}: state_agent_blocks {self.state_agent_blocks} do not fit a state of {self.state_dim} for {self.n_agents} agents")
        if self.teams and sorted(i for t in self.teams for i in t) != list(range(self.n_agents)):
            raise EnvError(f"{self.name}: teams must split agents 0..{self.n_agents - 1} once each, got {self.teams}")
        if (self.n_actions is None) == (self.action_dim is None):
            raise EnvError(f"{self.name}: exactly one of n_actions / action_dim must be set")
        if self.n_agents < 1 or self.obs_dim < 1 or self.episode_limit < 1:
            raise EnvError(f"{self.name}: n_agents, obs_dim and episode_limit must be >= 1")
        if self.reward_scalarisation not in SCALARISATIONS:
            raise EnvError(f"{self.name}: reward_scalarisation must be one of {', '.join(SCALARISATIONS)}, "
                           f"got {self.reward_scalarisation!r}")

    @property
    def discrete(self) -> bool:
        return self.n_actions is not None

    def team_list(self) -> tuple[tuple[int, ...], ...]:
        """The teams, with the default (one team of every agent) spelled out."""
        return self.teams or (tuple(range(self.n_agents)),)

    def state_dim_at(self, n_agents: int) -> int:
        """The state's width for a team of ``n_agents`` (a resizable env's state grows by its
        per-agent blocks); ``state_dim`` itself at this spec's n."""
        return self.state_dim + (n_agents - self.n_agents) * sum(self.state_agent_blocks)

    def to_dict(self) -> dict[str, Any]:
        """The spec as plain JSON values (``teams`` as lists), equal to its JSON round trip."""
        d = dataclasses.asdict(self)
        d["teams"] = [list(t) for t in self.teams]
        d["state_agent_blocks"] = list(self.state_agent_blocks)
        return d

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "EnvSpec":
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


@dataclass
class TimeStep:
    """What the env returns after ``reset`` and ``step``.

    obs            [B, n, obs_dim]   float32  each agent's local observation
    state          [B, state_dim]    float32  global state (mixers/critics only)
    avail_actions  [B, n, n_actions] bool     discrete envs; all True for a box
    reward         [B, n]            float32  reward of the step just taken
    done           [B]               bool     the slot's episode has ended
    terminated     [B]               bool     ended by the task (no bootstrap);
                                              done & ~terminated = time limit
    positions      [B, n, pos_dim]   float32  or None when the env has no geometry
    t              [B]               int64    steps taken in the current episode

    Set by the rollout loop (not by envs) when the team communicates:
    inbox_idx      [B, n, k_max]     int64    whose step t-1 messages each agent
                                              hears at step t (-1: empty slot)
    inbox_mask     [B, n, k_max]     bool     which slots hold a message
    """

    obs: np.ndarray
    state: np.ndarray
    avail_actions: np.ndarray
    reward: np.ndarray
    done: np.ndarray
    terminated: np.ndarray
    positions: np.ndarray | None
    t: np.ndarray
    info: dict[str, Any] = field(default_factory=dict)
    inbox_idx: np.ndarray | None = None
    inbox_mask: np.ndarray | None = None

    def team_reward(self, how: str = "mean") -> np.ndarray:
        """[B] the team's reward: the sum or the mean of the agents' rewards
        (pass the env's ``spec.reward_scalarisation``)."""
        return scalarise(self.reward, how, axis=1)


def episode_seeds(seed: int, n: int, start: int = 0) -> np.ndarray:
    """Seeds of episodes ``start .. start+n-1`` of a run seeded ``seed``.

    Prefix-stable: episode i gets the same seed whatever ``n`` is, so any
    command given the same ``--seed`` plays the same episode ``i``.
    """
    if seed < 0:
        raise EnvError(f"seed must be >= 0, got {seed}")
    ss = np.random.SeedSequence(int(seed))
    return ss.generate_state(start + n, dtype=np.uint32)[start:].astype(np.int64)


class MultiAgentEnv(ABC):
    """Base of the built-in batched envs.

    Subclasses set ``self.spec`` in ``__init__`` (after calling super) and
    implement the underscored hooks. They hold their state as arrays over the
    batch and must leave slots outside ``active`` untouched in ``_step``.

    Rolling back (difference rewards, docs/credit.md). An env that names in
    ``snapshot_fields`` every attribute that holds per-slot state (an array
    with leading dim ``B``) can be copied and put back: ``snapshot()`` and
    ``restore()``, and ``counterfactual_rewards``, which replays one step
    with each agent in turn swapped to a default action. The base class adds
    its own bookkeeping (``_t``, ``_done``, ``_terminated``, the episode seeds
    and the slot generators) to every snapshot. Everything else an env holds
    must be fixed at construction (options, lookup tables). An env that
    declares nothing (the PettingZoo and gymnasium adapters, whose state lives
    in third-party objects, keep the default ``None``) cannot roll back and says
    so in one line; ``()`` means the bookkeeping is all the state there is.
The counterfactual env is built from ``spec.options`` (the keys the
constructor takes); an env whose options cannot rebuild it overrides
``_counterfactual_env`` (as the matrix game does).

    ``potential()`` (``shaping=builtin``) is an env's own shaping potential
    Phi(s): ``[B, n]`` per agent (or ``[B]`` for the team); envs without one
    refuse.
    """

    spec: EnvSpec
    # per-slot state arrays (leading dim B) that restore() puts back; () for an env whose only
    # state is the base class's bookkeeping, None for one that cannot roll back
    snapshot_fields: tuple[str, ...] | None = None

    def __init__(self, n_envs: int = 1) -> None:
        if n_envs < 1:
            raise EnvError(f"n_envs must be >= 1, got {n_envs}")
        self.n_envs = int(n_envs)
        self._t = np.zeros(self.n_envs, dtype=np.int64)
        self._done = np.ones(self.n_envs, dtype=bool)
        self._terminated = np.zeros(self.n_envs, dtype=bool)
        self._rngs: list[np.random.Generator | None] = [None] * self.n_envs
        # a restored slot's generator state, turned into a generator on first use (rng(i))
        self._rng_states: list[dict[str, Any] | None] = [None] * self.n_envs
        self._seeds = np.zeros(self.n_envs, dtype=np.int64)
        self._started = False
        self._cf_env: MultiAgentEnv | None = None  # the B*n copy counterfactual_rewards steps (built once)

    # ---- hooks -----------------------------------------------------------
    @abstractmethod
    def _reset_slots(self, idx: np.ndarray) -> None:
        """Start new episodes in slots ``idx``; ``self._rngs[i]`` is fresh."""

    @abstractmethod
    def _step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Advance active slots. Returns (reward [B, n], terminated [B])."""

    @abstractmethod
    def _obs(self) -> np.ndarray:
        """[B, n, obs_dim] float32."""

    @abstractmethod
    def _state(self) -> np.ndarray:
        """[B, state_dim] float32."""

    def _avail(self) -> np.ndarray:
        """[B, n, n_actions] bool. Default: everything available."""
        n_act = self.spec.n_actions or 1
        return np.ones((self.n_envs, self.spec.n_agents, n_act), dtype=bool)

    def _positions(self) -> np.ndarray | None:
        return None

    # ---- public API --------------------------------------------------------
    def reset(self, seeds: int | Sequence[int] | np.ndarray, mask: np.ndarray | None = None) -> TimeStep:
        """Start episodes. ``seeds`` is one seed per slot ([B]); an int ``s``
        means ``episode_seeds(s, B)``. With ``mask`` only those slots restart
        (their entries of ``seeds`` are used) and the others keep running."""
        seeds, idx = self._reset_args(seeds, mask)
        for i in idx:  # generators are made on first use (rng(i)): envs that draw nothing pay nothing
            self._rngs[i] = None
            self._rng_states[i] = None
        self._seeds[idx] = seeds[idx]
        self._t[idx] = 0
        self._done[idx] = False
        self._terminated[idx] = False
        if len(idx):
            self._reset_slots(idx)
        reward = np.zeros((self.n_envs, self.spec.n_agents), dtype=np.float32)
        return self._timestep(reward)

    def _reset_args(self, seeds: int | Sequence[int] | np.ndarray, mask: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
        """Checked ``reset`` arguments: seeds [B] and the slots to restart; marks the env started.
        Shared with envs that override ``reset`` (the worker pool), so every env refuses alike."""
        if np.isscalar(seeds):
            seeds = episode_seeds(int(seeds), self.n_envs)
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        if seeds.shape[0] != self.n_envs:
            raise EnvError(f"reset needs {self.n_envs} seeds (one per slot), got {seeds.shape[0]}")
        if mask is None:
            mask = np.ones(self.n_envs, dtype=bool)
        idx = np.flatnonzero(mask)
        if not self._started and len(idx) != self.n_envs:
            raise EnvError("the first reset must reset every slot")
        self._started = True
        return seeds, idx

    def step(self, actions: np.ndarray) -> TimeStep:
        if not self._started:
            raise EnvError("call reset() before step()")
        actions = self._check_actions(actions)
        active = ~self._done
        reward, terminated = self._step(actions, active)
        reward = np.where(active[:, None], reward, 0.0).astype(np.float32)
        terminated = np.asarray(terminated, dtype=bool) & active
        self._t[active] += 1
        truncated = active & (self._t >= self.spec.episode_limit)
        self._terminated |= terminated
        self._done |= terminated | truncated
        return self._timestep(reward)

    def close(self) -> None:  # for adapters that hold resources
        pass

    # ---- rolling back: snapshots and counterfactual steps (docs/credit.md) ---------------
    BOOKKEEPING = ("_t", "_done", "_terminated", "_seeds")

    def potential(self) -> np.ndarray:
        """Phi(s) of the current state, ``[B, n]`` (per agent) or ``[B]``: the env's
        own shaping potential (``shaping=builtin``). Envs without one refuse."""
        raise EnvError(f"env {self.spec.name!r} has no built-in potential; use shaping=MODULE:FUNCTION (docs/credit.md)")

    def check_rollback(self) -> None:
        """Raise one ``EnvError`` line when this env cannot roll back."""
        if self.snapshot_fields is None:
            raise EnvError(f"env {self.spec.name!r} cannot roll back its state (it declares no snapshot_fields), so it has no "
                           "difference rewards; use reward=team (docs/credit.md)")

    def _rollback_fields(self) -> tuple[str, ...]:
        self.check_rollback()
        return (*(self.snapshot_fields or ()), *self.BOOKKEEPING)

    def snapshot(self) -> dict[str, Any]:
        """Copies of every per-slot state array (``snapshot_fields`` and the base
        class's bookkeeping) and of each slot's generator state."""
        snap: dict[str, Any] = {name: np.array(getattr(self, name), copy=True) for name in self._rollback_fields()}
        snap["_rng_states"] = [r.bit_generator.state if r is not None else s for r, s in zip(self._rngs, self._rng_states)]
        return snap

    def restore(self, snap: dict[str, Any], repeat: int = 1) -> None:
        """Put ``snap`` back. With ``repeat`` k this env has k times the batch of the
        env that took it, and slot ``b * k + j`` becomes a copy of slot ``b``.
        Generators are rebuilt lazily from their saved state, so a copy draws what
        the original would have drawn."""
        for name in self._rollback_fields():
            value = snap[name] if repeat == 1 else np.repeat(snap[name], repeat, axis=0)
            target = getattr(self, name)
            if target.shape != value.shape:
                raise EnvError(f"{self.spec.name}: snapshot field {name} has shape {value.shape}, this env holds {target.shape}")
            target[...] = value
        self._rng_states = [st for st in snap["_rng_states"] for _ in range(repeat)]
        self._rngs = [None] * self.n_envs
        self._started = True

    def _counterfactual_env(self) -> "MultiAgentEnv":
        """An env like this one with ``B * n`` slots, built once: the constructor's
        options from ``spec.options`` (those it takes) and this env's spec."""
        if self._cf_env is None:
            takes = inspect.signature(type(self)).parameters
            opts = {k: v for k, v in self.spec.options.items() if k in takes}
            self._cf_env = type(self)(n_envs=self.n_envs * self.spec.n_agents, **opts)
            self._cf_env.spec = self.spec
        return self._cf_env

    def counterfactual_rewards(self, snap: dict[str, Any], actions: np.ndarray, default: np.ndarray) -> np.ndarray:
        """``[B, n]``: entry ``[b, i]`` is the team reward R(s, (a_-i, c_i)) of slot
        ``b``'s step from ``snap`` (taken before ``step(actions)``) with agent ``i``'s
        action replaced by ``default[b, i]`` (c_i), the others as taken. Each c_i
        must be available to its agent in that state (nothing here checks it again).

        One step of one env of batch ``B * n``: slot ``b * n + i`` is slot ``b``
        restored, playing the joint action with agent ``i`` swapped; no loop over
        agents. Only the reward is computed (no observation). Finished slots give 0."""
        B, n = self.n_envs, self.spec.n_agents
        cf = self._counterfactual_env()
        cf.restore(snap, repeat=n)
        joint = np.repeat(np.asarray(actions)[:, None], n, axis=1)  # [B, n (whose swap), n, ...]
        joint[:, np.eye(n, dtype=bool)] = default
        joint = joint.reshape(B * n, *joint.shape[2:])
        # the joint action passed step()'s checks and each c_i is available (the caller's
        # promise, kept by envs.credit): only step()'s conversion is needed
        if self.spec.discrete:
            joint = joint.astype(np.int64, copy=False)
        else:
            joint = np.clip(joint.astype(np.float32), self.spec.action_low, self.spec.action_high)
        active = ~cf._done
        reward, _ = cf._step(joint, active)
        reward = np.where(active[:, None], reward, 0.0).astype(np.float32)
        return scalarise(reward, self.spec.reward_scalarisation, axis=1).reshape(B, n)

    # ---- helpers -----------------------------------------------------------
    def _check_actions(self, actions: np.ndarray) -> np.ndarray:
        spec = self.spec
        actions = np.asarray(actions)
        if spec.discrete:
            if actions.shape != (self.n_envs, spec.n_agents):
                raise EnvError(f"{spec.name}: actions must have shape {(self.n_envs, spec.n_agents)}, got {actions.shape}")
            actions = actions.astype(np.int64)
            if actions.min() < 0 or actions.max() >= spec.n_actions:
                raise EnvError(f"{spec.name}: actions must be in [0, {spec.n_actions}), got {actions.min()}..{actions.max()}")
            avail = self._avail()
            active = ~self._done
            chosen = np.take_along_axis(avail, actions[..., None], axis=2)[..., 0]
            if not chosen.all() and not chosen[active].all():
                b, i = np.argwhere(~chosen & active[:, None])[0]
                raise EnvError(f"{spec.name}: agent {i} in slot {b} took unavailable action {actions[b, i]}")
        else:
            want = (self.n_envs, spec.n_agents, spec.action_dim)
            if actions.shape != want:
                raise EnvError(f"{spec.name}: actions must have shape {want}, got {actions.shape}")
            actions = np.clip(actions.astype(np.float32), spec.action_low, spec.action_high)
        return actions

    def _timestep(self, reward: np.ndarray) -> TimeStep:
        pos = self._positions() if self.spec.has_positions else None
        return TimeStep(
            obs=np.ascontiguousarray(self._obs(), dtype=np.float32),
            state=np.ascontiguousarray(self._state(), dtype=np.float32),
            avail_actions=self._avail().astype(bool),
            reward=reward,
            done=self._done.copy(),
            terminated=self._terminated.copy(),
            positions=None if pos is None else np.asarray(pos, dtype=np.float32),
            t=self._t.copy(),
        )

    def rng(self, i: int) -> np.random.Generator:
        """Slot ``i``'s generator, seeded by its episode seed at reset."""
        if not self._started:
            raise EnvError("call reset() before using the slot RNGs")
        r = self._rngs[i]
        if r is None:
            r = self._rngs[i] = np.random.default_rng(int(self._seeds[i]))
            if self._rng_states[i] is not None:  # a restored slot continues where its original was
                r.bit_generator.state = self._rng_states[i]
        return r
