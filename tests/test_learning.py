"""Learning reaches known optima (slow: minutes; CI runs them).

The training runs start in the background, two at a time (``Runs``), so each test mostly
finds its run finished; the assertions are the tests'."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from marl_edge.envs import episode_seeds, make
from marl_edge.envs.rollout import evaluate

pytestmark = pytest.mark.slow


class RandomTeam:
    def __init__(self, seed: int = 0) -> None:
        self.rng = np.random.default_rng(seed)

    def reset(self, mask):
        pass

    def act(self, ts):
        r = self.rng.random(ts.avail_actions.shape)
        r[~ts.avail_actions] = -1.0
        return r.argmax(-1)


def random_return(env: str, episodes: int = 128, **opts) -> np.ndarray:
    e = make(env, n_envs=32, **opts)
    return np.array([ep.ret for ep in evaluate(e, RandomTeam(), episode_seeds(0, episodes))])


# Every training run of this module, by key: marl-train's arguments. The runs the selected tests
# need start in the background two at a time (torch uses one thread per run; the machine has 2
# cores), in the order of the tests, as soon as the first test of the module asks for one.
SCOUT_STEPS = ["--env", "scout", "--algo", "qmix", "--steps", "20000", "--eval-episodes", "400"]
UNIFORM = ["--set", "eps_start=1", "--set", "eps_finish=1", "--steps", "6000"]
RUN_ARGS: dict[str, list[str]] = {
    **{f"two_step_qmix_s{s}": ["--env", "two_step", "--algo", "qmix", "--seed", str(s)] for s in (0,)},
    "two_step_vdn_uniform": ["--env", "two_step", "--algo", "vdn", *UNIFORM],
    "two_step_qmix_uniform": ["--env", "two_step", "--algo", "qmix", *UNIFORM],
    # 60k of the registry's 100k steps: greedy success is 100 % from 39k on at this budget (seed 0)
    "rendezvous_qmix": ["--env", "rendezvous", "--algo", "qmix", "--seed", "0", "--steps", "60000", "--eval-episodes", "100"],
    "spread_qmix": ["--env", "spread", "--algo", "qmix", "--seed", "0", "--steps", "80000", "--eval-episodes", "64"],
    **{f"matrix_{e}": ["--env", e, "--algo", "qmix", "--seed", "0", "--eval-episodes", "8"] for e in ("climbing", "penalty")},
    **{f"scout_{c}": [*SCOUT_STEPS, "--set", f"comm={c}", *(["--set", "comm_k=2"] if c == "knn" else [])]
       for c in ("none", "mean", "knn", "attention")},
    # 30k of the registry's 100k steps: greedy success is 100 % from 6k on at this budget (seed 0)
    "mappo_rendezvous": ["--env", "rendezvous", "--algo", "mappo", "--seed", "0", "--steps", "30000", "--eval-episodes", "64"],
    "ippo_scout": ["--env", "scout", "--algo", "ippo", "--set", "comm=mean", "--eval-episodes", "200"],
    "coma_two_step": ["--env", "two_step", "--algo", "coma", "--seed", "1", "--eval-episodes", "8"],
}


def _keys_of(item: pytest.Item) -> list[str]:
    """The runs one collected test of this module reads."""
    name, params = item.originalname, getattr(getattr(item, "callspec", None), "params", {})
    return {
        "test_two_step_qmix_defaults_reach_8": lambda: [f"two_step_qmix_s{params.get('seed')}"],
        "test_two_step_vdn_cannot_represent_the_8_branch": lambda: ["two_step_vdn_uniform", "two_step_qmix_uniform"],
        "test_rendezvous_qmix_succeeds_90_percent": lambda: ["rendezvous_qmix"],
        "test_spread_qmix_beats_random": lambda: ["spread_qmix"],
        "test_matrix_presets_qmix_reaches_its_known_equilibrium": lambda: [f"matrix_{params.get('env')}"],
        "test_scout_talking_beats_the_silent_ceiling": lambda: [f"scout_{params.get('comm')}"],
        "test_mappo_rendezvous_succeeds": lambda: ["mappo_rendezvous"],
        "test_ippo_scout_learns_to_talk": lambda: ["ippo_scout"],
        "test_coma_two_step": lambda: ["coma_two_step"],
    }.get(name, lambda: [])()


class Runs:
    """Starts the needed runs two at a time; ``get(key)`` waits for one and returns its JSON
    summary. Every process is reaped in ``close``, even when a test fails or is interrupted."""

    def __init__(self, root: Path, keys: list[str], jobs: int = 2) -> None:
        self.root, self.pending, self.jobs = root, list(dict.fromkeys(keys)), jobs
        self.running: dict[str, subprocess.Popen] = {}
        self.done: dict[str, subprocess.Popen] = {}

    def _start(self, key: str) -> None:
        self.pending.remove(key)
        d = self.root / key
        d.mkdir()
        # eval_every=0: these checks read the final evaluation; evaluating during training (20 times
        # --eval-episodes by default) would add minutes to the suite
        args = [sys.executable, "-m", "marl_edge.cli.train", *RUN_ARGS[key], "--set", "eval_every=0", "--out", str(d / "run"), "--json", "--quiet"]
        with open(d / "stdout", "w") as out, open(d / "stderr", "w") as err:
            self.running[key] = subprocess.Popen(args, stdout=out, stderr=err, env={**os.environ, "PYTHONUNBUFFERED": "1"})

    def get(self, key: str, timeout: float = 1800) -> dict:
        if key not in self.done and key not in self.running and key not in self.pending:
            self.pending.append(key)
        deadline = time.monotonic() + timeout
        while key not in self.done:
            for k, p in list(self.running.items()):
                if p.poll() is not None:
                    self.done[k] = self.running.pop(k)
            while len(self.running) < self.jobs and self.pending:
                self._start(key if key in self.pending else self.pending[0])
            if key in self.done:
                break
            assert time.monotonic() < deadline, f"{key}: still training after {timeout:.0f} s"
            time.sleep(0.2)
        d = self.root / key
        rc = self.done[key].returncode
        assert rc == 0, f"marl-train {' '.join(RUN_ARGS[key])} failed ({rc}):\n{(d / 'stderr').read_text()[-3000:]}"
        return json.loads((d / "stdout").read_text().strip().splitlines()[-1])

    def close(self) -> None:
        for p in self.running.values():
            p.kill()
            p.wait()


@pytest.fixture(scope="module")
def runs(request, tmp_path_factory):
    keys = [k for item in request.session.items if item.module is request.module for k in _keys_of(item)]
    r = Runs(tmp_path_factory.mktemp("learning"), keys)
    try:
        yield r
    finally:
        r.close()


@pytest.mark.parametrize("seed", [0])  # one seed per claim here; seeds 1 and 2 also reach 8 (benchmarks/learning.py)
def test_two_step_qmix_defaults_reach_8(seed, runs):
    """`marl-train --env two_step --algo qmix --seed S`, no other flags."""
    s = runs.get(f"two_step_qmix_s{seed}")
    assert s["eval_return"] == pytest.approx(8.0), s
    assert set(s["eval_returns"]) == {8.0}


def test_two_step_vdn_cannot_represent_the_8_branch(runs):
    """Under uniform exploration (the QMIX paper's analysis), VDN's additive
    Q_tot rates 2B below 2A and settles at 7, while QMIX reaches 8 on the same data."""
    vdn, qmix = runs.get("two_step_vdn_uniform"), runs.get("two_step_qmix_uniform")
    assert vdn["eval_return"] == pytest.approx(7.0), vdn
    assert qmix["eval_return"] == pytest.approx(8.0), qmix


def test_rendezvous_qmix_succeeds_90_percent(runs):
    s = runs.get("rendezvous_qmix")
    success = np.mean(np.array(s["eval_returns"]) >= 10.0)
    rand = np.mean(random_return("rendezvous") >= 10.0)
    print(f"rendezvous QMIX success {success:.2f} vs random {rand:.2f}")
    assert success >= 0.9, s["eval_returns"]
    assert rand < 0.3  # the task is not solved by wandering


def test_spread_qmix_beats_random(runs):
    s = runs.get("spread_qmix")
    rand = random_return("spread", 128)
    print(f"spread QMIX {s['eval_return']:.2f} vs random {rand.mean():.2f} ± {rand.std():.2f}")
    # above random by 3 standard errors of its mean and by at least 10 % of it
    # (measured: about -42 after 80k steps, -39 after 200k; random -49; a hand-coded
    # "agent i to landmark i" policy -21)
    margin = max(3 * rand.std() / np.sqrt(len(rand)), 0.1 * abs(rand.mean()))
    assert s["eval_return"] > rand.mean() + margin, (s["eval_return"], rand.mean())


@pytest.mark.parametrize("env,value", [("climbing", 7.0), ("penalty", 2.0)])
def test_matrix_presets_qmix_reaches_its_known_equilibrium(env, value, runs):
    """QMIX's monotonic mixing cannot represent these non-monotonic payoffs:
    it reliably settles on the safe joint action (climbing 7 of 11, penalty 2
    of 10 with k = 100), never on a miscoordination penalty."""
    s = runs.get(f"matrix_{env}")
    assert s["eval_return"] == pytest.approx(value), s


# ---- communication: scout (one agent sees the target) ----------------------------------
SCOUT_SILENT, SCOUT_TALKING = 1.75, 3.4375  # envs/scout.py: best silent team, best talking team


@pytest.mark.parametrize("comm", ["none", "mean", "knn", "attention"])
def test_scout_talking_beats_the_silent_ceiling(comm, runs):
    """20k steps of QMIX: every aggregator clears the silent ceiling by a wide
    margin (measured over 3 seeds: mean and attention 3.43 of 3.44; knn with
    comm_k=2 3.09, since the scout is outside a receiver's 2 nearest one time
    in three and must be relayed); without messages the team stays at or
    under the silent ceiling, which no silent policy can beat."""
    s = runs.get(f"scout_{comm}")  # knn: comm_k=2, the 2 nearest of 3 (with 3, knn is the mean)
    print(f"scout qmix comm={comm}: {s['eval_return']:.3f}")
    if comm == "none":
        assert s["eval_return"] <= SCOUT_SILENT + 0.2, s["eval_return"]  # 0.2 = 3.6 standard errors
    else:
        assert s["eval_return"] >= (2.9 if comm == "knn" else 3.2), s["eval_return"]


# ---- actor-critic -------------------------------------------------------------------------------


def test_mappo_rendezvous_succeeds(runs):
    """MAPPO on rendezvous, 30k steps: measured 100 % greedy success, seed 0 (from 6k steps on; 10k at seed 1)."""
    s = runs.get("mappo_rendezvous")
    success = np.mean(np.array(s["eval_returns"]) >= 10.0)
    print(f"rendezvous MAPPO success {success:.2f}")
    assert success >= 0.9, s["eval_returns"]


def test_ippo_scout_learns_to_talk(runs):
    """IPPO (local critics) with mean messages: measured 3.41 of 3.44 after 40k steps (silent ceiling 1.75)."""
    s = runs.get("ippo_scout")
    print(f"scout IPPO + mean: {s['eval_return']:.3f}")
    assert s["eval_return"] >= 3.2, s["eval_return"]


def test_coma_two_step(runs):
    """COMA on the two-step game (10k steps): measured 7, 8, 8 over seeds 0, 1, 2 (QMIX: 8, 8, 8)."""
    s = runs.get("coma_two_step")
    assert s["eval_return"] == pytest.approx(8.0), s
