"""Checkpoints: written atomically, loadable without executing pickle.

A checkpoint is a folder ``checkpoints/step_<env_steps>/`` holding
``weights.safetensors`` (every module's tensors and the optimiser's moment
tensors), ``state.json`` (counters, RNG states, the optimiser's scalar
settings) and, for the newest one, ``buffer.npz`` (the replay buffer, plain
arrays). It is assembled in a hidden temp folder and renamed into place, so a
crash (even ``kill -9``) leaves either the whole checkpoint or none.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any

import torch
from safetensors.torch import load_file, save_file
from ..errors import UserError

PREFIX = "step_"


class CheckpointError(UserError, RuntimeError):
    """A missing, corrupt or mismatched checkpoint."""


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    sd = opt.state_dict()
    tensors, scalars = {}, {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if torch.is_tensor(v):
                tensors[f"optim/{pid}/{k}"] = v.detach().clone().contiguous()
            else:
                scalars[f"{pid}/{k}"] = v
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _unflatten_optimizer(opt: torch.optim.Optimizer, tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim/"):
            _, pid, k = key.split("/", 2)
            state.setdefault(int(pid), {})[k] = v
    for key, v in meta["scalars"].items():
        pid, k = key.split("/", 1)
        state.setdefault(int(pid), {})[k] = v
    opt.load_state_dict({"state": state, "param_groups": meta["param_groups"]})


def write_atomic(path: Path, text: str) -> None:
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def save_checkpoint(
    ckpt_root: Path,
    step: int,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    state: dict[str, Any],
    extra_files: dict[str, Any] | None = None,
) -> Path:
    """Write ``ckpt_root/step_<step>`` atomically; ``extra_files`` maps a file
    name to a callable that writes it given a path."""
    ckpt_root = Path(ckpt_root)
    ckpt_root.mkdir(parents=True, exist_ok=True)
    final = ckpt_root / f"{PREFIX}{step:010d}"
    tmp = Path(tempfile.mkdtemp(dir=ckpt_root, prefix=".tmp-"))
    try:
        tensors = {}
        for name, mod in modules.items():
            for k, v in mod.state_dict().items():
                tensors[f"{name}/{k}"] = v.detach().clone().contiguous()
        opt_t, opt_meta = _flatten_optimizer(optimizer)
        tensors.update(opt_t)
        tensors["rng/torch"] = torch.get_rng_state()
        save_file(tensors, str(tmp / "weights.safetensors"))
        for fname, writer in (extra_files or {}).items():
            writer(tmp / fname)
        body = {"step": step, "modules": sorted(modules), "optimizer": opt_meta, **state}
        with open(tmp / "state.json", "w") as f:
            json.dump(body, f)
            f.flush()
            os.fsync(f.fileno())
        if final.exists():  # a re-save of the same step (resume at the end): replace whole
            shutil.rmtree(final)
        os.rename(tmp, final)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return final


def list_checkpoints(ckpt_root: Path) -> list[tuple[int, Path]]:
    """Complete checkpoints, oldest first (temp folders of a crash are ignored)."""
    ckpt_root = Path(ckpt_root)
    if not ckpt_root.is_dir():
        return []
    out = []
    for p in ckpt_root.iterdir():
        if p.is_dir() and p.name.startswith(PREFIX) and (p / "state.json").is_file():
            try:
                out.append((int(p.name[len(PREFIX):]), p))
            except ValueError:
                continue
    return sorted(out)


def clean_partial(ckpt_root: Path) -> int:
    """Remove temp folders a crash left behind; returns how many."""
    n = 0
    for p in Path(ckpt_root).glob(".tmp-*"):
        shutil.rmtree(p, ignore_errors=True)
        n += 1
    return n


def find_checkpoint(ckpt_root: Path, step: int | None = None) -> Path:
    cks = list_checkpoints(ckpt_root)
    if not cks:
        raise CheckpointError(f"no checkpoint in {ckpt_root}")
    if step is None:
        return cks[-1][1]
    for s, p in cks:
        if s == step:
            return p
    raise CheckpointError(f"no checkpoint at step {step} in {ckpt_root}; available: {', '.join(str(s) for s, _ in cks)}")


def load_checkpoint(path: Path) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    path = Path(path)
    try:
        with open(path / "state.json") as f:
            state = json.load(f)
        tensors = load_file(str(path / "weights.safetensors"))
    except (OSError, ValueError, json.JSONDecodeError) as e:
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt: {e}") from e
    except Exception as e:  # safetensors raises its own error type on a corrupt header
        raise CheckpointError(f"checkpoint {path} is unreadable or corrupt: {e}") from e
    return tensors, state


def module_state(tensors: dict[str, torch.Tensor], name: str) -> dict[str, torch.Tensor]:
    pre = f"{name}/"
    out = {k[len(pre):]: v for k, v in tensors.items() if k.startswith(pre)}
    if not out:
        raise CheckpointError(f"checkpoint has no weights for {name!r}")
    return out


def restore(
    tensors: dict[str, torch.Tensor], state: dict[str, Any], modules: dict[str, torch.nn.Module], optimizer: torch.optim.Optimizer | None
) -> None:
    for name, mod in modules.items():
        if not mod.state_dict():  # a module without weights (VDN's sum mixer) saves nothing
            continue
        mod.load_state_dict(module_state(tensors, name))
    if optimizer is not None:
        _unflatten_optimizer(optimizer, tensors, state["optimizer"])
    if "rng/torch" in tensors:
        torch.set_rng_state(tensors["rng/torch"])


def prune(ckpt_root: Path, keep: int, protect: set[int] | None = None) -> None:
    """Keep the newest ``keep`` checkpoints (and ``protect``); only the newest keeps its buffer."""
    cks = list_checkpoints(ckpt_root)
    protect = protect or set()
    for i, (s, p) in enumerate(cks):
        newest = i == len(cks) - 1
        if not newest:
            (p / "buffer.npz").unlink(missing_ok=True)
        if i < len(cks) - keep and s not in protect:
            shutil.rmtree(p, ignore_errors=True)
