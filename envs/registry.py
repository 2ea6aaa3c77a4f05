"""Envs by name, with their options validated against the constructor.

``make("spread", n_envs=8, n_agents=16)``. Names of the form
``pz:module.path:factory`` (or ``pz:module.path``, meaning its ``parallel_env``)
wrap any PettingZoo parallel env (see ``pettingzoo.from_pettingzoo``);
``gym:MODULE:ENV_ID`` any gymnasium multi-agent env with tuple spaces, such
as LBF and RWARE (see ``gymma``). Those two kinds take the option
``workers=W``: their slots are stepped in W processes (see ``workers``).
"""

from __future__ import annotations

import dataclasses
import inspect
from dataclasses import dataclass
from typing import Any, Callable

from .base import SCALARISATIONS, EnvError, MultiAgentEnv


@dataclass(frozen=True)
class EnvEntry:
    name: str
    factory: Callable[..., MultiAgentEnv]
    description: str
    train_steps: int  # env steps `marl-train` uses when --steps is not given
    defaults: dict[str, Any]  # options this name fixes (presets)
    # the team reward's default (option ``reward_scalarisation``): "mean" for the built-in
    # envs, "sum" for adapted third-party envs (the field reports summed returns)
    scalarisation: str = "mean"


_REGISTRY: dict[str, EnvEntry] = {}


def register(name: str, factory: Callable[..., MultiAgentEnv], description: str, train_steps: int, **defaults: Any) -> None:
    if name in _REGISTRY:
        raise EnvError(f"env {name!r} is already registered")
    _REGISTRY[name] = EnvEntry(name, factory, description, int(train_steps), dict(defaults))


def env_names() -> list[str]:
    _load_builtins()
    return sorted(_REGISTRY)


def get_entry(name: str) -> EnvEntry:
    _load_builtins()
    if name.startswith("pz:"):
        from .pettingzoo import pettingzoo_entry

        return pettingzoo_entry(name)
    if name.startswith("gym:"):
        from .gymma import gym_entry

        return gym_entry(name)
    if name not in _REGISTRY:
        raise EnvError(f"unknown env {name!r}; choose one of: {', '.join(env_names())} "
                       "(or pz:MODULE for a PettingZoo env, gym:MODULE:ENV_ID for a gymnasium multi-agent env such as LBF or RWARE)")
    return _REGISTRY[name]


def env_options(name: str) -> dict[str, Any]:
    """The options an env accepts, with their defaults (``n_envs`` excluded)."""
    entry = get_entry(name)
    sig = inspect.signature(entry.factory)
    out = {}
    for p in sig.parameters.values():
        if p.name in ("self", "n_envs") or p.kind in (p.VAR_KEYWORD, p.VAR_POSITIONAL):
            continue
        out[p.name] = None if p.default is inspect.Parameter.empty else p.default
    out.update(entry.defaults)
    out["reward_scalarisation"] = entry.scalarisation
    return out


WORKER_PREFIXES = ("pz:", "gym:")  # single-instance third-party envs: the ones worth stepping in processes


def worker_count(name: str, workers: Any) -> int:
    """The checked ``workers`` option: 0 or 1 steps in-process (the default), W > 1 in W processes."""
    if not name.startswith(WORKER_PREFIXES):
        raise EnvError(f"env {name!r} is batched in numpy already and takes no 'workers' option "
                       "(env.workers is for pz: and gym: envs); drop it")
    if isinstance(workers, bool) or not isinstance(workers, int) or workers < 0:
        raise EnvError(f"env option workers must be an integer >= 0 (0 or 1: in-process), got {workers!r}")
    return workers


def make(name: str, n_envs: int = 1, **options: Any) -> MultiAgentEnv:
    """Env ``name`` with ``n_envs`` slots. For ``pz:`` and ``gym:`` envs the
    option ``workers=W`` (W > 1) steps the slots in W processes
    (``envs/workers.py``); it is not passed to the env, and the env, its spec
    and its TimeSteps are the same as without it."""
    if "workers" in options:
        workers = worker_count(name, options.pop("workers"))
        if min(workers, n_envs) > 1:
            from .workers import WorkerPoolEnv

            return WorkerPoolEnv(name, n_envs, workers, options)
    entry = get_entry(name)
    known = env_options(name)
    sig = inspect.signature(entry.factory)
    takes_any = any(p.kind == p.VAR_KEYWORD for p in sig.parameters.values())
    unknown = [k for k in options if k not in known]
    if unknown and not takes_any:
        raise EnvError(f"unknown option {unknown[0]!r} for env {name!r}; options: {', '.join(sorted(known)) or '(none)'}")
    kwargs = {**entry.defaults, **options}
    how = kwargs.pop("reward_scalarisation", None)
    if how is not None and how not in SCALARISATIONS:
        raise EnvError(f"env {name!r}: reward_scalarisation must be one of {', '.join(SCALARISATIONS)}, got {how!r}")
    try:
        env = entry.factory(n_envs=n_envs, **kwargs)
    except EnvError:
        raise
    except (TypeError, ValueError) as e:
        raise EnvError(f"env {name!r}: {e}") from e
    # the team reward: given explicitly (recorded with the options, so a rebuilt env
    # matches), else the entry's default
    spec = env.spec
    opts = {**spec.options, "reward_scalarisation": how} if how is not None else spec.options
    env.spec = dataclasses.replace(spec, reward_scalarisation=how or entry.scalarisation, options=opts)
    return env


_LOADED = False


def _load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import builtin  # noqa: F401  (registers the built-in envs)
