"""Envs by name, with their options validated against the constructor.

``make("spread", n_envs=8, n_agents=16)``. Names of the form
``pz:module.path:factory`` (or ``pz:module.path``, meaning its ``parallel_env``)
wrap any PettingZoo parallel env (see ``pettingzoo.from_pettingzoo``);
``gym:MODULE:ENV_ID`` any gymnasium multi-agent env with tuple spaces, such
as LBF and RWARE (see ``gymma``). Those two kinds take the option
``workers=W``: their slots are stepped in W processes (see ``workers``).

The module of a ``pz:`` or ``gym:`` name may also be a user's own file,
``pz:./my_env.py[:FACTORY]``, or a module of the current folder
(``pz:my_env``), as ``import_env_module`` describes. Such a name means
something only in one folder, while the run's evaluation, its export, the
swarm's world and the env workers may run anywhere; ``canonical_env_name``
therefore turns it into the file's absolute path, and that is the name a run
records (``train.config.RunConfig``) and a bundle inherits.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import os
import sys
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType
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
                       "(or pz:MODULE or pz:./file.py for a PettingZoo env, gym:MODULE:ENV_ID for a gymnasium multi-agent env such as LBF or RWARE)")
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
    and its TimeSteps are the same as without it. A name that points into the
    current folder is made by its canonical name (``canonical_env_name``), so
    the workers and the spec's name find the same file from anywhere."""
    name = canonical_env_name(name)
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


def make_sized(name: str, n_agents: int, n_envs: int = 1, options: dict[str, Any] | None = None) -> MultiAgentEnv:
    """Env ``name`` (with ``options``) for a team of ``n_agents``: the env as ``make``
    builds it when that is its size, else rebuilt with the option ``n_agents``. An env
    whose spec is not ``resizable`` (its observation depends on n, or its n is fixed)
    refuses any other size with one ``EnvError`` line (docs/team-size.md)."""
    options = dict(options or {})
    env = make(name, n_envs=n_envs, **options)
    if env.spec.n_agents == n_agents:
        return env
    env.close()
    spec = env.spec
    if not spec.resizable:
        raise EnvError(f"env {spec.name!r} cannot change its team size ({spec.n_agents} agents): its spec is not resizable; "
                       f"use n_agents={spec.n_agents}, or a resizable env (rendezvous, warehouse)")
    if isinstance(n_agents, bool) or not isinstance(n_agents, int) or n_agents < 1:
        raise EnvError(f"env {spec.name!r}: a team size must be an integer >= 1, got {n_agents!r}")
    return make(name, n_envs=n_envs, **{**options, "n_agents": n_agents})


# ---------------------------------------------------------------------------
# the module of a pz: or gym: name: installed, a file, or in the current folder
# ---------------------------------------------------------------------------
MODULE_PREFIXES = ("pz:", "gym:")


def split_module(name: str) -> tuple[str, str, str]:
    """``pz:TARGET[:FACTORY]`` -> ``("pz:", TARGET, FACTORY)``; ``gym:TARGET:ENV_ID`` ->
    ``("gym:", TARGET, ENV_ID)`` (``gym:ENV_ID`` alone has no module: ``("gym:", "", ENV_ID)``).
    TARGET is a dotted module name or the path of a ``.py`` file."""
    prefix = next((p for p in MODULE_PREFIXES if name.startswith(p)), "")
    rest = name[len(prefix):]
    target, sep, tail = rest.partition(":")
    if prefix == "gym:" and not sep:
        return prefix, "", rest
    return prefix, target, tail


def is_file_target(target: str) -> bool:
    """A module given as a file path (``./env.py``, ``/abs/env.py``, ``sub/env.py``), not a dotted name."""
    return target.endswith(".py") or "/" in target or os.sep in target


def _in_folder(target: str, folder: Path) -> Path | None:
    """The file that the dotted module ``target`` is in ``folder`` (``a/b.py`` or ``a/b/__init__.py``), if any."""
    base = folder.joinpath(*target.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _found_in_cwd(target: str) -> Path | None:
    """The file of ``target`` when the current folder provides it: the top-level module
    is not installed (a console script does not search the current folder), or the
    search found it in the current folder (``python -m`` puts that on the path)."""
    cwd = Path.cwd()
    local = _in_folder(target, cwd)
    if local is None:
        return None
    try:
        spec = importlib.util.find_spec(target.split(".")[0])
    except (ImportError, ValueError):
        spec = None
    if spec is None:
        return local
    where = spec.origin if spec.origin not in (None, "namespace") else next(iter(spec.submodule_search_locations or []), None)
    return local if where is not None and Path(where).resolve().is_relative_to(cwd.resolve()) else None


def canonical_env_name(name: str) -> str:
    """The name that makes the same env from any folder and in any process.

    A ``pz:``/``gym:`` module given as a relative file path, or found in the current
    folder, becomes the absolute path of its file (``pz:my_env`` run from ``/proj`` is
    ``pz:/proj/my_env.py``); every other name is returned as it is. Imports nothing."""
    prefix, target, tail = split_module(name)
    if not prefix or not target:
        return name
    if is_file_target(target):
        path = Path(target).expanduser()
        if not path.is_absolute():
            path = Path.cwd() / path
    else:
        path = _found_in_cwd(target)
        if path is None:
            return name
    return f"{prefix}{os.path.normpath(path)}" + (f":{tail}" if tail else "")


def _module_of_file(path: Path) -> tuple[Path, str]:
    """The folder to search and the dotted name of ``path``: a file in a package (its
    folder holds ``__init__.py``) is imported as part of that package, so its relative
    imports work; any other file as a top-level module of its folder."""
    parts = [] if path.name == "__init__.py" else [path.stem]
    root = path.parent
    while (root / "__init__.py").is_file():
        parts.insert(0, root.name)
        root = root.parent
    return root, ".".join(parts)


def _import_file(target: str, name: str) -> ModuleType:
    path = Path(target).expanduser()
    if not path.is_absolute():
        path = Path.cwd() / path
    if not path.is_file():
        raise EnvError(f"env {name!r}: no file {path}; give the path of the .py file that defines the env")
    root, module_name = _module_of_file(path)
    if str(root) not in sys.path:
        sys.path.append(str(root))  # last: the file's own imports (helpers beside it) resolve, nothing installed is shadowed
        importlib.invalidate_caches()
    try:
        module = importlib.import_module(module_name)
    except ModuleNotFoundError as e:
        raise EnvError(f"env {name!r}: {path} imports {e.name!r}, which is not installed ({e}); pip install it") from None
    except Exception as e:  # noqa: BLE001 (the user's own code: one line, the traceback with --debug)
        raise EnvError(f"env {name!r}: importing {path} failed: {type(e).__name__}: {e}") from e
    found = Path(getattr(module, "__file__", "") or "")
    if not found.is_file() or not found.samefile(path):
        raise EnvError(f"env {name!r}: the module name {module_name!r} of {path} is taken by {found or 'another module'}; rename the file")
    return module


def import_env_module(target: str, name: str) -> ModuleType:
    """The module a ``pz:``/``gym:`` env name points at (``name`` is for messages).

    ``target`` is the path of a ``.py`` file (relative to the current folder, or
    absolute), imported under its own module name from its folder (from above its
    package when it is in one); or a dotted module name, imported as usual and, when
    no installed module has that name, from the current folder."""
    if is_file_target(target):
        return _import_file(target, name)
    try:
        return importlib.import_module(target)
    except ModuleNotFoundError as e:
        missing = e.name or ""
        if not (target == missing or target.startswith(missing + ".")):
            raise EnvError(f"env {name!r}: {target!r} imports {missing!r}, which is not installed ({e}); pip install {missing.split('.')[0]}") from None
        local = _in_folder(target, Path.cwd())
        if local is not None:
            return _import_file(str(local), name)
        file = target.replace(".", "/") + ".py"
        package = target.split(".")[0] if "." in target else None  # a dotted name is most likely an installable package's
        raise EnvError(
            f"cannot import {target!r} for env {name!r}: no installed module and no {file} in the current folder {Path.cwd()}; "
            f"run from the folder that holds {file}, give the file's path ({split_module(name)[0]}./path/to/{file.rsplit('/', 1)[-1]}), "
            + (f"or install its package: pip install {package}" if package else "or install the package that provides it")
        ) from None
    except ImportError as e:
        raise EnvError(f"cannot import {target!r} for env {name!r}: {e}") from None


_LOADED = False


def _load_builtins() -> None:
    global _LOADED
    if _LOADED:
        return
    _LOADED = True
    from . import builtin  # noqa: F401  (registers the built-in envs)
