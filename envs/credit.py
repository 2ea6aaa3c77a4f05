"""Learning signals beside the env's reward: difference rewards and potential-based shaping.

numpy only: the rollout loop computes them per step while the env is in the
state they need (docs/credit.md); learners read them from the recorded episode.

Difference rewards. D_i = R(s, a) - R(s, (a_-i, c_i)): the team reward of the
step taken minus the team reward the same step would have paid had agent i
played its default action c_i and everyone else what they played. The second
term comes from rolling the simulator back (``MultiAgentEnv.snapshot`` before
the step, ``counterfactual_rewards`` after it). This is the one-step
difference: for a reward paid at an episode's end it credits only the actions
of that last step (docs/credit.md says when that is what you want).

Shaping. F = gamma * Phi(s') - Phi(s) (Ng et al. 1999) with gamma the
learner's discount: it leaves the optimal policy unchanged. Phi of a terminal
state is 0; at a time-limit end the learner bootstraps, so Phi(s') there is
the real one. Phi is the env's own (``shaping=builtin``) or a user function
``MODULE:FUNCTION`` that takes the env and returns ``[B]`` (the team) or
``[B, n]`` (per agent).

Recorded per step (``fields``, ``[T, ...]`` in an episode): ``reward_diff
[n]`` (D_i), ``shaping [n]`` (F per agent: each agent's own potential with
``shaping_per_agent``, else the team's) and ``shaping_team []`` (F of the
team potential: Phi [B] as given, or Phi [B, n] reduced like the reward).
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .base import EnvError, MultiAgentEnv, TimeStep, scalarise

REWARD_MODES = ("team", "difference", "team+difference")

Potential = Callable[[MultiAgentEnv], np.ndarray]


@dataclass(frozen=True)
class CreditSpec:
    """What the rollout computes besides the env's reward (built from a learner's config)."""

    difference: bool = False  # record D_i (reward=difference or team+difference)
    default_action: str = "noop"  # c_i: "noop" (the env's noop_action; the zero action of a box) or an int
    shaping: str = "none"  # none | builtin | MODULE:FUNCTION
    shaping_per_agent: bool = False  # each agent shaped by its own Phi_i (needs Phi [B, n])
    gamma: float = 0.99  # the learner's discount (F = gamma * Phi(s') - Phi(s))

    @property
    def active(self) -> bool:
        return self.difference or self.shaping != "none"


def credit_fields(credit: CreditSpec, n_agents: int) -> dict[str, tuple[tuple[int, ...], type]]:
    """The per-step fields recorded for ``credit``: name -> (shape, dtype) of one step."""
    out: dict[str, tuple[tuple[int, ...], type]] = {}
    if credit.difference:
        out["reward_diff"] = ((n_agents,), np.float32)
    if credit.shaping != "none":
        out["shaping"] = ((n_agents,), np.float32)
        out["shaping_team"] = ((), np.float32)
    return out


def load_potential(text: str) -> Potential:
    """``builtin`` -> the env's ``potential()``; ``MODULE:FUNCTION`` -> that function."""
    if text == "builtin":
        return lambda env: env.potential()
    module_name, _, func_name = text.partition(":")
    if not module_name or not func_name:
        raise EnvError(f"shaping must be none, builtin or MODULE:FUNCTION, got {text!r}")
    try:
        module = importlib.import_module(module_name)
    except ImportError as e:
        raise EnvError(f"shaping: cannot import {module_name!r} ({e})") from None
    fn = getattr(module, func_name, None)
    if not callable(fn):
        raise EnvError(f"shaping: {module_name} has no function {func_name!r}")
    return fn


def default_actions(env: MultiAgentEnv, text: str) -> np.ndarray:
    """c_i for every agent: ``[n]`` int (discrete) or ``[n, action_dim]`` float32 (box)."""
    spec = env.spec
    n = spec.n_agents
    if not spec.discrete:
        if text != "noop":
            raise EnvError(f"env {spec.name!r} has a box action space: default_action must be noop (the zero action), got {text!r}")
        return np.zeros((n, spec.action_dim), dtype=np.float32)
    if text == "noop":
        if spec.noop_action is None:
            raise EnvError(f"env {spec.name!r} has no noop action: set default_action to an action index (0..{spec.n_actions - 1})")
        c = spec.noop_action
    else:
        c = int(text)
        if not 0 <= c < spec.n_actions:
            raise EnvError(f"default_action must be noop or an action index in 0..{spec.n_actions - 1} of env {spec.name!r}, got {c}")
    return np.full(n, c, dtype=np.int64)


class RewardSignals:
    """Computes one step's recorded fields: ``before`` the env steps, ``after`` it."""

    def __init__(self, env: MultiAgentEnv, credit: CreditSpec) -> None:
        self.env, self.credit = env, credit
        self.fields = credit_fields(credit, env.spec.n_agents)
        self.default: np.ndarray | None = None
        if credit.difference:
            env.check_rollback()
            self.default = default_actions(env, credit.default_action)
        self.potential: Potential | None = load_potential(credit.shaping) if credit.shaping != "none" else None
        self._phi_next: tuple[np.ndarray, np.ndarray] | None = None  # Phi after the last step: Phi(s) of the next one

    def phi(self) -> tuple[np.ndarray, np.ndarray]:
        """The potential of the env's current state: (per agent [B, n], team [B]), float64."""
        env = self.env
        B, n = env.n_envs, env.spec.n_agents
        p = np.asarray(self.potential(env), dtype=np.float64)
        if p.shape == (B,):
            if self.credit.shaping_per_agent:
                raise EnvError(f"shaping_per_agent=true needs a potential of shape [B, n] = {(B, n)}; {self.credit.shaping} gives [B]")
            return np.repeat(p[:, None], n, axis=1), p
        if p.shape != (B, n):
            raise EnvError(f"shaping potential {self.credit.shaping} must return shape [B] or [B, n] = {(B, n)}, got {p.shape}")
        team = scalarise(p, env.spec.reward_scalarisation, axis=1)
        return (p if self.credit.shaping_per_agent else np.repeat(team[:, None], n, axis=1)), team

    def before(self) -> dict[str, Any]:
        """What the step's fields need from the state before it: a snapshot, Phi(s)."""
        pre: dict[str, Any] = {}
        if self.default is not None:
            pre["snapshot"] = self.env.snapshot()
        if self.potential is not None:
            # the state is the one the last step left, unless a slot has restarted since (t = 0)
            fresh = self._phi_next is not None and not (self.env._t == 0).any()
            pre["phi"] = self._phi_next if fresh else self.phi()
        return pre

    def after(self, pre: dict[str, Any], actions: np.ndarray, avail: np.ndarray, ts: TimeStep) -> dict[str, np.ndarray]:
        """The step's fields ([B, ...] each) from ``pre``, the joint action taken, the
        availability it was taken under and the TimeStep the env returned."""
        out: dict[str, np.ndarray] = {}
        env = self.env
        if self.default is not None:
            default = self.default
            if env.spec.discrete:  # where c_i is unavailable, agent i's counterfactual is its own action (D_i = 0)
                c = np.broadcast_to(default, actions.shape)
                ok = np.take_along_axis(avail, c[..., None], axis=2)[..., 0]
                default = np.where(ok, c, actions)
            else:
                default = np.broadcast_to(default, actions.shape)
            r_cf = env.counterfactual_rewards(pre["snapshot"], actions, default)  # [B, n]
            r = ts.team_reward(env.spec.reward_scalarisation)  # [B]
            out["reward_diff"] = (r[:, None] - r_cf).astype(np.float32)
        if self.potential is not None:
            (phi_a, phi_t), (nxt_a, nxt_t) = pre["phi"], self.phi()
            self._phi_next = (nxt_a, nxt_t)
            g, end = self.credit.gamma, ts.terminated
            nxt_a = np.where(end[:, None], 0.0, nxt_a)  # Phi(terminal) = 0; a time-limit end keeps the real Phi(s')
            nxt_t = np.where(end, 0.0, nxt_t)
            out["shaping"] = (g * nxt_a - phi_a).astype(np.float32)
            out["shaping_team"] = (g * nxt_t - phi_t).astype(np.float32)
        return out
