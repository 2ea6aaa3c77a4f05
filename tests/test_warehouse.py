"""The warehouse env: its rules, its observation, the potentials and snapshots the
reward mechanisms build on, and the per-robot activity that evaluation reports."""

from __future__ import annotations

import json

import numpy as np
import pytest

from marl_edge.envs import EnvError, episode_seeds, make
from marl_edge.envs.rollout import agent_stats_summary, evaluate
from marl_edge.envs.warehouse import WarehouseEnv

STAY, UP, DOWN, LEFT, RIGHT = range(5)
BASE_FIELDS = ("_t", "_done", "_terminated")


def staged(n_envs: int = 1, **opts) -> WarehouseEnv:
    """A reset env (the robots on the dock, packages drawn) to arrange by hand."""
    env = make("warehouse", n_envs=n_envs, **opts)
    env.reset(0)
    return env


def place(env: WarehouseEnv, b: int, robots: list[tuple[int, int]], packages: list[tuple[int, int]]) -> None:
    """Slot ``b``: robots at these cells (empty), packages waiting on these shelves."""
    env.pos[b] = np.array(robots)
    env.carrying[b] = False
    env.delivered[b] = 0
    env.waiting[b] = False
    for cell in packages:
        s = env._shelf_id[cell]
        assert s >= 0, f"{cell} is no shelf"
        env.waiting[b, s] = True


class Greedy:
    """A scripted team: each robot heads for the nearest package no lower-index robot
    has chosen (horizontal first), and straight down once loaded. Robots in ``lazy``
    always stay."""

    def __init__(self, env: WarehouseEnv, lazy: tuple[int, ...] = ()) -> None:
        self.env, self.lazy = env, lazy

    def reset(self, mask: np.ndarray) -> None:
        pass

    def act(self, ts) -> np.ndarray:
        e = self.env
        B, n = e.pos.shape[:2]
        a = np.zeros((B, n), dtype=np.int64)
        for b in range(B):
            free = e.waiting[b].copy()
            for i in range(n):
                if i in self.lazy:
                    continue
                if e.carrying[b, i]:
                    a[b, i] = DOWN
                    continue
                if not free.any():
                    continue
                x, y = e.pos[b, i]
                s = (np.abs(e.shelves - e.pos[b, i]).sum(axis=1) + np.where(free, 0, 10**6)).argmin()
                free[s] = False
                tx, ty = e.shelves[s]
                a[b, i] = RIGHT if tx > x else LEFT if tx < x else UP if ty > y else DOWN if ty < y else STAY
        return a


# ---------------------------------------------------------------------------
def test_spec_layout_and_bad_options():
    env = make("warehouse")
    s = env.spec
    assert (s.n_agents, s.n_actions, s.episode_limit) == (4, 5, 16)
    assert len(env.shelves) == 16 and s.obs_dim == 4 + 4 * 25 and s.state_dim == 3 * 4 + 16 + 1
    assert s.has_positions and s.options["n_requests"] == 4 and s.options["reward"] == "dense"
    assert make("warehouse_sparse").spec.options["reward"] == "sparse"
    assert make("warehouse", n_agents=8, grid=9).spec.options["n_requests"] == 8
    for opts, msg in [
        ({"n_agents": 1}, "n_agents must be in 2..16"),
        ({"n_agents": 17}, "n_agents must be in 2..16"),
        ({"grid": 4}, "grid must be >= 5"),
        ({"n_requests": 17}, r"n_requests must be in 1\.\.16"),
        ({"reward": "shaped"}, "reward must be one of dense, sparse"),
        ({"view": -1}, "view must be >= 0"),
    ]:
        with pytest.raises(EnvError, match=msg) as e:
            make("warehouse", **opts)
        assert "\n" not in str(e.value)


def test_window_hand_checked():
    env = staged(n_agents=2)
    place(env, 0, robots=[(2, 1), (3, 2)], packages=[(1, 3), (4, 4)])
    obs = env._timestep(np.zeros((1, 2), np.float32)).obs[0, 0]
    w = lambda c: obs[3 + 25 * c : 3 + 25 * (c + 1)].reshape(5, 5)  # noqa: E731  [a, b] = cell (x+a-2, y+b-2)
    np.testing.assert_array_equal(obs[:3], np.float32([2 / 6, 1 / 6, 0.0]))
    packages = np.zeros((5, 5))
    packages[1, 4] = 1  # (1, 3); the package at (4, 4) is out of view
    np.testing.assert_array_equal(w(0), packages)
    shelves = np.zeros((5, 5))
    shelves[[1, 2, 4], 4] = 1  # x 1, 2 and 4 at y 3; x 0 and 3 are aisles
    np.testing.assert_array_equal(w(1), shelves)
    others = np.zeros((5, 5))
    others[3, 3] = 1  # robot 1 at (3, 2)
    np.testing.assert_array_equal(w(2), others)
    walls = np.zeros((5, 5))
    walls[:, 0] = 1  # y = -1 (x runs 0..4, inside the floor)
    np.testing.assert_array_equal(w(3), walls)


def test_pick_deliver_rewards_and_success():
    env = staged(n_agents=2, n_requests=2)
    place(env, 0, robots=[(1, 2), (2, 0)], packages=[(1, 3), (2, 3)])
    ts = env.step(np.array([[UP, STAY]]))  # robot 0 onto (1, 3): picks
    assert env.carrying[0].tolist() == [True, False] and ts.reward[0].tolist() == [0.5, 0.5]
    assert ts.info["agent_stats"]["idle"][0].tolist() == [0.0, 1.0]
    ts = env.step(np.array([[DOWN, UP]]))  # robot 0 leaves the shelf: nothing happens
    assert ts.reward[0].tolist() == [0.0, 0.0]
    for _ in range(2):  # robot 0 down to row 0: delivers at the second step; robot 1 reaches (2, 3) then
        ts = env.step(np.array([[DOWN, UP]]))
    assert ts.reward[0].tolist() == [1.5, 1.5] and ts.info["agent_stats"]["deliveries"][0].tolist() == [1.0, 0.0]
    assert not ts.done[0]
    for _ in range(3):
        ts = env.step(np.array([[STAY, DOWN]]))
    assert ts.reward[0].tolist() == [1.0, 1.0] and ts.done[0] and ts.terminated[0]  # every package delivered


def test_sparse_pays_once_at_success_and_time_out_is_terminal():
    env = make("warehouse_sparse", n_envs=2, n_agents=2, n_requests=1, episode_limit=4)
    env.reset(0)
    for b in (0, 1):
        place(env, b, robots=[(1, 2), (4, 0)], packages=[(1, 3)])
    rewards = []
    for a in ([UP, STAY], [DOWN, STAY], [DOWN, STAY], [DOWN, STAY]):
        ts = env.step(np.array([a, [STAY, STAY]]))
        rewards.append(ts.reward[:, 0].tolist())
    assert rewards == [[0, 0], [0, 0], [0, 0], [1.0, 0]]  # n_requests once, at the delivery
    assert ts.done.all() and ts.terminated.all()  # slot 1 ran out of time: a terminal failure


def test_lowest_index_wins_a_shared_shelf():
    env = staged(n_agents=3)
    place(env, 0, robots=[(2, 2), (2, 4), (2, 2)], packages=[(2, 3)])
    env.step(np.array([[UP, DOWN, UP]]))
    assert env.carrying[0].tolist() == [True, False, False] and not env.waiting[0].any()


def test_potential_is_minus_the_normalised_distance_to_the_next_target():
    env = staged(n_agents=3)
    place(env, 0, robots=[(0, 0), (5, 6), (3, 1)], packages=[(1, 3), (4, 6)])
    env.carrying[0, 2] = True
    np.testing.assert_allclose(env.potential()[0], [-4 / 12, -1 / 12, -1 / 12])
    env.waiting[0] = False  # nothing left to fetch: the empty robots are done
    np.testing.assert_allclose(env.potential()[0], [0.0, 0.0, -1 / 12])


def test_snapshot_fields_hold_every_per_slot_array():
    B = 3
    env = make("warehouse", n_envs=B)
    env.reset(0)
    env.step(np.ones((B, 4), dtype=np.int64))
    per_slot = {k for k, v in vars(env).items() if isinstance(v, np.ndarray) and v.ndim and v.shape[0] == B}
    assert per_slot - set(BASE_FIELDS) - {"_seeds"} == set(WarehouseEnv.snapshot_fields)


def test_snapshot_restore_replays_a_step_exactly():
    env = make("warehouse", n_envs=8)
    ts = env.reset(episode_seeds(4, 8))
    rng = np.random.default_rng(0)
    for _ in range(5):
        ts = env.step(rng.integers(0, 5, size=(8, 4)))
    snap = {f: getattr(env, f).copy() for f in (*WarehouseEnv.snapshot_fields, *BASE_FIELDS)}
    phi = env.potential()
    a = rng.integers(0, 5, size=(8, 4))
    first = env.step(a)
    later = env.step(rng.integers(0, 5, size=(8, 4)))
    assert not np.array_equal(later.obs, first.obs)
    for f, v in snap.items():
        setattr(env, f, v.copy())
    np.testing.assert_array_equal(env.potential(), phi)
    again = env.step(a)
    for f in ("obs", "state", "reward", "done", "terminated", "positions", "t"):
        np.testing.assert_array_equal(getattr(again, f), getattr(first, f), err_msg=f)
    for k in ("idle", "deliveries"):
        np.testing.assert_array_equal(again.info["agent_stats"][k], first.info["agent_stats"][k])


def test_a_batch_tiled_from_the_fields_observes_as_the_original():
    """A B*n batch made by repeating each slot's fields (how counterfactual steps are
    batched) reads exactly the original slots' observations, state and potentials."""
    B, n = 3, 4
    env = make("warehouse", n_envs=B)
    env.reset(9)
    env.step(np.full((B, n), UP))
    big = make("warehouse", n_envs=B * n)
    big.reset(0)
    for f in (*WarehouseEnv.snapshot_fields, *BASE_FIELDS):
        setattr(big, f, np.repeat(getattr(env, f), n, axis=0))
    small_ts, big_ts = env._timestep(np.zeros((B, n), np.float32)), big._timestep(np.zeros((B * n, n), np.float32))
    np.testing.assert_array_equal(big_ts.obs, np.repeat(small_ts.obs, n, axis=0))
    np.testing.assert_array_equal(big_ts.state, np.repeat(small_ts.state, n, axis=0))
    np.testing.assert_array_equal(big.potential(), np.repeat(env.potential(), n, axis=0))


def test_evaluation_reports_an_idle_robot():
    """Robot 0 always stays: evaluation shows it idle all the time, never delivering,
    while the others deliver."""
    env = make("warehouse", n_envs=8)
    eps = evaluate(env, Greedy(env, lazy=(0,)), episode_seeds(0, 20))
    stats = agent_stats_summary(eps)
    assert stats is not None
    assert stats["idle_share"][0] == 1.0 and stats["deliveries"][0] == 0.0
    assert stats["idle"][0] == pytest.approx(np.mean([e.length for e in eps]))
    assert all(0 < stats["deliveries"][i] and stats["idle_share"][i] < 0.5 for i in (1, 2, 3))
    # the totals are the episodes' own: every delivery of the dense reward is counted
    for e in eps:
        pickups = (e.ret - e.agent_stats["deliveries"].sum()) / 0.5
        assert pickups >= e.agent_stats["deliveries"].sum() and pickups == int(pickups)


def test_an_env_without_agent_stats_reports_none():
    env = make("rendezvous", n_envs=4)
    eps = evaluate(env, _Stay(), episode_seeds(0, 4))
    assert agent_stats_summary(eps) is None and all(e.agent_stats is None for e in eps)


class _Stay:
    def reset(self, mask: np.ndarray) -> None:
        pass

    def act(self, ts) -> np.ndarray:
        return np.zeros(ts.reward.shape, dtype=np.int64)


def test_the_sparse_team_needs_every_robot():
    """With one robot idle the scripted team rarely delivers everything in time."""
    seeds = episode_seeds(1, 128)
    env = make("warehouse_sparse", n_envs=32)
    full = np.mean([e.ret > 0 for e in evaluate(env, Greedy(env), seeds)])
    lazy = np.mean([e.ret > 0 for e in evaluate(env, Greedy(env, lazy=(0,)), seeds)])
    assert full > 0.4 and lazy < full / 2, (full, lazy)


def test_marl_eval_reports_agent_stats_for_runs_and_bundles(tmp_path, cli, make_bundle):
    """A tiny QMIX run: marl-eval RUN and marl-eval BUNDLE report the same per-agent
    stats (same episodes), and marl-eval prints one line per robot."""
    from marl_edge.train.evaluation import evaluate_run

    bundle = make_bundle(tmp_path, "wh", steps=800, env="warehouse", env_options={"n_agents": 3})
    res_run = evaluate_run(tmp_path / "run_wh", episodes=6)
    p = cli("evaluate", str(bundle), "--episodes", "6", "--json", check=True)
    res_bundle = json.loads(p.stdout.strip().splitlines()[-1])
    assert res_run["returns"] == res_bundle["returns"]
    assert res_run["agent_stats"] == res_bundle["agent_stats"]
    assert set(res_bundle["agent_stats"]) == {"idle", "idle_share", "deliveries", "deliveries_share"}
    assert all(len(v) == 3 for v in res_bundle["agent_stats"].values())
    lines = p.stderr.splitlines()  # with --json the text goes to stderr
    head = next(i for i, line in enumerate(lines) if line.startswith("per agent"))
    assert "idle" in lines[head + 1] and "deliveries" in lines[head + 1]
    rows = [line.split() for line in lines[head + 2 : head + 5]]
    assert [r[0] for r in rows] == ["0", "1", "2"]
    assert [float(r[1]) for r in rows] == pytest.approx(res_bundle["agent_stats"]["idle"], abs=0.006)


@pytest.mark.slow
def test_qmix_learns_the_dense_warehouse_with_every_robot_working(tmp_path, cli):
    """QMIX, 4 robots, 40k env steps (about a minute on 2 free cores): the greedy team
    delivers most packages, every robot takes its share, and eval.json says so."""
    out = tmp_path / "run"
    cli("train", "--env", "warehouse", "--algo", "qmix", "--steps", "40000", "--seed", "1", "--eval-episodes", "64",
        "--out", str(out), "--json", check=True, timeout=900)
    ev = json.loads((out / "eval.json").read_text())
    assert ev["mean_return"] >= 4.5  # of 6; a random team scores about 0.33
    stats = ev["agent_stats"]
    assert all(d >= 0.5 for d in stats["deliveries"]) and all(s < 0.5 for s in stats["idle_share"]), stats
