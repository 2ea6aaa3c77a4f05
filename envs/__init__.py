"""Markov games: batched numpy envs, their spec, topology, PettingZoo adapters.

numpy only: this package never imports torch or onnx.
"""

from .base import EnvError, EnvSpec, MultiAgentEnv, TimeStep, episode_seeds
from .registry import canonical_env_name, env_names, env_options, get_entry, make, make_sized, register

__all__ = [
    "EnvError",
    "EnvSpec",
    "MultiAgentEnv",
    "TimeStep",
    "canonical_env_name",
    "episode_seeds",
    "env_names",
    "env_options",
    "get_entry",
    "make",
    "make_sized",
    "register",
]
