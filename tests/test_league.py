"""The AlphaStar-style league (docs/league.md): PFSP weightings, the payoff counts, matchmaking
and snapshot rules on scripted payoffs, a league run on rps, resume after kill -9, the table."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import yaml

from marl_edge.league.members import Member
from marl_edge.league.opponents import LeagueError
from marl_edge.league.payoff import Payoff, outcome
from marl_edge.league.pfsp import pfsp_weights

torch = pytest.importorskip("torch")

from marl_edge.league.league import (  # noqa: E402
    LeagueConfig,
    Table,
    drop_declining_tail,
    opponent_distribution,
    read_league_config,
    run_league,
    snapshot_due,
)

RPS_SET = {"recurrent": False, "ent_start": 0.3, "ent_end": 0.3}


def without_created(members_json: Path) -> list[dict]:
    return [{k: v for k, v in m.items() if k != "created"} for m in json.loads(members_json.read_text())]


# ---- PFSP and the payoff table ----------------------------------------------------------------


def test_pfsp_weights_equal_the_formulas():
    p = np.array([0.0, 0.25, 0.5, 0.9, 1.0])
    hard = (1 - p) ** 2
    np.testing.assert_allclose(pfsp_weights(p, "hard"), hard / hard.sum())
    cubic = (1 - p) ** 3
    np.testing.assert_allclose(pfsp_weights(p, "hard", k=3), cubic / cubic.sum())
    var = p * (1 - p)
    np.testing.assert_allclose(pfsp_weights(p, "variance"), var / var.sum())
    # nothing to prefer: uniform
    np.testing.assert_allclose(pfsp_weights([1.0, 1.0], "hard"), [0.5, 0.5])
    np.testing.assert_allclose(pfsp_weights([0.0, 1.0, 1.0], "variance"), [1 / 3] * 3)
    with pytest.raises(LeagueError, match="weighting"):
        pfsp_weights(p, "linear")
    with pytest.raises(LeagueError, match="in \\[0, 1\\]"):
        pfsp_weights([1.5], "hard")


def test_payoff_counts_both_sides_and_win_rates_count_draws_half():
    pay = Payoff()
    a, b, c = (pay.add(n, "member", "main", "main0") for n in ("a", "b", "c"))
    for r in (1, 1, 0, -1):
        pay.record(a, b, r)
    assert [outcome(x) for x in (2.0, 0.0, -0.5)] == [1, 0, -1]
    assert pay.games[a, b] == pay.games[b, a] == 4
    assert pay.wins[a, b] == 2 and pay.wins[b, a] == 1 and pay.draws[a, b] == pay.draws[b, a] == 1
    np.testing.assert_allclose(pay.win_rates(a, [b, c]), [2.5 / 4, 0.5])  # 0.5 before any game
    np.testing.assert_allclose(pay.win_rates(b, [a]), [1.5 / 4])
    elo = pay.elo()
    assert elo[a] > elo[c] > elo[b]
    back = Payoff.from_dict(json.loads(json.dumps(pay.to_dict())))
    assert back.to_dict() == pay.to_dict()
    with pytest.raises(LeagueError, match="already"):
        pay.add("a", "member", "main", "main0")


def test_old_members_json_without_role_still_loads(tmp_path):
    from marl_edge.league.members import LeagueDir

    (tmp_path / "members.json").write_text(json.dumps([{"name": "main-000000", "learner": "main", "mode": "fsp", "env_steps": 0,
                                                         "created": "x", "bundle": "members/main-000000"}]))
    assert LeagueDir(tmp_path).members()[0].role == ""


# ---- matchmaking and snapshot rules on a scripted payoff ----------------------------------------


def scripted(win_rates: dict[str, tuple[float, int]], roles: dict[str, str]) -> tuple[Table, int]:
    """A table whose learner row ``me`` has ``(win rate, games)`` against each named member
    (wins only, no draws); members are listed in the order given."""
    pay = Payoff()
    me = pay.add("me@0", "learner", "x", "me")
    members = []
    for name, (p, games) in win_rates.items():
        learner = name.rsplit("-", 1)[0]
        members.append(Member(name, learner, "league", 0, "", f"members/{name}", roles[learner]))
        j = pay.add(name, "member", roles[learner], learner)
        wins = round(p * games)
        for g in range(games):
            pay.record(me, j, 1 if g < wins else -1)
    return Table(members, pay), me


ROLES = {"main0": "main", "main_exploiter0": "main_exploiter", "league_exploiter0": "league_exploiter"}


def test_main_agent_mixes_pfsp_selfplay_and_verification():
    cfg = LeagueConfig()
    table, me = scripted({"main0-0": (0.9, 10), "main_exploiter0-1": (0.2, 10), "main0-2": (0.6, 10)}, ROLES)
    p = opponent_distribution(cfg, "main", me, table, ["main0"])
    hard = np.array([0.1, 0.8, 0.4]) ** 2
    # 50 % PFSP (hard) over all; 35 % the main agent's newest (won 0.6 > 0.3);
    # 15 % verification: a past main exploiter still beats it (0.2 < 0.3), so that exploiter
    np.testing.assert_allclose(p, 0.5 * hard / hard.sum() + 0.35 * np.array([0, 0, 1]) + 0.15 * np.array([0, 1, 0]))

    # no exploiter wins any more: verification looks for forgotten snapshots (< 0.7, before the declining tail)
    table, me = scripted({"main0-0": (0.5, 10), "main0-1": (0.9, 10), "main0-2": (0.8, 10), "main_exploiter0-3": (0.8, 10),
                          "main0-4": (0.6, 10)}, ROLES)
    assert drop_declining_tail(np.array([0.5, 0.9, 0.8, 0.6])) == 2  # 0.9 -> 0.8 -> 0.6 is the expected decline
    p = opponent_distribution(cfg, "main", me, table, ["main0"])
    hard_all = (1 - np.array([0.5, 0.9, 0.8, 0.8, 0.6])) ** 2
    forgotten = np.array([0.25, 0.01, 0, 0, 0]) / 0.26  # PFSP hard over main0-0, main0-1
    np.testing.assert_allclose(p, 0.5 * hard_all / hard_all.sum() + 0.35 * np.eye(5)[4] + 0.15 * forgotten)

    # losing to the newest main snapshot (0.2 < 0.3): self-play becomes variance PFSP over its history
    table, me = scripted({"main0-0": (0.5, 10), "main0-1": (0.2, 10)}, ROLES)
    p = opponent_distribution(LeagueConfig(selfplay=0.5, pfsp=0.5, verification=0.0), "main", me, table, ["main0"])
    hard, var = np.array([0.25, 0.64]), np.array([0.25, 0.16])
    np.testing.assert_allclose(p, 0.5 * hard / hard.sum() + 0.5 * var / var.sum())


def test_exploiters_opponents():
    cfg = LeagueConfig()
    table, me = scripted({"main0-0": (0.5, 10), "league_exploiter0-1": (0.3, 10), "main0-2": (0.4, 10)}, ROLES)
    # a main exploiter plays the main agent's newest snapshot while it wins more than 10 % there
    np.testing.assert_allclose(opponent_distribution(cfg, "main_exploiter", me, table, ["main0"]), [0, 0, 1])
    # a league exploiter: PFSP over every member
    hard = np.array([0.5, 0.7, 0.6]) ** 2
    np.testing.assert_allclose(opponent_distribution(cfg, "league_exploiter", me, table, ["main0"]), hard / hard.sum())
    table, me = scripted({"main0-0": (0.5, 10), "main0-1": (0.0, 10)}, ROLES)
    # ...and variance PFSP over its history when it cannot (0.0 < 0.1)
    np.testing.assert_allclose(opponent_distribution(cfg, "main_exploiter", me, table, ["main0"]), [1, 0])


def test_snapshot_rules():
    cfg = LeagueConfig(snapshot_every=100, main_exploiter_budget=400, league_exploiter_budget=200, min_games=20)
    table, me = scripted({"main0-0": (0.8, 30), "league_exploiter0-1": (0.8, 10), "main0-2": (0.8, 30)}, ROLES)
    assert not snapshot_due(cfg, "main", 99, me, table, ["main0"]) and snapshot_due(cfg, "main", 100, me, table, ["main0"])
    # a main exploiter beating the newest main snapshot > 0.7 over >= min_games games: frozen now
    assert snapshot_due(cfg, "main_exploiter", 10, me, table, ["main0"])
    assert not snapshot_due(cfg, "main_exploiter", 0, me, table, ["main0"])  # nothing trained since the last one
    # a league exploiter must beat every member with enough games (10 < 20 against one of them)
    assert not snapshot_due(cfg, "league_exploiter", 10, me, table, ["main0"])
    assert snapshot_due(cfg, "league_exploiter", 200, me, table, ["main0"])  # its budget
    table, me = scripted({"main0-0": (0.8, 30), "league_exploiter0-1": (0.8, 20)}, ROLES)
    assert snapshot_due(cfg, "league_exploiter", 10, me, table, ["main0"])
    table, me = scripted({"main0-0": (0.7, 30)}, ROLES)  # exactly 0.7 is not above it
    assert not snapshot_due(cfg, "main_exploiter", 399, me, table, ["main0"])
    assert snapshot_due(cfg, "main_exploiter", 400, me, table, ["main0"])


def test_config_file_errors_are_one_line(tmp_path):
    bad = tmp_path / "bad.yaml"
    bad.write_text("steps: 10\nnope: 1\n")
    with pytest.raises(LeagueError, match="unknown key 'nope'"):
        read_league_config(bad)
    bad.write_text("selfplay: 0.5\n")
    with pytest.raises(LeagueError, match="must be 1"):
        read_league_config(bad)
    bad.write_text("steps: many\n")
    with pytest.raises(LeagueError, match="steps must be an integer"):
        read_league_config(bad)


# ---- a league on rps -------------------------------------------------------------------------

# exploiters never beat their targets (a win rate cannot exceed 1.0), so they are frozen at
# their budgets, and a league exploiter is re-initialised at every snapshot
BUDGETS = dict(game="rps", steps=128, chunk=32, snapshot_every=64, main_exploiter_budget=64, league_exploiter_budget=32,
               win_threshold=1.0, league_exploiter_reset=1.0, n_envs=8, seed=2, parity_steps=1, set=RPS_SET)


@pytest.fixture(scope="module")
def rps_league(tmp_path_factory):
    out = tmp_path_factory.mktemp("league") / "lg"
    cfg_file = out.parent / "league.yaml"
    cfg_file.write_text(yaml.safe_dump(BUDGETS))
    summary = run_league(out, read_league_config(cfg_file))
    return out, summary


def test_a_league_on_rps_makes_members_of_every_role(rps_league):
    out, summary = rps_league
    members = json.loads((out / "members.json").read_text())
    by_role = {r: [m["env_steps"] for m in members if m["role"] == r] for r in ("main", "main_exploiter", "league_exploiter")}
    assert by_role == {"main": [0, 64, 128], "main_exploiter": [64, 128], "league_exploiter": [32, 64, 96, 128]}
    assert all((out / m["bundle"] / "swarm.json").is_file() and m["mode"] == "league" for m in members)
    learners = {ln["name"]: ln for ln in summary["learners"]}
    assert learners["main0"]["resets"] == 0
    assert learners["main_exploiter0"]["resets"] == 2 and learners["league_exploiter0"]["resets"] == 4  # reset at each snapshot
    assert all(ln["env_steps"] == 128 for ln in learners.values())
    assert summary["rounds"] == 4 and summary["members"] == 9


def test_payoff_counts_equal_the_games_played(rps_league):
    out, summary = rps_league
    pay = json.loads((out / "payoff.json").read_text())
    names = [p["name"] for p in pay["players"]]
    games, wins, draws = (np.array(pay[k]) for k in ("games", "wins", "draws"))
    # rps episodes last one step: each env step of a learner is one game against a member
    for learner in ("main0", "main_exploiter0", "league_exploiter0"):
        rows = [i for i, p in enumerate(pay["players"]) if p["learner"] == learner and p["kind"] == "learner"]
        assert games[rows].sum() == 128
    assert [n for n in names if n.startswith("league_exploiter0@")] == [f"league_exploiter0@{g}" for g in range(5)]
    members = [i for i, p in enumerate(pay["players"]) if p["kind"] == "member"]
    assert games[np.ix_(members, members)].sum() == 0  # members never play each other in training
    assert games.sum() // 2 == summary["games"] == 3 * 128
    np.testing.assert_array_equal(games, games.T)
    np.testing.assert_array_equal(wins + wins.T + draws, games)
    assert len(pay["elo"]) == len(names) and abs(np.mean(pay["elo"]) - 1000) < 1e-2


def test_table_prints_members_elo_and_win_rates(rps_league, tmp_path):
    from click.testing import CliRunner

    from marl_edge.cli.league import league_cmd

    out, _ = rps_league
    png = tmp_path / "payoff.png"
    r = CliRunner().invoke(league_cmd, ["table", str(out), "--json", "--plot", str(png)])
    assert r.exit_code == 0, r.output
    res = json.loads(r.output.strip().splitlines()[-1])
    pay = json.loads((out / "payoff.json").read_text())
    players = res["players"]
    assert [p["name"] for p in players[:9]] == [m["name"] for m in json.loads((out / "members.json").read_text())]
    assert [p["kind"] for p in players] == ["member"] * 9 + ["learner"] * (len(players) - 9)
    assert players[0]["role"] == "main" and players[0]["env_steps"] == 0
    elo = dict(zip([p["name"] for p in pay["players"]], pay["elo"]))
    assert all(p["elo"] == pytest.approx(elo[p["name"]], abs=0.05) for p in players)
    order = [[p["name"] for p in pay["players"]].index(p["name"]) for p in players]
    g, w, d = (np.array(pay[k]) for k in ("games", "wins", "draws"))
    for a, i in enumerate(order):
        for b, j in enumerate(order):
            want = None if g[i, j] == 0 else (w[i, j] + d[i, j] / 2) / g[i, j]
            assert res["win_rate"][a][b] == (None if want is None else pytest.approx(want, abs=1e-4))
    assert png.stat().st_size > 1000
    text = CliRunner().invoke(league_cmd, ["table", str(out)]).output
    assert "main_exploiter0-" in text and "win rate of row against column" in text and "(learner)" in text
    r = CliRunner().invoke(league_cmd, ["table", str(out / "nope")])
    assert r.exit_code != 0


def test_resume_after_kill_9_ends_with_the_same_league(tmp_path):
    """A league killed with SIGKILL after its second snapshot and resumed ends with the
    members.json (but for the created times) and payoff.json of one never killed."""
    cfg = dict(BUDGETS, steps=192, win_threshold=0.7, league_exploiter_reset=0.25, min_games=8, main_exploiter_budget=128)
    cfg_file = tmp_path / "league.yaml"
    cfg_file.write_text(yaml.safe_dump(cfg))
    full = tmp_path / "full"
    run_league(full, read_league_config(cfg_file))

    killed = tmp_path / "killed"
    proc = subprocess.Popen([sys.executable, "-m", "marl_edge.cli.league", "league", "--config", str(cfg_file), "--out", str(killed)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.time() + 120
        while time.time() < deadline and proc.poll() is None:
            try:
                if len(json.loads((killed / "members.json").read_text())) >= 2:
                    break
            except (OSError, json.JSONDecodeError):
                pass
            time.sleep(0.02)
        os.kill(proc.pid, signal.SIGKILL)
    finally:
        proc.kill()
        proc.wait(timeout=30)
    assert proc.returncode == -signal.SIGKILL, "the league finished before it was killed; the test proves nothing"
    final_rounds = json.loads((full / "state.json").read_text())["round"]
    assert json.loads((killed / "state.json").read_text())["round"] < final_rounds

    from click.testing import CliRunner

    from marl_edge.cli.league import league_cmd

    r = CliRunner().invoke(league_cmd, ["league", "--out", str(killed), "--resume", "--json"])
    assert r.exit_code == 0, r.output
    assert json.loads(r.output.strip().splitlines()[-1])["rounds"] == final_rounds
    assert without_created(killed / "members.json") == without_created(full / "members.json")
    assert (killed / "payoff.json").read_text() == (full / "payoff.json").read_text()
    assert sorted(p.name for p in (killed / "members").iterdir()) == sorted(p.name for p in (full / "members").iterdir())
    # a different config is refused, in one line
    other = tmp_path / "other.yaml"
    other.write_text(yaml.safe_dump(dict(cfg, seed=9)))
    r = CliRunner().invoke(league_cmd, ["league", "--config", str(other), "--out", str(killed), "--resume"])
    assert r.exit_code != 0 and "seed" in str(r.exception or r.output)
