"""The field's own benchmark, learned from the tuned configs in configs/ (slow: minutes; CI runs them).

Level-Based Foraging, 5x5, 2 players, 1 food, cooperative (both must load together): the
best team return is 1.0 on the field's sum scale; random play scores about 0.02. One seed
of each claim (the multi-seed study beside EPyMARL is benchmarks/peer.py). The three runs
start together, one process each, at the first test that needs them.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

pytest.importorskip("lbforaging")

pytestmark = pytest.mark.slow

CONFIGS = Path(__file__).resolve().parent.parent / "configs" / "lbforaging"
TASK = "Foraging-5x5-2p-1f-coop-v3"
RUNS = [("vdn", 0), ("qmix", 0), ("mappo", 0)]


@pytest.fixture(scope="module")
def lbf_runs(tmp_path_factory):
    """{(algo, seed): marl-train's JSON summary}, trained in parallel processes; every
    process is reaped, even when one fails or the test is interrupted."""
    root = tmp_path_factory.mktemp("lbf")
    procs = {}
    try:
        for algo, seed in RUNS:
            args = [sys.executable, "-m", "marl_edge.cli.train", "--config", str(CONFIGS / TASK / f"{algo}.yaml"),
                    "--seed", str(seed), "--set", "eval_every=0",  # the checks read the final evaluation only
                    "--out", str(root / f"{algo}_s{seed}"), "--json", "--quiet"]
            procs[algo, seed] = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                                 env={**os.environ, "PYTHONUNBUFFERED": "1"})
        out = {}
        for key, p in procs.items():
            stdout, stderr = p.communicate(timeout=2400)
            assert p.returncode == 0, f"{key}: {stderr[-3000:]}"
            out[key] = json.loads(stdout.strip().splitlines()[-1])
        yield out
    finally:
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


@pytest.mark.parametrize("algo", ["vdn", "qmix"])
def test_value_decomposition_learns_lbf(algo, lbf_runs):
    """VDN and QMIX from their tuned configs reach a greedy team return >= 0.8 (sum scale), seed 0
    (seed 1 also did when this test ran two seeds; the peer study beside EPyMARL is in benchmarks/README.md)."""
    ret = lbf_runs[algo, 0]["eval_return"]
    assert ret >= 0.8, ret


def test_mappo_greedy_tracks_sampled_on_lbf(lbf_runs, cli):
    """MAPPO from its tuned config: the greedy policy (what a bundle deploys) scores what the
    sampled training actor scores at the end of training, and both solve the task."""
    run = lbf_runs["mappo", 0]["run_dir"]
    greedy = json.loads(cli("evaluate", run, "--episodes", "64", "--json", check=True).stdout.splitlines()[-1])
    sampled = json.loads(cli("evaluate", run, "--episodes", "64", "--sample", "--json", check=True).stdout.splitlines()[-1])
    g, s = greedy["mean_return"], sampled["mean_return"]
    assert g >= 0.8 and s >= 0.8 and abs(g - s) <= 0.15, (g, s)
