"""The tag game (capture the flag with tagging): zero-sum rewards, outcomes of scripted
episodes, the partial window, positions, seeding, batch independence, the mirror
symmetry self-play relies on, team_view on it, its picture; and PettingZoo teams by
agent-name prefix."""

from __future__ import annotations

import numpy as np
import pytest

from marl_edge.envs import EnvError, episode_seeds, make
from marl_edge.envs.tag import TagEnv

G = 7  # the default board; walls (1,3) (5,3) (3,2) (3,4); flags (3,0) team 0, (3,6) team 1
STAY, FWD, BACK, LEFT, RIGHT = range(5)


def scripted(pos: list[tuple[int, int]], **opts) -> TagEnv:
    """A batch-1 game with the agents put on ``pos`` (world cells), which are also their spawns."""
    env = make("tag", n_envs=1, team_size=len(pos) // 2, **opts)
    env.reset([0])
    env.pos[0] = np.array(pos)
    env.spawn[0] = np.array([(0, 0)] * (len(pos) // 2) + [(6, 6)] * (len(pos) // 2))
    return env


def step(env: TagEnv, *actions: int):
    return env.step(np.array([actions]))


def random_play(env: TagEnv, seed: int, rng: np.random.Generator):
    ts = env.reset(seed)
    steps = [ts]
    while not ts.done.all():
        ts = env.step(rng.integers(0, 5, size=(env.n_envs, env.spec.n_agents)))
        steps.append(ts)
    return steps


# ---- rules and outcomes ----------------------------------------------------------------------
def test_spec_teams_and_sizes():
    env = make("tag", n_envs=3)
    s = env.spec
    assert s.teams == ((0, 1), (2, 3)) and s.n_agents == 4 and s.n_actions == 5 and not s.shared_reward
    assert s.obs_dim == 3 + 5 * 25 and s.state_dim == 2 * 4 + 1 and s.has_positions
    assert make("tag", team_size=8, grid=9).spec.teams == (tuple(range(8)), tuple(range(8, 16)))
    assert make("tag", team_size=1).spec.teams == ((0,), (1,))


def test_capture_wins_and_the_limit_is_a_draw():
    env = scripted([(2, 6), (6, 6)])  # team 0 next to team 1's flag
    ts = step(env, RIGHT, STAY)
    assert ts.done[0] and ts.terminated[0] and ts.info["outcome"][0] == 1
    np.testing.assert_array_equal(ts.reward[0], [1.0, -1.0])

    env = scripted([(0, 0), (4, 0)])  # team 1 next to team 0's flag; its "right" is world -x
    ts = step(env, STAY, RIGHT)
    assert ts.terminated[0] and ts.info["outcome"][0] == -1
    np.testing.assert_array_equal(ts.reward[0], [-1.0, 1.0])

    env = scripted([(2, 6), (4, 0)])  # both capture on the same step: a draw
    ts = step(env, RIGHT, RIGHT)
    assert ts.terminated[0] and ts.info["outcome"][0] == 0 and (ts.reward == 0).all()

    env = scripted([(0, 0), (6, 6)], episode_limit=3)  # nobody scores: a draw at the limit, terminal
    for k in range(3):
        ts = step(env, STAY, STAY)
        assert ts.done[0] == (k == 2) and (ts.reward == 0).all() and ts.info["outcome"][0] == 0
    assert ts.terminated[0]


def test_tagging_on_the_home_half_sends_the_intruder_back():
    env = scripted([(0, 0), (0, 1)])  # team 1's agent intrudes into team 0's half
    ts = step(env, FWD, STAY)  # the defender steps onto it
    np.testing.assert_array_equal(env.pos[0], [(0, 1), (6, 6)])
    assert not ts.done[0] and (ts.reward == 0).all()

    env = scripted([(0, 1), (0, 2)])  # the two swap cells: the intruder (now at (0,1)) is tagged
    step(env, FWD, FWD)
    np.testing.assert_array_equal(env.pos[0], [(0, 2), (6, 6)])

    env = scripted([(0, 4), (0, 5)])  # on team 1's half it is team 0's agent that is tagged
    step(env, FWD, STAY)
    np.testing.assert_array_equal(env.pos[0], [(0, 0), (0, 5)])

    env = scripted([(0, 2), (0, 4)])  # meeting on the neutral middle row tags nobody
    step(env, FWD, FWD)
    np.testing.assert_array_equal(env.pos[0], [(0, 3), (0, 3)])

    env = scripted([(2, 5), (3, 5)])  # an attacker that steps onto a defender's cell is tagged, back to spawn
    ts = step(env, RIGHT, STAY)
    assert not ts.done[0] and tuple(env.pos[0, 0]) == (0, 0)


def test_walls_board_edges_and_own_flag_block_moves():
    env = scripted([(3, 1), (6, 6)])
    step(env, FWD, FWD)  # (3,2) is a wall; team 1's forward from (6,6) is (6,5)
    np.testing.assert_array_equal(env.pos[0], [(3, 1), (6, 5)])
    env = scripted([(2, 0), (3, 5)])
    step(env, RIGHT, FWD)  # team 0 may not stand on its own flag; team 1 may not either: (3,5)->(3,4) wall
    np.testing.assert_array_equal(env.pos[0], [(2, 0), (3, 5)])
    env = scripted([(0, 0), (2, 6)])
    step(env, LEFT, LEFT)  # off the board for team 0; team 1's left is world +x, onto its own flag
    np.testing.assert_array_equal(env.pos[0], [(0, 0), (2, 6)])


def test_rewards_are_zero_sum_and_the_return_sign_is_the_outcome():
    env = make("tag", n_envs=256)
    steps = random_play(env, 5, np.random.default_rng(0))
    ret0 = sum(ts.reward[:, :2].mean(axis=1) for ts in steps)
    for ts in steps:
        np.testing.assert_array_equal(ts.reward[:, :2].mean(axis=1), -ts.reward[:, 2:].mean(axis=1))
    outcome = steps[-1].info["outcome"]
    np.testing.assert_array_equal(np.sign(ret0), outcome)
    assert {-1, 0, 1} <= set(outcome.tolist())  # random play produces every outcome in 256 episodes
    assert steps[-1].terminated.all()


# ---- observation, positions, seeding, batching ---------------------------------------------------
def test_observation_window_in_each_agents_own_frame():
    env = scripted([(2, 0), (3, 1), (2, 1), (3, 5)])  # team 0: agents 0, 1; team 1: agents 2, 3
    obs = env.step(np.zeros((1, 4), dtype=int)).obs[0]  # a step of standing still
    W = 5

    def chan(i, c):
        return obs[i, 3 + c * W * W : 3 + (c + 1) * W * W].reshape(W, W)  # [a, b]: offset (a-2, b-2)

    walls, mates, opps, own, enemy = (chan(0, c) for c in range(5))
    np.testing.assert_allclose(obs[0, :3], [2 / 6, 0, 1 / 30])
    assert (walls[:, :2] == 1).all() and walls[3, 4] == 1 and walls[:, 2:].sum() == 1  # off board below, wall (3,2)
    assert mates[3, 3] == 1 and mates.sum() == 1  # agent 1 at (3,1); itself not counted
    assert opps[2, 3] == 1 and opps.sum() == 1  # agent 2 at (2,1)
    assert own[3, 2] == 1 and own.sum() == 1 and enemy.sum() == 0  # its flag (3,0)
    # agent 3 (team 1) at world (3,5) is at (3,1) in its own frame, its flag one step back
    walls, mates, opps, own, enemy = (chan(3, c) for c in range(5))
    np.testing.assert_allclose(obs[3, :2], [3 / 6, 1 / 6])
    assert own[2, 1] == 1 and own.sum() == 1 and enemy.sum() == 0
    assert walls[2, 3] == 1 and (walls[:, 0] == 1).all()  # the wall (3,4) ahead of it; off board behind
    assert mates.sum() == 0 and opps.sum() == 0


def test_positions_are_world_cells_and_the_state_holds_them():
    env = scripted([(2, 0), (3, 1), (2, 1), (3, 5)])
    ts = env.step(np.zeros((1, 4), dtype=int))
    np.testing.assert_array_equal(ts.positions[0], [(2, 0), (3, 1), (2, 1), (3, 5)])
    np.testing.assert_allclose(ts.state[0, :-1], np.array([2, 0, 3, 1, 2, 1, 3, 5]) / 6)
    ts = make("tag", n_envs=4).reset(1)
    assert ts.positions.shape == (4, 4, 2) and (ts.positions[:, :2, 1] <= 1).all() and (ts.positions[:, 2:, 1] >= 5).all()


def test_seeding_fixes_the_start():
    a, b = make("tag", n_envs=16), make("tag", n_envs=16)
    np.testing.assert_array_equal(a.reset(3).positions, b.reset(3).positions)
    starts = b.reset(4).positions
    assert not np.array_equal(a.reset(3).positions, starts)
    assert len({tuple(p.reshape(-1)) for p in starts}) > 8  # slots start differently


def test_a_slot_does_not_depend_on_the_others():
    """Slot 2 plays the same episode whatever the other slots do."""
    seeds = episode_seeds(7, 5)
    runs = []
    for k in range(2):
        env = make("tag", n_envs=5)
        ts = env.reset(seeds)
        mine, others = np.random.default_rng(0), np.random.default_rng(10 + k)
        trace = [ts]
        for _ in range(30):
            a = others.integers(0, 5, size=(5, 4))
            a[2] = mine.integers(0, 5, size=4)
            trace.append(env.step(a))
        runs.append(trace)
    one = make("tag", n_envs=1)
    trace1 = [one.reset(seeds[2:3])]
    mine = np.random.default_rng(0)
    for _ in range(30):
        trace1.append(one.step(mine.integers(0, 5, size=(1, 4))))
    for x, y, z in zip(*runs, trace1):
        for f in ("obs", "reward", "done", "positions"):
            np.testing.assert_array_equal(getattr(x, f)[2], getattr(y, f)[2], err_msg=f)
            np.testing.assert_array_equal(getattr(x, f)[2], getattr(z, f)[0], err_msg=f)
        assert x.info["outcome"][2] == z.info["outcome"][0]


def test_snapshot_and_restore_replay_a_step():
    env = make("tag", n_envs=8)
    rng = np.random.default_rng(3)
    env.reset(2)
    for _ in range(5):
        env.step(rng.integers(0, 5, size=(8, 4)))
    snap = env.snapshot()
    a = rng.integers(0, 5, size=(8, 4))
    first = env.step(a)
    env.restore(snap)
    again = env.step(a)
    for f in ("obs", "reward", "done", "positions"):
        np.testing.assert_array_equal(getattr(first, f), getattr(again, f))


@pytest.mark.parametrize("n,opts", [(2, {}), (3, {"grid": 8, "walls": [[2, 3], [5, 4]], "view": 3})])
def test_the_game_is_symmetric_under_the_half_turn_with_the_teams_swapped(n, opts):
    """Team 1 in a board turned by 180 degrees sees and does exactly what team 0 does:
    the same observations, the rewards negated, the positions turned."""
    B = 256
    G = opts.get("grid", 7)
    swap = np.r_[n : 2 * n, 0:n]  # agent i of the turned game is agent swap[i] of the original
    a, b = make("tag", n_envs=B, team_size=n, **opts), make("tag", n_envs=B, team_size=n, **opts)
    ts_a = a.reset(9)
    b.reset(9)
    b.pos[:] = G - 1 - a.pos[:, swap]
    b.spawn[:] = G - 1 - a.spawn[:, swap]
    ts_b = b.step(np.zeros((B, 2 * n), dtype=int))  # a no-op step to read b's observations ...
    ts_a = a.step(np.zeros((B, 2 * n), dtype=int))  # ... taken by a too, so both clocks agree
    rng = np.random.default_rng(1)
    outcomes = set()
    while not ts_a.done.all():
        np.testing.assert_array_equal(ts_b.obs, ts_a.obs[:, swap])
        np.testing.assert_array_equal(ts_b.positions, G - 1 - ts_a.positions[:, swap])
        act = rng.integers(0, 5, size=(B, 2 * n))
        ts_a, ts_b = a.step(act), b.step(act[:, swap])
        np.testing.assert_array_equal(ts_b.reward, ts_a.reward[:, swap])
        np.testing.assert_array_equal(ts_b.info["outcome"], -ts_a.info["outcome"])
        np.testing.assert_array_equal(ts_b.done, ts_a.done)
        outcomes |= set(ts_a.info["outcome"].tolist())
    assert outcomes >= {-1, 1}


@pytest.mark.parametrize(
    "opts,match",
    [
        ({"team_size": 9}, "team_size"),
        ({"grid": 4}, "grid"),
        ({"walls": [[1, 1]]}, "point-symmetric"),
        ({"walls": [[x, 3] for x in range(7)]}, "cut start cell"),
        ({"walls": [[3, 0], [3, 6]]}, "flag"),
        ({"walls": [[9, 9]]}, "off the"),
        ({"walls": "nope"}, "list of"),
    ],
)
def test_bad_options_are_one_line(opts, match):
    with pytest.raises(EnvError, match=match) as e:
        make("tag", **opts)
    assert "\n" not in str(e.value)


def test_custom_walls_and_none():
    env = make("tag", walls=[])
    assert not env.wall.any() and env.spec.options["walls"] == []
    env = make("tag", grid=9, walls=[[0, 4], [8, 4]])
    assert env.wall.sum() == 2 and make("tag", **env.spec.options).wall.sum() == 2


# ---- one team's view, the picture ----------------------------------------------------------
@pytest.mark.parametrize("team", [0, 1])
def test_team_view_trains_one_side(team):
    env = make("team_view", game="tag", team=team, n_envs=16)
    s = env.spec
    assert s.n_agents == 2 and s.obs_dim == 128 and s.has_positions and s.name == f"tag[team {team}]"
    ts = env.reset(0)
    rng = np.random.default_rng(team)
    ret = np.zeros(16)
    while not ts.done.all():
        ts = env.step(rng.integers(0, 5, size=(16, 2)))
        ret += ts.reward.mean(axis=1)
    outcome = ts.info["outcome"] if team == 0 else -ts.info["outcome"]  # the info is team 0's
    np.testing.assert_array_equal(np.sign(ret), outcome)


def test_a_tag_episode_renders(tmp_path):
    pytest.importorskip("matplotlib")
    from PIL import Image

    from marl_edge.viz.episode import EpisodeRecord
    from marl_edge.viz.render import SCENES, scene_for, write_episode

    assert scene_for("tag[team 1]", True) is SCENES["tag"]
    rng = np.random.default_rng(0)
    for name, opts, n in (("tag", {"episode_limit": 4}, 4), ("team_view", {"game": "tag", "game_options": {"episode_limit": 3}}, 2)):
        rec = EpisodeRecord(name, opts, 5, [rng.integers(0, 5, size=n).tolist() for _ in range(3 if name == "team_view" else 4)])
        res = write_episode(rec, tmp_path / f"{name}.gif")
        assert res["frames"] == len(rec.actions) + 1
        with Image.open(tmp_path / f"{name}.gif") as im:
            im.seek(res["frames"] - 1)
            rgb = np.asarray(im.convert("RGB")).astype(int)
        red = (rgb[..., 0] > 180) & (rgb[..., 1] < 80) & (rgb[..., 2] < 80)  # team 1's discs and flag
        blue = (rgb[..., 2] > 150) & (rgb[..., 0] < 80)  # team 0's
        assert red.sum() > 50 and blue.sum() > 50


# ---- PettingZoo teams by agent-name prefix ---------------------------------------------------
def tiny_tag(**_kw):
    """An MPE-style parallel env: one adversary and two good agents (names as in simple_tag)."""
    import gymnasium
    from pettingzoo.utils.env import ParallelEnv

    class Tiny(ParallelEnv):
        metadata = {"name": "tiny_tag"}

        def __init__(self):
            self.possible_agents = ["adversary_0", "agent_0", "agent_1"]
            self.agents = []

        def observation_space(self, agent):
            return gymnasium.spaces.Box(-1, 1, (2,), np.float32)

        def action_space(self, agent):
            return gymnasium.spaces.Discrete(3)

        def reset(self, seed=None, options=None):
            self.agents, self.t = list(self.possible_agents), 0
            return {a: np.zeros(2, np.float32) for a in self.agents}, {a: {} for a in self.agents}

        def step(self, actions):
            self.t += 1
            r = float(actions["adversary_0"] == 1)  # the adversary scores, the good agents pay
            rew = {a: (r if a.startswith("adversary") else -r) for a in self.agents}
            done = {a: self.t >= 4 for a in self.agents}
            obs = {a: np.full(2, self.t / 4, np.float32) for a in self.agents}
            if self.t >= 4:
                self.agents = []
            return obs, rew, done, {a: False for a in done}, {a: {} for a in done}

    return Tiny()


def test_pettingzoo_teams_by_prefix():
    pytest.importorskip("pettingzoo")
    from marl_edge.envs.pettingzoo import from_pettingzoo

    env = from_pettingzoo(tiny_tag, n_envs=2, teams="adversary,agent")
    assert env.spec.teams == ((0,), (1, 2)) and env.spec.options["teams"] == ["adversary", "agent"]
    assert from_pettingzoo(tiny_tag, teams=["agent", "adversary"]).spec.teams == ((1, 2), (0,))
    assert from_pettingzoo(tiny_tag, teams="a,agent_1").spec.teams == ((0, 1), (2,))  # the longest prefix wins
    assert from_pettingzoo(tiny_tag).spec.teams == ()
    for teams, match in (("adversary,good", "'agent_0' matches none of the team prefixes adversary, good"),
                         ("adversary,agent,robot", "prefix 'robot' matches no agent"),
                         ("adversary", "two or more"), ("agent,agent", "distinct")):
        with pytest.raises(EnvError, match=match) as e:
            from_pettingzoo(tiny_tag, teams=teams)
        assert "\n" not in str(e.value)


def test_team_view_over_a_pettingzoo_env_with_prefix_teams():
    pytest.importorskip("pettingzoo")
    env = make("team_view", game="pz:test_tag:tiny_tag", game_options={"teams": "adversary,agent"}, team=1, n_envs=3)
    assert env.spec.n_agents == 2
    ts = env.reset(0)
    while not ts.done.all():
        ts = env.step(np.zeros((3, 2), dtype=int))
    assert ts.reward.shape == (3, 2)


def test_distance_topologies_work_on_the_positions():
    from marl_edge.envs.topology import check_topology, parse_topology

    env = scripted([(0, 0), (0, 2), (6, 6), (0, 3)])
    ts = env.step(np.zeros((1, 4), dtype=int))
    knn = parse_topology("knn:1", 4)
    check_topology(knn, env.spec)
    idx, mask = knn.neighbours(ts.positions)
    assert idx[0, :, 0].tolist() == [1, 3, 3, 1] and mask.all()  # nearest other agent, lower index on ties
    idx, mask = parse_topology("range:1.5", 4).neighbours(ts.positions)
    assert [set(idx[0, i][mask[0, i]].tolist()) for i in range(4)] == [set(), {3}, set(), {1}]
