"""A run's own config.json is a --config file: `marl-train --config RUN/config.json`
trains the same run again, and the command line still overrides it."""

from __future__ import annotations

import csv
import dataclasses
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from marl_edge.cli.train import _parse_env_options, split_overrides, train_cmd
from marl_edge.train.config import RUN_SET_KEYS, RUN_TOP_KEYS, RunConfig, apply_overrides, read_config_file
from marl_edge.train.metrics_log import EVAL_NONDETERMINISTIC, NONDETERMINISTIC
from marl_edge.train.registry import algo_names, get_algo
from marl_edge.train.rundir import make_run_spec


def _rows(path: Path, drop: set[str]) -> list[dict[str, str]]:
    with open(path, newline="") as f:
        return [{k: v for k, v in r.items() if k not in drop} for r in csv.DictReader(f)]


def _spec_from_file(path: Path):
    """The run spec marl-train builds from a config file with nothing on the command line."""
    cfg = read_config_file(path)
    env_raw, algo_ov, run_ov = split_overrides(cfg["set"], get_algo(cfg["algo"]).config_cls)
    run = RunConfig(**{k: cfg[k] for k in RUN_TOP_KEYS if k in cfg}, env_options=_parse_env_options(cfg["env"], env_raw))
    return make_run_spec(apply_overrides(run, run_ov, "run"), algo_ov)


def test_every_run_field_has_a_place_in_a_config_file():
    names = {f.name for f in dataclasses.fields(RunConfig)}
    assert names == {*RUN_TOP_KEYS, *RUN_SET_KEYS, "env_options"}
    assert not set(RUN_TOP_KEYS) & set(RUN_SET_KEYS)


RUNS = {  # env, algo, run keys, algorithm --set keys
    **{a: ("two_step", a, {}, {}) for a in ("iql", "vdn", "qmix", "ow_qmix", "cw_qmix", "mappo", "ippo", "coma", "maddpg")},
    "matrix-payoff-list": ("matrix", "vdn", {"env_options": {"payoff": [[5.0, 0.0], [0.0, 2.0]], "episode_limit": 3}}, {"lr": "0.002"}),
    "scout-attention": ("scout", "qmix", {"seed": 7, "eval_every": 0, "log_every": 10, "save_buffer": False},
                        {"comm": "attention", "topology": "knn:2", "msg_dropout": "0.1", "recurrent": "false"}),
    "spread-continuous": ("spread", "maddpg", {"env_options": {"continuous": True, "n_agents": 2}, "eval_during_episodes": 3}, {"tau": "0.02"}),
}


@pytest.mark.parametrize("case", RUNS.values(), ids=RUNS)
def test_a_run_config_reads_back_as_the_same_run(tmp_path, case):
    """Every algorithm key, run key and env option survives config.json -> --config (no training)."""
    assert set(algo_names()) <= set(RUNS)
    env, algo, run_keys, sets = case
    rs = make_run_spec(RunConfig(env=env, algo=algo, steps=1000, **run_keys), sets)
    path = tmp_path / "config.json"
    path.write_text(json.dumps(rs.to_dict(), indent=2))
    assert _spec_from_file(path).to_dict() == rs.to_dict()


def _train(*args: str) -> None:
    """marl-train in this process (click's runner: no second torch import)."""
    result = CliRunner().invoke(train_cmd, [*args, "--quiet"], catch_exceptions=False)
    assert result.exit_code == 0, result.output


def test_config_json_reruns_identically_and_the_command_line_overrides_it(tmp_path):
    a, b, c = tmp_path / "a", tmp_path / "b", tmp_path / "c"
    _train("--env", "matrix", "--algo", "vdn", "--steps", "300", "--seed", "3", "--n-envs", "4",
        "--set", "env.payoff=[[5,0],[0,2]]", "--set", "env.episode_limit=3", "--set", "lr=0.002",
        "--set", "td_lambda=0.5", "--set", "log_every=50", "--set", "eval_every=60", "--eval-episodes", "5",
        "--out", str(a))
    _train("--config", str(a / "config.json"), "--out", str(b))
    assert json.loads((b / "config.json").read_text()) == json.loads((a / "config.json").read_text())
    assert _rows(b / "metrics.csv", NONDETERMINISTIC) == _rows(a / "metrics.csv", NONDETERMINISTIC)
    assert _rows(b / "eval.csv", EVAL_NONDETERMINISTIC) == _rows(a / "eval.csv", EVAL_NONDETERMINISTIC)
    assert len(_rows(a / "eval.csv", set())) == 5
    assert (b / "eval.json").read_text() == (a / "eval.json").read_text()

    _train("--config", str(a / "config.json"), "--seed", "4", "--steps", "100", "--set", "lr=0.003",
           "--set", "env.episode_limit=2", "--out", str(c))
    rec = json.loads((c / "config.json").read_text())
    assert rec["run"]["seed"] == 4 and rec["total_steps"] == 100 and rec["algo"]["lr"] == 0.003
    assert rec["run"]["env_options"] == {"payoff": [[5, 0], [0, 2]], "episode_limit": 2}
    assert rec["algo"]["td_lambda"] == 0.5 and rec["run"]["n_envs"] == 4 and rec["run"]["eval_every"] == 60
