"""The built-in envs: the batched contract, determinism, and each task's rules."""

from __future__ import annotations

import itertools
import json
import subprocess
import sys

import numpy as np
import pytest

from marl_edge.envs import EnvError, MultiAgentEnv, TimeStep, env_names, env_options, episode_seeds, make
from marl_edge.envs.matrix import MatrixGameEnv
from marl_edge.envs.rendezvous import RendezvousEnv
from marl_edge.envs.spread import SpreadEnv

# (name, options) for every built-in env, plus variants worth covering
CASES = [
    ("two_step", {}),
    ("matrix", {}),
    ("matrix", {"payoff": [[[1, 2], [3, 4]], [[5, 6], [7, 8]]], "episode_limit": 3}),
    ("matrix", {"payoff": [[1, 2, 3], [4, 5, 6]]}),  # uneven action counts -> masks
    ("climbing", {}),
    ("penalty", {"k": 20}),
    ("rendezvous", {}),
    ("rendezvous", {"n_agents": 3, "grid": 4, "goal_size": 2, "view": 1, "episode_limit": 10}),
    ("spread", {}),
    ("spread", {"continuous": True}),
    ("spread", {"n_agents": 7}),
    ("scout", {}),
    ("dilemma", {}),
    ("scout", {"n_agents": 6, "n_targets": 3, "episode_limit": 2}),
    ("warehouse", {}),
    ("warehouse_sparse", {"n_agents": 3, "grid": 5, "view": 1, "episode_limit": 8}),
    ("rps", {}),
    ("rps", {"payoff": [[1, -1], [-1, 1]], "episode_limit": 3}),
    ("team_view", {}),  # rps seen by team 0, a seeded random opponent
    ("tag", {}),
    ("tag", {"team_size": 3, "grid": 8, "view": 1, "episode_limit": 12, "walls": []}),
]
IDS = [f"{n}-{'-'.join(f'{k}={v}' for k, v in o.items() if k != 'payoff') or 'default'}" for n, o in CASES]


def random_actions(env: MultiAgentEnv, ts: TimeStep, rng: np.random.Generator) -> np.ndarray:
    """Uniform random available actions (discrete) or a box action that sometimes leaves the box."""
    spec = env.spec
    if spec.discrete:
        scores = rng.random(ts.avail_actions.shape) + ts.avail_actions  # available actions score > 1
        return scores.argmax(axis=2)
    return rng.uniform(-1.5, 1.5, size=(env.n_envs, spec.n_agents, spec.action_dim))


def check_timestep(env: MultiAgentEnv, ts: TimeStep) -> None:
    spec, B, n = env.spec, env.n_envs, env.spec.n_agents
    assert ts.obs.shape == (B, n, spec.obs_dim) and ts.obs.dtype == np.float32
    assert ts.state.shape == (B, spec.state_dim) and ts.state.dtype == np.float32
    assert ts.avail_actions.shape == (B, n, spec.n_actions or 1) and ts.avail_actions.dtype == bool
    assert ts.avail_actions.any(axis=2).all()
    assert ts.reward.shape == (B, n) and ts.reward.dtype == np.float32
    assert ts.done.shape == (B,) and ts.done.dtype == bool
    assert ts.terminated.shape == (B,) and ts.terminated.dtype == bool
    assert not (ts.terminated & ~ts.done).any()
    assert ts.t.shape == (B,) and ts.t.dtype == np.int64
    assert (ts.t <= spec.episode_limit).all()
    if spec.has_positions:
        assert ts.positions is not None
        assert ts.positions.shape == (B, n, spec.pos_dim) and ts.positions.dtype == np.float32
    else:
        assert ts.positions is None
    for a in (ts.obs, ts.state, ts.reward):
        assert np.isfinite(a).all()


FIELDS = ("obs", "state", "avail_actions", "reward", "done", "terminated", "t", "positions")


def assert_same(a: TimeStep, b: TimeStep, slot_a: int, slot_b: int, fields: tuple[str, ...] = FIELDS) -> None:
    for f in fields:
        x, y = getattr(a, f), getattr(b, f)
        if x is None:
            assert y is None
            continue
        np.testing.assert_array_equal(x[slot_a], y[slot_b], err_msg=f)


# ---------------------------------------------------------------------------
# the batched contract, for every env
# ---------------------------------------------------------------------------
def test_every_registered_env_is_covered():
    assert set(env_names()) == {n for n, _ in CASES}


@pytest.mark.parametrize("name,opts", CASES, ids=IDS)
def test_shapes_and_dtypes(name, opts):
    env = make(name, n_envs=5, **opts)
    rng = np.random.default_rng(0)
    ts = env.reset(3)
    check_timestep(env, ts)
    assert not ts.done.any() and (ts.t == 0).all() and (ts.reward == 0).all()
    for _ in range(env.spec.episode_limit + 2):
        ts = env.step(random_actions(env, ts, rng))
        check_timestep(env, ts)
    assert ts.done.all()  # every episode has hit its limit by now


@pytest.mark.parametrize("name,opts", CASES, ids=IDS)
def test_slot_of_batch_equals_batch_one(name, opts):
    B = 6
    seeds = episode_seeds(11, B)
    big = make(name, n_envs=B, **opts)
    ts_big = big.reset(seeds)
    rng = np.random.default_rng(1)
    history = [ts_big]
    actions = []
    for _ in range(big.spec.episode_limit + 1):
        a = random_actions(big, ts_big, rng)
        actions.append(a)
        ts_big = big.step(a)
        history.append(ts_big)
    for b in (0, 3, B - 1):
        one = make(name, n_envs=1, **opts)
        ts = one.reset([seeds[b]])
        assert_same(history[0], ts, b, 0)
        for k, a in enumerate(actions):
            ts = one.step(a[b : b + 1])
            assert_same(history[k + 1], ts, b, 0)
    # different seeds give different episodes (where the env is random at all)
    if name in ("rendezvous", "spread", "warehouse", "tag"):
        assert not np.array_equal(history[0].state[0], history[0].state[1])


@pytest.mark.parametrize("name,opts", CASES, ids=IDS)
def test_reset_mask_restarts_only_masked_slots(name, opts):
    B = 4
    env = make(name, n_envs=B, **opts)
    ts = env.reset(5)
    rng = np.random.default_rng(2)
    steps = max(1, min(2, env.spec.episode_limit - 1))
    for _ in range(steps):
        ts = env.step(random_actions(env, ts, rng))
    mask = np.array([True, False, True, False])
    new_seeds = np.array([101, 102, 103, 104])
    after = env.reset(new_seeds, mask=mask)
    for b in (1, 3):  # untouched (a reset's TimeStep reports reward 0 in every slot)
        assert_same(ts, after, b, b, tuple(f for f in FIELDS if f != "reward"))
    assert (after.reward == 0).all()
    for b in (0, 2):  # fresh episodes, exactly as a new env with that seed
        fresh = make(name, n_envs=1, **opts).reset([new_seeds[b]])
        assert_same(after, fresh, b, 0)
        assert after.t[b] == 0 and not after.done[b]


@pytest.mark.parametrize("name,opts", CASES, ids=IDS)
def test_finished_slots_stay_frozen(name, opts):
    """Slots restarted at different times end at different times; a finished slot
    keeps reward 0, done, t and its last observation while the others play on."""
    B = 3
    env = make(name, n_envs=B, **opts)
    rng = np.random.default_rng(3)
    ts = env.reset(7)
    ts = env.step(random_actions(env, ts, rng))
    ts = env.reset([1, 2, 3], mask=np.array([False, True, False]))  # slot 1 now lags one step
    frozen: dict[int, TimeStep] = {}
    for _ in range(env.spec.episode_limit + 3):
        prev = ts
        ts = env.step(random_actions(env, ts, rng))
        for b in range(B):
            if prev.done[b]:
                assert ts.done[b] and (ts.reward[b] == 0).all()
                assert ts.t[b] == prev.t[b]
                np.testing.assert_array_equal(ts.obs[b], prev.obs[b])
                np.testing.assert_array_equal(ts.state[b], prev.state[b])
                frozen[b] = ts
            elif not ts.done[b]:
                assert ts.t[b] == prev.t[b] + 1
    assert ts.done.all() and frozen


def test_step_before_reset_and_bad_actions_raise():
    env = make("spread", n_envs=2)
    with pytest.raises(EnvError, match="reset"):
        env.step(np.zeros((2, 3), dtype=np.int64))
    env.reset(0)
    with pytest.raises(EnvError, match="shape"):
        env.step(np.zeros((2, 2), dtype=np.int64))
    with pytest.raises(EnvError, match=r"\[0, 5\)"):
        env.step(np.full((2, 3), 5))


def test_envs_package_imports_no_torch_or_pettingzoo():
    code = (
        "import sys, numpy as np\n"
        "from marl_edge.envs import make, env_names\n"
        "for n in env_names():\n"
        "    e = make(n, n_envs=2); e.reset(0)\n"
        "bad = [m for m in ('torch', 'onnx', 'pettingzoo', 'gymnasium') if m in sys.modules]\n"
        "assert not bad, bad\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


# ---------------------------------------------------------------------------
# two_step
# ---------------------------------------------------------------------------
def test_two_step_payoffs_exact():
    env = make("two_step", n_envs=8)
    env.reset(0)
    joint = list(itertools.product([0, 1], repeat=2))
    # slots 0..3: agent 0 picks 2A; slots 4..7: 2B; then every joint action
    first = np.array([[0, 0]] * 4 + [[1, 0]] * 4)
    ts = env.step(first)
    assert (ts.reward == 0).all() and not ts.done.any()
    np.testing.assert_array_equal(ts.state[:4], np.tile([0, 1, 0], (4, 1)))
    np.testing.assert_array_equal(ts.state[4:], np.tile([0, 0, 1], (4, 1)))
    ts = env.step(np.array(joint * 2))
    np.testing.assert_array_equal(ts.reward[:, 0], [7, 7, 7, 7, 0, 1, 1, 8])
    np.testing.assert_array_equal(ts.reward[:, 0], ts.reward[:, 1])
    assert ts.done.all() and ts.terminated.all()


# ---------------------------------------------------------------------------
# matrix games
# ---------------------------------------------------------------------------
def play_all_joint(env_name: str, **opts) -> np.ndarray:
    """The team reward of every joint action (one slot each), as a table."""
    probe = make(env_name, **opts)
    n_act, n = probe.spec.n_actions, probe.spec.n_agents
    joint = np.array(list(itertools.product(range(n_act), repeat=n)))
    env = make(env_name, n_envs=len(joint), **opts)
    env.reset(0)
    ts = env.step(joint)
    assert ts.done.all() and ts.terminated.all()
    np.testing.assert_array_equal(ts.reward, np.repeat(ts.reward[:, :1], n, axis=1))
    return ts.reward[:, 0].reshape((n_act,) * n)


def test_climbing_exact():
    table = [[11, -30, 0], [-30, 7, 0], [0, 6, 5]]
    np.testing.assert_array_equal(play_all_joint("climbing"), table)
    np.testing.assert_array_equal(play_all_joint("matrix"), table)  # the default table
    np.testing.assert_array_equal(play_all_joint("matrix", preset="climbing"), table)
    assert make("climbing").spec.name == "climbing"


@pytest.mark.parametrize("k", [100, 25])
def test_penalty_exact(k):
    opts = {} if k == 100 else {"k": k}
    np.testing.assert_array_equal(play_all_joint("penalty", **opts), [[-k, 0, 10], [0, 2, 0], [10, 0, -k]])


def test_custom_payoff_three_agents_and_json_string():
    table = np.arange(8, dtype=np.float32).reshape(2, 2, 2) - 3.5
    np.testing.assert_array_equal(play_all_joint("matrix", payoff=table.tolist()), table)
    np.testing.assert_array_equal(play_all_joint("matrix", payoff=json.dumps(table.tolist())), table)
    assert make("matrix", payoff=table.tolist()).spec.n_agents == 3


def test_matrix_uneven_actions_masked():
    env = make("matrix", n_envs=1, payoff=[[1, 2, 3], [4, 5, 6]])
    ts = env.reset(0)
    assert env.spec.n_actions == 3
    np.testing.assert_array_equal(ts.avail_actions[0], [[True, True, False], [True, True, True]])
    with pytest.raises(EnvError, match="unavailable"):
        env.step(np.array([[2, 0]]))
    assert env.step(np.array([[1, 2]])).reward[0, 0] == 6


def test_matrix_repeated_obs_one_hot_of_step():
    env = make("matrix", n_envs=2, payoff=[[1, 0], [0, 1]], episode_limit=3)
    ts = env.reset(0)
    assert env.spec.obs_dim == 4
    rewards = []
    for t, expect in enumerate([[1, 0, 1, 0], [1, 0, 0, 1], [1, 0, 0, 0]]):
        np.testing.assert_array_equal(ts.obs[0, 0], [1, *np.eye(3)[t]])
        ts = env.step(np.array([[0, 0], [0, 1]]))
        rewards.append(ts.reward[:, 0].tolist())
        np.testing.assert_array_equal(ts.obs[0, 1], expect)
        np.testing.assert_array_equal(ts.state[0], expect)
    assert rewards == [[1, 0]] * 3
    assert ts.done.all() and ts.terminated.all()


@pytest.mark.parametrize(
    "opts,match",
    [
        ({"payoff": [[1, 2], [3]]}, "rectangular"),
        ({"payoff": []}, "at least one action"),
        ({"payoff": [["a", 1], [0, 1]]}, "rectangular"),
        ({"payoff": "[[1, 2], [3"}, "JSON"),
        ({"payoff": [[1, float("nan")], [0, 1]]}, "finite"),
        ({"preset": "prisoners"}, "unknown preset 'prisoners'.*climbing, penalty"),
        ({"preset": "climbing", "payoff": [[1]]}, "either payoff or preset"),
        ({"episode_limit": 0}, "episode_limit"),
    ],
)
def test_matrix_bad_options(opts, match):
    with pytest.raises(EnvError, match=match):
        make("matrix", **opts)


# ---------------------------------------------------------------------------
# rendezvous
# ---------------------------------------------------------------------------
def reference_rendezvous_obs(env: RendezvousEnv, b: int, i: int) -> np.ndarray:
    """The observation spelled out cell by cell."""
    g, v, s = env.grid, env.view, env.goal_size
    x, y = env.pos[b, i]
    gx, gy = env.goal[b]
    W = 2 * v + 1
    goal, others, wall = np.zeros((W, W)), np.zeros((W, W)), np.zeros((W, W))
    for a in range(W):
        for c in range(W):
            cx, cy = x + a - v, y + c - v
            if not (0 <= cx < g and 0 <= cy < g):
                wall[a, c] = 1
                continue
            goal[a, c] = gx <= cx < gx + s and gy <= cy < gy + s
            others[a, c] = sum(1 for j in range(env.n_agents) if j != i and tuple(env.pos[b, j]) == (cx, cy))
    t = env._t[b] / env.spec.episode_limit
    return np.concatenate([[x / (g - 1), y / (g - 1)], goal.ravel(), others.ravel(), wall.ravel(), [t]])


def test_rendezvous_dims():
    env = make("rendezvous")
    assert (env.spec.obs_dim, env.spec.state_dim, env.spec.n_actions) == (3 + 3 * 25, 4 * 2 + 3, 5)
    assert env.spec.has_positions and env.spec.pos_dim == 2
    assert make("rendezvous", view=1, n_agents=2).spec.obs_dim == 3 + 3 * 9


def test_rendezvous_window_hand_checked():
    env = make("rendezvous", n_envs=1, n_agents=3, grid=6, goal_size=3, view=1)
    env.reset(0)
    env.pos[0] = [[0, 0], [1, 1], [1, 1]]  # agent 0 in the corner, two agents share (1, 1)
    env.goal[0] = [1, 0]  # goal cells x in 1..3, y in 0..2
    obs = env._timestep(np.zeros((1, 3), np.float32)).obs[0]
    # window [a, c] is cell (x + a - 1, y + c - 1); agent 0 at (0, 0)
    goal = [[0, 0, 0], [0, 0, 0], [0, 1, 1]]
    others = [[0, 0, 0], [0, 0, 0], [0, 0, 2]]
    wall = [[1, 1, 1], [1, 0, 0], [1, 0, 0]]
    np.testing.assert_array_equal(obs[0], [0, 0, *np.ravel(goal), *np.ravel(others), *np.ravel(wall), 0])
    # agent 1 at (1, 1) sees agent 0 at (0, 0) and agent 2 on its own cell
    others1 = [[1, 0, 0], [0, 1, 0], [0, 0, 0]]
    np.testing.assert_array_equal(obs[1, 2 + 9 : 2 + 18], np.ravel(others1))
    np.testing.assert_allclose(obs[1, :2], [0.2, 0.2])


def test_rendezvous_obs_matches_reference():
    env = make("rendezvous", n_envs=16, n_agents=5, grid=5, goal_size=2, view=2)
    ts = env.reset(4)
    rng = np.random.default_rng(0)
    for _ in range(6):
        for b in range(env.n_envs):
            for i in range(env.n_agents):
                np.testing.assert_allclose(ts.obs[b, i], reference_rendezvous_obs(env, b, i), rtol=0, atol=1e-7)
        ts = env.step(rng.integers(0, 5, size=(16, 5)))


def test_rendezvous_moves_clip_at_walls():
    env = make("rendezvous", n_envs=1, n_agents=5, grid=4)
    env.reset(0)
    env.pos[0] = [[0, 0], [0, 3], [3, 0], [2, 2], [1, 1]]
    env.goal[0] = [2, 2]  # far from agents 0..2 after their moves
    ts = env.step(np.array([[2, 1, 4, 1, 0]]))  # down, up, right (all into walls), up, stay
    np.testing.assert_array_equal(env.pos[0], [[0, 0], [0, 3], [3, 0], [2, 3], [1, 1]])
    np.testing.assert_array_equal(ts.positions[0], env.pos[0])
    env.step(np.array([[4, 2, 3, 3, 1]]))  # right, down, left, left, up
    np.testing.assert_array_equal(env.pos[0], [[1, 0], [0, 2], [2, 0], [1, 3], [1, 2]])


def test_rendezvous_reward_only_when_all_on_goal():
    env = make("rendezvous", n_envs=3, n_agents=3, grid=6, goal_size=2)
    env.reset(0)
    env.goal[:] = [2, 2]  # goal cells (2..3, 2..3)
    # slot 0: everyone steps onto the goal; slot 1: two of three do; slot 2: all already on, one steps off
    env.pos[0] = [[1, 2], [3, 4], [2, 3]]
    env.pos[1] = [[1, 2], [3, 4], [0, 0]]
    env.pos[2] = [[2, 2], [3, 3], [3, 2]]
    ts = env.step(np.array([[4, 2, 0], [4, 2, 0], [0, 0, 4]]))
    np.testing.assert_array_equal(ts.reward, [[10] * 3, [0] * 3, [0] * 3])
    np.testing.assert_array_equal(ts.done, [True, False, False])
    np.testing.assert_array_equal(ts.terminated, [True, False, False])
    # slot 0 stays frozen; slot 2 steps back on and succeeds
    ts = env.step(np.array([[0, 0, 0], [0, 0, 0], [0, 0, 3]]))
    np.testing.assert_array_equal(ts.reward[:, 0], [0, 0, 10])
    np.testing.assert_array_equal(ts.t, [1, 2, 2])
    np.testing.assert_array_equal(ts.terminated, [True, False, True])


def test_rendezvous_time_limit_is_a_terminal_failure():
    env = make("rendezvous", n_envs=1, n_agents=2, grid=6, goal_size=1, episode_limit=3)
    env.reset(0)
    env.goal[0] = [5, 5]
    env.pos[0] = [[0, 0], [0, 1]]
    for _ in range(3):
        ts = env.step(np.zeros((1, 2), dtype=np.int64))
    assert ts.done[0] and ts.terminated[0] and ts.reward.sum() == 0
    assert ts.obs[0, 0, -1] == 1.0  # elapsed fraction of the episode
    np.testing.assert_allclose(ts.state[0], [0, 0, 0, 0.2, 1, 1, 1])


def test_rendezvous_spawn_in_bounds_and_goal_fits():
    env = make("rendezvous", n_envs=64, grid=5, goal_size=3)
    ts = env.reset(9)
    assert env.pos.min() >= 0 and env.pos.max() <= 4
    assert env.goal.min() >= 0 and env.goal.max() <= 2
    assert len({tuple(g) for g in env.goal}) > 3  # the goal moves between episodes
    assert ts.positions.max() <= 4


@pytest.mark.parametrize(
    "opts,match",
    [({"grid": 1}, "grid"), ({"goal_size": 7}, "goal_size"), ({"n_agents": 0}, "n_agents"), ({"view": -1}, "view")],
)
def test_rendezvous_bad_options(opts, match):
    with pytest.raises(EnvError, match=match):
        make("rendezvous", **opts)


# ---------------------------------------------------------------------------
# spread
# ---------------------------------------------------------------------------
def direct_spread_reward(pos: np.ndarray, landmarks: np.ndarray, radius: float) -> float:
    pos, landmarks = pos.astype(np.float64), landmarks.astype(np.float64)
    cover = sum(min(np.linalg.norm(l - p) for p in pos) for l in landmarks)
    n = len(pos)
    coll = sum(1 for i in range(n) for j in range(i + 1, n) if np.linalg.norm(pos[i] - pos[j]) < 2 * radius)
    return -cover - coll


def test_spread_dims():
    for n in (2, 3, 16, 32):
        spec = make("spread", n_agents=n).spec
        assert (spec.obs_dim, spec.state_dim, spec.n_actions, spec.action_dim) == (4 * n, 4 * n + 1, 5, None)
    spec = make("spread", continuous=True).spec
    assert (spec.n_actions, spec.action_dim, spec.action_low, spec.action_high) == (None, 2, -1.0, 1.0)


@pytest.mark.parametrize("n", [1, 33, 0])
def test_spread_agent_bounds(n):
    with pytest.raises(EnvError, match=r"n_agents must be in 2\.\.32"):
        make("spread", n_agents=n)


@pytest.mark.parametrize("n", [3, 9])
def test_spread_reward_matches_direct_computation(n):
    env = make("spread", n_envs=8, n_agents=n, agent_size=0.2)  # big agents: collisions happen
    ts = env.reset(2)
    rng = np.random.default_rng(0)
    collisions = 0
    for _ in range(10):
        ts = env.step(rng.integers(0, 5, size=(8, n)))
        for b in range(8):
            want = direct_spread_reward(env.pos[b], env.landmarks[b], 0.2)
            np.testing.assert_allclose(ts.reward[b], want, rtol=1e-5, atol=1e-5)
        collisions += int(env.coverage_and_collisions()[1].sum())
    assert collisions > 0


def test_spread_collisions_counted():
    env = make("spread", n_envs=1, n_agents=4, agent_size=0.05)
    env.reset(0)
    env.landmarks[0] = [[0.5, 0.5], [0.5, 0.5], [-0.5, -0.5], [0.9, -0.9]]
    # agents 0, 1, 2 within 0.1 of each other pairwise (3 pairs); agent 3 alone at exactly 2r from agent 2
    env.pos[0] = [[0.0, 0.0], [0.05, 0.0], [0.0, 0.05], [0.0, 0.15 + 1e-3]]
    ts = env.step(np.zeros((1, 4), dtype=np.int64))
    # nearest agents: landmarks 0 and 1 -> agent 3, landmark 2 -> agent 0, landmark 3 -> agent 1
    cover = 2 * np.hypot(0.5, 0.5 - 0.151) + np.hypot(0.5, 0.5) + np.hypot(0.85, 0.9)
    np.testing.assert_allclose(ts.reward[0], -cover - 3, rtol=1e-5)


def test_spread_obs_layout_and_moves():
    env = make("spread", n_envs=1, n_agents=3)
    env.reset(0)
    env.pos[0] = [[0.0, 0.0], [0.5, -0.5], [-0.95, 0.95]]
    env.landmarks[0] = [[0.1, 0.2], [0.3, 0.4], [0.5, 0.6]]
    ts = env.step(np.array([[1, 4, 3]]))  # up, right, left (clipped at the wall)
    p = np.array([[0.0, 0.1], [0.6, -0.5], [-1.0, 0.95]])
    np.testing.assert_allclose(env.pos[0], p, atol=1e-6)
    np.testing.assert_allclose(ts.positions[0], p, atol=1e-6)
    land = env.landmarks[0]
    for i in range(3):
        others = [p[j] - p[i] for j in range(3) if j != i]
        want = np.concatenate([p[i], (land - p[i]).ravel(), *others])
        np.testing.assert_allclose(ts.obs[0, i], want, atol=1e-6)
    np.testing.assert_allclose(ts.state[0], np.concatenate([p.ravel(), land.ravel(), [ts.t[0] / env.spec.episode_limit]]), atol=1e-6)
    assert not ts.done[0]


def test_spread_continuous_actions_scaled_and_clipped():
    env = make("spread", n_envs=1, n_agents=2, continuous=True)
    env.reset(0)
    env.pos[0] = [[0.0, 0.0], [0.98, -0.5]]
    env.step(np.array([[[0.5, -0.25], [5.0, -3.0]]]))  # the second action is clipped to (1, -1)
    np.testing.assert_allclose(env.pos[0], [[0.05, -0.025], [1.0, -0.6]], atol=1e-6)


def test_spread_episode_ends_at_its_horizon_only():
    env = make("spread", n_envs=2, episode_limit=4)
    env.reset(0)
    for t in range(4):
        ts = env.step(np.zeros((2, 3), dtype=np.int64))
        assert ts.done.all() == (t == 3)
        assert ts.terminated.all() == (t == 3)  # the fixed horizon is the task: no bootstrap
        assert ts.state[0, -1] == pytest.approx((t + 1) / 4)


# ---------------------------------------------------------------------------
# registry
# ---------------------------------------------------------------------------
def test_unknown_env_lists_choices():
    with pytest.raises(EnvError, match=r"unknown env 'sprad'.*rendezvous.*spread.*two_step"):
        make("sprad")


def test_unknown_option_lists_options():
    with pytest.raises(EnvError, match=r"unknown option 'n_agent' for env 'spread'.*continuous.*n_agents"):
        make("spread", n_agent=4)


def test_presets_fix_options():
    assert env_options("climbing")["preset"] == "climbing"
    assert env_options("penalty")["preset"] == "penalty"
    assert env_options("rendezvous") == {"n_agents": 4, "grid": 5, "goal_size": 3, "view": 2, "episode_limit": 25,
                                          "reward_scalarisation": "mean"}
    assert isinstance(make("penalty", n_envs=2), MatrixGameEnv)
    assert isinstance(make("rendezvous"), RendezvousEnv) and isinstance(make("spread"), SpreadEnv)


def test_spec_records_options_and_round_trips():
    spec = make("spread", n_agents=5, continuous=True).spec
    assert spec.options["n_agents"] == 5 and spec.options["continuous"] is True
    assert type(spec).from_dict(json.loads(json.dumps(spec.to_dict()))) == spec
    spec = make("penalty", k=7).spec
    assert type(spec).from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# ---------------------------------------------------------------------------
# scout: the task where talking is necessary
# ---------------------------------------------------------------------------
def test_scout_only_the_scout_sees_the_target():
    from marl_edge.envs.scout import silent_ceiling, talking_ceiling

    env = make("scout", n_envs=64)
    ts = env.reset(3)
    is_scout = ts.obs[:, :, 0] == 1
    assert (is_scout.sum(axis=1) == 1).all()
    target = ts.state[:, :4].argmax(axis=1)
    scout = ts.state[:, 4:8].argmax(axis=1)
    assert (is_scout.argmax(axis=1) == scout).all()
    rows = np.arange(64)
    assert (ts.obs[rows, scout, 1:5].argmax(axis=1) == target).all()
    # a non-scout's observation carries nothing about the target
    others = ~is_scout
    assert (ts.obs[others][:, 1:5] == 0).all()
    assert len(set(target.tolist())) == 4 and len(set(scout.tolist())) == 4  # both vary by episode
    # reward = the fraction of agents naming the target; fixed horizon, last step terminal
    acts = np.zeros((64, 4), dtype=np.int64)
    acts[:, :2] = target[:, None]
    total = np.zeros(64)
    for t in range(4):
        ts = env.step(acts)
        total += ts.team_reward()
        assert ts.done.all() == (t == 3) and (ts.terminated == ts.done).all()
    hit = 2 + (acts[:, 2:] == target[:, None]).sum(axis=1)
    np.testing.assert_allclose(total, 4 * hit / 4)
    assert silent_ceiling(4, 4, 4) == 1.75 and talking_ceiling(4, 4, 4) == 3.4375


def test_scout_silent_ceiling_is_what_a_silent_team_gets():
    """The best silent policy (scout names the target, others guess one fixed target)."""
    from marl_edge.envs.scout import silent_ceiling

    env = make("scout", n_envs=4000)
    ts = env.reset(11)
    total = np.zeros(4000)
    while not ts.done.all():
        acts = np.where(ts.obs[:, :, 0] == 1, ts.obs[:, :, 1:5].argmax(axis=2), 0)
        ts = env.step(acts)
        total += ts.team_reward()
    assert abs(total.mean() - silent_ceiling(4, 4, 4)) < 0.03


@pytest.mark.parametrize("opts", [{"n_agents": 1}, {"n_targets": 1}, {"episode_limit": 1}, {"n_agents": 2.5}])
def test_scout_bad_options(opts):
    with pytest.raises(EnvError, match="scout: "):
        make("scout", **opts)


def test_dilemma_pays_each_agent_its_own_payoff():
    env = make("dilemma", n_envs=4, episode_limit=2)
    ts = env.reset(0)
    assert not ts.obs[:, :, :4].any() and ts.obs[0, 0, 4] == 1 and ts.obs[0, 1, 5] == 1
    ts = env.step(np.array([[0, 0], [0, 1], [1, 0], [1, 1]]))
    assert ts.reward.tolist() == [[3, 3], [0, 5], [5, 0], [1, 1]]
    assert ts.obs[:, 0, :4].argmax(1).tolist() == [0, 1, 2, 3] and (ts.obs[:, 0, :4] == ts.obs[:, 1, :4]).all()
    assert not env.spec.shared_reward
    ts = env.step(np.zeros((4, 2), dtype=np.int64))
    assert ts.done.all() and ts.terminated.all()
