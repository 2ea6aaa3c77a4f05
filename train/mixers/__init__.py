"""Value-decomposition mixers by name.

A mixer is one file here (a ``Mixer`` subclass and its algorithm's config
dataclass, a ``QLearnerConfig``) plus one ``register_mixer`` line below; the
algorithm of the same name (``QLearner`` with that mixer) is registered from
it (``train.registry``).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from ..config import ConfigError
from .base import Mixer


@dataclass(frozen=True)
class MixerEntry:
    name: str
    mixer_cls: type[Mixer]
    config_cls: type  # a QLearnerConfig subclass: the algorithm's config
    description: str


MIXERS: dict[str, MixerEntry] = {}
_listeners: list[Callable[[MixerEntry], None]] = []


def register_mixer(name: str, mixer_cls: type[Mixer], config_cls: type, description: str) -> None:
    if name in MIXERS:
        raise ConfigError(f"mixer {name!r} is already registered")
    MIXERS[name] = entry = MixerEntry(name, mixer_cls, config_cls, description)
    for fn in _listeners:
        fn(entry)


def on_register(fn: Callable[[MixerEntry], None]) -> None:
    """Call ``fn`` for every mixer registered so far and every one registered later."""
    _listeners.append(fn)
    for entry in list(MIXERS.values()):
        fn(entry)


def get_mixer(name: str) -> MixerEntry:
    if name not in MIXERS:
        raise ConfigError(f"unknown mixer {name!r}; choose one of: {', '.join(sorted(MIXERS))}")
    return MIXERS[name]


from .central import CentralMixer  # noqa: E402  (weighted QMIX's Q*; not an algorithm of its own, see central.py)
from .qmix import QMIXConfig, QMixer  # noqa: E402
from .vdn import VDNConfig, VDNMixer  # noqa: E402

register_mixer("vdn", VDNMixer, VDNConfig, "value decomposition: Q_tot = sum of Q_i")
register_mixer("qmix", QMixer, QMIXConfig, "monotonic hypernetwork mixer of Q_i given the state")

__all__ = ["CentralMixer", "MIXERS", "Mixer", "MixerEntry", "get_mixer", "on_register", "register_mixer", "QMixer", "QMIXConfig", "VDNMixer", "VDNConfig"]
