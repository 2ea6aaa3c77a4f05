"""Evaluation matches between league members (league/matches.py, docs/league.md "Matches on Ray"):
outcomes from the payoff, a spec fixes its result, the same results with and without Ray,
and `marl-league payoff`."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

from marl_edge.league import matches
from marl_edge.league.matches import MatchSpec, play_match, play_matches
from marl_edge.league.opponents import LeagueError

torch = pytest.importorskip("torch")

from marl_edge.league.members import LeagueDir  # noqa: E402
from marl_edge.league.selfplay import SelfPlayConfig, export_learner, new_learner  # noqa: E402

ROCK, PAPER, SCISSORS = 0, 1, 2


def _bundle(root: Path, name: str, logits: list[float]) -> Path:
    """A member's bundle (exported with the marl-export code) whose actor outputs constant ``logits``."""
    env, learner, run_dir = new_learner(root / f"{name}_run", SelfPlayConfig(steps=1, n_envs=4, seed=3), {"recurrent": False})
    env.close()
    head = learner.acting_network().cores[0].fc2
    with torch.no_grad():
        head.weight.zero_()
        head.bias.copy_(torch.tensor(logits))
    export_learner(run_dir, learner, 0, root / name, parity_steps=2)
    return root / name


@pytest.fixture(scope="module")
def bundles(tmp_path_factory) -> dict[str, Path]:
    root = tmp_path_factory.mktemp("members")
    return {"rock": _bundle(root, "rock", [30.0, 0.0, 0.0]), "paper": _bundle(root, "paper", [0.0, 30.0, 0.0]),
            "scissors": _bundle(root, "scissors", [0.0, 0.0, 30.0]), "uniform": _bundle(root, "uniform", [0.0, 0.0, 0.0])}


def test_outcomes_follow_the_payoff(bundles):
    r = play_match(MatchSpec(bundles["rock"], bundles["scissors"], episodes=10))
    assert (r.wins, r.draws, r.losses, r.return_a, r.return_b) == (10, 0, 0, 2.0, -2.0)  # the biased edge pays 2
    r = play_match(MatchSpec(bundles["rock"], bundles["paper"], episodes=10))
    assert (r.wins, r.draws, r.losses, r.return_a) == (0, 0, 10, -1.0)
    r = play_match(MatchSpec(bundles["paper"], bundles["paper"], episodes=3))
    assert (r.wins, r.draws, r.losses, r.return_a) == (0, 3, 0, 0.0)


def test_sampled_strategies_are_mixed_and_greedy_ones_are_not(bundles):
    # uniform against rock: paper +1, rock 0, scissors -2, each a third of the time
    r = play_match(MatchSpec(bundles["uniform"], bundles["rock"], episodes=600, seed=1))
    assert r.wins + r.draws + r.losses == 600 and min(r.wins, r.draws, r.losses) > 150
    assert abs(r.return_a - (-1 / 3)) < 0.15, r
    greedy = play_match(MatchSpec(bundles["uniform"], bundles["rock"], episodes=20, sample=False))
    assert greedy.draws == 20  # equal logits: the argmax is the first action, rock


def test_a_spec_fixes_the_result_whatever_the_batch(bundles, monkeypatch):
    spec = MatchSpec(bundles["uniform"], bundles["uniform"], episodes=150, seed=7)
    first = play_match(spec)
    assert first == play_match(spec)
    monkeypatch.setattr(matches, "MAX_BATCH", 7)  # 22 chunks of 7 instead of 3 of 64: the same episodes
    assert play_match(spec) == first
    assert play_match(MatchSpec(bundles["uniform"], bundles["uniform"], episodes=150, seed=8)) != first


def test_a_bundle_for_another_game_and_a_missing_ray_are_one_line_errors(bundles, monkeypatch):
    with pytest.raises(LeagueError, match="obs_dim 2 and 3 actions; its team in rps has 1, 3 and 3"):
        play_match(MatchSpec(bundles["rock"], bundles["paper"], game_options={"episode_limit": 2}, episodes=1))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray now fails
    with pytest.raises(LeagueError, match=r"pip install 'marl-edge\[ray\]'") as e:
        play_matches([MatchSpec(bundles["rock"], bundles["paper"], episodes=1)], workers=1)
    assert "\n" not in str(e.value)


@pytest.fixture
def local_ray(monkeypatch):
    """A local Ray on loopback only; whatever a test starts is shut down, even when it fails.

    Ray on Linux binds its local processes to the machine's network address unless
    its single-machine mode is set before ``import ray`` (the variable's name is Ray's)."""
    if "ray" not in sys.modules:
        monkeypatch.setenv("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
    ray = pytest.importorskip("ray")
    if not hasattr(ray, "remote"):  # pytest imports the checkout's root package under its folder's name: a checkout named "ray"
        pytest.skip(f"'ray' is {ray.__file__}, not Ray")
    from ray._private import ray_constants

    if ray_constants.ENABLE_RAY_CLUSTER:
        pytest.skip("ray was imported before this test could keep it on loopback")
    yield ray
    ray.shutdown()


def test_the_same_results_with_and_without_ray(bundles, local_ray, tmp_path, monkeypatch):
    names = ["uniform", "rock", "paper"]
    copies = {n: shutil.copytree(bundles[n], tmp_path / n) for n in names}
    specs = [s for _, _, s in matches.round_robin([copies[n] for n in names], "rps", {}, episodes=40, seed=3)]
    here = play_matches(specs, workers=0)
    read = matches.BundleBytes.read

    def read_then_delete(cls, path):  # each bundle is gone once the driver has read it: workers must play the shipped bytes
        out = read(path)
        shutil.rmtree(path)
        return out

    monkeypatch.setattr(matches.BundleBytes, "read", classmethod(read_then_delete))
    seen: list[int] = []
    on_ray = play_matches(specs, workers=2, progress=seen.append)
    assert not any(p.exists() for p in copies.values())
    assert not local_ray.is_initialized()  # play_matches shuts down the Ray it started
    assert on_ray == here and len(here) == 6 and seen == [1, 2, 3, 4, 5, 6]
    assert [r.wins for r in here] != [0] * 6 and all(r.wall_s > 0 for r in on_ray)


def _league(root: Path, bundles: dict[str, Path], names: list[str]) -> Path:
    league = LeagueDir.create(root, {"selfplay": {"game": "rps", "game_options": {}}})
    for k, n in enumerate(names):
        m = league.new_member("main", "naive", k)
        shutil.copytree(bundles[n], league.bundle_path(m))
        league.add(m)
    return root


def test_cli_payoff_writes_counts_and_elo(bundles, tmp_path):
    from click.testing import CliRunner

    from marl_edge.cli.league import league_cmd

    lg = _league(tmp_path / "lg", bundles, ["rock", "paper", "scissors", "rock"])
    r = CliRunner().invoke(league_cmd, ["payoff", str(lg), "--episodes", "5", "--workers", "0", "--greedy", "--json"])
    assert r.exit_code == 0, r.output
    out = json.loads(r.output.strip().splitlines()[-1])
    saved = json.loads((lg / "payoff-eval.json").read_text())
    assert out["payoff"] == saved and saved["seats"] == "one"  # biased RPS is symmetric: one seat per pair
    rock, paper, scissors, rock2 = saved["members"]
    w = np.array(saved["wins"])
    assert w[1, 0] == w[1, 3] == w[2, 1] == w[0, 2] == w[3, 2] == 5  # paper > rock, scissors > paper, rock > scissors
    assert w[0, 1] == w[2, 0] == 0 and saved["draws"][0][3] == saved["draws"][3][0] == 5
    assert np.array(saved["games"]).sum() == 6 * 5 * 2
    elo = saved["elo"]
    assert elo[paper] > elo[rock] > elo[scissors] and elo[rock] == pytest.approx(elo[rock2])
    assert "elo" in r.output and paper in r.output

    r = CliRunner().invoke(league_cmd, ["payoff", str(lg), "--episodes", "2", "--seats", "both", "--json"])
    assert r.exit_code == 0, r.output
    both = json.loads(r.output.strip().splitlines()[-1])["payoff"]
    assert both["seats"] == "both" and np.array(both["games"]).sum() == 6 * 2 * 2 * 2

    r = CliRunner().invoke(league_cmd, ["payoff", str(lg), "--address", "auto"])  # --workers 0 would ignore the cluster
    assert r.exit_code != 0 and "give --workers >= 1" in str(r.exception)

    r = CliRunner().invoke(league_cmd, ["payoff", str(tmp_path / "nothing"), "--episodes", "2"])
    assert r.exit_code != 0 and "not a league directory" in str(r.exception or r.output)
