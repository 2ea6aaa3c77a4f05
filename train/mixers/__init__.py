"""Value-decomposition mixers by name.

A mixer is one file here (a ``Mixer`` subclass and its algorithm's config
dataclass, a ``QLearnerConfig``) plus one ``register_mixer`` line below; the
algorithm of the same name (``QLearner`` with that mixer) is registered from
it (``train.registry``).

The built-in mixers are registered by module and class name
(``register_mixer_lazily``) and imported on first use: this package itself
imports no torch, so listing the algorithms (``marl-train --help``) does not
load it. ``Mixer``, ``QMixer``, ``QMIXConfig``, ``VDNMixer`` and ``VDNConfig``
are still importable from here; they load their module when asked for.
"""

from __future__ import annotations

import functools
import importlib
from typing import TYPE_CHECKING, Any, Callable

from ..config import ConfigError

if TYPE_CHECKING:
    from .base import Mixer


class MixerEntry:
    """A mixer by name: its ``Mixer`` class and its algorithm's config class, loaded on first use."""

    def __init__(self, name: str, load: Callable[[], tuple[type, type]], description: str) -> None:
        self.name, self.description, self._load = name, description, load

    @functools.cached_property
    def _classes(self) -> tuple[type, type]:
        return self._load()

    @property
    def mixer_cls(self) -> type[Mixer]:
        return self._classes[0]

    @property
    def config_cls(self) -> type:
        """A QLearnerConfig subclass: the algorithm's config."""
        return self._classes[1]


MIXERS: dict[str, MixerEntry] = {}
_listeners: list[Callable[[MixerEntry], None]] = []


def _add(entry: MixerEntry) -> None:
    if entry.name in MIXERS:
        raise ConfigError(f"mixer {entry.name!r} is already registered")
    MIXERS[entry.name] = entry
    for fn in _listeners:
        fn(entry)


def register_mixer(name: str, mixer_cls: type[Mixer], config_cls: type, description: str) -> None:
    _add(MixerEntry(name, lambda: (mixer_cls, config_cls), description))


def register_mixer_lazily(name: str, module: str, mixer: str, config: str, description: str) -> None:
    """``register_mixer`` for a mixer in ``train/mixers/<module>.py``, imported when first used."""

    def load() -> tuple[type, type]:
        m = importlib.import_module(f"{__name__}.{module}")
        return getattr(m, mixer), getattr(m, config)

    _add(MixerEntry(name, load, description))


def on_register(fn: Callable[[MixerEntry], None]) -> None:
    """Call ``fn`` for every mixer registered so far and every one registered later."""
    _listeners.append(fn)
    for entry in list(MIXERS.values()):
        fn(entry)


def get_mixer(name: str) -> MixerEntry:
    if name not in MIXERS:
        raise ConfigError(f"unknown mixer {name!r}; choose one of: {', '.join(sorted(MIXERS))}")
    return MIXERS[name]


register_mixer_lazily("vdn", "vdn", "VDNMixer", "VDNConfig", "value decomposition: Q_tot = sum of Q_i")
register_mixer_lazily("qmix", "qmix", "QMixer", "QMIXConfig", "monotonic hypernetwork mixer of Q_i given the state")

# CentralMixer: weighted QMIX's Q* (train/wqmix.py), not an algorithm of its own (see central.py)
_EXPORTS = {"Mixer": "base", "QMixer": "qmix", "QMIXConfig": "qmix", "VDNMixer": "vdn", "VDNConfig": "vdn", "CentralMixer": "central"}


def __getattr__(name: str) -> Any:
    """The classes of the built-in mixers, imported (with torch) when asked for."""
    if name in _EXPORTS:
        return getattr(importlib.import_module(f"{__name__}.{_EXPORTS[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = ["CentralMixer", "MIXERS", "Mixer", "MixerEntry", "get_mixer", "on_register", "register_mixer", "register_mixer_lazily",
           "QMixer", "QMIXConfig", "VDNMixer", "VDNConfig"]
