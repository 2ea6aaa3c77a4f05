"""The training package's seams: the learner interface, the mixer registry, and
loading a run without the training loop."""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from dataclasses import dataclass
from typing import Any

import numpy as np
import pytest
import torch
from torch import nn

from marl_edge.envs import make
from marl_edge.train.config import RunConfig
from marl_edge.train.learner import Learner, LearnerBase
from marl_edge.train.q_learner import QLearner
from marl_edge.train.registry import ALGOS, build_learner


def _learner(algo: str, env: str = "two_step", **env_options: Any) -> Any:
    e = make(env, n_envs=2, **env_options)
    spec = e.spec
    e.close()
    return build_learner(algo, spec, ALGOS[algo].config_cls(), n_envs=2, seed=0, total_steps=1000)


@pytest.mark.parametrize("algo", sorted(ALGOS))
def test_every_registered_learner_is_a_learner(algo):
    learner = _learner(algo)
    assert isinstance(learner, Learner) and isinstance(learner, LearnerBase)
    assert learner.topology is None and learner.updates == 0
    assert "agent" in learner.modules() and learner.acting_network() is learner.modules()["agent"]
    expl = learner.exploration(0)
    assert isinstance(expl, dict) and all(isinstance(v, float) for v in expl.values())
    assert ("epsilon" in expl) == isinstance(learner, QLearner)  # the value learners (iql, vdn, qmix, ow_qmix, cw_qmix)
    c = learner.counters()
    learner.load_counters(json.loads(json.dumps(c)))  # JSON-able, and loads back
    assert learner.counters() == json.loads(json.dumps(c))


def test_maddpg_reports_noise_not_epsilon():
    cont = _learner("maddpg", "spread", continuous=True)
    assert set(cont.exploration(0)) == {"noise"} and cont.exploration(0)["noise"] == pytest.approx(cont.cfg.noise_start)
    assert cont.behaviour_policy(0).extra_fields == {}  # off-policy: no log-probs recorded
    disc = _learner("maddpg")
    assert disc.exploration(0) == {} and disc.behaviour_policy(0).extra_fields == {}
    assert _learner("mappo").behaviour_policy(0).extra_fields == {"logp": ((2,), np.float32)}


def test_metrics_columns_hold_the_exploration_a_learner_reports(tmp_path):
    from marl_edge.train.loop import train
    from marl_edge.train.rundir import create_run_dir, make_run_spec

    def rows(algo: str, env: str, **env_options: Any) -> list[dict[str, str]]:
        run = RunConfig(env=env, algo=algo, steps=300, seed=0, eval_episodes=0, n_envs=2, env_options=env_options)
        d = create_run_dir(make_run_spec(run, {}), tmp_path / algo)
        train(d)
        with open(d / "metrics.csv", newline="") as f:
            return list(csv.DictReader(f))

    q = rows("qmix", "two_step")
    assert q and all(r["epsilon"] and r["noise"] == "" for r in q)
    m = rows("maddpg", "spread", continuous=True)
    assert m and all(r["noise"] and r["epsilon"] == "" for r in m)


# ---- a new mixer: one file (here: this test) plus one registry line ----------------------------
from marl_edge.train.mixers import MIXERS, Mixer, register_mixer  # noqa: E402
from marl_edge.train.q_learner import QLearnerConfig  # noqa: E402


@dataclass
class WeightedSumConfig(QLearnerConfig):
    """Q_tot = sum_i w_i Q_i with learned non-negative weights."""

    init_weight: float = 0.5


class WeightedSumMixer(Mixer):
    def __init__(self, n_agents: int, init_weight: float) -> None:
        super().__init__()
        self.w = nn.Parameter(torch.full((n_agents,), float(init_weight)))

    @classmethod
    def from_config(cls, n_agents: int, state_dim: int, cfg: Any) -> "WeightedSumMixer":
        return cls(n_agents, cfg.init_weight)

    def forward(self, qs: torch.Tensor, states: torch.Tensor) -> torch.Tensor:
        return (qs * self.w.abs()).sum(dim=-1, keepdim=True)


@pytest.fixture
def wsum():
    register_mixer("wsum_test", WeightedSumMixer, WeightedSumConfig, "test: weighted sum of Q_i")
    try:
        yield "wsum_test"
    finally:
        MIXERS.pop("wsum_test", None)
        ALGOS.pop("wsum_test", None)


def test_a_registered_mixer_trains_through_the_normal_path(wsum, tmp_path):
    from marl_edge.train import checkpoint as ckpt
    from marl_edge.train.evaluation import evaluate_run
    from marl_edge.train.loop import train
    from marl_edge.train.rundir import create_run_dir, make_run_spec

    assert ALGOS[wsum].config_cls is WeightedSumConfig
    run = RunConfig(env="two_step", algo=wsum, steps=400, seed=0, eval_episodes=4, n_envs=8)
    d = create_run_dir(make_run_spec(run, {"init_weight": "0.25", "batch_size": "8"}), tmp_path / "run")
    summary = train(d)
    assert summary["env_steps"] >= 400 and summary["updates"] > 0 and summary["eval_return"] is not None
    tensors, _ = ckpt.load_checkpoint(ckpt.find_checkpoint(d / "checkpoints"))
    w = ckpt.module_state(tensors, "mixer")["w"]
    assert w.shape == (2,) and not torch.allclose(w, torch.full((2,), 0.25))  # the mixer was trained
    ev = evaluate_run(d, episodes=4)
    assert ev["returns"] == summary["eval_returns"]


# ---- loading a run does not import the training loop ----------------------------------------------
def test_export_bundle_loads_a_run_without_the_loop(tmp_path):
    from marl_edge.train.loop import train
    from marl_edge.train.rundir import create_run_dir, make_run_spec

    run = RunConfig(env="two_step", algo="qmix", steps=200, seed=0, eval_episodes=0, n_envs=4)
    d = create_run_dir(make_run_spec(run, {}), tmp_path / "run")
    train(d)
    code = (
        "import sys\n"
        "import marl_edge.export.bundle as bundle\n"
        f"net, rs, step = bundle.load_policy_net({str(d)!r})\n"
        "assert step >= 200 and rs.run.algo == 'qmix', (step, rs.run.algo)\n"
        "assert 'marl_edge.train.loop' not in sys.modules, 'the training loop was imported'\n"
        "print('ok')\n"
    )
    p = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert p.returncode == 0 and p.stdout.strip() == "ok", p.stderr[-2000:]
