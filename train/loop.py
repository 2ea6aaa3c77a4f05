"""The training loop and ``--resume``.

``train(run_dir)`` runs (or continues) the training a run directory records
(``train.rundir``): it builds the env and the learner, restores the newest
checkpoint when resuming, steps batched rollouts with the learner's
behaviour policy, feeds finished episodes to ``learner.observe``, writes a
metrics row per log interval (``train.metrics_log``), evaluates the greedy
policy every ``eval_every`` env steps on fixed episodes (``eval.csv``),
checkpoints, and ends with a greedy evaluation (``train.evaluation``). It talks
to the learner only through ``train.learner.Learner``.

Determinism: a seed fixes a run. A checkpoint is taken between episodes: when
one is due the rollout starts no new episodes, lets the running ones end, saves,
and starts afresh (in an uninterrupted run too), so a run resumed from a
checkpoint continues exactly as if it had never stopped and no data is lost.
The evaluation during training draws nothing from the training's streams: it
plays its own env with a fresh greedy policy over the acting network (no
exploration, no torch randomness), so turning it on or off leaves the training
unchanged, and it is due by env step, so a resumed run evaluates at the same steps.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..envs import make
from ..envs.rollout import Episode, Rollout
from . import checkpoint as ckpt
from .evaluation import during_eval_seed, evaluate_learner, greedy_evaluate
from .learner import Learner
from .metrics_log import LEARNER_METRICS, MetricsLog
from .registry import build_learner
from .rundir import RunSpec, load_run_spec, note_session

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
    session = _Session(run_dir, load_run_spec(run_dir))
    if resume:
        session.restore_latest_checkpoint()
        note_session(run_dir, session.resume_step)
    metrics = MetricsLog(run_dir, session.resume_step if resume else None)
    try:
        killed = session.run(metrics, progress, stop_at)
    finally:
        metrics.close()
        session.close_envs()  # an env stepped in worker processes (env.workers) stops them here
    summary = session.summary()
    if killed:
        summary["stopped_early"] = True
        return summary
    if session.rs.run.eval_episodes > 0:
        summary.update(_final_evaluation(run_dir, session))
    return summary


def _empty_acc() -> dict[str, Any]:
    """Per-log-interval accumulators: returns, lengths, update metrics, [messages sent, env steps]."""
    return {k: [] for k in ("ret", "len", *LEARNER_METRICS)} | {"msg": [0, 0]}


def _mean(xs: list[float]) -> float | None:
    return float(np.mean(xs)) if xs else None


class _Session:
    """One training session over a run directory: the env, the learner and the loop's counters."""

    def __init__(self, run_dir: Path, rs: RunSpec) -> None:
        run, total = rs.run, rs.total_steps
        torch.set_num_threads(max(1, run.torch_threads))
        torch.manual_seed(run.seed)
        self.run_dir, self.rs, self.run_cfg, self.total = run_dir, rs, run, total
        self.env = make(run.env, n_envs=run.n_envs, **run.env_options)
        self.learner: Learner = build_learner(
            run.algo, self.env.spec, rs.algo_cfg, n_envs=run.n_envs, seed=run.seed, total_steps=total, topology=rs.topology()
        )
        self.seed_rng = np.random.default_rng([run.seed, 0])  # episode seeds
        self.log_every = run.log_every or max(1, total // 50)
        self.ckpt_every = run.checkpoint_every or max(1, total // 10)
        self.root = run_dir / "checkpoints"
        self.env_steps = self.episodes = 0
        self.acc = _empty_acc()
        self.wall_before = 0.0  # wall time of earlier sessions
        self.resume_step: int | None = None
        self.draining = False  # a checkpoint is due: let running episodes end, start none
        self.last_row: dict[str, Any] = {}
        self.eval_every, self.eval_k = run.eval_schedule(total)
        self.eval_env = make(run.env, n_envs=min(self.eval_k, 32), **run.env_options) if self.eval_every else None
        self.last_eval: dict[str, Any] | None = None

    def close_envs(self) -> None:
        self.env.close()
        if self.eval_env is not None:
            self.eval_env.close()

    # ---- checkpoints ----------------------------------------------------------------------
    def restore_latest_checkpoint(self) -> None:
        """Continue from the newest complete checkpoint, if any."""
        ckpt.clean_partial(self.root)
        cks = ckpt.list_checkpoints(self.root)
        if not cks:
            return
        path = cks[-1][1]
        tensors, state = ckpt.load_checkpoint(path)
        ckpt.restore(tensors, state, self.learner.modules(), self.learner.optim)
        self.learner.load_counters(state["learner"])
        buffer = self.learner.checkpoint_buffer()
        if buffer is not None and (path / "buffer.npz").exists():
            buffer.load(path / "buffer.npz")
        self.seed_rng.bit_generator.state = state["seed_rng"]
        self.env_steps, self.episodes = int(state["env_steps"]), int(state["episodes"])
        self.acc = state["acc"]
        self.acc.setdefault("msg", [0, 0])
        for k in LEARNER_METRICS:
            self.acc.setdefault(k, [])
        self.wall_before = float(state["wall_s"])
        self.resume_step = self.env_steps

    def save_checkpoint(self) -> None:
        state = {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "learner": self.learner.counters(),
            "seed_rng": self.seed_rng.bit_generator.state,
            "acc": self.acc,
            "wall_s": self.wall(),
        }
        buffer = self.learner.checkpoint_buffer()
        extra = {"buffer.npz": buffer.save} if self.run_cfg.save_buffer and buffer is not None else {}
        ckpt.save_checkpoint(self.root, self.env_steps, self.learner.modules(), self.learner.optim, state, extra)
        ckpt.prune(self.root, self.run_cfg.keep_checkpoints)

    # ---- the loop -------------------------------------------------------------------------
    def wall(self) -> float:
        return self.wall_before + time.perf_counter() - self.t0

    def next_seeds(self, k: int) -> np.ndarray:
        if self.draining:
            return np.zeros(0, dtype=np.int64)
        return self.seed_rng.integers(0, 2**31 - 1, size=k)

    def new_rollout(self) -> None:
        """Fresh episodes from the current env step on (at the start and after each checkpoint)."""
        self.steps_at_start = self.env_steps
        self.rollout = Rollout(
            self.env, self.learner.behaviour_policy(self.env_steps), self.next_seeds, record=True, topology=self.learner.topology,
            credit=self.learner.credit,
        )

    def run(self, metrics: MetricsLog, progress: ProgressFn | None, stop_at: int | None) -> bool:
        """Train up to the run's total steps; True when stopped early at ``stop_at``."""
        self.t0 = time.perf_counter()
        self.session_steps0 = self.env_steps
        self.new_rollout()
        self.next_log = (self.env_steps // self.log_every + 1) * self.log_every
        self.next_ckpt = (self.env_steps // self.ckpt_every + 1) * self.ckpt_every
        if self.eval_every:
            self.next_eval = (self.env_steps // self.eval_every + 1) * self.eval_every
        while True:
            done = self.env_steps >= self.total
            if done or (self.draining and not self.rollout.active.any()):
                # Checkpoints fall between episodes: nothing in flight is lost,
                # and a resumed run restarts exactly where this one goes on.
                self.checkpoint_between_episodes()
                if done:
                    return False
                self.new_rollout()
            if stop_at is not None and self.env_steps >= stop_at:
                return True
            self.step()
            if self.env_steps >= self.next_log or self.env_steps >= self.total:
                self.log(metrics, progress)
            if self.eval_every and (self.env_steps >= self.next_eval or self.env_steps >= self.total):
                self.evaluate(metrics)
            if self.env_steps >= self.next_ckpt and self.env_steps < self.total:
                self.draining = True

    def checkpoint_between_episodes(self) -> None:
        self.save_checkpoint()
        while self.next_ckpt <= self.env_steps:
            self.next_ckpt += self.ckpt_every
        self.draining = False

    def step(self) -> None:
        """One batched env step; finished episodes go to the learner."""
        self.learner.behaviour_policy(self.env_steps)
        rollout = self.rollout
        sent_before, steps_before = rollout.msgs_sent, rollout.env_steps
        finished = rollout.step()
        self.env_steps = self.steps_at_start + rollout.env_steps
        self.acc["msg"][0] += rollout.msgs_sent - sent_before
        self.acc["msg"][1] += rollout.env_steps - steps_before
        if finished:
            self.observe(finished)

    def observe(self, finished: list[Episode]) -> None:
        self.episodes += len(finished)
        for e in finished:
            self.acc["ret"].append(e.ret)
            self.acc["len"].append(e.length)
        batch = {k: np.stack([e.data[k] for e in finished]) for k in finished[0].data}
        for m in self.learner.observe(batch):
            for k in LEARNER_METRICS:
                if m.get(k) is not None:
                    self.acc[k].append(m[k])

    def log(self, metrics: MetricsLog, progress: ProgressFn | None) -> None:
        """Write a metrics row over the interval since the last one and start a new interval."""
        self.last_row = self.metrics_row()
        metrics.write(self.last_row)
        self.acc = _empty_acc()
        while self.next_log <= self.env_steps:
            self.next_log += self.log_every
        if progress is not None:
            eval_return = None if self.last_eval is None else self.last_eval["return_mean"]
            progress({**self.last_row, "total_steps": self.total, "eval_return": eval_return})

    def evaluate(self, metrics: MetricsLog) -> None:
        """Greedy evaluation on the fixed evaluation episodes: a row of eval.csv."""
        assert self.eval_env is not None
        wall, t0 = self.wall(), time.perf_counter()
        seed = during_eval_seed(self.run_cfg.seed)
        ev = greedy_evaluate(self.learner.acting_network(), self.rs, self.eval_k, seed, env=self.eval_env)
        self.last_eval = {
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "return_mean": ev["mean_return"],
            "return_std": ev["std_return"],
            "return_min": float(min(ev["returns"])),
            "return_max": float(max(ev["returns"])),
            "wall_s": wall,
            "eval_episodes": self.eval_k,
            "eval_seed": seed,
            "episode_len": float(np.mean(ev["lengths"])),
            "eval_wall_s": time.perf_counter() - t0,
        }
        metrics.write_eval(self.last_eval)
        while self.next_eval <= self.env_steps:
            self.next_eval += self.eval_every

    def metrics_row(self) -> dict[str, Any]:
        acc, env_steps = self.acc, self.env_steps
        communicates = self.learner.topology is not None
        msgs_per_step = acc["msg"][0] / acc["msg"][1] if communicates and acc["msg"][1] else None
        return {
            "env_steps": env_steps,
            "episodes": self.episodes,
            "updates": self.learner.updates,
            "return_mean": _mean(acc["ret"]),
            "return_min": min(acc["ret"]) if acc["ret"] else None,
            "return_max": max(acc["ret"]) if acc["ret"] else None,
            "episode_len": _mean(acc["len"]),
            **self.learner.exploration(env_steps),  # epsilon (Q-learners), noise (continuous MADDPG)
            **{k: _mean(acc[k]) for k in LEARNER_METRICS},
            "msgs_per_step": msgs_per_step,
            "msg_floats_per_step": None if msgs_per_step is None else msgs_per_step * self.rs.algo_cfg.msg_dim,
            "wall_s": self.wall(),
            "steps_per_s": (env_steps - self.session_steps0) / max(1e-9, time.perf_counter() - self.t0),
        }

    # ---- the end --------------------------------------------------------------------------
    def summary(self) -> dict[str, Any]:
        run, rs = self.run_cfg, self.rs
        wall = self.wall()
        summary: dict[str, Any] = {
            "run_dir": str(self.run_dir),
            "env": run.env,
            "algo": run.algo,
            "seed": run.seed,
            "env_steps": self.env_steps,
            "episodes": self.episodes,
            "updates": self.learner.updates,
            "wall_s": round(wall, 3),
            "steps_per_s": round(self.env_steps / max(wall, 1e-9), 1),
            "train_return": self.last_row.get("return_mean"),
        }
        if rs.comm is not None:
            vol = rs.comm["volume"]
            summary["comm"] = rs.comm["comm"]
            summary["topology"] = vol["topology"]
            summary["msgs_per_step"] = self.last_row.get("msgs_per_step")
            summary["msg_floats_per_step"] = self.last_row.get("msg_floats_per_step")
            summary["broadcast_floats_per_step"] = vol["broadcast_floats_per_step"]
        return summary


def _final_evaluation(run_dir: Path, session: _Session) -> dict[str, Any]:
    """Greedy evaluation of the trained learner, written to eval.json; the summary's eval keys."""
    run = session.rs.run
    ev = evaluate_learner(session.learner, session.rs, run.eval_episodes, run.seed)
    ev["checkpoint_step"] = session.env_steps
    ckpt.write_atomic(run_dir / "eval.json", json.dumps(ev, indent=2))
    return {"eval_return": ev["mean_return"], "eval_returns": ev["returns"]}


__all__ = ["ProgressFn", "train"]
