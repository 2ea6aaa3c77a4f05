"""A user's own env, from a file or from the current folder (``pz:./my_env.py``,
``pz:my_env``, ``gym:./my_env.py:ENV_ID``), and PettingZoo envs that give agent
positions (``agent_positions()``), so ``knn:K`` and ``range:R`` work on them.

The commands run as a user runs them: the console scripts, from the folder that
holds the env (a console script, unlike ``python -m``, does not search the
current folder), and the later stages from another folder.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("pettingzoo")

from procs import no_children_left  # noqa: E402
from marl_edge.envs import EnvError, canonical_env_name, make  # noqa: E402
from marl_edge.envs.rollout import Rollout  # noqa: E402
from marl_edge.envs.topology import parse_topology  # noqa: E402

WALKERS = Path(__file__).parent / "pz_walkers.py"
BIN = Path(sys.executable).parent


def marl(cmd: str, *args: str, cwd: Path, timeout: float = 240) -> subprocess.CompletedProcess:
    """A console script (``marl-train``, ...) run in ``cwd``; subprocess.run reaps it."""
    return subprocess.run([str(BIN / f"marl-{cmd}"), *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)


def last_json(proc: subprocess.CompletedProcess) -> dict:
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout.strip().splitlines()[-1])


def test_a_user_env_file_trains_exports_and_runs_in_a_lockstep_swarm(tmp_path):
    """pz:./FILE from its folder, with positions (knn:2) and env workers; export, marl-eval and the
    swarm's world run from another folder and find the file by the path the run recorded."""
    from marl_edge.runtime.swarm import SwarmOptions, run_swarm

    proj, elsewhere = tmp_path / "proj", tmp_path / "elsewhere"
    proj.mkdir()
    elsewhere.mkdir()
    shutil.copy(WALKERS, proj / "my_walkers.py")
    train = marl("train", "--env", "pz:./my_walkers.py:parallel_env", "--algo", "qmix", "--steps", "300", "--n-envs", "4",
                 "--set", "comm=mean", "--set", "topology=knn:2", "--set", "msg_dim=4", "--set", "env.workers=2",
                 "--eval-episodes", "4", "--out", str(tmp_path / "run"), "--quiet", "--json", cwd=proj)
    summary = last_json(train)
    cfg = json.loads((tmp_path / "run" / "config.json").read_text())
    assert cfg["run"]["env"] == f"pz:{proj / 'my_walkers.py'}:parallel_env"
    assert cfg["env_spec"]["has_positions"] and cfg["env_spec"]["pos_dim"] == 2
    assert cfg["comm"]["topology"]["spec"] == "knn:2" and summary["msgs_per_step"] == 4 * 2  # every walker hears its 2 nearest

    export = marl("export", str(tmp_path / "run"), "--out", str(tmp_path / "bundle"), "--parity-steps", "40", "--json", cwd=elsewhere)
    assert last_json(export)["parity"]["action_agreement"] == 1.0
    manifest = json.loads((tmp_path / "bundle" / "swarm.json").read_text())
    assert manifest["env"]["name"] == cfg["run"]["env"]
    ev = last_json(marl("eval", str(tmp_path / "bundle"), "--episodes", "5", "--seed", "3", "--json", cwd=elsewhere))
    sw = run_swarm(tmp_path / "bundle", SwarmOptions(episodes=5, seed=3))  # its world makes the env in this process's folder
    assert no_children_left()  # the launcher stopped every agent
    assert sw["returns"] == ev["returns"] and len(ev["returns"]) == 5
    assert sw["invalid_frames"] == 0 and sw["noop_actions"] == 0 and sw["dropped"] == 0


def test_a_module_of_the_current_folder_is_found_and_recorded_by_its_path(tmp_path, monkeypatch):
    """pz:NAME from the folder that holds NAME.py (which is not on the import path), and a
    dotted name inside a package of that folder, whose relative imports work."""
    from marl_edge.train.config import RunConfig

    shutil.copy(WALKERS, tmp_path / "walkers_here.py")
    (tmp_path / "team_pkg").mkdir()
    (tmp_path / "team_pkg" / "__init__.py").write_text("")
    (tmp_path / "team_pkg" / "limits.py").write_text("MAX_CYCLES = 5\n")
    (tmp_path / "team_pkg" / "envs.py").write_text(
        "from walkers_here import Walkers  # beside the package: its folder is the one searched\n"
        "from .limits import MAX_CYCLES\n\n\n"
        "def walkers_env(**kw):\n    return Walkers(max_cycles=MAX_CYCLES, **kw)\n"
    )
    monkeypatch.setattr(sys, "path", list(sys.path))  # the folder the loader adds leaves with the test
    assert str(tmp_path) not in sys.path
    monkeypatch.chdir(tmp_path)
    assert RunConfig(env="pz:walkers_here").env == f"pz:{tmp_path / 'walkers_here.py'}"
    assert canonical_env_name("pz:team_pkg.envs:walkers_env") == f"pz:{tmp_path / 'team_pkg' / 'envs.py'}:walkers_env"
    assert make("pz:walkers_here").spec.has_positions
    env = make("pz:team_pkg.envs:walkers_env")
    assert env.spec.episode_limit == 5 and env.spec.name == f"pz:{tmp_path / 'team_pkg' / 'envs.py'}:walkers_env"
    # names that do not point into this folder are left as they are
    for name in ("spread", "pz:mpe2.simple_spread_v3", "gym:lbforaging:Foraging-8x8-2p-2f-coop-v3", "pz:/abs/env.py"):
        assert canonical_env_name(name) == name


def test_a_missing_user_env_gets_a_hint_for_a_file_not_pip(tmp_path, monkeypatch):
    monkeypatch.setattr(sys, "path", list(sys.path))
    proc = marl("train", "--env", "pz:my_missing_env", "--steps", "10", cwd=tmp_path)
    assert proc.returncode == 2 and len(proc.stderr.strip().splitlines()) == 1, proc.stderr
    assert "no my_missing_env.py in the current folder" in proc.stderr and "pz:./path/to/my_missing_env.py" in proc.stderr
    assert "pip install my_missing_env" not in proc.stderr
    with pytest.raises(EnvError, match=f"no file {tmp_path / 'not_there.py'}"):
        make(f"pz:{tmp_path / 'not_there.py'}")
    (tmp_path / "needs_dep.py").write_text("import no_such_dependency_xyz\n")
    with pytest.raises(EnvError, match="imports 'no_such_dependency_xyz', which is not installed"):
        make(f"pz:{tmp_path / 'needs_dep.py'}")
    (tmp_path / "broken_env.py").write_text("def parallel_env(:\n")
    with pytest.raises(EnvError, match="importing .*broken_env.py failed: SyntaxError"):
        make(f"pz:{tmp_path / 'broken_env.py'}")
    (tmp_path / "json.py").write_text("")  # the name of a module that is already loaded
    with pytest.raises(EnvError, match="rename the file"):
        make(f"pz:{tmp_path / 'json.py'}")


GYM_ENV = '''
import gymnasium
import numpy as np


class Pair(gymnasium.Env):
    """Two agents, tuple spaces (the LBF/RWARE API); each step both are rewarded for action 1."""

    def __init__(self):
        self.observation_space = gymnasium.spaces.Tuple([gymnasium.spaces.Box(0, 5, (2,), np.float32)] * 2)
        self.action_space = gymnasium.spaces.Tuple([gymnasium.spaces.Discrete(2)] * 2)

    def reset(self, seed=None, options=None):
        super().reset(seed=seed)
        self.t = 0
        return (np.zeros(2, np.float32), np.ones(2, np.float32)), {}

    def step(self, actions):
        self.t += 1
        obs = (np.full(2, self.t, np.float32), np.full(2, self.t + 1, np.float32))
        return obs, [float(a) for a in actions], False, False, {}


gymnasium.register(id="UserPair-v0", entry_point=Pair, max_episode_steps=4)
'''


def test_a_gym_env_from_a_user_file(tmp_path, monkeypatch):
    (tmp_path / "user_pair.py").write_text(GYM_ENV)
    monkeypatch.setattr(sys, "path", list(sys.path))
    monkeypatch.chdir(tmp_path)
    name = canonical_env_name("gym:./user_pair.py:UserPair-v0")
    assert name == f"gym:{tmp_path / 'user_pair.py'}:UserPair-v0"
    env = make("gym:./user_pair.py:UserPair-v0", n_envs=2)
    assert env.spec.n_agents == 2 and env.spec.episode_limit == 4 and env.spec.name == name
    env.reset([0, 1])
    ts = env.step(np.array([[1, 0], [1, 1]]))
    np.testing.assert_array_equal(ts.reward, [[1, 0], [1, 1]])


# ---------------------------------------------------------------------------
# positions
# ---------------------------------------------------------------------------
def nearest(positions: np.ndarray, k: int) -> np.ndarray:
    """For each receiver of one slot, the k nearest other agents (ties: the lower index)."""
    n = len(positions)
    d = np.linalg.norm(positions[:, None] - positions[None], axis=-1)
    return np.array([[j for j in sorted(range(n), key=lambda j: (d[i, j], j)) if j != i][:k] for i in range(n)])


class RandomTeam:
    def __init__(self) -> None:
        self.rng = np.random.default_rng(0)

    def reset(self, mask: np.ndarray) -> None:
        pass

    def act(self, ts):
        return self.rng.integers(0, 5, size=ts.avail_actions.shape[:2])


def test_knn_routes_by_the_positions_a_pettingzoo_env_gives():
    """The training rollout's inboxes are each walker's 2 nearest by agent_positions(),
    which differ from index order; the spec says the env has 2-D positions."""
    env = make("pz:pz_walkers", n_envs=3)
    assert env.spec.has_positions and env.spec.pos_dim == 2
    topo = parse_topology("knn:2", env.spec.n_agents)
    seeds = iter(range(100))
    r = Rollout(env, RandomTeam(), lambda k: np.array([next(seeds) for _ in range(k)]), topology=topo)
    by_index = np.array([[j for j in range(4) if j != i][:2] for i in range(4)])
    differs = 0
    for _ in range(12):
        pos = r.ts.positions.copy()
        for b in range(3):  # what the env reports is what the wrapped env says
            given = env.envs[b].agent_positions()
            np.testing.assert_array_equal(pos[b], np.stack([given[a] for a in ("w0", "w1", "w2", "w3")]))
        active, t = r.active.copy(), r.ts.t.copy()
        r.step()
        for b in np.flatnonzero(active & (r.ts.t == t + 1)):  # a slot that restarted starts with an empty inbox
            assert r.inbox_mask[b].all()
            np.testing.assert_array_equal(r.inbox_idx[b], nearest(pos[b], 2))
            differs += not np.array_equal(r.inbox_idx[b], by_index)
    assert differs > 0
    env.close()


def test_positions_as_an_array_and_an_agent_that_leaves():
    """A walker that leaves is no longer named: it keeps its last position. An array
    [n, pos_dim] works as well as the mapping; malformed positions are one-line errors."""
    from marl_edge.envs.pettingzoo import from_pettingzoo

    import pz_walkers  # tests/ is on the path

    env = make("pz:pz_walkers", n_envs=1, leave_at=2)
    ts = env.reset([5])
    ts = env.step(np.zeros((1, 4), dtype=np.int64))
    before = ts.positions[0, 3].copy()
    ts = env.step(np.full((1, 4), 1))  # w3 moves and leaves: no longer named
    np.testing.assert_array_equal(ts.positions[0, 3], before)
    assert not ts.avail_actions[0, 3, 1:].any()

    class AsArray(pz_walkers.Walkers):
        def agent_positions(self):
            return self.pos.copy()

    arr = from_pettingzoo(AsArray, n_envs=1)
    assert arr.spec.has_positions and arr.spec.pos_dim == 2
    np.testing.assert_array_equal(arr.reset([5]).positions, make("pz:pz_walkers").reset([5]).positions)

    class Bad(pz_walkers.Walkers):
        def agent_positions(self):
            return {"w9": (0, 0)}

    with pytest.raises(EnvError, match="names 'w9', which is not one of possible_agents"):
        from_pettingzoo(Bad)

    class Flat(pz_walkers.Walkers):
        def agent_positions(self):
            return self.pos.reshape(-1)

    with pytest.raises(EnvError, match=r"must return an array \[4, pos_dim\] or a mapping"):
        from_pettingzoo(Flat)
