"""One team's view of a competitive env: the env any registered learner trains on.

``TeamView`` wraps a two-team env (``EnvSpec.teams``) and exposes only the
learning team's agents: their observations, availability masks and rewards.
The other team's actions come from an opponent pool set with ``set_pool``:
in the league (``league/opponents.py``) exported bundles run by the runtime's
ONNX Runtime policy, the same artefacts that deploy. This module knows only
the pool's protocol, so it stays numpy-only. A learner sees an ordinary cooperative env of ``len(team)``
agents, so ``train.registry.build_learner`` works unchanged.

Which opponent plays a slot is chosen **per episode**, when the slot resets,
by the pool's sampler (naive or fictitious self-play). Both that choice and
the opponent's sampled actions come from a generator seeded by the slot's
episode seed, so an episode stays a pure function of its seed and of the pool
(docs/design.md contract 1). With no opponent pool (the env made by name,
e.g. by the export's parity check) the other team plays uniformly at random.

It is a built-in env (``team_view``), so a league learner's run directory and
its bundles rebuild it by name in any process, torch or not.
"""

from __future__ import annotations

from typing import Any, Protocol, Sequence

import numpy as np

from .base import EnvError, EnvSpec, MultiAgentEnv, TimeStep
from .registry import make


class OpponentPool(Protocol):
    """What ``TeamView`` asks of the opponents (``league.opponents.Pool``)."""

    def choose(self, rng: np.random.Generator) -> int:
        """The member that plays a new episode."""
        ...

    def reset(self, member: int, mask: np.ndarray) -> None:
        """Clear member's recurrent state in the slots of ``mask``."""
        ...

    def act(self, member: int, obs: np.ndarray, avail: np.ndarray, rows: np.ndarray, rngs: Sequence[np.random.Generator]) -> np.ndarray:
        """Actions ``[len(rows), n_opp]`` of ``member`` for slots ``rows``."""
        ...


class TeamView(MultiAgentEnv):
    """``game`` (a registered two-team env, built with ``game_options``) seen by team ``team``."""

    def __init__(self, n_envs: int = 1, game: str = "rps", game_options: dict[str, Any] | None = None, team: int = 0) -> None:
        super().__init__(n_envs)
        self.inner = make(game, n_envs=n_envs, **(game_options or {}))
        spec = self.inner.spec
        if len(spec.teams) != 2:
            raise EnvError(f"team_view: {game} declares {len(spec.teams) or 1} team(s); self-play needs an env with two teams (EnvSpec.teams)")
        if team not in (0, 1):
            raise EnvError(f"team_view: team must be 0 or 1, got {team}")
        if not spec.discrete:
            raise EnvError(f"team_view: {game} has continuous actions; frozen opponents are discrete-only for now")
        self.team, self.mine, self.theirs = team, list(spec.teams[team]), list(spec.teams[1 - team])
        self.spec = EnvSpec(
            name=f"{spec.name}[team {team}]",
            n_agents=len(self.mine),
            obs_dim=spec.obs_dim,
            state_dim=spec.state_dim,
            episode_limit=spec.episode_limit,
            n_actions=spec.n_actions,
            has_positions=spec.has_positions,
            pos_dim=spec.pos_dim,
            shared_reward=spec.shared_reward,
            noop_action=spec.noop_action,
            options={"game": game, "game_options": dict(spec.options), "team": team},
            reward_scalarisation=spec.reward_scalarisation,
        )
        self.pool: OpponentPool | None = None
        self.member = np.full(n_envs, -1, dtype=np.int64)  # which pool member plays each slot
        self._slot_rngs: list[np.random.Generator] = [np.random.default_rng(0)] * n_envs
        self._ts: TimeStep | None = None

    def set_pool(self, pool: OpponentPool | None) -> None:
        """Opponents for episodes that start from now on (running ones keep theirs)."""
        self.pool = pool

    # the inner env holds the state; these hooks are never reached because reset/step are delegated
    def _reset_slots(self, idx: np.ndarray) -> None:  # pragma: no cover
        raise NotImplementedError

    def _step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _obs(self) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def _state(self) -> np.ndarray:  # pragma: no cover
        raise NotImplementedError

    def reset(self, seeds: int | Sequence[int] | np.ndarray, mask: np.ndarray | None = None) -> TimeStep:
        seeds, idx = self._reset_args(seeds, mask)
        restart = np.zeros(self.n_envs, dtype=bool)
        restart[idx] = True
        ts = self.inner.reset(seeds, mask=restart)
        for i in idx:
            # the opponent's own stream: seeded by the episode seed, apart from the game's slot RNG
            self._slot_rngs[i] = np.random.default_rng([int(seeds[i]), 0x1EA6])
            self.member[i] = self.pool.choose(self._slot_rngs[i]) if self.pool is not None else -1
        if self.pool is not None:
            for m in np.unique(self.member[idx]):
                if m >= 0:
                    self.pool.reset(int(m), restart & (self.member == m))
        self._ts = ts
        return self._view(ts)

    def step(self, actions: np.ndarray) -> TimeStep:
        if self._ts is None:
            raise EnvError("call reset() before step()")
        actions = np.asarray(actions)
        if actions.shape != (self.n_envs, len(self.mine)):
            raise EnvError(f"{self.spec.name}: actions must have shape {(self.n_envs, len(self.mine))}, got {actions.shape}")
        joint = np.zeros((self.n_envs, self.inner.spec.n_agents), dtype=np.int64)
        joint[:, self.mine] = actions
        joint[:, self.theirs] = self._opponent_actions(self._ts)
        self._ts = self.inner.step(joint)
        return self._view(self._ts)

    def _opponent_actions(self, ts: TimeStep) -> np.ndarray:
        obs, avail = ts.obs[:, self.theirs], ts.avail_actions[:, self.theirs]
        out = np.zeros((self.n_envs, len(self.theirs)), dtype=np.int64)
        active = ~ts.done
        for m in np.unique(self.member[active]):
            rows = np.flatnonzero(active & (self.member == m))
            if m < 0:  # no pool: uniformly random available actions
                for r in rows:
                    for j in range(len(self.theirs)):
                        out[r, j] = self._slot_rngs[r].choice(np.flatnonzero(avail[r, j]))
            else:
                assert self.pool is not None
                out[rows] = self.pool.act(int(m), obs, avail, rows, [self._slot_rngs[r] for r in rows])
        return out

    def _view(self, ts: TimeStep) -> TimeStep:
        return TimeStep(
            obs=ts.obs[:, self.mine],
            state=ts.state,
            avail_actions=ts.avail_actions[:, self.mine],
            reward=ts.reward[:, self.mine],
            done=ts.done,
            terminated=ts.terminated,
            positions=None if ts.positions is None else ts.positions[:, self.mine],
            t=ts.t,
            info=ts.info,
        )

    def close(self) -> None:
        self.inner.close()
