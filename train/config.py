"""Typed configs and ``--set key=value`` overrides.

Each algorithm has its own dataclass (see ``train.registry``); the run-level
options live in ``RunConfig``. No global config object: a config is a value
passed down and recorded in the run directory.
"""

from __future__ import annotations

import dataclasses
import json
import types
import typing
from dataclasses import dataclass, field
from typing import Any
from ..envs import canonical_env_name
from ..errors import UserError


class ConfigError(UserError, ValueError):
    """A user-facing configuration error."""


@dataclass
class RunConfig:
    """What a training run is, apart from the algorithm's own settings."""

    env: str = "two_step"
    algo: str = "qmix"
    steps: int | None = None  # env steps; None: the env's recommended budget
    seed: int = 0
    n_envs: int = 8  # parallel episodes stepped in one batched forward pass
    eval_episodes: int = 32
    env_options: dict[str, Any] = field(default_factory=dict)
    log_every: int = 0  # env steps between metric rows; 0: 50 rows per run
    checkpoint_every: int = 0  # env steps between checkpoints; 0: 10 per run
    keep_checkpoints: int = 3  # newest kept (the final one always is)
    save_buffer: bool = True  # keep the replay buffer with the newest checkpoint (exact --resume)
    torch_threads: int = 1  # fixed for reproducibility; small nets gain little from more
    # greedy evaluation during training (eval.csv): every this many env steps; None: total // 20; 0: off
    eval_every: int | None = None
    # episodes of each evaluation during training; None: eval_episodes (so eval_episodes=0 turns both off)
    eval_during_episodes: int | None = None

    def __post_init__(self) -> None:
        # a user's env file (pz:./my_env.py) or module of the current folder is recorded by its
        # absolute path: evaluation, export, the swarm's world and env workers may run elsewhere
        self.env = canonical_env_name(self.env)

    def validate(self) -> None:
        if self.steps is not None and self.steps < 1:
            raise ConfigError(f"steps must be >= 1, got {self.steps}")
        if self.n_envs < 1:
            raise ConfigError(f"n_envs must be >= 1, got {self.n_envs}")
        if self.seed < 0:
            raise ConfigError(f"seed must be >= 0, got {self.seed}")
        if self.eval_episodes < 0:
            raise ConfigError("eval_episodes must be >= 0")
        if self.eval_every is not None and self.eval_every < 0:
            raise ConfigError(f"eval_every must be >= 0 (0: no evaluation during training), got {self.eval_every}")
        if self.eval_during_episodes is not None and self.eval_during_episodes < 0:
            raise ConfigError(f"eval_during_episodes must be >= 0, got {self.eval_during_episodes}")

    def eval_schedule(self, total_steps: int) -> tuple[int, int]:
        """(env steps between evaluations during training, episodes each); (0, 0) when off."""
        every = max(1, total_steps // 20) if self.eval_every is None else self.eval_every
        episodes = self.eval_episodes if self.eval_during_episodes is None else self.eval_during_episodes
        return (every, episodes) if every > 0 and episodes > 0 else (0, 0)


@dataclass
class AgentNetConfig:
    """Agent-network keys shared by every learner (``--set recurrent=false``);
    each learner's config mixes it in next to ``train.comm.CommConfig``."""

    recurrent: bool = True  # False: a feed-forward (MLP) agent; no hidden state in the exported policy
    # agent slots of the networks: the same parameters act (and the mixers and critics train) for any
    # team of n <= max_agents of a resizable env (docs/team-size.md); 0: the env's n, the fixed-size team
    max_agents: int = 0


def _parse_literal(text: str) -> Any:
    low = text.strip().lower()
    if low in ("true", "yes", "on"):
        return True
    if low in ("false", "no", "off"):
        return False
    if low in ("none", "null"):
        return None
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def coerce(value: Any, tp: Any, key: str) -> Any:
    """Turn ``value`` (a string from the CLI, or a Python value) into type ``tp``."""
    origin = typing.get_origin(tp)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(tp)
        if value is None or (isinstance(value, str) and value.strip().lower() in ("none", "null")):
            if type(None) in args:
                return None
        errors = []
        for a in args:
            if a is type(None):
                continue
            try:
                return coerce(value, a, key)
            except ConfigError as e:
                errors.append(str(e))
        raise ConfigError(errors[0] if errors else f"bad value for {key}")
    if isinstance(value, str) and tp is not str:
        value = _parse_literal(value)
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{key} must be true or false, got {value!r}")
    if tp is int:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or int(value) != value:
            raise ConfigError(f"{key} must be an integer, got {value!r}")
        return int(value)
    if tp is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key} must be a number, got {value!r}")
        return float(value)
    if tp is str:
        return str(value)
    if origin in (dict, list) or tp in (dict, list) or tp is Any:
        return value
    return value


def field_types(cls: type) -> dict[str, Any]:
    hints = typing.get_type_hints(cls)
    return {f.name: hints[f.name] for f in dataclasses.fields(cls)}


def apply_overrides(cfg: Any, overrides: dict[str, Any], what: str) -> Any:
    """A copy of dataclass ``cfg`` with ``overrides`` applied and type-checked."""
    types_ = field_types(type(cfg))
    changes = {}
    for key, raw in overrides.items():
        if key not in types_:
            raise ConfigError(f"unknown {what} key {key!r}; valid keys: {', '.join(sorted(types_))}")
        changes[key] = coerce(raw, types_[key], key)
    new = dataclasses.replace(cfg, **changes)
    if hasattr(new, "validate"):
        new.validate()
    return new


def parse_set(items: list[str] | tuple[str, ...]) -> dict[str, str]:
    """``["lr=1e-3", "env.n_agents=8"]`` -> ``{"lr": "1e-3", "env.n_agents": "8"}``."""
    out = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        key, value = item.split("=", 1)
        key = key.strip()
        if not key:
            raise ConfigError(f"--set expects key=value, got {item!r}")
        out[key] = value
    return out


def to_jsonable(cfg: Any) -> dict[str, Any]:
    return dataclasses.asdict(cfg)


# RunConfig fields a config file (and the command line) gives at the top level / as flags;
# every other run field is a --set key (RUN_SET_KEYS), except env_options (env.KEY)
RUN_TOP_KEYS = ("env", "algo", "steps", "seed", "n_envs", "eval_episodes")
RUN_SET_KEYS = tuple(f.name for f in dataclasses.fields(RunConfig) if f.name not in (*RUN_TOP_KEYS, "env_options"))
CONFIG_FILE_KEYS = (*RUN_TOP_KEYS, "set", "result")
RUN_DIR_CONFIG_KEYS = ("run", "algo", "env_spec", "total_steps", "comm")  # a run directory's config.json


def _set_value(v: Any) -> str:
    """A config-file value in the form ``--set`` takes: booleans as true/false, lists and
    mappings (env options such as a payoff table) as JSON, which ``--set`` parses back."""
    if isinstance(v, bool):
        return "true" if v else "false"
    if v is None:
        return "none"
    if isinstance(v, (dict, list)):
        return json.dumps(v)
    return str(v)


def _from_run_config(raw: dict[str, Any], p: Any) -> dict[str, Any]:
    """A run directory's ``config.json`` in the form of a config file: the same run.

    ``total_steps`` is the budget (a resume with ``--steps`` changes it, not
    ``run.steps``); every algorithm key and every run key goes under ``set`` and each
    env option as ``env.KEY``, so the run is rebuilt from exactly what it recorded.
    ``env_spec`` and ``comm`` are derived from the rest and not read."""
    run, algo = raw.get("run"), raw.get("algo")
    if not isinstance(run, dict) or not isinstance(algo, dict) or not isinstance(raw.get("total_steps"), int):
        raise ConfigError(f"config file {p} looks like a run's config.json but has no run, algo and total_steps")
    unknown = [k for k in run if k not in (*RUN_TOP_KEYS, *RUN_SET_KEYS, "env_options")]
    if unknown:
        raise ConfigError(f"config file {p}: unknown run key {unknown[0]!r} (written by another version of marl-edge?)")
    out: dict[str, Any] = {k: run[k] for k in RUN_TOP_KEYS if k in run}
    out["steps"] = raw["total_steps"]
    sets = {**algo, **{k: run[k] for k in RUN_SET_KEYS if k in run}}
    sets.update({f"env.{k}": v for k, v in (run.get("env_options") or {}).items()})
    out["set"] = sets
    return out


def read_config_file(path: Any) -> dict[str, Any]:
    """A run config file (YAML or JSON; JSON is YAML): ``env``, ``algo``, ``steps``,
    ``seed``, ``n_envs``, ``eval_episodes``, and ``set``: a mapping of the keys
    ``--set`` takes (algorithm keys, ``env.KEY``, run keys). ``result`` is free
    documentation (what the config reaches and the command that measured it) and
    is not read. A run directory's own ``config.json`` is a config file too: it
    gives the same run again (``marl-train --config RUN/config.json``). Returns the
    top-level keys with ``set`` as ``{key: str}``."""
    import yaml

    from pathlib import Path

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise ConfigError(f"config file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise ConfigError(f"cannot read config file {p}: {e}") from None
    except yaml.YAMLError as e:
        raise ConfigError(f"config file {p} is not valid YAML/JSON: {str(e).splitlines()[0]}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"config file {p} must hold a mapping of keys ({', '.join(CONFIG_FILE_KEYS)})")
    if "run" in raw and set(raw) <= set(RUN_DIR_CONFIG_KEYS):
        raw = _from_run_config(raw, p)
    unknown = [k for k in raw if k not in CONFIG_FILE_KEYS]
    if unknown:
        raise ConfigError(f"config file {p}: unknown key {unknown[0]!r}; keys: {', '.join(CONFIG_FILE_KEYS)} "
                          "(algorithm, env and run keys go under set:), or a run directory's config.json")
    out = {k: v for k, v in raw.items() if k not in ("set", "result")}
    for k in ("steps", "seed", "n_envs", "eval_episodes"):
        if k in out and out[k] is not None and (isinstance(out[k], bool) or not isinstance(out[k], int)):
            raise ConfigError(f"config file {p}: {k} must be an integer, got {out[k]!r}")
    for k in ("env", "algo"):
        if k in out and not isinstance(out[k], str):
            raise ConfigError(f"config file {p}: {k} must be a string, got {out[k]!r}")
    sets = raw.get("set") or {}
    if not isinstance(sets, dict):
        raise ConfigError(f"config file {p}: set must be a mapping of key: value")
    out["set"] = {str(k): _set_value(v) for k, v in sets.items()}
    return out
