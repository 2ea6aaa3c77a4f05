"""Algorithms by name: a typed config dataclass and a learner factory each."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..envs import EnvSpec
from .config import ConfigError
from .learner import Learner
from .q_learner import IQLConfig, QLearner


@dataclass(frozen=True)
class AlgoEntry:
    name: str
    config_cls: type
    build: Callable[..., Learner]  # (spec, cfg, n_envs, seed, total_steps, topology) -> learner
    description: str


ALGOS: dict[str, AlgoEntry] = {}


def register_algo(name: str, config_cls: type, build: Callable[..., Learner], description: str) -> None:
    if name in ALGOS:
        raise ConfigError(f"algorithm {name!r} is already registered")
    ALGOS[name] = AlgoEntry(name, config_cls, build, description)


def algo_names() -> list[str]:
    return sorted(ALGOS)


def get_algo(name: str) -> AlgoEntry:
    if name not in ALGOS:
        raise ConfigError(f"unknown algorithm {name!r}; choose one of: {', '.join(algo_names())}")
    return ALGOS[name]


def build_learner(name: str, spec: EnvSpec, cfg: Any, n_envs: int, seed: int, total_steps: int, topology: Any = None) -> Learner:
    """``topology``: a recorded one (run dirs); default: parsed from ``cfg.topology``."""
    return get_algo(name).build(spec, cfg, n_envs=n_envs, seed=seed, total_steps=total_steps, topology=topology)


register_algo("iql", IQLConfig, lambda spec, cfg, **kw: QLearner(spec, cfg, "", **kw), "independent Q-learning")


def _register_mixer_algo(m: MixerEntry) -> None:
    """Every registered mixer (train.mixers) is an algorithm of its name: QLearner with that mixer."""
    register_algo(m.name, m.config_cls, lambda spec, cfg, **kw: QLearner(spec, cfg, m.name, **kw), m.description)


from .mixers import MixerEntry, on_register  # noqa: E402

on_register(_register_mixer_algo)  # vdn, qmix, then any mixer registered later

from .wqmix import CWQMIXConfig, OWQMIXConfig, WQMIXLearner  # noqa: E402

register_algo("ow_qmix", OWQMIXConfig, lambda spec, cfg, **kw: WQMIXLearner(spec, cfg, "ow", **kw),
              "OW-QMIX: QMIX trained towards an unrestricted Q*, weighting joint actions Q_tot underestimates")
register_algo("cw_qmix", CWQMIXConfig, lambda spec, cfg, **kw: WQMIXLearner(spec, cfg, "cw", **kw),
              "CW-QMIX: QMIX trained towards an unrestricted Q*, weighting the greedy and better-than-greedy joint actions")

from .ppo import IPPOConfig, MAPPOConfig, PPOLearner  # noqa: E402  (after the value learners: registry order = help order)

register_algo("mappo", MAPPOConfig, lambda spec, cfg, **kw: PPOLearner(spec, cfg, "state", **kw), "MAPPO: actor on local observations, centralised critic V(s)")
register_algo("ippo", IPPOConfig, lambda spec, cfg, **kw: PPOLearner(spec, cfg, "local", **kw), "IPPO: actor on local observations, local critic per agent")

from .coma import COMAConfig, COMALearner  # noqa: E402

register_algo("coma", COMAConfig, lambda spec, cfg, **kw: COMALearner(spec, cfg, **kw), "COMA: counterfactual baseline from a critic giving every action's Q")

from .maddpg import MADDPGConfig, MADDPGLearner  # noqa: E402

register_algo("maddpg", MADDPGConfig, lambda spec, cfg, **kw: MADDPGLearner(spec, cfg, **kw),
              "MADDPG: deterministic actors (continuous, or Gumbel-softmax), a centralised critic Q_i(s, a) per agent")
