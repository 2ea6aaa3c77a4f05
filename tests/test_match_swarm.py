"""A match as a swarm (docs/league.md, "Deploying a match"): team A's bundle against team B's
bundle, every agent its own ``marl-agent`` process, equals the in-process match episode by episode.

The bundles are members of a short ``marl-league selfplay`` run on biased rock-paper-scissors.
Every process a test starts is stopped by the launcher's ``finally`` (and dies with its parent
through PR_SET_PDEATHSIG if the test process dies); the tests check none is left."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from click.testing import CliRunner

from procs import no_children_left
from marl_edge.envs import EnvSpec, MultiAgentEnv, make, register
from marl_edge.envs.rps import BIASED_RPS
from marl_edge.runtime.bundle import Bundle, BundleError, TeamSeat, load_bundle
from marl_edge.runtime.match import MatchError, evaluate_match, plan_match
from marl_edge.runtime.policy import OrtPolicy
from marl_edge.runtime.swarm import SwarmOptions, run_swarm

pytest.importorskip("torch")


@pytest.fixture(scope="module")
def members(tmp_path_factory) -> list[Path]:
    """Three snapshots of naive self-play (at 0, 400 and 800 env steps), each a one-team bundle."""
    from marl_edge.cli.league import league_cmd

    out = tmp_path_factory.mktemp("league") / "lg"
    r = CliRunner().invoke(league_cmd, ["selfplay", "--out", str(out), "--mode", "naive", "--steps", "800", "--snapshot-every", "400",
                                        "--n-envs", "8", "--seed", "0", "--set", "recurrent=false", "--set", "ent_start=0.3",
                                        "--set", "ent_end=0.3", "--json"])
    assert r.exit_code == 0, r.output
    found = sorted((out / "members").iterdir())
    assert len(found) == 3
    return found


def greedy_action(bundle: Path) -> int:
    """The pure action a member's exported policy plays (rps shows every agent the same constant observation)."""
    ts = make("rps", n_envs=1).reset(0)
    b = load_bundle(bundle)
    return int(OrtPolicy(b.agent(0).policy_path, b.inputs, b.outputs, batch=1).act(ts.obs[:, 0], ts.avail_actions[:, 0])[0][0])


def test_in_process_match_seats_each_bundle_in_its_team(members):
    """Team A (the first bundle, trained as team 0) is the row player; its return is the payoff of the two greedy actions."""
    acts = [greedy_action(m) for m in members]
    for a, b in [(0, 1), (1, 0), (1, 2), (2, 0), (2, 2)]:
        res = evaluate_match(members[a], members[b], episodes=5, seed=11, n_envs=2)  # slots reused: 5 episodes in 2 slots
        want = BIASED_RPS[acts[a]][acts[b]]
        assert res["returns"] == [want] * 5 and res["opponent_returns"] == [-want] * 5 and res["lengths"] == [1] * 5
        assert (res["wins"], res["draws"], res["losses"]) == ((5, 0, 0) if want > 0 else (0, 5, 0) if want == 0 else (0, 0, 5))
        assert [t["team"] for t in res["match"]["teams"]] == [0, 1]
    assert len(set(acts)) > 1, acts  # the snapshots differ, so some match is won (else the test would be weak)


@pytest.mark.parametrize("transport, pair", [("ipc", (0, 1)), ("ipc", (2, 1)), ("tcp", (1, 2))])
def test_lockstep_match_swarm_equals_the_in_process_match(members, transport, pair):
    a, b = members[pair[0]], members[pair[1]]
    res = run_swarm(a, SwarmOptions(episodes=6, seed=5, transport=transport), opponent=b)
    ref = evaluate_match(a, b, episodes=6, seed=5)
    assert no_children_left()
    assert res["returns"] == ref["returns"] and res["opponent_returns"] == ref["opponent_returns"]
    assert res["lengths"] == ref["lengths"]
    assert (res["wins"], res["draws"], res["losses"]) == (ref["wins"], ref["draws"], ref["losses"])
    assert res["agents"] == 2 and len(res["per_agent"]) == 2 and all(p["sessions"] for p in res["per_agent"])  # two agent processes reported
    assert res["noop_actions"] == 0 and res["invalid_frames"] == 0 and not res["absences"]
    assert res["security"] == ("curve" if transport == "tcp" else "none")
    assert res["match"]["teams"][1]["bundle"] == str(b)


def test_a_killed_opponent_agent_no_ops_and_team_a_plays_on(members):
    """--kill names the game's agents: agent 1 is team B's; its robot then plays the no-op (rock)."""
    a, b = members[2], members[0]
    acts = greedy_action(a), greedy_action(b)
    res = run_swarm(a, SwarmOptions(episodes=4, seed=5, kills=[(1, 2)]), opponent=b)
    assert no_children_left()
    noop = make("rps", n_envs=1).spec.noop_action or 0
    assert res["returns"] == [BIASED_RPS[acts[0]][acts[1]]] * 2 + [BIASED_RPS[acts[0]][noop]] * 2
    assert [(x["agent"], x["step"], x["why"]) for x in res["absences"]] == [(1, 2, "killed")]


def test_cli_match_eval_and_swarm_agree(members, cli):
    a, b = str(members[1]), str(members[0])
    ev = cli("evaluate", a, "--opponent", b, "--episodes", "3", "--seed", "2", "--json", check=True)
    sw = cli("swarm", a, "--opponent", b, "--episodes", "3", "--seed", "2", "--quiet", "--json", check=True)
    e, s = json.loads(ev.stdout.strip().splitlines()[-1]), json.loads(sw.stdout.strip().splitlines()[-1])
    assert e["returns"] == s["returns"] and e["opponent_returns"] == s["opponent_returns"] and e["wins"] == s["wins"]
    assert "match    team A:" in sw.stderr and "match    team A:" in ev.stderr
    assert no_children_left()


# ---- a team game: two agents a team, observations of their own, episodes that differ by seed --------


class _Duel(MultiAgentEnv):
    """A test game, zero-sum, two teams of two: each step every agent sees 3 fresh random
    numbers of its own (from the slot's seeded generator; wide enough that even an untrained
    policy's greedy action depends on them) and its team scores the sum of its agents'
    actions minus the other team's, mod 3, minus 1. Four steps."""

    def __init__(self, n_envs: int = 1) -> None:
        super().__init__(n_envs)
        self.spec = EnvSpec(name="match_duel", n_agents=4, obs_dim=3, state_dim=12, episode_limit=4, n_actions=3,
                            shared_reward=False, options={}, teams=((0, 1), (2, 3)))
        self.x = np.zeros((n_envs, 4, 3), dtype=np.float32)

    def _draw(self, idx) -> None:
        for i in idx:
            self.x[i] = self.rng(int(i)).normal(0.0, 10.0, (4, 3))

    def _reset_slots(self, idx) -> None:
        self._draw(idx)

    def _step(self, actions, active):
        r = ((actions[:, 0] + actions[:, 1] - actions[:, 2] - actions[:, 3]) % 3 - 1).astype(np.float32)
        self._draw(np.flatnonzero(active))
        return np.stack([r, r, -r, -r], axis=1), self._t + 1 >= self.spec.episode_limit

    def _obs(self):
        return self.x.copy()

    def _state(self):
        return self.x.reshape(self.n_envs, -1).copy()


@pytest.fixture(scope="module")
def duel(tmp_path_factory):
    """Two untrained one-team bundles of the duel (the export's parity check rebuilds the game by
    name, so it is registered while the module runs): A trained as team 0, recurrent; B as team 1, feed-forward."""
    from marl_edge.envs import registry
    from marl_edge.league.selfplay import SelfPlayConfig, export_learner, new_learner

    register("match_duel", _Duel, "test game: two teams of two", train_steps=100)
    root = tmp_path_factory.mktemp("duel")
    out = {}
    try:
        for name, team, seed, algo in (("a", 0, 1, {}), ("b", 1, 2, {"recurrent": False})):
            env, learner, run_dir = new_learner(root / f"run_{name}", SelfPlayConfig(game="match_duel", team=team, steps=1, seed=seed), algo)
            env.close()
            export_learner(run_dir, learner, 0, root / name)
            out[name] = root / name
        yield out
    finally:
        registry._REGISTRY.pop("match_duel", None)


def test_team_game_match_swarm_equals_the_in_process_match(duel):
    """Four agent processes of two bundles: every episode differs, every agent sees its own observations."""
    res = run_swarm(duel["a"], SwarmOptions(episodes=8, seed=3), opponent=duel["b"])
    ref = evaluate_match(duel["a"], duel["b"], episodes=8, seed=3, n_envs=3)
    assert no_children_left()
    assert res["agents"] == 4 and res["noop_actions"] == 0 and not res["absences"]
    assert res["returns"] == ref["returns"] and res["opponent_returns"] == ref["opponent_returns"]
    assert res["lengths"] == ref["lengths"] == [4] * 8
    assert ref["opponent_returns"] == [-r for r in ref["returns"]]
    assert len(set(ref["returns"])) > 1, ref["returns"]  # the episodes differ: the seeds reach both sides
    assert [(t["team"], t["trained_as"], t["agents"]) for t in res["match"]["teams"]] == [(0, 0, [0, 1]), (1, 1, [2, 3])]


# ---- the seat in the manifest ---------------------------------------------------------------------------


def test_a_one_team_bundle_records_its_seat_and_old_bundles_still_play(members, duel, tmp_path):
    assert load_bundle(duel["b"]).manifest.seat == TeamSeat("match_duel", ((0, 1), (2, 3)), 1)
    m = load_bundle(members[0]).manifest
    assert m.seat == TeamSeat("rps", ((0,), (1,)), 0) and m.seat.agents == (0,)
    raw = json.loads((members[0] / "swarm.json").read_text())
    assert raw["seat"] == {"game": "rps", "teams": [[0], [1]], "team": 0} and m.to_dict() == raw  # written through the same type

    def drop_seat(d):  # a bundle written before the field: its team comes from the team_view options
        del d["seat"], d["env_spec"]["teams"]

    old = load_bundle(_edit_manifest(members[1], tmp_path / "old", drop_seat))
    assert old.manifest.seat is None and old.manifest.env_spec.teams == ()
    new, ref = evaluate_match(members[0], old.path, 2, seed=1), evaluate_match(members[0], members[1], 2, seed=1)
    assert new["returns"] == ref["returns"] and new["match"]["teams"][1]["trained_as"] == 0

    def bad_team(d):
        d["seat"]["team"] = 2

    with pytest.raises(BundleError, match=r"seat\.team: expected an integer in 0\.\.1, got 2"):
        load_bundle(_edit_manifest(members[1], tmp_path / "bad", bad_team))

    def other_teams(d):
        d["seat"]["teams"] = [[1], [0]]

    moved = load_bundle(_edit_manifest(members[1], tmp_path / "moved", other_teams))
    with pytest.raises(MatchError, match=r"records team 0 of rps with teams \[\[1\], \[0\]\], but rps now has teams \[\[0\], \[1\]\]"):
        plan_match(load_bundle(members[0]), moved)


# ---- what cannot meet: one line each ----------------------------------------------------------------


def _edit_manifest(src: Path, dst: Path, edit) -> Path:
    shutil.copytree(src, dst)
    m = json.loads((dst / "swarm.json").read_text())
    edit(m)
    (dst / "swarm.json").write_text(json.dumps(m))
    return dst


def test_bundles_that_cannot_meet_are_refused_in_one_line(members, tmp_path):
    a = load_bundle(members[0])

    def whole_game(m):
        m["env"] = {"name": "rps", "options": {}}

    not_team = load_bundle(_edit_manifest(members[1], tmp_path / "rps", whole_game))
    with pytest.raises(MatchError, match="not a one-team bundle .* 'rps', not 'team_view'"):
        plan_match(a, not_team)

    def other_payoff(m):
        m["env"]["options"]["game_options"] = {"payoff": [[0, -1, 1], [1, 0, -1], [-1, 1, 0]]}

    other = load_bundle(_edit_manifest(members[1], tmp_path / "plain_rps", other_payoff))
    with pytest.raises(MatchError, match="play rps with different options"):
        plan_match(a, other)

    spec = a.manifest.env_spec
    two = Bundle(a.path, a.manifest.replace(env_spec=dataclasses.replace(spec, n_agents=2)))
    with pytest.raises(MatchError, match="opponent .* has 2 agents, but team 1 of rps has 1"):
        plan_match(a, two)
    talks = Bundle(a.path, a.manifest.replace(comm="mean", topology={"spec": "broadcast"}, msg_dim=4, k_max=1))
    with pytest.raises(MatchError, match="sends messages"):
        plan_match(talks, a)
    for e in (MatchError,):
        assert issubclass(e, BundleError)


def test_cli_refusals_are_one_line_and_start_nothing(members, tmp_path, cli):
    a, b = str(members[0]), str(members[1])
    r = cli("swarm", a, "--opponent", b, "--trace", str(tmp_path / "t.jsonl"))
    assert r.returncode == 2 and r.stderr.strip().splitlines() == ["error: --trace is not supported with --opponent yet: "
                                                                   "a match runs its own world and spawns both teams"]
    r = cli("evaluate", a, "--opponent", b, "--sample")
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "--sample does not apply with --opponent" in r.stderr
    r = cli("swarm", a, "--opponent", str(tmp_path / "nothing"))
    assert r.returncode == 2 and len(r.stderr.strip().splitlines()) == 1 and "is not a directory" in r.stderr
    with pytest.raises(BundleError, match="--world-bind is not supported with --opponent"):
        run_swarm(Path(a), SwarmOptions(world_bind="tcp://127.0.0.1:0"), opponent=Path(b))
    assert no_children_left()
