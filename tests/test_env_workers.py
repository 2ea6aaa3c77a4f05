"""Third-party envs stepped in worker processes (envs/workers.py, ``env.workers=W``).

The pool must play exactly what in-process stepping plays, fail loudly
instead of hanging, and leave no process or shared-memory segment behind.
Every pool a test opens is closed by the ``opened`` fixture, pass or fail.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pettingzoo")
pytest.importorskip("gymnasium")

from marl_edge.envs import EnvError, make  # noqa: E402
from marl_edge.envs.pettingzoo import PettingZooEnv  # noqa: E402
from marl_edge.envs.rollout import evaluate  # noqa: E402
from marl_edge.envs.workers import SHM_PREFIX, WorkerPoolEnv  # noqa: E402

LBF = "gym:lbforaging:Foraging-5x5-2p-1f-coop-v3"
TOY = "pz:pz_toy"  # tests/pz_toy.py
FIELDS = ("obs", "state", "avail_actions", "reward", "done", "terminated", "positions", "t")


def our_segments(pid: int | None = None) -> list[str]:
    prefix = f"{SHM_PREFIX}{os.getpid() if pid is None else pid}_"
    return sorted(p for p in os.listdir("/dev/shm") if p.startswith(prefix))


@pytest.fixture
def opened():
    """``opened(env)`` registers an env to be closed at the end of the test, whatever happens."""
    envs = []

    def register(env):
        envs.append(env)
        return env

    try:
        yield register
    finally:
        for env in envs:
            env.close()
        assert not our_segments(), "a shared-memory segment outlived its pool"


def assert_same(a, b, where=""):
    for f in FIELDS:
        x, y = getattr(a, f), getattr(b, f)
        if y is None:
            assert x is None, f"{where}: {f}"
        else:
            assert x.dtype == y.dtype and x.shape == y.shape, f"{where}: {f} {x.dtype}{x.shape} vs {y.dtype}{y.shape}"
            np.testing.assert_array_equal(x, y, err_msg=f"{where}: {f}")


def random_actions(rng, ts, spec):
    if not spec.discrete:
        return rng.uniform(spec.action_low, spec.action_high, size=(*ts.obs.shape[:2], spec.action_dim)).astype(np.float32)
    p = ts.avail_actions * rng.random(ts.avail_actions.shape)  # a random available action per agent
    return p.argmax(-1)


def play_side_by_side(pool, ref, steps, seed=0):
    """Step both envs with the same random available actions, restarting finished slots
    individually (as the rollout loop does); every TimeStep must be equal."""
    assert pool.spec == ref.spec
    rng = np.random.default_rng(seed)
    ta, tb = pool.reset(seed), ref.reset(seed)
    assert_same(ta, tb, "reset")
    episodes = 0
    for i in range(steps):
        act = random_actions(rng, tb, ref.spec)
        ta, tb = pool.step(act), ref.step(act)
        assert_same(ta, tb, f"step {i}")
        if tb.done.any():
            episodes += int(tb.done.sum())
            seeds, mask = rng.integers(0, 2**31, size=ref.n_envs), tb.done.copy()
            ta, tb = pool.reset(seeds, mask=mask), ref.reset(seeds, mask=mask)
            assert_same(ta, tb, f"reset after step {i}")
    return episodes


def test_lbf_in_two_workers_plays_what_in_process_plays(opened):
    pytest.importorskip("lbforaging")
    pool = opened(make(LBF, n_envs=4, workers=2))
    ref = opened(make(LBF, n_envs=4))
    assert isinstance(pool, WorkerPoolEnv) and pool.n_workers == 2 and pool.bounds == [(0, 2), (2, 4)]
    assert pool.spec.has_positions and "workers" not in pool.spec.options
    assert play_side_by_side(pool, ref, steps=160) >= 8  # several episodes per slot (limit 50, some end early)


@pytest.mark.parametrize("name,B,W,opts", [
    (TOY, 5, 2, {}),  # uneven slices (3 + 2), action masks, an agent leaving, truncation and termination
    ("pz:mpe2.simple_spread_v3", 4, 2, {"N": 2, "max_cycles": 8}),  # a real PettingZoo env with state()
    ("pz:mpe2.simple_spread_v3", 3, 3, {"N": 2, "max_cycles": 8, "continuous_actions": True}),  # box actions
], ids=["toy", "mpe2", "mpe2-continuous"])
def test_pettingzoo_in_workers_plays_what_in_process_plays(opened, name, B, W, opts):
    if name.startswith("pz:mpe2"):
        pytest.importorskip("mpe2.simple_spread_v3")
    pool = opened(make(name, n_envs=B, workers=W, **opts))
    ref = opened(make(name, n_envs=B, **opts))
    assert pool.n_workers == W
    assert play_side_by_side(pool, ref, steps=40, seed=3) >= B


def test_rollout_parks_idle_slots_and_returns_the_same_episodes(opened):
    """Fewer episodes than slots: the rollout loop parks the idle slots by writing
    env._done, which the workers must honour; more episodes than slots restart slots."""
    class RandomTeam:
        def __init__(self):
            self.rng = np.random.default_rng(5)

        def reset(self, mask):
            pass

        def act(self, ts):
            return random_actions(self.rng, ts, spec)

    pool = opened(make(TOY, n_envs=4, workers=2))
    ref = opened(make(TOY, n_envs=4))
    spec = ref.spec
    for n_episodes in (3, 9):
        seeds = np.arange(100, 100 + n_episodes)
        a, b = evaluate(pool, RandomTeam(), seeds), evaluate(ref, RandomTeam(), seeds)
        assert [(e.seed, e.ret, e.length) for e in a] == [(e.seed, e.ret, e.length) for e in b]


def test_partial_resets_touch_only_their_slots(opened):
    pool = opened(make(TOY, n_envs=4, workers=2))
    ref = opened(make(TOY, n_envs=4))
    with pytest.raises(EnvError, match="first reset must reset every slot"):
        pool.reset([1, 2, 3, 4], mask=np.array([True, False, True, True]))
    ta, tb = pool.reset([1, 2, 3, 4]), ref.reset([1, 2, 3, 4])
    act = np.zeros((4, 3), dtype=np.int64)
    ta, tb = pool.step(act), ref.step(act)
    before = ta
    for mask in ([False, False, True, False], [True, False, False, False], [False, False, False, False]):
        mask = np.array(mask)
        ta, tb = pool.reset([7, 8, 9, 10], mask=mask), ref.reset([7, 8, 9, 10], mask=mask)
        assert_same(ta, tb, f"mask {mask}")
    kept = np.array([False, True, False, True])
    np.testing.assert_array_equal(ta.obs[kept], before.obs[kept])
    np.testing.assert_array_equal(ta.t, [0, 1, 0, 1])
    with pytest.raises(EnvError, match="reset needs 4 seeds"):
        pool.reset([1, 2])


def test_finished_slots_stay_frozen_and_unavailable_actions_are_refused(opened):
    pool = opened(make(TOY, n_envs=2, workers=2, max_cycles=2, goal=1000))
    ts = pool.reset(0)
    bad = (~ts.avail_actions[1, 0]).nonzero()[0]
    if len(bad):
        act = np.zeros((2, 3), dtype=np.int64)
        act[1, 0] = bad[0]
        with pytest.raises(EnvError, match="agent 0 in slot 1 took unavailable action"):
            pool.step(act)
    for _ in range(2):
        ts = pool.step(random_actions(np.random.default_rng(0), ts, pool.spec))
    assert ts.done.all() and not ts.terminated.any() and (ts.t == 2).all()
    again = pool.step(np.zeros((2, 3), dtype=np.int64))
    assert (again.reward == 0).all() and again.done.all() and (again.t == 2).all()
    np.testing.assert_array_equal(again.obs, ts.obs)


def test_a_failing_env_is_an_env_error_naming_the_worker(opened):
    pool = opened(make(TOY, n_envs=4, workers=2, fail_seed=42, fail_at=2))
    procs = list(pool._procs)
    pool.reset([1, 2, 3, 42])  # slot 3 lives in worker 1
    pool.step(np.zeros((4, 3), dtype=np.int64))
    with pytest.raises(EnvError, match=r"env worker 1 \(slots 2\.\.3\) failed: RuntimeError: toy env failed at step 2"):
        pool.step(np.zeros((4, 3), dtype=np.int64))
    assert not any(p.is_alive() for p in procs) and not our_segments()  # a failed pool is closed at once
    with pytest.raises(EnvError, match="closed"):
        pool.step(np.zeros((4, 3), dtype=np.int64))


def test_a_dying_worker_is_an_env_error(opened):
    pool = opened(make(TOY, n_envs=2, workers=2, fail_seed=42, fail_at=1, exit=True))
    pool.reset([42, 1])
    with pytest.raises(EnvError, match=r"env worker 0 \(slots 0\.\.0\) failed: the process exited \(exit code 3\)"):
        pool.step(np.zeros((2, 3), dtype=np.int64))


def test_a_build_error_in_the_workers_is_an_env_error():
    with pytest.raises(EnvError, match=r"env worker 0 .*failed: EnvError: cannot build the PettingZoo env .*no_such_option"):
        make(TOY, n_envs=2, workers=2, no_such_option=1)
    assert not our_segments()


def test_close_stops_every_worker_and_unlinks_the_segment():
    pool = make(TOY, n_envs=3, workers=2)
    procs, name = list(pool._procs), pool._shms[0].name
    assert all(p.is_alive() and p.daemon for p in procs) and our_segments() == [name]
    pool.reset(0)
    pool.close()
    pool.close()  # twice is fine
    assert [p.exitcode for p in procs] == [0, 0] and not our_segments()
    # a pool dropped without close() is cleaned up by its finalizer
    pool = make(TOY, n_envs=2, workers=2)
    procs = list(pool._procs)
    del pool
    assert not any(p.is_alive() for p in procs) and not our_segments()


def test_workers_leave_when_the_training_process_dies(tmp_path):
    """SIGKILL the process that holds a pool: its workers notice and exit, and the
    resource tracker then unlinks the orphaned segment."""
    script = tmp_path / "victim.py"
    script.write_text(textwrap.dedent(f"""
        import json, os, signal, sys
        sys.path.insert(0, {str(Path(__file__).parent)!r})
        from marl_edge.envs import make
        if __name__ == "__main__":
            pool = make("pz:pz_toy", n_envs=2, workers=2)
            pool.reset(0)
            print(json.dumps([os.getpid(), [p.pid for p in pool._procs]]), flush=True)
            os.kill(os.getpid(), signal.SIGKILL)
    """))
    proc = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    victim, pids = json.loads(proc.stdout.strip().splitlines()[-1])
    assert proc.returncode == -9 and len(pids) == 2

    def gone(pid):
        try:
            with open(f"/proc/{pid}/status") as f:
                return "\nState:\tZ" in f.read()  # a zombie has exited
        except FileNotFoundError:
            return True

    deadline = time.monotonic() + 60  # a bound on waiting, not a speed check
    while time.monotonic() < deadline and not (all(map(gone, pids)) and not our_segments(victim)):
        time.sleep(0.2)
    survivors = [p for p in pids if not gone(p)]
    for p in survivors:  # never leave a process behind, even when the check fails
        os.kill(p, 9)
    assert not survivors, f"workers {survivors} outlived their parent"
    assert not our_segments(victim), "the resource tracker did not unlink the dead pool's segment"


def test_option_checks_and_in_process_fallbacks(opened):
    with pytest.raises(EnvError, match="batched in numpy already") as e:
        make("spread", n_envs=4, workers=2)
    assert "\n" not in str(e.value)
    for bad in (-1, "two", True, 1.5):
        with pytest.raises(EnvError, match="integer >= 0"):
            make(TOY, n_envs=4, workers=bad)
    for w, B in ((0, 4), (1, 4), (2, 1)):  # in-process: 0, 1, or a single slot
        env = opened(make(TOY, n_envs=B, workers=w))
        assert isinstance(env, PettingZooEnv) and "workers" not in env.spec.options
    pool = opened(make(TOY, n_envs=2, workers=8))  # never more workers than slots
    assert pool.n_workers == 2


def test_marl_train_with_workers_records_the_option_and_evaluates_alike(tmp_path, cli):
    """A short VDN run on LBF in 2 workers; the run records env.workers (not in the env
    spec); evaluating the run or its bundle in workers plays what in-process plays."""
    pytest.importorskip("lbforaging")
    pytest.importorskip("torch")
    out = tmp_path / "run"
    cli("train", "--env", LBF, "--algo", "vdn", "--steps", "2000", "--n-envs", "4", "--set", "env.workers=2",
        "--eval-episodes", "4", "--out", str(out), "--quiet", check=True)
    cfg = json.loads((out / "config.json").read_text())
    assert cfg["run"]["env_options"] == {"workers": 2} and "workers" not in cfg["env_spec"]["options"]
    assert json.loads((out / "eval.json").read_text())["episodes"] == 4
    from marl_edge.export.bundle import export_run
    from marl_edge.runtime.team import evaluate_bundle
    from marl_edge.train.evaluation import greedy_evaluate, load_policy_net

    net, rs, _ = load_policy_net(out)
    in_workers = greedy_evaluate(net, rs, episodes=6, seed=7)
    rs.run.env_options = {}
    in_process = greedy_evaluate(net, rs, episodes=6, seed=7)
    assert (in_workers["returns"], in_workers["lengths"]) == (in_process["returns"], in_process["lengths"])
    export_run(out, tmp_path / "bundle", parity_steps=50)  # the bundle keeps the option: its evaluation uses workers too
    bundle = evaluate_bundle(tmp_path / "bundle", episodes=6, seed=7)
    assert (bundle["returns"], bundle["lengths"]) == (in_process["returns"], in_process["lengths"])
    assert not our_segments()
