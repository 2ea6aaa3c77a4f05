"""One episode as data: record it while it is evaluated, or read it from a
swarm trace, then replay it in a batch-1 env to get one frame per step.

An episode is a pure function of its seed and the joint actions
(docs/design.md contract 1), so ``(env, options, seed, actions)`` is all a
picture needs: replaying them reproduces every position, goal and reward the
evaluation saw. Who heard whom and who was absent cannot be recomputed from
the env; they are carried along as recorded.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ..envs import EnvError, MultiAgentEnv, TimeStep, make
from .stats import PlotError


@dataclass
class EpisodeRecord:
    """What is needed to draw one episode.

    ``heard[t][i]``: the senders whose messages agent ``i`` heard when it chose
    its step-``t`` action (None when nothing was routed); ``absent[t]``: the
    agents absent at step ``t``; ``dropped[t]``: per-agent drop counts;
    ``rewards[t]``: the per-agent reward recorded at step ``t``, checked
    against the replay (a trace records it; an evaluation checks the return)."""

    env: str
    env_options: dict[str, Any]
    seed: int
    actions: list[Any]
    heard: list[list[list[int]] | None] | None = None
    absent: list[list[int]] | None = None
    dropped: list[list[int] | None] | None = None
    rewards: list[list[float]] | None = None
    label: str = ""


@dataclass
class Frame:
    """The world after ``t`` steps; ``actions``/``reward``/``heard``/``absent``
    belong to the step that led here (None / empty in frame 0)."""

    t: int
    positions: np.ndarray | None
    ret: float
    done: bool
    actions: np.ndarray | None = None
    reward: np.ndarray | None = None
    heard: list[list[int]] | None = None
    absent: list[int] = field(default_factory=list)
    dropped: list[int] | None = None
    scene: dict[str, Any] = field(default_factory=dict)


def replay(record: EpisodeRecord, capture: Any = None) -> tuple[list[Frame], Any]:
    """Replay ``record`` in a batch-1 env: ``len(actions) + 1`` frames and the env's spec.

    ``capture(env) -> dict`` copies what a picture draws from the env (a
    goal, landmarks) into each frame. Raises ``PlotError`` when the actions
    do not fit the env, outlive the episode, or do not reproduce the
    recorded rewards (a trace of another env or options)."""
    try:
        env: MultiAgentEnv = make(record.env, n_envs=1, **record.env_options)
    except EnvError as e:
        raise PlotError(f"cannot re-create env {record.env!r}: {e}") from None
    spec = env.spec
    capture = capture or (lambda _env: {})
    try:
        ts = env.reset(np.array([record.seed], dtype=np.int64))
        frames = [Frame(0, _positions(ts), 0.0, False, scene=capture(env))]
        ret = 0.0
        for t, a in enumerate(record.actions):
            if ts.done[0]:
                raise PlotError(f"the episode ended after {t} steps, but {len(record.actions)} steps of actions were recorded")
            joint = np.asarray(a, dtype=np.int64 if spec.discrete else np.float32)
            want = (spec.n_agents,) if spec.discrete else (spec.n_agents, spec.action_dim)
            if joint.shape != want:
                raise PlotError(f"step {t}: a joint action of shape {joint.shape}, but {spec.name} takes {want}")
            try:
                ts = env.step(joint[None])
            except EnvError as e:
                raise PlotError(f"step {t}: {e}") from None
            reward = ts.reward[0].copy()
            if record.rewards is not None and t < len(record.rewards) and record.rewards[t] is not None:
                if not np.allclose(reward, np.asarray(record.rewards[t], dtype=np.float64), rtol=1e-5, atol=1e-5):
                    raise PlotError(f"step {t}: the replay's reward {reward.tolist()} is not the recorded {record.rewards[t]}: "
                                    f"the record is not an episode of {record.env} with these options and seed")
            ret += float(ts.team_reward(spec.reward_scalarisation)[0])
            frames.append(Frame(
                t + 1, _positions(ts), ret, bool(ts.done[0]), joint, reward,
                heard=_at(record.heard, t), absent=list(_at(record.absent, t) or []), dropped=_at(record.dropped, t),
                scene=capture(env),
            ))
    finally:
        env.close()
    return frames, spec


def _positions(ts: TimeStep) -> np.ndarray | None:
    return None if ts.positions is None else np.asarray(ts.positions[0], dtype=np.float64).copy()


def _at(xs: list[Any] | None, t: int) -> Any:
    return xs[t] if xs is not None and t < len(xs) else None


class EpisodeRecorder:
    """A ``TeamPolicy`` (envs/rollout.py) that passes everything through to
    ``policy`` and notes, for episode number ``index`` of the evaluation, the
    joint action and the inbox routing of each of its steps.

    It follows the rollout's bookkeeping: slots that ``reset`` is called for
    start the next episodes in slot order, as ``Rollout`` assigns them."""

    def __init__(self, policy: Any, index: int) -> None:
        self.policy, self.index = policy, index
        self.started = 0
        self.slot: int | None = None  # the slot playing episode ``index``
        self.actions: list[np.ndarray] = []
        self.heard: list[list[list[int]] | None] = []
        self.finished = False

    def __getattr__(self, name: str) -> Any:  # counters of the wrapped policy (``heard`` ...)
        return getattr(self.policy, name)

    def reset(self, mask: np.ndarray) -> None:
        for s in np.flatnonzero(np.asarray(mask, dtype=bool)):
            if self.slot == s:  # the recorded episode ended and its slot starts another
                self.finished, self.slot = True, None
            if self.started == self.index:
                self.slot = int(s)
            self.started += 1
        self.policy.reset(mask)

    def act(self, ts: TimeStep) -> np.ndarray:
        actions = self.policy.act(ts)
        s = self.slot
        if s is not None and not self.finished:
            if ts.done[s]:
                self.finished = True
            else:
                self.actions.append(np.asarray(actions)[s].copy())
                heard = None
                if ts.inbox_idx is not None and ts.inbox_mask is not None:
                    heard = [[int(j) for j, m in zip(ts.inbox_idx[s, i], ts.inbox_mask[s, i]) if m] for i in range(ts.inbox_idx.shape[1])]
                self.heard.append(heard)
        return actions


# ---- swarm traces (marl-swarm --trace FILE.jsonl) ------------------------------------


def read_trace(path: Path, episode: int) -> EpisodeRecord:
    """Episode ``episode`` of a swarm trace as an ``EpisodeRecord``.

    The trace is JSON lines: a ``header`` (env, env_options, seed, ...), then
    per episode an ``episode`` line (its seed) and one ``step`` line per world
    step (the joint action the world applied, rewards, positions, heard,
    dropped, absent), and an ``end`` line. Lines of other kinds are skipped."""
    path = Path(path)
    try:
        text = path.read_text()
    except OSError as e:
        raise PlotError(f"cannot read the trace {path}: {e.strerror or e}") from None
    header: dict[str, Any] | None = None
    seeds: dict[int, int] = {}
    steps: list[dict[str, Any]] = []
    for n, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as e:
            raise PlotError(f"{path}:{n}: not a JSON line ({e.msg})") from None
        if not isinstance(row, dict):
            raise PlotError(f"{path}:{n}: a trace line must be a JSON object")
        kind = row.get("kind")
        try:
            if kind == "header":
                header = row
            elif kind == "episode":
                seeds[int(row["episode"])] = int(row["seed"])
            elif kind == "step" and int(row["episode"]) == episode:
                row["t"], row["actions"] = int(row["t"]), list(row["actions"])
                steps.append(row)
        except (KeyError, TypeError, ValueError) as e:
            raise PlotError(f"{path}:{n}: a malformed {kind} line ({type(e).__name__}: {e})") from None
    if header is None or not isinstance(header.get("env"), str):
        raise PlotError(f"{path}: no header line with the env's name (is it a marl-swarm --trace file?)")
    if episode not in seeds:
        have = ", ".join(str(e) for e in sorted(seeds)) or "none"
        raise PlotError(f"{path}: no episode {episode} in the trace (episodes: {have})")
    steps.sort(key=lambda r: r["t"])
    if [r["t"] for r in steps] != list(range(len(steps))):
        raise PlotError(f"{path}: the steps of episode {episode} are not 0, 1, 2, ... (a truncated trace?)")
    return EpisodeRecord(
        env=header["env"],
        env_options=dict(header.get("env_options") or {}),
        seed=seeds[episode],
        actions=[r["actions"] for r in steps],
        heard=[r.get("heard") for r in steps],
        absent=[list(r.get("absent") or []) for r in steps],
        dropped=[r.get("dropped") for r in steps],
        rewards=[r.get("reward") for r in steps],
        label=f"swarm trace, episode {episode}",
    )
