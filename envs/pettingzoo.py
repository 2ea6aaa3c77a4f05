"""PettingZoo adapters, both ways.

* ``to_pettingzoo("spread")`` shows a built-in env to the PettingZoo world as a
  ``pettingzoo.ParallelEnv`` (a batch-1 env behind the usual dict API).
* ``from_pettingzoo(factory, n_envs=8)`` turns any PettingZoo *parallel* env
  into a batched ``MultiAgentEnv`` by holding ``n_envs`` copies of it, so the
  learners can train on it. ``make("pz:mpe2.simple_spread_v3", N=3)`` does
  the same through the registry.

PettingZoo and gymnasium are an optional extra (``pip install
marl-edge[pettingzoo]``): they are imported only inside these functions, never
when ``marl_edge.envs`` is imported.
"""

from __future__ import annotations

import functools
from typing import Any, Callable, Mapping, Sequence

import numpy as np

from .base import EnvError, EnvSpec, MultiAgentEnv, TimeStep, episode_seeds

_INSTALL_HINT = "install the PettingZoo extra: pip install 'marl-edge[pettingzoo]'"


def _import_pettingzoo() -> tuple[Any, Any]:
    try:
        import gymnasium
        import pettingzoo
    except ImportError as e:
        raise EnvError(f"PettingZoo support needs pettingzoo and gymnasium ({e}); {_INSTALL_HINT}") from None
    return pettingzoo, gymnasium


def agent_names(n: int) -> list[str]:
    return [f"agent_{i}" for i in range(n)]


# ---------------------------------------------------------------------------
# marl-edge env -> PettingZoo ParallelEnv
# ---------------------------------------------------------------------------
@functools.lru_cache(maxsize=None)
def _parallel_wrapper_class() -> type:
    """The wrapper class, built on first use so pettingzoo stays optional."""
    _, gymnasium = _import_pettingzoo()
    from pettingzoo.utils.env import ParallelEnv

    class MarlEdgeParallelEnv(ParallelEnv):
        """A batch-1 marl-edge env behind PettingZoo's parallel API.

        ``reset(seed=s)`` plays the episode that slot seed ``s`` plays in the
        batched env (``env.reset([s])``); ``reset()`` without a seed draws the
        next seed from a generator seeded by the last explicit seed.
        ``infos[agent]["action_mask"]`` holds the int8 availability mask
        (discrete envs). An action that is unavailable to its agent is replaced
        by the spec's ``noop_action`` when that one is available, else by the
        agent's first available action, and counted in ``infos[agent]
        ["replaced_action"]`` (the built-in envs have every action available).
        All agents leave together when the episode ends.
        """

        metadata = {"render_modes": ["ansi"], "name": "marl_edge", "is_parallelizable": True}

        def __init__(self, env: MultiAgentEnv, render_mode: str | None = None) -> None:
            if env.n_envs != 1:
                raise EnvError(f"to_pettingzoo needs a batch-1 env, got n_envs={env.n_envs}")
            if render_mode not in (None, "ansi"):
                raise EnvError(f"render_mode must be None or 'ansi', got {render_mode!r}")
            self.env = env
            self.spec_ = spec = env.spec
            self.metadata = {**type(self).metadata, "name": spec.name}
            self.render_mode = render_mode
            self.possible_agents = agent_names(spec.n_agents)
            self.agents: list[str] = []
            self.max_cycles = spec.episode_limit
            box = gymnasium.spaces.Box(-np.inf, np.inf, shape=(spec.obs_dim,), dtype=np.float32)
            self.observation_spaces = {a: box for a in self.possible_agents}
            self.state_space = gymnasium.spaces.Box(-np.inf, np.inf, shape=(spec.state_dim,), dtype=np.float32)
            if spec.discrete:
                self.action_spaces = {a: gymnasium.spaces.Discrete(spec.n_actions) for a in self.possible_agents}
            else:
                self.action_spaces = {
                    a: gymnasium.spaces.Box(spec.action_low, spec.action_high, shape=(spec.action_dim,), dtype=np.float32)
                    for a in self.possible_agents
                }
            self._seeder = np.random.default_rng()
            self._ts: Any = None

        def observation_space(self, agent: str) -> Any:
            return self.observation_spaces[agent]

        def action_space(self, agent: str) -> Any:
            return self.action_spaces[agent]

        def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
            if seed is not None:
                self._seeder = np.random.default_rng(int(seed))
                slot_seed = int(seed)
            else:
                slot_seed = int(self._seeder.integers(2**31))
            self._ts = self.env.reset(np.array([slot_seed], dtype=np.int64))
            self.agents = list(self.possible_agents)
            return self._obs_dict(), self._infos({})

        def step(self, actions: dict) -> tuple[dict, dict, dict, dict, dict]:
            if self._ts is None or not self.agents:
                raise EnvError("step() called with no live agents; call reset() first")
            spec = self.spec_
            replaced: dict[str, bool] = {}
            if spec.discrete:
                avail = self._ts.avail_actions[0]
                acts = np.zeros((1, spec.n_agents), dtype=np.int64)
                for i, a in enumerate(self.possible_agents):
                    act = int(actions.get(a, spec.noop_action or 0))
                    if not 0 <= act < spec.n_actions or not avail[i, act]:
                        noop = spec.noop_action
                        act = noop if noop is not None and avail[i, noop] else int(np.argmax(avail[i]))
                        replaced[a] = True
                    acts[0, i] = act
            else:
                acts = np.zeros((1, spec.n_agents, spec.action_dim), dtype=np.float32)
                for i, a in enumerate(self.possible_agents):
                    if a in actions:
                        acts[0, i] = np.asarray(actions[a], dtype=np.float32).reshape(spec.action_dim)
            self._ts = ts = self.env.step(acts)
            obs = self._obs_dict()
            rewards = {a: float(ts.reward[0, i]) for i, a in enumerate(self.possible_agents)}
            done, term = bool(ts.done[0]), bool(ts.terminated[0])
            terminations = {a: term for a in self.possible_agents}
            truncations = {a: done and not term for a in self.possible_agents}
            infos = self._infos(replaced)
            if done:
                self.agents = []
            return obs, rewards, terminations, truncations, infos

        def _obs_dict(self) -> dict[str, np.ndarray]:
            return {a: self._ts.obs[0, i].copy() for i, a in enumerate(self.possible_agents)}

        def _infos(self, replaced: dict[str, bool]) -> dict[str, dict]:
            infos: dict[str, dict] = {a: {} for a in self.possible_agents}
            if self.spec_.discrete:
                for i, a in enumerate(self.possible_agents):
                    infos[a]["action_mask"] = self._ts.avail_actions[0, i].astype(np.int8)
            for a in replaced:
                infos[a]["replaced_action"] = True
            return infos

        def state(self) -> np.ndarray:
            if self._ts is None:
                raise EnvError("state() called before reset()")
            return self._ts.state[0].copy()

        def render(self) -> str | None:
            if self.render_mode != "ansi" or self._ts is None:
                return None
            ts = self._ts
            lines = [f"{self.spec_.name} t={int(ts.t[0])} done={bool(ts.done[0])} reward={ts.reward[0].tolist()}"]
            if ts.positions is not None:
                lines.append("positions " + np.array2string(ts.positions[0], precision=3))
            lines.append("state " + np.array2string(ts.state[0], precision=3))
            return "\n".join(lines)

        def close(self) -> None:
            self.env.close()

    return MarlEdgeParallelEnv


def to_pettingzoo(name_or_env: str | MultiAgentEnv, render_mode: str | None = None, **options: Any) -> Any:
    """A PettingZoo ``ParallelEnv`` playing a built-in env (or a batch-1 env instance).

    ``options`` go to ``make(name, n_envs=1, **options)``.
    """
    cls = _parallel_wrapper_class()
    if isinstance(name_or_env, MultiAgentEnv):
        if options:
            raise EnvError("to_pettingzoo: options are only accepted with an env name, not an env instance")
        env = name_or_env
    else:
        from .registry import make

        env = make(name_or_env, n_envs=1, **options)
    return cls(env, render_mode=render_mode)


# ---------------------------------------------------------------------------
# PettingZoo ParallelEnv -> marl-edge env
# ---------------------------------------------------------------------------
def _inner_space(space: Any) -> Any:
    """The observation part of an obs space that may be ``Dict(observation, action_mask)``."""
    spaces = getattr(space, "spaces", None)
    if isinstance(spaces, dict) and "observation" in spaces:
        return spaces["observation"]
    return space


class PettingZooEnv(MultiAgentEnv):
    """``n_envs`` copies of a PettingZoo parallel env, batched.

    * Agents are ``possible_agents`` in order. Observations are flattened
      (gymnasium ``flatten``) and zero-padded to the largest agent's size; an
      observation ``{"observation": ..., "action_mask": ...}`` is unpacked.
    * Discrete action spaces (``Discrete(n, start)``) map to actions
      ``0..n-1``, padded to the largest ``n`` with unavailable actions. A box
      action space is supported when every agent has the same 1-D box with
      one scalar low/high.
    * ``avail_actions`` come from ``infos[agent]["action_mask"]`` or the
      observation's ``"action_mask"``, else everything is available. An
      all-zero mask is shown as "only the noop (0) available".
    * An agent that leaves (terminated or truncated) keeps its final
      observation on the step it leaves, then reads zeros, gets reward 0 and
      may only take the noop action 0. The slot's episode ends when no agent
      is left; it counts as terminated unless an agent leaving on that last
      step was truncated. ``episode_limit`` also truncates (base class).
    * The state is ``env.state()`` when the env implements it, else the
      concatenation of all (padded) observations.
    * Positions: an env with a method ``agent_positions()`` returning
      ``{agent: xy}`` or an array ``[n, pos_dim]`` has geometry
      (``has_positions``, ``pos_dim``), so distance topologies (``knn:K``,
      ``range:R``) work on it; without one, only broadcast and graphs. It is
      read after every reset and step; an agent that has left keeps its last
      position.
    * Slot ``b`` reset with seed ``s`` calls ``copy_b.reset(seed=s)``.
    * Teams by agent-name prefix: ``teams="adversary,agent"`` (or a list of
      prefixes) puts each agent in the team of the longest prefix its name
      starts with, teams in the order given, and sets ``EnvSpec.teams``; so
      MPE's ``simple_tag`` / ``simple_adversary`` (``adversary_0``,
      ``agent_0``, ...) are two-team envs that ``team_view`` and the league can
      train one side of. A name that matches no prefix, or a prefix that
      matches no name, is one ``EnvError`` line. Without it the env is one team.
    """

    def __init__(
        self,
        factory: Callable[..., Any],
        n_envs: int = 1,
        episode_limit: int | None = None,
        name: str | None = None,
        teams: str | Sequence[str] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(n_envs)
        _, gymnasium = _import_pettingzoo()
        self._flatten = gymnasium.spaces.flatten
        self._Discrete = gymnasium.spaces.Discrete
        self._Box = gymnasium.spaces.Box
        try:
            self.envs = [factory(**kwargs) for _ in range(self.n_envs)]
        except TypeError as e:
            raise EnvError(f"cannot build the PettingZoo env with options {kwargs}: {e}") from e
        env0 = self.envs[0]
        self.agent_ids = list(env0.possible_agents)
        n = len(self.agent_ids)
        if n < 1:
            raise EnvError("the PettingZoo env has no possible_agents")
        self._obs_spaces = [_inner_space(env0.observation_space(a)) for a in self.agent_ids]
        self._obs_dims = [int(gymnasium.spaces.flatdim(s)) for s in self._obs_spaces]
        obs_dim = max(self._obs_dims)

        act_spaces = [env0.action_space(a) for a in self.agent_ids]
        n_actions = action_dim = None
        low, high = -1.0, 1.0
        if all(isinstance(s, self._Discrete) for s in act_spaces):
            self._act_n = np.array([int(s.n) for s in act_spaces])
            self._act_start = [int(s.start) for s in act_spaces]
            n_actions = int(self._act_n.max())
        elif all(isinstance(s, self._Box) for s in act_spaces):
            shapes = {s.shape for s in act_spaces}
            lows = {float(v) for s in act_spaces for v in np.ravel(s.low)}
            highs = {float(v) for s in act_spaces for v in np.ravel(s.high)}
            if len(shapes) != 1 or len(next(iter(shapes))) != 1 or len(lows) != 1 or len(highs) != 1:
                raise EnvError("from_pettingzoo: box action spaces must be the same 1-D box with one low and one high for every agent")
            action_dim = int(next(iter(shapes))[0])
            low, high = lows.pop(), highs.pop()
        else:
            kinds = sorted({type(s).__name__ for s in act_spaces})
            raise EnvError(f"from_pettingzoo supports Discrete or Box action spaces, got {', '.join(kinds)}")

        if episode_limit is None:
            episode_limit = getattr(env0, "max_cycles", None) or getattr(getattr(env0, "unwrapped", None), "max_cycles", None) or 100
        episode_limit = int(episode_limit)

        # probe the global state once (its size, and whether the env has one)
        env0.reset(seed=0)
        self._has_state = True
        try:
            state_dim = int(np.asarray(env0.state(), dtype=np.float32).size)
        except (NotImplementedError, AttributeError):
            self._has_state = False
            state_dim = n * obs_dim

        # positions: an env whose ``agent_positions()`` gives them (None: no geometry)
        self._pos_dim = 0
        pos0 = self._read_positions(env0, None)
        pos_dim = self._pos_dim if pos0 is not None else 2

        env_name = name or (getattr(env0, "metadata", None) or {}).get("name") or "pettingzoo"
        prefixes = team_prefixes(teams)
        team_idx = teams_by_prefix(self.agent_ids, prefixes) if prefixes else ()
        self.spec = EnvSpec(
            name=str(env_name),
            n_agents=n,
            obs_dim=obs_dim,
            state_dim=state_dim,
            episode_limit=episode_limit,
            n_actions=n_actions,
            action_dim=action_dim,
            action_low=low,
            action_high=high,
            has_positions=pos0 is not None,
            pos_dim=pos_dim,
            shared_reward=False,
            noop_action=0 if n_actions is not None else None,
            options={"episode_limit": episode_limit, **({"teams": list(prefixes)} if prefixes else {}), **kwargs},
            teams=team_idx,
        )
        B = self.n_envs
        self._obs_buf = np.zeros((B, n, obs_dim), dtype=np.float32)
        self._state_buf = np.zeros((B, state_dim), dtype=np.float32)
        self._avail_buf = np.ones((B, n, n_actions or 1), dtype=bool)
        self._alive = np.zeros((B, n), dtype=bool)
        self._slot_seeds = np.zeros(B, dtype=np.int64)
        self._pos_buf = np.zeros((B, n, pos_dim), dtype=np.float32) if pos0 is not None else None

    # ---- seeds ------------------------------------------------------------------
    def reset(self, seeds: int | Sequence[int] | np.ndarray, mask: np.ndarray | None = None) -> TimeStep:
        """As ``MultiAgentEnv.reset``; copy ``b`` is reset with ``seed=seeds[b]``."""
        if np.isscalar(seeds):
            seeds = episode_seeds(int(seeds), self.n_envs)
        seeds = np.asarray(seeds, dtype=np.int64).reshape(-1)
        if seeds.shape[0] == self.n_envs:
            self._slot_seeds = seeds.copy()
        return super().reset(seeds, mask)

    # ---- hooks ------------------------------------------------------------------
    def _reset_slots(self, idx: np.ndarray) -> None:
        for b in idx:
            b = int(b)
            obs, infos = self.envs[b].reset(seed=int(self._slot_seeds[b]))
            live = set(self.envs[b].agents)
            self._alive[b] = [a in live for a in self.agent_ids]
            self._obs_buf[b] = 0.0
            if self._pos_buf is not None:
                self._pos_buf[b] = 0.0
            self._absorb(b, obs, infos or {}, self._alive[b])

    def _step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        n = self.spec.n_agents
        reward = np.zeros((self.n_envs, n), dtype=np.float32)
        terminated = np.zeros(self.n_envs, dtype=bool)
        for b in np.flatnonzero(active):
            env = self.envs[b]
            acts = {}
            for i, a in enumerate(self.agent_ids):
                if self._alive[b, i]:
                    if self.spec.discrete:
                        acts[a] = int(actions[b, i]) + self._act_start[i]
                    else:
                        acts[a] = np.asarray(actions[b, i], dtype=np.float32)
            obs, rew, terms, truncs, infos = env.step(acts)
            was_alive = self._alive[b].copy()
            for i, a in enumerate(self.agent_ids):
                reward[b, i] = float(rew.get(a, 0.0)) if was_alive[i] else 0.0
            # agents that were gone before this step read zeros
            self._obs_buf[b, ~was_alive] = 0.0
            self._absorb(b, obs, infos or {}, was_alive)
            live = set(env.agents)
            leaving = [a for i, a in enumerate(self.agent_ids) if was_alive[i] and (terms.get(a) or truncs.get(a) or a not in live)]
            for i, a in enumerate(self.agent_ids):
                self._alive[b, i] = was_alive[i] and a in live and not (terms.get(a) or truncs.get(a))
            if self.spec.discrete:
                self._avail_buf[b, ~self._alive[b]] = False
                self._avail_buf[b, ~self._alive[b], 0] = True
            if not self._alive[b].any():
                truncated = any(truncs.get(a, False) for a in leaving)
                if truncated:
                    self._done[b] = True  # a time limit inside the PettingZoo env: done, not terminated
                else:
                    terminated[b] = True
        return reward, terminated

    def _absorb(self, b: int, obs: dict, infos: dict, alive: np.ndarray) -> None:
        """Copy the observations and masks of the ``alive`` agents and the state of slot ``b``."""
        for i, a in enumerate(self.agent_ids):
            if not alive[i] or a not in obs:
                continue
            o = obs[a]
            mask = None
            if isinstance(o, dict) and "observation" in o:
                mask = o.get("action_mask")
                o = o["observation"]
            self._obs_buf[b, i, : self._obs_dims[i]] = self._flatten(self._obs_spaces[i], o)
            if self.spec.discrete:
                info = infos.get(a) or {}
                if mask is None and isinstance(info, dict):
                    mask = info.get("action_mask")
                avail = self._avail_buf[b, i]
                avail[:] = False
                if mask is None:
                    avail[: self._act_n[i]] = True
                else:
                    m = np.asarray(mask).reshape(-1).astype(bool)[: self._act_n[i]]
                    avail[: len(m)] = m
                    if not avail.any():
                        avail[0] = True
        if self._pos_buf is not None:
            self._pos_buf[b] = self._read_positions(self.envs[b], self._pos_buf[b])
        if self._has_state:
            self._state_buf[b] = np.asarray(self.envs[b].state(), dtype=np.float32).reshape(-1)
        else:
            self._state_buf[b] = self._obs_buf[b].reshape(-1)

    def _read_positions(self, env: Any, last: np.ndarray | None) -> np.ndarray | None:
        """``env.agent_positions()`` (looked up on the env, else its ``unwrapped``) as
        ``[n, pos_dim]``, or None when the env has no such method or it returns None.

        It may return an array ``[n, pos_dim]`` in ``possible_agents`` order or a mapping
        ``{agent: xy}``; an agent missing from the mapping (one that has left) keeps
        ``last``, its last known position (zeros at reset)."""
        fn = getattr(env, "agent_positions", None) or getattr(getattr(env, "unwrapped", None), "agent_positions", None)
        raw = fn() if callable(fn) else None
        if raw is None:
            if last is not None:
                raise EnvError(f"{self.spec.name}: agent_positions() returned None after giving positions; give them every step")
            return None
        n = len(self.agent_ids)
        if isinstance(raw, Mapping):
            unknown = [a for a in raw if a not in self.agent_ids]
            if unknown:
                raise EnvError(f"agent_positions() names {unknown[0]!r}, which is not one of possible_agents {self.agent_ids}")
            rows = {a: np.asarray(v, dtype=np.float32).reshape(-1) for a, v in raw.items()}
            dims = {r.size for r in rows.values()}
            if len(dims) > 1 or (last is None and not rows):
                raise EnvError(f"agent_positions() must give every agent a position of one size, got sizes {sorted(dims) or 'none'}")
            if last is None:
                self._pos_dim = dims.pop()
                last = np.zeros((n, self._pos_dim), dtype=np.float32)
            out = np.array(last, dtype=np.float32, copy=True)
            for i, a in enumerate(self.agent_ids):
                if a in rows:
                    if rows[a].size != out.shape[1]:
                        raise EnvError(f"agent_positions() gave {a!r} {rows[a].size} coordinates, expected {out.shape[1]}")
                    out[i] = rows[a]
            return out
        arr = np.asarray(raw, dtype=np.float32)
        if arr.ndim != 2 or arr.shape[0] != n or (last is not None and arr.shape[1] != last.shape[1]):
            want = f"[{n}, {last.shape[1]}]" if last is not None else f"[{n}, pos_dim]"
            raise EnvError(f"agent_positions() must return an array {want} or a mapping {{agent: position}}, got shape {arr.shape}")
        if last is None:
            self._pos_dim = arr.shape[1]
        return arr

    def _obs(self) -> np.ndarray:
        return self._obs_buf.copy()

    def _state(self) -> np.ndarray:
        return self._state_buf.copy()

    def _avail(self) -> np.ndarray:
        return self._avail_buf.copy()

    def _positions(self) -> np.ndarray | None:
        return None if self._pos_buf is None else self._pos_buf.copy()

    def close(self) -> None:
        for env in self.envs:
            env.close()


def team_prefixes(teams: str | Sequence[str] | None) -> tuple[str, ...]:
    """The ``teams`` option as a tuple of prefixes: ``"adversary,agent"`` or a list; None: ()."""
    if teams is None:
        return ()
    raw = teams.split(",") if isinstance(teams, str) else list(teams)
    prefixes = tuple(str(p).strip() for p in raw)
    if len(prefixes) < 2 or any(not p for p in prefixes) or len(set(prefixes)) != len(prefixes):
        raise EnvError(f"teams must list two or more distinct, non-empty agent-name prefixes (e.g. teams=adversary,agent), got {teams!r}")
    return prefixes


def teams_by_prefix(agents: Sequence[str], prefixes: Sequence[str]) -> tuple[tuple[int, ...], ...]:
    """Agent indices per team: each agent joins the team of the longest prefix its name starts
    with (so ``agent`` and ``agent_red`` can both be teams), teams in the order of ``prefixes``."""
    members: list[list[int]] = [[] for _ in prefixes]
    for i, a in enumerate(agents):
        fits = [k for k, p in enumerate(prefixes) if a.startswith(p)]
        if not fits:
            raise EnvError(f"agent {a!r} matches none of the team prefixes {', '.join(prefixes)}; "
                           f"list a prefix for it (the agents are {', '.join(agents)})")
        members[max(fits, key=lambda k: len(prefixes[k]))].append(i)
    empty = [p for p, m in zip(prefixes, members) if not m]
    if empty:
        raise EnvError(f"team prefix {empty[0]!r} matches no agent (the agents are {', '.join(agents)})")
    return tuple(tuple(m) for m in members)


def from_pettingzoo(factory: Callable[..., Any], n_envs: int = 1, **kwargs: Any) -> PettingZooEnv:
    """A batched ``MultiAgentEnv`` over ``n_envs`` copies of ``factory(**kwargs)``.

    ``episode_limit`` (default: the env's ``max_cycles``, else 100), ``name``
    and ``teams`` (agent-name prefixes, see ``PettingZooEnv``) are taken out of
    ``kwargs``; the rest go to the factory.
    """
    return PettingZooEnv(factory, n_envs=n_envs, **kwargs)


def pettingzoo_entry(name: str) -> Any:
    """The registry entry of ``pz:TARGET`` (its ``parallel_env``) or ``pz:TARGET:FACTORY``;
    TARGET is a dotted module name or a ``.py`` file (``registry.import_env_module``)."""
    from .registry import EnvEntry, import_env_module, split_module

    _, target, attr = split_module(name if name.startswith("pz:") else "pz:" + name)
    attr = attr or "parallel_env"
    if not target:
        raise EnvError(f"bad PettingZoo env name {name!r}; use pz:MODULE[:FACTORY] or pz:./path/to/file.py[:FACTORY], "
                       "e.g. pz:mpe2.simple_spread_v3")
    module = import_env_module(target, name)
    factory = getattr(module, attr, None)
    if not callable(factory):
        raise EnvError(
            f"{target} has no callable {attr!r}; use pz:{target}:FACTORY with its parallel env factory "
            "(AEC-only envs are not supported)"
        )

    def make_env(n_envs: int = 1, **kw: Any) -> PettingZooEnv:
        return from_pettingzoo(factory, n_envs=n_envs, name=name, **kw)

    doc = (getattr(module, "__doc__", None) or "").strip().splitlines()
    description = f"PettingZoo {target}:{attr}" + (f": {doc[0]}" if doc else "")
    return EnvEntry(name, make_env, description, train_steps=50_000, defaults={}, scalarisation="sum")
