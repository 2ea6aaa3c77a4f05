"""The tuned configs for the built-in envs (configs/ENV/ALGO.yaml) stay valid and documented.

The third-party tasks (configs/PACKAGE/TASK/ALGO.yaml) are checked in test_cli_train.py; this
module checks the built-in ones and that no file under configs/ escapes both checks."""

from __future__ import annotations

from pathlib import Path

import yaml

from marl_edge.cli.train import _parse_env_options, split_overrides, tuned_config
from marl_edge.envs import env_names
from marl_edge.train.config import RunConfig, apply_overrides, read_config_file
from marl_edge.train.registry import get_algo
from marl_edge.train.rundir import make_run_spec

ROOT = Path(__file__).resolve().parent.parent / "configs"
BUILTIN = sorted(ROOT.glob("*/*.yaml"))


def test_every_builtin_config_builds_the_run_it_names():
    """Each file sits in its env's folder, names that env and its own algorithm, and builds a
    full run spec (every key known and of the right type, the budget its own); a renamed key or
    a value the learner no longer accepts fails here instead of at the next measurement."""
    assert len(BUILTIN) >= 7, BUILTIN
    for f in BUILTIN:
        cfg = read_config_file(f)
        env, algo = f.parent.name, f.stem
        assert env in env_names() and cfg["env"] == env and cfg["algo"] == algo, f
        assert isinstance(cfg.get("steps"), int) and cfg["steps"] > 0, f"{f}: give the measured budget explicitly"
        env_raw, algo_ov, run_ov = split_overrides(cfg["set"], get_algo(algo).config_cls)
        run = RunConfig(env=env, algo=algo, steps=cfg["steps"], seed=0, n_envs=cfg.get("n_envs", 8),
                        eval_episodes=cfg.get("eval_episodes", 32), env_options=_parse_env_options(env, env_raw))
        spec = make_run_spec(apply_overrides(run, run_ov, "run"), algo_ov)
        assert spec.total_steps == cfg["steps"], f
        assert tuned_config(env, algo) is None  # the gym: hint does not point at built-in files


def test_every_config_is_in_its_readme_table_and_checked():
    """configs/README.md lists every built-in config with its measured return and command, the
    file's own ``result`` line agrees with that row, and every YAML
    under configs/ is one of the two checked layouts (ENV/ALGO or PACKAGE/TASK/ALGO)."""
    readme = (ROOT / "README.md").read_text()
    for f in BUILTIN:
        rel = f.relative_to(ROOT).as_posix()
        rows = [line for line in readme.splitlines() if line.startswith("|") and f"]({rel})" in line]
        assert len(rows) == 1, f"{rel}: {len(rows)} rows in configs/README.md"
        assert "±" in rows[0] and f"--config configs/{rel} --seeds" in rows[0], rows[0]  # mean ± std, the command
        # the file's own `result` line states the same numbers as its row
        result = yaml.safe_load(f.read_text()).get("result", "")
        assert result.count(": ") >= 1 and ";" in result, f"{rel}: no result line"
        mean_std = result.split(": ")[1].split(";")[0]
        assert f"--config configs/{rel} --seeds" in result and f"| {mean_std} |" in rows[0], (result, rows[0])
    nested = set(ROOT.glob("*/*/*.yaml"))
    assert set(ROOT.rglob("*.yaml")) == set(BUILTIN) | nested
    assert not set(ROOT.rglob("*.yml")) and not set(ROOT.rglob("*.json"))
