"""The run directory: its config (``RunSpec``), its metadata and where it lives.

A run directory holds:

    config.json     the full config (run, algorithm, env spec, topology and
                    message volume when the team communicates)
    meta.json       package versions, git revision, command line, sessions
    metrics.csv     one row per log interval (train.metrics_log)
    eval.csv        one row per greedy evaluation during training (eval_every)
    tb/             TensorBoard event files (train/… and eval/… scalars)
    checkpoints/    step_<env_steps>/ (see train.checkpoint)
    eval.json       the final greedy evaluation

This module imports neither the training loop nor a learner: loading a run
(``train.evaluation``, ``export.bundle``) needs only it and the registry.
"""

from __future__ import annotations

import dataclasses
import json
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..errors import UserError
from .. import __version__
from ..envs import EnvSpec, get_entry, make
from ..envs.topology import Topology, message_volume
from . import checkpoint as ckpt
from .config import RunConfig, apply_overrides
from .registry import get_algo


class RunError(UserError, RuntimeError):
    """A user-facing problem with a run directory."""


def git_revision() -> dict[str, Any]:
    src = Path(__file__).resolve().parent.parent
    try:
        rev = subprocess.run(["git", "-C", str(src), "rev-parse", "HEAD"], capture_output=True, text=True, timeout=5)
        if rev.returncode != 0:
            return {"revision": None}
        dirty = subprocess.run(["git", "-C", str(src), "status", "--porcelain", "--untracked-files=no"], capture_output=True, text=True, timeout=5)
        return {"revision": rev.stdout.strip(), "dirty": bool(dirty.stdout.strip())}
    except (OSError, subprocess.SubprocessError):
        return {"revision": None}


def package_versions() -> dict[str, str]:
    import importlib.metadata as md

    out = {"python": platform.python_version(), "marl-edge": __version__}
    for name in ("numpy", "torch", "onnx", "onnxruntime", "pyzmq", "msgpack", "click", "safetensors", "pettingzoo"):
        try:
            out[name] = md.version(name)
        except md.PackageNotFoundError:
            pass
    return out


@dataclass
class RunSpec:
    """A run's configuration as recorded in ``config.json``."""

    run: RunConfig
    algo_cfg: Any
    env_spec: EnvSpec
    total_steps: int
    comm: dict[str, Any] | None = None  # aggregator, recorded topology, message volume

    def to_dict(self) -> dict[str, Any]:
        return {
            "run": dataclasses.asdict(self.run),
            "algo": dataclasses.asdict(self.algo_cfg),
            "env_spec": self.env_spec.to_dict(),
            "total_steps": self.total_steps,
            "comm": self.comm,
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "RunSpec":
        run = RunConfig(**d["run"])
        algo_cls = get_algo(run.algo).config_cls
        return cls(run, algo_cls(**d["algo"]), EnvSpec.from_dict(d["env_spec"]), int(d["total_steps"]), d.get("comm"))

    def topology(self) -> Topology | None:
        """The recorded topology (rebuilt without reading a graph file again)."""
        return Topology.from_dict(self.comm["topology"]) if self.comm else None


def make_run_spec(run: RunConfig, algo_overrides: dict[str, Any]) -> RunSpec:
    """Validate a run config and build the algorithm config and env spec."""
    run.validate()
    entry = get_algo(run.algo)
    algo_cfg = apply_overrides(entry.config_cls(), algo_overrides, f"{run.algo} config")
    env = make(run.env, n_envs=1, **run.env_options)
    spec = env.spec
    env.close()
    total = run.steps if run.steps is not None else get_entry(run.env).train_steps
    comm = None
    topo = algo_cfg.build_topology(spec) if hasattr(algo_cfg, "build_topology") else None
    if topo is not None:
        comm = {
            "comm": algo_cfg.comm,
            "msg_dim": algo_cfg.msg_dim,
            "msg_dropout": algo_cfg.msg_dropout,
            "topology": topo.to_dict(),
            "volume": message_volume(topo, spec.n_agents, algo_cfg.msg_dim),
        }
    return RunSpec(run, algo_cfg, spec, int(total), comm)


def _env_part(env: str) -> str:
    return env.replace(":", "_").replace("/", "_").replace(".", "_")


def default_run_dir(run: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{_env_part(run.env)}_{run.algo}_s{run.seed}_{stamp}"


def default_sweep_dir(env: str, algo: str) -> Path:
    """Where a sweep's runs go without ``--out``: runs/ENV_ALGO_sweep_TIME."""
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{_env_part(env)}_{algo}_sweep_{stamp}"


def create_run_dir(rs: RunSpec, out: Path | None) -> Path:
    run_dir = Path(out) if out is not None else default_run_dir(rs.run)
    if (run_dir / "config.json").exists():
        raise RunError(f"{run_dir} already holds a run; continue it with --resume {run_dir} or choose another --out")
    try:
        run_dir.mkdir(parents=True, exist_ok=True)
        probe = run_dir / ".write-test"
        probe.write_text("")
        probe.unlink()
    except OSError as e:
        raise RunError(f"cannot write the run directory {run_dir}: {e.strerror or e}") from e
    ckpt.write_atomic(run_dir / "config.json", json.dumps(rs.to_dict(), indent=2))
    meta = {
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "host": socket.gethostname(),
        "versions": package_versions(),
        "git": git_revision(),
        "sessions": [{"argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed_from": None}],
    }
    ckpt.write_atomic(run_dir / "meta.json", json.dumps(meta, indent=2))
    return run_dir


def load_run_spec(run_dir: Path) -> RunSpec:
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise RunError(f"{run_dir} is not a directory; pass a run directory made by marl-train")
    cfg = run_dir / "config.json"
    if not cfg.is_file():
        raise RunError(f"{run_dir} is not a run directory (no config.json)")
    try:
        return RunSpec.from_dict(json.loads(cfg.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError) as e:
        raise RunError(f"{cfg} is corrupt: {e}") from e


def note_session(run_dir: Path, resume_step: int | None) -> None:
    """Append this session (argv, time, the checkpoint it resumed from, git) to meta.json."""
    meta_path = run_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        meta = {"sessions": []}
    meta.setdefault("sessions", []).append(
        {"argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed_from": resume_step, "git": git_revision()}
    )
    ckpt.write_atomic(meta_path, json.dumps(meta, indent=2))
