"""Gymnasium multi-agent envs (the API that LBF and RWARE implement) as marl-edge envs.

The field's common benchmarks (Level-Based Foraging ``lbforaging``, the
multi-robot warehouse ``rware``, and others written the same way) are
gymnasium envs with a *tuple* of per-agent spaces: ``reset`` returns a tuple
of observations, ``step`` takes a tuple of actions and returns a tuple/list
of per-agent rewards, one ``terminated`` and one ``truncated`` flag for the
whole team. ``make("gym:lbforaging:Foraging-8x8-2p-2f-coop-v3")`` (any
``gymnasium.make`` id, ``module:EnvId`` imports the module that registers it)
turns ``n_envs`` copies of such an env into a batched ``MultiAgentEnv``.

How the adapter maps the gymnasium API (the batching, flattening, padding and
agent bookkeeping are ``PettingZooEnv``'s; this module only shows the env
through PettingZoo's parallel API):

* Agents are the tuple positions ``0..n-1``; observations are flattened.
* Rewards stay per agent (``shared_reward`` is False); how a learner makes a
  team reward of them is the learner's choice.
* ``terminated`` ends the episode without bootstrapping. The env's own time
  limit (``time_limit`` option) is **terminal** by default: the task scores
  the return over the limit and the agents do not see the clock, so the
  learners' targets do not bootstrap past it (EPyMARL reads it the same way:
  its runner stores every end of a gymnasium episode as terminal). With
  ``time_limit=bootstrap`` it is a truncation: an episode that ends at the
  limit counts as truncated unless the task is known to be over
  (``TASK_DONE``: LBF with every food item eaten). Why terminal is the
  default: on LBF, bootstrapping through the limit leaves the value of a
  failing episode pinned only by the discount, and the Q-learners settle on
  a flat overestimate (every state worth about the success reward) whose
  greedy policy loops; see docs/envs.md.
* The episode limit is the env's own: ``spec.max_episode_steps`` when the env
  is registered with one, else the env's ``_max_episode_steps`` (LBF) or
  ``max_steps`` (RWARE), else the ``episode_limit`` option (required then).
* Every action is available (both LBF and RWARE turn an impossible move into
  standing still), unless the env reports masks in ``info["action_mask"]``.
* Positions: for the packages listed in ``POSITIONS`` (LBF, RWARE) the agents'
  grid cells are exposed, so distance topologies (``knn:K``, ``range:R``) work.
* The global state is the concatenation of the agents' observations.

gymnasium and the env packages are optional extras (``pip install
'marl-edge[benchmarks]'``); they are imported only when such an env is made.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Callable

import numpy as np

from .base import EnvError

PREFIX = "gym:"
# how the env's own time limit ends an episode for the learners: "terminal" (no bootstrap: the
# return the task scores is over the limit, and the agents do not see the clock; EPyMARL reads
# it this way) or "bootstrap" (a truncation: targets bootstrap from the last observation)
TIME_LIMITS = ("terminal", "bootstrap")
_INSTALL_HINT = "install the benchmark envs: pip install 'marl-edge[benchmarks]'"


def _lbf_positions(env: Any) -> np.ndarray:
    return np.array([p.position for p in env.players], dtype=np.float32)


def _rware_positions(env: Any) -> np.ndarray:
    return np.array([(a.x, a.y) for a in env.agents], dtype=np.float32)


# top-level module of the unwrapped env's class -> its agents' positions [n, 2]
POSITIONS: dict[str, Callable[[Any], np.ndarray]] = {"lbforaging": _lbf_positions, "rware": _rware_positions}

# top-level module -> "the task itself is over" (LBF: every food item eaten). LBF 2.0 and RWARE 2.0
# report their own time limit as ``terminated``; with this the adapter tells the two apart.
TASK_DONE: dict[str, Callable[[Any], bool]] = {"lbforaging": lambda env: bool(env.field.sum() == 0), "rware": lambda env: False}


def env_episode_limit(env: Any) -> int | None:
    """The episode limit an env declares, or None."""
    spec = getattr(env, "spec", None)
    if spec is not None and getattr(spec, "max_episode_steps", None):
        return int(spec.max_episode_steps)
    u = getattr(env, "unwrapped", env)
    for attr in ("_max_episode_steps", "max_steps", "max_episode_steps", "max_cycles"):
        v = getattr(u, attr, None)
        if isinstance(v, (int, np.integer)) and v > 0:
            return int(v)
    return None


class GymParallelView:
    """One gymnasium tuple-space multi-agent env behind PettingZoo's parallel API."""

    def __init__(self, env: Any, name: str, time_limit: str = "terminal") -> None:
        import gymnasium

        self.env = env
        u = env.unwrapped
        obs_space, act_space = env.observation_space, env.action_space
        if not isinstance(obs_space, gymnasium.spaces.Tuple) or not isinstance(act_space, gymnasium.spaces.Tuple):
            raise EnvError(
                f"{name}: a multi-agent gymnasium env has Tuple observation and action spaces (one entry per agent); "
                f"got {type(obs_space).__name__} / {type(act_space).__name__}"
            )
        if len(obs_space.spaces) != len(act_space.spaces):
            raise EnvError(f"{name}: {len(obs_space.spaces)} observation spaces but {len(act_space.spaces)} action spaces")
        self.n = len(obs_space.spaces)
        self.possible_agents = list(range(self.n))
        self.agents: list[int] = []
        self._obs_spaces = list(obs_space.spaces)
        self._act_spaces = list(act_space.spaces)
        self.metadata = {"name": name}
        self.max_cycles = env_episode_limit(env)
        package = type(u).__module__.split(".")[0]
        self._positions = POSITIONS.get(package)
        self._task_done = TASK_DONE.get(package)
        if time_limit not in TIME_LIMITS:
            raise EnvError(f"{name}: time_limit must be one of {', '.join(TIME_LIMITS)}, got {time_limit!r}")
        self._time_limit = time_limit
        self._t = 0

    def observation_space(self, agent: int) -> Any:
        return self._obs_spaces[agent]

    def action_space(self, agent: int) -> Any:
        return self._act_spaces[agent]

    def _infos(self, info: Any) -> dict[int, dict]:
        masks = info.get("action_mask") if isinstance(info, dict) else None
        if masks is None:
            return {a: {} for a in self.possible_agents}
        return {a: {"action_mask": masks[a]} for a in self.possible_agents}

    def reset(self, seed: int | None = None, options: dict | None = None) -> tuple[dict, dict]:
        obs, info = self.env.reset(seed=seed, options=options)
        self.agents = list(self.possible_agents)
        self._t = 0
        return dict(enumerate(obs)), self._infos(info)

    def step(self, actions: dict[int, Any]) -> tuple[dict, dict, dict, dict, dict]:
        obs, rew, terminated, truncated, info = self.env.step(tuple(actions[a] for a in self.possible_agents))
        rew = np.asarray(rew, dtype=np.float64).reshape(-1)
        if rew.size == 1 and self.n > 1:  # a team reward given once: every agent gets it
            rew = np.repeat(rew, self.n)
        if isinstance(terminated, (list, tuple, np.ndarray)):  # per-agent flags (older gym-style envs): the team ends together
            terminated = bool(np.all(terminated))
        if isinstance(truncated, (list, tuple, np.ndarray)):
            truncated = bool(np.all(truncated))
        self._t += 1
        if self._time_limit == "terminal":
            terminated, truncated = bool(terminated or truncated), False
        elif terminated and self.max_cycles is not None and self._t >= self.max_cycles:
            # the env's own time limit, reported as a termination (LBF 2.0, RWARE 2.0 do): a truncation,
            # unless the task is known to be over (then it is a real termination)
            over = self._task_done(self.env.unwrapped) if self._task_done is not None else False
            terminated, truncated = over, not over
        ids = self.possible_agents
        terms = {a: bool(terminated) for a in ids}
        truncs = {a: bool(truncated) and not bool(terminated) for a in ids}
        if terminated or truncated:
            self.agents = []
        return dict(enumerate(obs)), {a: float(rew[a]) for a in ids}, terms, truncs, self._infos(info)

    def state(self) -> Any:
        raise NotImplementedError  # the adapter concatenates the observations

    def agent_positions(self) -> np.ndarray | None:
        return None if self._positions is None else self._positions(self.env.unwrapped)

    def close(self) -> None:
        self.env.close()


def _import_gymnasium() -> Any:
    try:
        import gymnasium
    except ImportError as e:
        raise EnvError(f"gymnasium envs need gymnasium ({e}); {_INSTALL_HINT}") from None
    return gymnasium


def gym_factory(env_id: str, name: str, time_limit: str = "terminal") -> Callable[..., GymParallelView]:
    """A factory of parallel views over ``gymnasium.make(env_id, **kwargs)``.

    ``env_id`` is ``ENV_ID`` or ``MODULE:ENV_ID``; MODULE (a dotted name, or a
    ``.py`` file that registers the id) is imported first, as ``pz:`` modules are
    (``registry.import_env_module``: installed, a file, or the current folder)."""
    from .registry import import_env_module, split_module

    gymnasium = _import_gymnasium()
    _, target, env_id = split_module(PREFIX + env_id)
    if target:
        import_env_module(target, name)

    def factory(**kwargs: Any) -> GymParallelView:
        try:
            env = gymnasium.make(env_id, disable_env_checker=True, **kwargs)
        except ModuleNotFoundError as e:
            raise EnvError(f"cannot import the package of {name!r} ({e}); {_INSTALL_HINT}, or pip install {e.name}") from None
        except gymnasium.error.Error as e:
            raise EnvError(f"gymnasium cannot make {env_id!r}: {e}") from None
        return GymParallelView(env, name, time_limit)

    return factory


def gym_entry(name: str) -> Any:
    """The registry entry of ``gym:ENV_ID`` (e.g. ``gym:rware:rware-tiny-2ag-v2``)."""
    from .pettingzoo import from_pettingzoo
    from .registry import EnvEntry

    env_id = name[len(PREFIX):]
    if not env_id or env_id.endswith(":"):
        raise EnvError(f"bad gymnasium env name {name!r}; use gym:MODULE:ENV_ID (MODULE may be ./path/to/file.py), "
                       "e.g. gym:lbforaging:Foraging-8x8-2p-2f-coop-v3")
    def make_env(n_envs: int = 1, episode_limit: int | None = None, time_limit: str = "terminal", **kw: Any) -> Any:
        factory = gym_factory(env_id, name, time_limit)
        view = factory(**kw)
        declared = view.max_cycles
        view.close()
        if episode_limit is None:
            if declared is None:
                raise EnvError(f"{name} declares no episode limit; set one: --set env.episode_limit=N")
            episode_limit = declared
        elif declared is not None and int(episode_limit) > declared:
            raise EnvError(f"{name}: episode_limit {episode_limit} is above the env's own limit {declared}; "
                           "change the env's own option instead (e.g. max_episode_steps / max_steps)")
        env = from_pettingzoo(lambda **k: factory(**k), n_envs=n_envs, episode_limit=int(episode_limit), name=name, **kw)
        if time_limit != "terminal":  # recorded, so a rebuilt env (eval, bundles) ends episodes the same way
            env.spec = dataclasses.replace(env.spec, options={**env.spec.options, "time_limit": time_limit})
        return env

    return EnvEntry(name, make_env, f"gymnasium multi-agent env {env_id}", train_steps=200_000, defaults={}, scalarisation="sum")
