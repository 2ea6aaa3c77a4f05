"""Algorithms by name: a typed config dataclass and a learner factory each.

The built-in algorithms are registered by module and class name
(``register_algo_lazily``): a learner's module imports torch, and it is imported
only when the algorithm is used (its config class or learner), not to list the
names and descriptions. So ``marl-train --help`` and the commands that do not
train start without torch.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any, Callable

from ..envs import EnvSpec
from .config import ConfigError
from .mixers import MixerEntry, on_register

if TYPE_CHECKING:
    from .learner import Learner


class AlgoEntry:
    """An algorithm by name: its config class and ``build(spec, cfg, n_envs, seed,
    total_steps, topology) -> learner``, loaded on first use."""

    def __init__(self, name: str, load: Callable[[], tuple[type, Callable[..., Learner]]], description: str) -> None:
        self.name, self.description, self._load = name, description, load

    @functools.cached_property
    def _loaded(self) -> tuple[type, Callable[..., Learner]]:
        return self._load()

    @property
    def config_cls(self) -> type:
        return self._loaded[0]

    @property
    def build(self) -> Callable[..., Learner]:
        return self._loaded[1]


ALGOS: dict[str, AlgoEntry] = {}


def _add(entry: AlgoEntry) -> None:
    if entry.name in ALGOS:
        raise ConfigError(f"algorithm {entry.name!r} is already registered")
    ALGOS[entry.name] = entry


def register_algo(name: str, config_cls: type, build: Callable[..., Learner], description: str) -> None:
    _add(AlgoEntry(name, lambda: (config_cls, build), description))


def register_algo_lazily(name: str, module: str, config: str, learner: str, *args: Any, description: str) -> None:
    """``register_algo`` for an algorithm of ``train/<module>.py``, imported when first used:
    its config class is ``module.<config>``, its learner ``module.<learner>(spec, cfg, *args, **kw)``."""

    def load() -> tuple[type, Callable[..., Learner]]:
        m = importlib.import_module(f"{__package__}.{module}")
        cls = getattr(m, learner)
        return getattr(m, config), lambda spec, cfg, **kw: cls(spec, cfg, *args, **kw)

    _add(AlgoEntry(name, load, description))


def algo_names() -> list[str]:
    return sorted(ALGOS)


def get_algo(name: str) -> AlgoEntry:
    if name not in ALGOS:
        raise ConfigError(f"unknown algorithm {name!r}; choose one of: {', '.join(algo_names())}")
    return ALGOS[name]


def build_learner(name: str, spec: EnvSpec, cfg: Any, n_envs: int, seed: int, total_steps: int, topology: Any = None) -> Learner:
    """``topology``: a recorded one (run dirs); default: parsed from ``cfg.topology``."""
    return get_algo(name).build(spec, cfg, n_envs=n_envs, seed=seed, total_steps=total_steps, topology=topology)


register_algo_lazily("iql", "q_learner", "IQLConfig", "QLearner", "", description="independent Q-learning")


def _register_mixer_algo(m: MixerEntry) -> None:
    """Every registered mixer (train.mixers) is an algorithm of its name: QLearner with that mixer."""

    def load() -> tuple[type, Callable[..., Learner]]:
        from .q_learner import QLearner

        return m.config_cls, lambda spec, cfg, **kw: QLearner(spec, cfg, m.name, **kw)

    _add(AlgoEntry(m.name, load, m.description))


on_register(_register_mixer_algo)  # vdn, qmix, then any mixer registered later (after the value learners: registry order = help order)

register_algo_lazily("ow_qmix", "wqmix", "OWQMIXConfig", "WQMIXLearner", "ow",
                     description="OW-QMIX: QMIX trained towards an unrestricted Q*, weighting joint actions Q_tot underestimates")
register_algo_lazily("cw_qmix", "wqmix", "CWQMIXConfig", "WQMIXLearner", "cw",
                     description="CW-QMIX: QMIX trained towards an unrestricted Q*, weighting the greedy and better-than-greedy joint actions")
register_algo_lazily("mappo", "ppo", "MAPPOConfig", "PPOLearner", "state", description="MAPPO: actor on local observations, centralised critic V(s)")
register_algo_lazily("ippo", "ppo", "IPPOConfig", "PPOLearner", "local", description="IPPO: actor on local observations, local critic per agent")
register_algo_lazily("coma", "coma", "COMAConfig", "COMALearner",
                     description="COMA: counterfactual baseline from a critic giving every action's Q")
register_algo_lazily("maddpg", "maddpg", "MADDPGConfig", "MADDPGLearner",
                     description="MADDPG: deterministic actors (continuous, or Gumbel-softmax), a centralised critic Q_i(s, a) per agent")
