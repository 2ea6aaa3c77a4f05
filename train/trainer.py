"""The training loop, the run directory and ``--resume``.

A run directory holds:

    config.json     the full config (run, algorithm, env spec, topology and
                    message volume when the team communicates)
    meta.json       package versions, git revision, command line, sessions
    metrics.csv     one row per log interval
    tb/             TensorBoard event files
    checkpoints/    step_<env_steps>/ (see train.checkpoint)
    eval.json       the final greedy evaluation

Determinism: a seed fixes a run. A checkpoint is taken between episodes: when
one is due the rollout starts no new episodes, lets the running ones end, saves,
and starts afresh (in an uninterrupted run too), so a run resumed from a
checkpoint continues exactly as if it had never stopped and no data is lost.
"""

from __future__ import annotations

import csv
import dataclasses
import json
import os
import platform
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..errors import UserError
from .. import __version__
from ..envs import EnvSpec, episode_seeds, get_entry, make
from ..envs.rollout import Rollout, evaluate
from ..envs.topology import Topology, message_volume
from . import checkpoint as ckpt
from .config import ConfigError, RunConfig, apply_overrides
from .q_learner import TorchTeamPolicy
from .registry import build_learner, get_algo

METRIC_FIELDS = [
    "env_steps",
    "episodes",
    "updates",
    "return_mean",
    "return_min",
    "return_max",
    "episode_len",
    "epsilon",
    "loss",
    "td_abs",
    "q_taken",
    "grad_norm",
    "entropy",
    "clip_frac",
    "msgs_per_step",
    "msg_floats_per_step",
    "wall_s",
    "steps_per_s",
]
NONDETERMINISTIC = {"wall_s", "steps_per_s"}
# what a learner's update may report (Q-learners: the first four; actor-critics: td_abs is
# the value error |return - V|, q_taken the mean V, plus entropy and clip_frac)
LEARNER_METRICS = ("loss", "td_abs", "q_taken", "grad_norm", "entropy", "clip_frac")


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


def default_run_dir(run: RunConfig) -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    env = run.env.replace(":", "_").replace("/", "_").replace(".", "_")
    return Path("runs") / f"{env}_{run.algo}_s{run.seed}_{stamp}"


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


class MetricsLog:
    """metrics.csv (rewritten up to a step on resume) + TensorBoard events."""

    def __init__(self, run_dir: Path, resume_step: int | None) -> None:
        self.path = run_dir / "metrics.csv"
        rows: list[dict[str, str]] = []
        if resume_step is not None and self.path.exists():
            with open(self.path, newline="") as f:
                rows = [r for r in csv.DictReader(f) if int(r["env_steps"]) <= resume_step]
        tmp = self.path.with_suffix(".csv.tmp")
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=METRIC_FIELDS)
            w.writeheader()
            w.writerows(rows)
        os.replace(tmp, self.path)
        self.f = open(self.path, "a", newline="")
        self.w = csv.DictWriter(self.f, fieldnames=METRIC_FIELDS)
        self.tb = None
        try:
            from torch.utils.tensorboard import SummaryWriter

            self.tb = SummaryWriter(str(run_dir / "tb"), purge_step=(resume_step + 1) if resume_step is not None else None)
        except ImportError:  # tensorboard is part of [train]; tolerate its absence
            self.tb = None

    def write(self, row: dict[str, Any]) -> None:
        self.w.writerow({k: _fmt(row.get(k)) for k in METRIC_FIELDS})
        self.f.flush()
        if self.tb is not None:
            step = int(row["env_steps"])
            for k, v in row.items():
                if k != "env_steps" and v is not None and np.isfinite(v):
                    self.tb.add_scalar(k, float(v), step)

    def close(self) -> None:
        self.f.close()
        if self.tb is not None:
            self.tb.close()


def _fmt(v: Any) -> str:
    if v is None:
        return ""
    if isinstance(v, float):
        return f"{v:.6g}"
    return str(v)


ProgressFn = Callable[[dict[str, Any]], None]


def train(
    run_dir: Path,
    resume: bool = False,
    progress: ProgressFn | None = None,
    stop_at: int | None = None,
) -> dict[str, Any]:
    """Run (or continue) the training recorded in ``run_dir``.

    ``stop_at``: stop (as if killed) after this many env steps, for tests.
    Returns the summary: run_dir, env_steps, wall_s, steps_per_s, eval_return...
    """
    run_dir = Path(run_dir)
    rs = load_run_spec(run_dir)
    run, cfg, total = rs.run, rs.algo_cfg, rs.total_steps
    torch.set_num_threads(max(1, run.torch_threads))
    torch.manual_seed(run.seed)
    env = make(run.env, n_envs=run.n_envs, **run.env_options)
    learner = build_learner(run.algo, env.spec, cfg, n_envs=run.n_envs, seed=run.seed, total_steps=total, topology=rs.topology())
    topology = getattr(learner, "topology", None)
    seed_rng = np.random.default_rng([run.seed, 0])
    log_every = run.log_every or max(1, total // 50)
    ckpt_every = run.checkpoint_every or max(1, total // 10)
    root = run_dir / "checkpoints"

    env_steps = episodes = 0
    acc: dict[str, list[float]] = {k: [] for k in ("ret", "len", *LEARNER_METRICS)} | {"msg": [0, 0]}
    wall_before = 0.0
    resume_step = None
    if resume:
        ckpt.clean_partial(root)
        cks = ckpt.list_checkpoints(root)
        if cks:
            path = cks[-1][1]
            tensors, state = ckpt.load_checkpoint(path)
            ckpt.restore(tensors, state, learner.modules(), learner.optim)
            learner.load_counters(state["learner"])
            if (path / "buffer.npz").exists():
                learner.buffer.load(path / "buffer.npz")
            seed_rng.bit_generator.state = state["seed_rng"]
            env_steps, episodes = int(state["env_steps"]), int(state["episodes"])
            acc = state["acc"]
            acc.setdefault("msg", [0, 0])
            for k in LEARNER_METRICS:
                acc.setdefault(k, [])
            wall_before = float(state["wall_s"])
            resume_step = env_steps
        _note_session(run_dir, resume_step)
    metrics = MetricsLog(run_dir, resume_step if resume else None)

    draining = False  # a checkpoint is due: let running episodes end, start none

    def next_seeds(k: int) -> np.ndarray:
        if draining:
            return np.zeros(0, dtype=np.int64)
        return seed_rng.integers(0, 2**31 - 1, size=k)

    t0 = time.perf_counter()
    steps_at_start = session_steps0 = env_steps
    rollout = Rollout(env, learner.behaviour_policy(env_steps), next_seeds, record=True, topology=topology)
    next_log = (env_steps // log_every + 1) * log_every
    next_ckpt = (env_steps // ckpt_every + 1) * ckpt_every
    last_row: dict[str, Any] = {}
    killed = False
    try:
        while True:
            done = env_steps >= total
            if done or (draining and not rollout.active.any()):
                # Checkpoints fall between episodes: nothing in flight is lost,
                # and a resumed run restarts exactly where this one goes on.
                wall = wall_before + time.perf_counter() - t0
                _save(root, env_steps, episodes, learner, seed_rng, acc, wall, run)
                while next_ckpt <= env_steps:
                    next_ckpt += ckpt_every
                draining = False
                if done:
                    break
                steps_at_start = env_steps
                rollout = Rollout(env, learner.behaviour_policy(env_steps), next_seeds, record=True, topology=topology)
            if stop_at is not None and env_steps >= stop_at:
                killed = True
                break
            learner.behaviour_policy(env_steps)
            sent_before, steps_before = rollout.msgs_sent, rollout.env_steps
            finished = rollout.step()
            env_steps = steps_at_start + rollout.env_steps
            acc["msg"][0] += rollout.msgs_sent - sent_before
            acc["msg"][1] += rollout.env_steps - steps_before
            if finished:
                episodes += len(finished)
                for e in finished:
                    acc["ret"].append(e.ret)
                    acc["len"].append(e.length)
                batch = {k: np.stack([e.data[k] for e in finished]) for k in finished[0].data}
                for m in learner.observe(batch):
                    for k in LEARNER_METRICS:
                        if m.get(k) is not None:
                            acc[k].append(m[k])
            if env_steps >= next_log or env_steps >= total:
                wall = wall_before + time.perf_counter() - t0
                msgs_per_step = acc["msg"][0] / acc["msg"][1] if topology is not None and acc["msg"][1] else None
                last_row = {
                    "env_steps": env_steps,
                    "episodes": episodes,
                    "updates": learner.updates,
                    "return_mean": _mean(acc["ret"]),
                    "return_min": min(acc["ret"]) if acc["ret"] else None,
                    "return_max": max(acc["ret"]) if acc["ret"] else None,
                    "episode_len": _mean(acc["len"]),
                    "epsilon": learner.epsilon(env_steps),
                    "loss": _mean(acc["loss"]),
                    "td_abs": _mean(acc["td_abs"]),
                    "q_taken": _mean(acc["q_taken"]),
                    "grad_norm": _mean(acc["grad_norm"]),
                    "entropy": _mean(acc["entropy"]),
                    "clip_frac": _mean(acc["clip_frac"]),
                    "msgs_per_step": msgs_per_step,
                    "msg_floats_per_step": None if msgs_per_step is None else msgs_per_step * cfg.msg_dim,
                    "wall_s": wall,
                    "steps_per_s": (env_steps - session_steps0) / max(1e-9, time.perf_counter() - t0),
                }
                metrics.write(last_row)
                acc = {k: [] for k in acc}
                acc["msg"] = [0, 0]
                while next_log <= env_steps:
                    next_log += log_every
                if progress is not None:
                    progress({**last_row, "total_steps": total})
            if env_steps >= next_ckpt and env_steps < total:
                draining = True
    finally:
        metrics.close()
    wall = wall_before + time.perf_counter() - t0
    summary: dict[str, Any] = {
        "run_dir": str(run_dir),
        "env": run.env,
        "algo": run.algo,
        "seed": run.seed,
        "env_steps": env_steps,
        "episodes": episodes,
        "updates": learner.updates,
        "wall_s": round(wall, 3),
        "steps_per_s": round(env_steps / max(wall, 1e-9), 1),
        "train_return": last_row.get("return_mean"),
    }
    if rs.comm is not None:
        vol = rs.comm["volume"]
        summary["comm"] = rs.comm["comm"]
        summary["topology"] = vol["topology"]
        summary["msgs_per_step"] = last_row.get("msgs_per_step")
        summary["msg_floats_per_step"] = last_row.get("msg_floats_per_step")
        summary["broadcast_floats_per_step"] = vol["broadcast_floats_per_step"]
    if killed:
        summary["stopped_early"] = True
        return summary
    if run.eval_episodes > 0:
        ev = evaluate_learner(learner, rs, run.eval_episodes, run.seed)
        ev["checkpoint_step"] = env_steps
        ckpt.write_atomic(run_dir / "eval.json", json.dumps(ev, indent=2))
        summary["eval_return"] = ev["mean_return"]
        summary["eval_returns"] = ev["returns"]
    return summary


def _note_session(run_dir: Path, resume_step: int | None) -> None:
    meta_path = run_dir / "meta.json"
    try:
        meta = json.loads(meta_path.read_text())
    except (OSError, json.JSONDecodeError):
        meta = {"sessions": []}
    meta.setdefault("sessions", []).append(
        {"argv": sys.argv, "started": time.strftime("%Y-%m-%dT%H:%M:%S%z"), "resumed_from": resume_step, "git": git_revision()}
    )
    ckpt.write_atomic(meta_path, json.dumps(meta, indent=2))


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


def _save(root: Path, env_steps: int, episodes: int, learner: Any, seed_rng: np.random.Generator, acc: dict, wall: float, run: RunConfig) -> None:
    state = {
        "env_steps": env_steps,
        "episodes": episodes,
        "learner": learner.counters(),
        "seed_rng": seed_rng.bit_generator.state,
        "acc": acc,
        "wall_s": wall,
    }
    extra = {"buffer.npz": learner.buffer.save} if run.save_buffer else {}
    ckpt.save_checkpoint(root, env_steps, learner.modules(), learner.optim, state, extra)
    ckpt.prune(root, run.keep_checkpoints)


def greedy_evaluate(
    net: Any, rs: RunSpec, episodes: int, seed: int, n_envs: int | None = None, msg_loss: float = 0.0, sample: bool = False
) -> dict[str, Any]:
    """Greedy returns of ``episodes`` episodes seeded by ``seed``; ``msg_loss``
    drops each heard message with that probability (a lossy link).

    ``sample``: a stochastic actor (a ``logits`` head: MAPPO, IPPO, COMA)
    draws its actions from its policy instead of taking the argmax, with a
    stream seeded by ``seed`` (so a seed still fixes the result); the output
    says which with ``"mode": "greedy" | "sampled"``."""
    if not 0.0 <= msg_loss <= 1.0:
        raise RunError(f"message loss must be in [0, 1], got {msg_loss}")
    if sample and getattr(net, "head", "q") != "logits":
        raise RunError(f"sampled evaluation needs a stochastic actor (mappo, ippo, coma); this policy's output is {getattr(net, 'head', 'q')!r}")
    n_envs = n_envs or max(1, min(episodes, 32))
    env = make(rs.run.env, n_envs=n_envs, **rs.run.env_options)
    topology = rs.topology()
    was_training = net.training
    net.eval()
    try:
        # epsilon 0: greedy; message loss drawn from its own seeded stream
        greedy = TorchTeamPolicy(net, n_envs, np.random.default_rng([seed, 11]), msg_loss=msg_loss, loss_rng=np.random.default_rng([seed, 7]), sample=sample)
        eps = evaluate(env, greedy, episode_seeds(seed, episodes), topology=topology)
    finally:
        net.train(was_training)
        env.close()
    returns = [e.ret for e in eps]
    out = {
        "seed": seed,
        "episodes": episodes,
        "mode": "sampled" if sample else "greedy",
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
        "lengths": [e.length for e in eps],
    }
    if topology is not None:
        out["msg_loss"] = msg_loss
        out["msgs_heard_per_step"] = greedy.heard / max(1, sum(e.length for e in eps))
    return out


def evaluate_learner(learner: Any, rs: RunSpec, episodes: int, seed: int) -> dict[str, Any]:
    return greedy_evaluate(learner.acting_network(), rs, episodes, seed)


def load_policy_net(run_dir: Path, step: int | None = None) -> tuple[Any, RunSpec, int]:
    """The acting network of a run's checkpoint (latest by default)."""
    rs = load_run_spec(run_dir)
    try:
        path = ckpt.find_checkpoint(Path(run_dir) / "checkpoints", step)
    except ckpt.CheckpointError as e:
        raise RunError(str(e)) from e
    tensors, state = ckpt.load_checkpoint(path)
    learner = build_learner(rs.run.algo, rs.env_spec, rs.algo_cfg, n_envs=1, seed=rs.run.seed, total_steps=rs.total_steps, topology=rs.topology())
    net = learner.acting_network()
    try:
        net.load_state_dict(ckpt.module_state(tensors, "agent"))
    except (RuntimeError, ckpt.CheckpointError) as e:
        raise RunError(f"checkpoint {path} does not fit the run's network: {e}") from e
    return net, rs, int(state["step"])


def evaluate_run(
    run_dir: Path, episodes: int, seed: int | None = None, step: int | None = None, msg_loss: float = 0.0, sample: bool = False
) -> dict[str, Any]:
    net, rs, ck_step = load_policy_net(run_dir, step)
    seed = rs.run.seed if seed is None else seed
    out = greedy_evaluate(net, rs, episodes, seed, msg_loss=msg_loss, sample=sample)
    out["checkpoint_step"] = ck_step
    out["run_dir"] = str(run_dir)
    return out


__all__ = ["ConfigError", "RunError", "train", "make_run_spec", "create_run_dir", "evaluate_run", "load_run_spec", "RunSpec"]
