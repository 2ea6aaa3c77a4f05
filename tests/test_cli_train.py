"""marl-train / marl-eval as a user runs them: run directory, JSON, errors,
determinism, and --resume after kill -9."""

from __future__ import annotations

import csv
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from safetensors import safe_open

from marl_edge.train import checkpoint as ckpt

DETERMINISTIC = None  # set below


def _metrics(run_dir: Path) -> list[dict[str, str]]:
    from marl_edge.train.metrics_log import NONDETERMINISTIC

    with open(run_dir / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in NONDETERMINISTIC} for r in csv.DictReader(f)]


def _evals(run_dir: Path) -> list[dict[str, str]]:
    """eval.csv (the evaluation during training) without its wall-clock columns."""
    from marl_edge.train.metrics_log import EVAL_NONDETERMINISTIC

    with open(run_dir / "eval.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k not in EVAL_NONDETERMINISTIC} for r in csv.DictReader(f)]


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def test_train_writes_a_complete_run_dir_and_json(tmp_path, cli):
    out = tmp_path / "run"
    p = cli("train", "--steps", "600", "--seed", "3", "--out", str(out), "--json", "--eval-episodes", "8", check=True)
    summary = _last_json(p.stdout)
    for key in ("run_dir", "env_steps", "wall_s", "steps_per_s", "eval_return"):
        assert key in summary
    assert summary["run_dir"] == str(out) and summary["env_steps"] >= 600
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["run"]["seed"] == 3 and cfg["run"]["algo"] == "qmix" and cfg["run"]["env"] == "two_step"
    assert "mixing_embed_dim" in cfg["algo"] and cfg["env_spec"]["n_agents"] == 2
    meta = json.loads((out / "meta.json").read_text())
    assert meta["versions"]["torch"] and "revision" in meta["git"]
    assert list(out.glob("tb/events.out.tfevents.*"))
    rows = _metrics(out)
    assert rows and int(rows[-1]["env_steps"]) >= 600
    ev = json.loads((out / "eval.json").read_text())
    assert len(ev["returns"]) == 8 and ev["mean_return"] == pytest.approx(summary["eval_return"])
    # weights load without pickle: safetensors with the agent, mixer and optimiser tensors
    last = ckpt.find_checkpoint(out / "checkpoints")
    with safe_open(str(last / "weights.safetensors"), "pt") as f:
        keys = list(f.keys())
    assert any(k.startswith("agent/") for k in keys) and any(k.startswith("mixer/") for k in keys)
    assert any(k.startswith("optim/") for k in keys)
    # marl-eval of the run with the run's seed reproduces the final evaluation
    p2 = cli("evaluate", str(out), "--episodes", "8", "--json", check=True)
    assert _last_json(p2.stdout)["returns"] == ev["returns"]
    p3 = cli("evaluate", str(out), "--sample")  # a Q-learner has no policy to sample from
    assert p3.returncode == 2 and "sampled evaluation needs a stochastic actor" in p3.stderr and "Traceback" not in p3.stderr


def test_same_seed_same_metrics(tmp_path, cli):
    a, b = tmp_path / "a", tmp_path / "b"
    for d in (a, b):
        cli("train", "--steps", "800", "--seed", "5", "--out", str(d), "--eval-episodes", "4", "--quiet", check=True)
    assert _metrics(a) == _metrics(b)
    assert json.loads((a / "eval.json").read_text())["returns"] == json.loads((b / "eval.json").read_text())["returns"]


COMM_RUN = ["--env", "scout", "--set", "comm=knn", "--set", "topology=range:0.6", "--set", "msg_dropout=0.1"]


AC_RUNS = {
    "mappo-scout-comm": ["--algo", "mappo", "--env", "scout", "--set", "comm=mean"],
    "ippo-rendezvous": ["--algo", "ippo", "--env", "rendezvous"],
    "coma-two_step": ["--algo", "coma"],
    "maddpg-continuous-spread": ["--algo", "maddpg", "--env", "spread", "--set", "env.continuous=true"],
    "ow_qmix-scout-comm": ["--algo", "ow_qmix", "--env", "scout", "--set", "comm=mean", "--set", "standardise_rewards=true"],  # Q* and its target resume too
    "vdn-two_step": ["--algo", "vdn"],  # a mixer without weights: resume used to fail ("no weights for 'mixer'")
    # difference rewards (rolled-back counterfactuals), shaping, and the per-agent term's own statistics
    "qmix-rendezvous-credit": ["--algo", "qmix", "--env", "rendezvous", "--set", "env.grid=3", "--set", "env.goal_size=1",
                               "--set", "env.episode_limit=8", "--set", "reward=team+difference", "--set", "shaping=builtin",
                               "--set", "standardise_rewards=true"],
}


@pytest.mark.parametrize("extra", [[], COMM_RUN, *AC_RUNS.values()], ids=["two_step", "scout-comm-dropout", *AC_RUNS])
def test_resume_after_kill_9_continues_exactly(tmp_path, extra):
    """A run killed with SIGKILL and resumed ends with the metrics of an uninterrupted run."""
    args = ["--steps", "3000", "--seed", "1", "--eval-episodes", "4", "--quiet", "--set", "checkpoint_every=400", "--set", "log_every=100", *extra]
    full = tmp_path / "full"
    subprocess.run([sys.executable, "-m", "marl_edge.cli.train", *args, "--out", str(full)], check=True, capture_output=True, timeout=300)

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "marl_edge.cli.train", *args, "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and len(ckpt.list_checkpoints(killed / "checkpoints")) < 2:
            time.sleep(0.05)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    cks = ckpt.list_checkpoints(killed / "checkpoints")
    assert cks, "no checkpoint before the kill"
    assert cks[-1][0] < 3000, "the run finished before it was killed; the test proves nothing"
    for _, path in cks:  # never partial
        assert (path / "weights.safetensors").is_file() and (path / "state.json").is_file()
        ckpt.load_checkpoint(path)
    # a crash in the middle of writing leaves only a hidden temp folder, which resume cleans up
    (killed / "checkpoints" / ".tmp-crashed").mkdir()
    res = subprocess.run([sys.executable, "-m", "marl_edge.cli.train", "--resume", str(killed), "--json", "--quiet"],
                         capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr
    assert not (killed / "checkpoints" / ".tmp-crashed").exists()
    assert _metrics(killed) == _metrics(full)
    assert _evals(full) and _evals(killed) == _evals(full)  # eval_every: 3000 // 20 by default
    assert json.loads((killed / "eval.json").read_text())["returns"] == json.loads((full / "eval.json").read_text())["returns"]
    sessions = json.loads((killed / "meta.json").read_text())["sessions"]
    assert sessions[-1]["resumed_from"] == cks[-1][0]


@pytest.mark.parametrize(
    "args,message",
    [
        (["--env", "nope"], "unknown env 'nope'"),
        (["--algo", "nope"], "unknown algorithm 'nope'"),
        (["--set", "nope=1"], "unknown --set key 'nope'"),
        (["--set", "lr=fast"], "lr must be a number"),
        (["--set", "env.nope=1"], "unknown option 'nope' for env 'two_step'"),
        (["--env", "spread", "--set", "env.n_agents=99"], "n_agents"),
        (["--steps", "0"], "steps must be >= 1"),
        (["--resume", "/nonexistent/run"], "is not a directory"),
        (["--env", "spread", "--set", "env.continuous=true"], "needs discrete actions"),
    ],
)
def test_train_user_errors_are_one_line(args, message, cli, tmp_path):
    extra = [] if "--resume" in args else ["--out", str(tmp_path / "r")]
    p = cli("train", *args, *extra)
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
    assert "Traceback" not in p.stderr


def test_eval_user_errors(cli, tmp_path):
    p = cli("evaluate", str(tmp_path / "missing"))
    assert p.returncode == 2 and "is not a directory" in p.stderr and "Traceback" not in p.stderr
    (tmp_path / "empty").mkdir()
    p = cli("evaluate", str(tmp_path / "empty"))
    assert p.returncode == 2 and "not a run directory" in p.stderr


def test_resume_refuses_new_config(cli, tmp_path):
    out = tmp_path / "r"
    cli("train", "--steps", "200", "--out", str(out), "--eval-episodes", "1", "--quiet", check=True)
    p = cli("train", "--resume", str(out), "--algo", "vdn")
    assert p.returncode == 2 and "drop --algo" in p.stderr
    p = cli("train", "--out", str(out), "--steps", "100")
    assert p.returncode == 2 and "already holds a run" in p.stderr


def test_help_lists_envs_and_algos(cli):
    p = cli("train", "--help", check=True)
    text = " ".join(p.stdout.split())
    for name in ("two_step", "rendezvous", "spread", "climbing", "penalty", "qmix", "vdn", "iql"):
        assert name in text


def test_trains_on_a_real_pettingzoo_env(cli, tmp_path):
    """mpe2's simple_spread (installed from PyPI) through from_pettingzoo."""
    pytest.importorskip("mpe2")
    out = tmp_path / "pz"
    p = cli("train", "--env", "pz:mpe2.simple_spread_v3", "--set", "env.N=3", "--set", "env.max_cycles=25",
            "--steps", "1500", "--out", str(out), "--json", "--quiet", "--eval-episodes", "4", check=True)
    s = _last_json(p.stdout)
    assert s["env_steps"] >= 1500 and s["updates"] > 0
    assert len(s["eval_returns"]) == 4 and all(r < 0 for r in s["eval_returns"])  # spread pays negative distances
    spec = json.loads((out / "config.json").read_text())["env_spec"]
    assert spec["n_agents"] == 3 and spec["n_actions"] == 5 and spec["episode_limit"] == 25


def test_config_file_sets_the_run_and_the_command_line_overrides_it(cli, tmp_path):
    """--config FILE (YAML or JSON) gives env, algo, budget and --set keys; flags and --set
    on the command line win; the run records what was used; bad files get one-line errors."""
    cfg = tmp_path / "run.yaml"
    cfg.write_text("env: matrix\nalgo: vdn\nsteps: 300\nn_envs: 4\nset:\n  lr: 0.001\n  standardise_rewards: true\n"
                   "  env.episode_limit: 3\n  log_every: 100\nresult: {note: free text, not read}\n")
    out = tmp_path / "r"
    cli("train", "--config", str(cfg), "--set", "lr=0.002", "--seed", "5", "--out", str(out), "--eval-episodes", "1",
        "--quiet", check=True)
    rec = json.loads((out / "config.json").read_text())
    text = json.dumps(rec)
    assert rec["run"]["env"] == "matrix" and rec["run"]["algo"] == "vdn" and rec["run"]["seed"] == 5
    assert rec["run"]["n_envs"] == 4 and rec["run"]["env_options"]["episode_limit"] == 3 and rec["run"]["log_every"] == 100
    assert rec["algo"]["lr"] == 0.002 and rec["algo"]["standardise_rewards"] is True, text
    js = tmp_path / "run.json"
    js.write_text(json.dumps({"env": "matrix", "algo": "iql", "steps": 100, "set": {"gamma": 0.5}}))
    out2 = tmp_path / "r2"
    cli("train", "--config", str(js), "--algo", "vdn", "--out", str(out2), "--eval-episodes", "1", "--quiet", check=True)
    rec2 = json.loads((out2 / "config.json").read_text())
    assert rec2["run"]["algo"] == "vdn" and rec2["algo"]["gamma"] == 0.5
    from marl_edge.train.config import ConfigError, read_config_file

    for body, message in [("env: matrix\nnope: 1\n", "unknown key 'nope'"), ("[1, 2]\n", "must hold a mapping"),
                          ("steps: many\n", "steps must be an integer"), ("set: [\n", "not valid YAML")]:
        bad = tmp_path / "bad.yaml"
        bad.write_text(body)
        with pytest.raises(ConfigError, match=message):
            read_config_file(bad)
    with pytest.raises(ConfigError, match="does not exist"):
        read_config_file(tmp_path / "missing.yaml")
    bad.write_text("set:\n  nope: 1\n")  # keys are checked as --set's are, with its one-line error
    p = cli("train", "--config", str(bad), "--out", str(tmp_path / "x"))
    lines = p.stderr.strip().splitlines()
    assert p.returncode == 2 and len(lines) == 1 and "unknown --set key 'nope'" in lines[0], p.stderr


def test_every_tuned_config_is_valid_and_gym_runs_without_one_are_pointed_to_it(tmp_path):
    """configs/PACKAGE/TASK/ALGO.yaml: each file reads, names its own task and algorithm, and
    every key is one marl-train accepts (a renamed key would otherwise rot silently); a gym:
    run started without --config names the tuned file."""
    from marl_edge.cli.train import _parse_env_options, split_overrides, tuned_config
    from marl_edge.train.config import read_config_file
    from marl_edge.train.registry import get_algo

    root = Path(__file__).resolve().parent.parent / "configs"
    files = sorted(root.glob("*/*/*.yaml"))
    assert len(files) >= 9, files
    for f in files:
        cfg = read_config_file(f)
        package, task, algo = f.parent.parent.name, f.parent.name, f.stem
        assert cfg["env"] == f"gym:{package}:{task}" and cfg["algo"] == algo, f
        env_raw, algo_ov, run_ov = split_overrides({k: str(v) for k, v in cfg["set"].items()}, get_algo(algo).config_cls)
        _parse_env_options(cfg["env"], env_raw)
        assert tuned_config(cfg["env"], algo) == f
    assert tuned_config("gym:lbforaging:Foraging-5x5-2p-1f-coop-v3", "iql") is None
    assert tuned_config("spread", "vdn") is None
