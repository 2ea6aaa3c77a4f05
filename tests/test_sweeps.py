"""marl-train --seeds / --grid / --jobs: one normal run directory per combination and
seed, trained in parallel processes; the aggregate is the runs' own eval.json numbers;
a failed run is a row of the table, not the end of the sweep; --resume ROOT goes on."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import numpy as np
import pytest

from marl_edge.cli.train import train_cmd
from marl_edge.train import sweep as sw
from marl_edge.train.config import ConfigError


def _marl_train(capsys, *args: str) -> tuple[int, str]:
    """marl-train in this process (the sweep's runs are still their own processes);
    returns the exit status and stdout."""
    rv = train_cmd.main(args=list(args), standalone_mode=False)
    return rv, capsys.readouterr().out


def _sessions(run_dir: Path) -> int:
    return len(json.loads((run_dir / "meta.json").read_text())["sessions"])


def test_seeds_and_grid_make_one_run_each_and_the_aggregate_is_their_eval_json(tmp_path, capsys):
    root = tmp_path / "sweep"
    rv, out = _marl_train(capsys, "--env", "climbing", "--algo", "iql", "--steps", "150", "--eval-episodes", "6",
                          "--set", "env.episode_limit=3", "--seeds", "0,1", "--grid", "lr=0.01,0.0005", "--jobs", "2",
                          "--out", str(root), "--json")
    assert rv == 0, out
    agg = json.loads((root / "sweep.json").read_text())
    assert json.loads(out.strip().splitlines()[-1]) == agg  # --json: the aggregate is the last line
    assert [c["label"] for c in agg["combinations"]] == ["lr=0.01", "lr=0.0005"]
    for combo in agg["combinations"]:
        lr = float(combo["set"]["lr"])
        returns = []
        for seed, run in zip((0, 1), combo["runs"]):
            run_dir = root / run["dir"]
            cfg = json.loads((run_dir / "config.json").read_text())  # a normal run directory
            assert cfg["run"]["seed"] == seed and cfg["algo"]["lr"] == lr and cfg["run"]["env_options"]["episode_limit"] == 3
            ev = json.loads((run_dir / "eval.json").read_text())
            assert run["status"] == "ok" and run["eval_return"] == ev["mean_return"] and len(ev["returns"]) == 6
            returns.append(ev["mean_return"])
        assert combo["seeds"] == 2 and combo["failed"] == 0
        assert combo["return_mean"] == pytest.approx(np.mean(returns)) and combo["return_std"] == pytest.approx(np.std(returns))
        assert combo["return_min"] == min(returns) and combo["return_max"] == max(returns)
        assert combo["env_steps"] >= 150 and combo["wall_s"] > 0
    assert "| lr=0.01 | 2 |" in (root / "sweep.md").read_text()

    # a run that fails is a row of the table; the finished runs are not trained again
    broken = root / agg["combinations"][0]["runs"][1]["dir"]
    (broken / "config.json").write_text("{not json")
    fine = root / agg["combinations"][1]["runs"][0]["dir"]
    before = _sessions(fine)
    rv, out = _marl_train(capsys, "--resume", str(root), "--json")
    assert rv == 1
    agg2 = json.loads(out.strip().splitlines()[-1])
    first, second = agg2["combinations"]
    assert first["failed"] == 1 and first["seeds"] == 1 and first["runs"][1]["status"] == "failed"
    assert "config.json is corrupt" in first["runs"][1]["error"] and first["runs"][1]["error"].startswith("error: ")
    assert first["return_mean"] == agg["combinations"][0]["runs"][0]["eval_return"]
    assert second == agg["combinations"][1] and _sessions(fine) == before
    assert "failed: " in (root / "sweep.md").read_text()


def test_a_bad_sweep_fails_as_one_line_before_any_run_starts(tmp_path, capsys):
    root = tmp_path / "bad"
    with pytest.raises(ConfigError, match="unknown --set key 'nope'"):
        _marl_train(capsys, "--grid", "nope=1,2", "--out", str(root))
    with pytest.raises(ConfigError, match="lr must be a number"):
        _marl_train(capsys, "--grid", "lr=0.1,fast", "--seeds", "0,1", "--out", str(root))
    assert not root.exists()  # every configuration is checked before a directory is made
    with pytest.raises(ConfigError, match="--seed is one run's seed"):
        _marl_train(capsys, "--seeds", "0,1", "--seed", "3", "--out", str(root))
    with pytest.raises(ConfigError, match="--jobs runs the runs of a sweep"):
        _marl_train(capsys, "--jobs", "2", "--out", str(root))
    for text in ("a", "1,1", "-1", ""):
        with pytest.raises(ConfigError, match="--seeds expects"):
            sw.parse_seeds(text)
    for item in ("lr", "lr=", "lr=1,", "=1,2"):
        with pytest.raises(ConfigError, match="--grid expects"):
            sw.parse_grid([item])
    with pytest.raises(ConfigError, match="given twice"):
        sw.parse_grid(["lr=1", "lr=2"])


def test_the_plan_is_the_cartesian_product_times_the_seeds():
    assert sw.parse_seeds("0-2,7") == [0, 1, 2, 7]
    grid = sw.parse_grid(["lr=1e-3,5e-4", "env.n_agents=2,3"])
    runs = sw.plan_sweep([0, 1], grid)
    assert len(runs) == 8 and len({r.dir for r in runs}) == 8
    assert runs[0] == sw.SweepRun("lr=1e-3,env.n_agents=2", {"lr": "1e-3", "env.n_agents": "2"}, 0, "lr=1e-3,env.n_agents=2/s0")
    assert [r.seed for r in runs[:4]] == [0, 1, 0, 1] and runs[-1].sets == {"lr": "5e-4", "env.n_agents": "3"}
    assert [r.dir for r in sw.plan_sweep([4, 5], {})] == ["s4", "s5"]
    assert sw.plan_sweep([0], {"topology": ["graph:a/b.json"]})[0].dir == "topology=graph:a_b.json/s0"


def test_processes_run_at_most_jobs_at_once_and_are_stopped_when_interrupted(tmp_path):
    """Exit codes come back in order; an interruption (here: from the callback) stops
    every process still running."""
    code = "import os, sys, time; print(os.getpid(), flush=True); time.sleep(float(sys.argv[1])); sys.exit(int(sys.argv[2]))"
    cmds = [[sys.executable, "-c", code, "0", "0"], [sys.executable, "-c", code, "0", "3"], [], [sys.executable, "-c", code, "0", "0"]]
    logs = [tmp_path / f"{i}.log" for i in range(4)]
    seen: list[int] = []
    assert sw.run_processes(cmds, logs, 2, lambda i, rc: seen.append(i)) == [0, 3, 0, 0]
    assert sorted(seen) == [0, 1, 3] and not logs[2].exists()

    slow = [[sys.executable, "-c", code, "60", "0"], [sys.executable, "-c", code, "1", "0"]]
    slow_logs = [tmp_path / "slow.log", tmp_path / "quick.log"]

    def interrupt(i: int, rc: int) -> None:
        raise KeyboardInterrupt

    with pytest.raises(KeyboardInterrupt):
        sw.run_processes(slow, slow_logs, 2, interrupt)
    pid = int(slow_logs[0].read_text().split()[0])
    with pytest.raises(ProcessLookupError):  # terminated and reaped
        os.kill(pid, 0)


def test_help_states_the_step_budget_and_the_new_options():
    from click.testing import CliRunner

    from marl_edge.cli.train import _help

    train_cmd.help = _help()  # as main() does
    text = " ".join(CliRunner().invoke(train_cmd, ["--help"], terminal_width=200).output.split())
    assert "the env's recommended budget" in text and "10,000 for the default env two_step" in text
    assert "rendezvous (100,000)" in text
    for option in ("--seeds", "--grid KEY=V1,V2", "--jobs", "eval_every", "eval_during_episodes", "sweep.json"):
        assert option in text, option
