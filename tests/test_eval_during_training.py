"""Greedy evaluation during training (eval.csv): it leaves the training exactly as it
was, plays the same fixed episodes each time (the ones marl-eval plays with the
evaluation seed), survives a resume exactly, and logs to TensorBoard under eval/…
beside the training's train/… scalars."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from marl_edge.train.config import ConfigError, RunConfig, apply_overrides
from marl_edge.train.evaluation import during_eval_seed, evaluate_run
from marl_edge.train.loop import train
from marl_edge.train.metrics_log import EVAL_FIELDS, EVAL_NONDETERMINISTIC, NONDETERMINISTIC
from marl_edge.train.rundir import create_run_dir, make_run_spec


def _rows(path: Path, drop: set[str]) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def _run(root: Path, name: str, env: str, algo: str, sets: dict[str, str], steps: int = 1200, **run_keys) -> Path:
    run = RunConfig(env=env, algo=algo, steps=steps, seed=2, eval_episodes=4, log_every=100, checkpoint_every=300, **run_keys)
    return create_run_dir(make_run_spec(run, sets), root / name)


CASES = {  # env, algo, --set keys, env options
    "qmix-rendezvous": ("rendezvous", "qmix", {}, {}),
    "mappo-scout-comm-dropout": ("scout", "mappo", {"comm": "mean", "msg_dropout": "0.2"}, {}),  # a sampling actor, evaluated greedily
    "maddpg-continuous": ("spread", "maddpg", {}, {"continuous": True}),
}


@pytest.mark.parametrize("case", CASES.values(), ids=CASES)
def test_evaluation_during_training_leaves_the_training_unchanged(tmp_path, case):
    env, algo, sets, env_options = case
    on = _run(tmp_path, "on", env, algo, sets, steps=600, env_options=env_options, eval_every=100)
    off = _run(tmp_path, "off", env, algo, sets, steps=600, env_options=env_options, eval_every=0)
    train(on)
    train(off)
    assert _rows(on / "metrics.csv", NONDETERMINISTIC) == _rows(off / "metrics.csv", NONDETERMINISTIC)
    assert json.loads((on / "eval.json").read_text()) == json.loads((off / "eval.json").read_text())
    evals = _rows(on / "eval.csv", set())
    assert list(evals[0])[:7] == ["env_steps", "episodes", "return_mean", "return_std", "return_min", "return_max", "wall_s"]
    steps = [int(r["env_steps"]) for r in evals]
    assert len(steps) == 600 // 100 and steps == sorted(steps) and steps[-1] >= 600
    assert all(int(r["eval_episodes"]) == 4 and int(r["eval_seed"]) == during_eval_seed(2) for r in evals)
    assert _rows(off / "eval.csv", set()) == []  # eval_every=0: off (the header only)


def test_an_eval_row_is_the_greedy_return_of_its_fixed_episodes(tmp_path):
    """The last row (at the final step) is what marl-eval RUN --seed EVAL_SEED plays, and
    the evaluation seed's episodes are not the final evaluation's."""
    run_dir = _run(tmp_path, "r", "rendezvous", "vdn", {}, steps=900, eval_every=300, eval_during_episodes=6)
    train(run_dir)
    last = _rows(run_dir / "eval.csv", set())[-1]
    ev = evaluate_run(run_dir, 6, seed=int(last["eval_seed"]))
    assert ev["checkpoint_step"] == int(last["env_steps"])
    assert float(last["return_mean"]) == pytest.approx(ev["mean_return"], rel=1e-5, abs=1e-6)
    assert float(last["return_std"]) == pytest.approx(ev["std_return"], rel=1e-5, abs=1e-6)
    assert float(last["return_min"]) == pytest.approx(min(ev["returns"]), abs=1e-5)
    assert float(last["return_max"]) == pytest.approx(max(ev["returns"]), abs=1e-5)
    assert float(last["episode_len"]) == pytest.approx(sum(ev["lengths"]) / 6)
    final = json.loads((run_dir / "eval.json").read_text())
    assert final["seed"] == 2 and int(last["eval_seed"]) != 2


def test_resume_rewrites_eval_csv_up_to_the_checkpoint_and_continues_exactly(tmp_path):
    full = _run(tmp_path, "full", "scout", "qmix", {"comm": "mean"}, steps=900, eval_every=100)
    stopped = _run(tmp_path, "stopped", "scout", "qmix", {"comm": "mean"}, steps=900, eval_every=100)
    train(full)
    train(stopped, stop_at=750)  # as if killed: the last checkpoint is at 600, evaluations ran past it
    assert max(int(r["env_steps"]) for r in _rows(stopped / "eval.csv", set())) > 600
    train(stopped, resume=True)
    assert _rows(stopped / "eval.csv", EVAL_NONDETERMINISTIC) == _rows(full / "eval.csv", EVAL_NONDETERMINISTIC)
    assert _rows(stopped / "metrics.csv", NONDETERMINISTIC) == _rows(full / "metrics.csv", NONDETERMINISTIC)
    assert json.loads((stopped / "eval.json").read_text()) == json.loads((full / "eval.json").read_text())


def test_tensorboard_has_train_and_eval_scalars(tmp_path):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    run_dir = _run(tmp_path, "r", "two_step", "qmix", {}, steps=400, eval_every=100)
    train(run_dir)
    acc = EventAccumulator(str(run_dir / "tb"))
    acc.Reload()
    tags = set(acc.Tags()["scalars"])
    assert {"train/return_mean", "train/loss", "train/epsilon", "eval/return_mean", "eval/return_std"} <= tags
    assert all(t.startswith(("train/", "eval/")) for t in tags), tags
    evals = _rows(run_dir / "eval.csv", set())
    assert [e.step for e in acc.Scalars("eval/return_mean")] == [int(r["env_steps"]) for r in evals]


def test_the_schedule_defaults_and_switches(tmp_path):
    assert RunConfig(eval_episodes=32).eval_schedule(20_000) == (1000, 32)  # total // 20, the final evaluation's episodes
    assert RunConfig(eval_episodes=32, eval_every=0).eval_schedule(20_000) == (0, 0)
    assert RunConfig(eval_episodes=0).eval_schedule(20_000) == (0, 0)  # no evaluation at all
    assert RunConfig(eval_episodes=0, eval_during_episodes=8).eval_schedule(20_000) == (1000, 8)
    assert RunConfig(eval_every=500, eval_during_episodes=0).eval_schedule(20_000) == (0, 0)
    for key, value, message in [("eval_every", "-1", "eval_every must be >= 0"), ("eval_during_episodes", "-2", "eval_during_episodes must be >= 0")]:
        with pytest.raises(ConfigError, match=message):
            apply_overrides(RunConfig(), {key: value}, "run")
    assert apply_overrides(RunConfig(), {"eval_every": "none"}, "run").eval_every is None
    assert EVAL_FIELDS[:7] == ["env_steps", "episodes", "return_mean", "return_std", "return_min", "return_max", "wall_s"]
