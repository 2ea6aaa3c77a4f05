"""Self-play training: one learner, its own past as frozen opponents.

``run_selfplay(league_dir, cfg)`` trains any registered learner
(``train.registry``) on ``TeamView`` (the env ``team_view``): team
``cfg.team`` of a two-team game, the other team played by league members.
Every ``snapshot_every`` env steps (and once before the first step) the
learner's acting network is saved as a
checkpoint of the learner's run directory and exported with the marl-export
code (``export.bundle.export_run``: ONNX per agent, parity-checked against
torch, written atomically); the bundle is then listed in ``members.json``
and joins the opponent pool. The mode decides who plays each new episode:
``naive`` always the newest member, ``fsp`` the newest with probability
``latest`` and a uniformly drawn older one otherwise.

The game must be symmetric (a snapshot of team 0 plays team 1's seat):
``rps`` gives both seats the same observation, and its default payoff is
antisymmetric. Nothing checks this yet; asymmetric games need one learner
per seat (not yet).

Determinism: the learner is seeded by ``cfg.seed``, episode seeds come from
``[seed, 0]`` as in ``marl-train``, and each episode's opponent and its
sampled actions from that episode's seed; the same config gives the same
members.
"""

from __future__ import annotations

import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..envs import make
from ..envs.rollout import Rollout
from ..envs.team_view import TeamView
from ..export.bundle import export_run
from ..train import checkpoint as ckpt
from ..train.config import RunConfig
from ..train.learner import Learner
from ..train.registry import build_learner
from ..train.rundir import create_run_dir, make_run_spec
from .fictitious import FictitiousSelfPlay
from .members import LeagueDir, Member
from .naive import NaiveSelfPlay
from .opponents import LeagueError, Pool, Sampler

MODES = ("naive", "fsp")
LEARNER = "main"


@dataclass
class SelfPlayConfig:
    """A self-play run (``marl-league selfplay``; algorithm keys go through ``--set``)."""

    mode: str = "fsp"  # naive | fsp
    game: str = "rps"  # a registered env with two teams (EnvSpec.teams)
    game_options: dict[str, Any] = field(default_factory=dict)
    team: int = 0  # the seat the learner plays
    algo: str = "ippo"
    steps: int = 20_000  # env steps of the learner
    snapshot_every: int = 1_000  # env steps between snapshots
    latest: float = 0.8  # fsp: probability of the newest member (the rest: uniform over older ones)
    sample_opponents: bool = True  # opponents with logits sample from them (mixed strategies); False: greedy argmax
    n_envs: int = 8
    seed: int = 0
    parity_steps: int = 16  # the export's torch vs ONNX Runtime replay per snapshot (marl-export's check)

    def validate(self) -> None:
        if self.mode not in MODES:
            raise LeagueError(f"mode must be one of {', '.join(MODES)}, got {self.mode!r}")
        for k in ("steps", "snapshot_every", "n_envs", "parity_steps"):
            if getattr(self, k) < 1:
                raise LeagueError(f"{k} must be >= 1, got {getattr(self, k)}")
        if self.seed < 0:
            raise LeagueError(f"seed must be >= 0, got {self.seed}")

    def sampler(self) -> Sampler:
        return NaiveSelfPlay() if self.mode == "naive" else FictitiousSelfPlay(self.latest)


SnapshotFn = Callable[[Member, Path], None]


def new_learner(run_dir: Path, cfg: SelfPlayConfig, algo_overrides: dict[str, Any] | None = None) -> tuple[TeamView, Learner, Path]:
    """The team's env (no opponents yet), a fresh learner for it, and its run directory
    ``run_dir`` (config.json: what the export needs to rebuild the acting network)."""
    env_options = {"game": cfg.game, "game_options": dict(cfg.game_options), "team": cfg.team}
    run = RunConfig(env="team_view", algo=cfg.algo, steps=cfg.steps, seed=cfg.seed, n_envs=cfg.n_envs, eval_episodes=0,
                    env_options=env_options, keep_checkpoints=1, save_buffer=False)
    overrides = dict(algo_overrides or {})
    env = make("team_view", n_envs=cfg.n_envs, **env_options)
    assert isinstance(env, TeamView)
    if env.spec.n_agents == 1:
        # one agent a team: an agent id carries nothing (a constant input of 1)
        overrides.setdefault("agent_id", False)
    rs = make_run_spec(run, overrides)
    run_dir = create_run_dir(rs, run_dir)
    torch.set_num_threads(max(1, run.torch_threads))
    torch.manual_seed(cfg.seed)
    learner = build_learner(cfg.algo, env.spec, rs.algo_cfg, n_envs=cfg.n_envs, seed=cfg.seed, total_steps=rs.total_steps, topology=rs.topology())
    return env, learner, run_dir


def export_learner(run_dir: Path, learner: Learner, env_steps: int, out: Path, parity_steps: int = 16) -> None:
    """Snapshot ``learner`` as the bundle ``out`` with the marl-export code: a checkpoint of
    its run directory, exported (ONNX, parity-checked, written atomically), then dropped
    (the bundle holds all an opponent needs)."""
    path = ckpt.save_checkpoint(Path(run_dir) / "checkpoints", env_steps, learner.modules(), learner.optim, {"env_steps": env_steps})
    try:
        export_run(run_dir, out, step=env_steps, parity_steps=parity_steps)
    finally:
        shutil.rmtree(path, ignore_errors=True)


def train_against(
    env: TeamView, learner: Learner, total_steps: int, seed: int, every: int = 0, on_every: Callable[[int], None] | None = None,
    returns: list[float] | None = None,
) -> int:
    """Train ``learner`` on ``env`` (its opponents set) for ``total_steps`` env steps; call
    ``on_every(env_steps)`` each time another ``every`` steps have passed. Episode seeds
    come from ``[seed, 0]`` as in marl-train. The finished episodes' returns are appended to
    ``returns``; returns the env steps taken (``total_steps`` rounded up to a batched step)."""
    seed_rng = np.random.default_rng([seed, 0])
    rollout = Rollout(env, learner.behaviour_policy(0), lambda k: seed_rng.integers(0, 2**31 - 1, size=k), record=True,
                      topology=learner.topology)
    returns = [] if returns is None else returns
    next_call = every
    while rollout.env_steps < total_steps:
        learner.behaviour_policy(rollout.env_steps)  # sets exploration for this step
        finished = rollout.step()
        if finished:
            returns.extend(e.ret for e in finished)
            learner.observe({k: np.stack([e.data[k] for e in finished]) for k in finished[0].data})
        if on_every is not None and every > 0 and rollout.env_steps >= next_call:
            on_every(rollout.env_steps)
            next_call += every
    return rollout.env_steps


def run_selfplay(
    league_dir: Path,
    cfg: SelfPlayConfig,
    algo_overrides: dict[str, Any] | None = None,
    progress: Callable[[dict[str, Any]], None] | None = None,
    on_snapshot: SnapshotFn | None = None,
) -> dict[str, Any]:
    """Train ``cfg`` into a new league directory; returns a summary (members, steps, wall time).

    ``on_snapshot(member, bundle_dir)`` is called after each member is listed
    (the benchmark computes exploitability there)."""
    cfg.validate()
    t0 = time.perf_counter()
    league = LeagueDir.create(Path(league_dir), {"selfplay": asdict(cfg), "algo_overrides": dict(algo_overrides or {})})
    env, learner, run_dir = new_learner(league.learner_dir, cfg, algo_overrides)
    pool = Pool(cfg.sampler(), batch=cfg.n_envs, n_agents=len(env.theirs), sample=cfg.sample_opponents)
    env.set_pool(pool)
    returns: list[float] = []

    def snapshot(env_steps: int) -> None:
        member = league.new_member(LEARNER, cfg.mode, env_steps)
        export_learner(run_dir, learner, env_steps, league.bundle_path(member), cfg.parity_steps)
        league.add(member)
        pool.add(league.bundle_path(member))
        if on_snapshot is not None:
            on_snapshot(member, league.bundle_path(member))
        if progress is not None:
            progress({"env_steps": env_steps, "total_steps": cfg.steps, "members": len(pool.paths),
                      "return_mean": float(np.mean(returns[-200:])) if returns else None})

    try:
        snapshot(0)
        env_steps = train_against(env, learner, cfg.steps, cfg.seed, cfg.snapshot_every, snapshot, returns)
    finally:
        env.close()
    return {
        "league_dir": str(league.root),
        "mode": cfg.mode,
        "algo": cfg.algo,
        "seed": cfg.seed,
        "env_steps": env_steps,
        "members": len(league.members()),
        "updates": learner.updates,
        "train_return_last": float(np.mean(returns[-200:])) if returns else None,
        "wall_s": round(time.perf_counter() - t0, 2),
    }
