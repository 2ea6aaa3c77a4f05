"""The communication keys as a user sets them: every learner, recorded in the
run directory, measured message volume, lossy evaluation, exact resume, errors."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest

from marl_edge.train.registry import algo_names


def _last_json(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def _rows(run_dir: Path) -> list[dict[str, str]]:
    with open(run_dir / "metrics.csv", newline="") as f:
        return list(csv.DictReader(f))


COMM_SET = ["--set", "comm=attention", "--set", "topology=knn:2", "--set", "msg_dim=4", "--set", "top_k=1", "--set", "msg_dropout=0.2"]


@pytest.mark.parametrize("algo", algo_names())
def test_comm_keys_work_with_every_learner_and_are_recorded(algo, cli, tmp_path):
    out = tmp_path / algo
    p = cli("train", "--env", "scout", "--algo", algo, "--steps", "800", "--out", str(out), "--eval-episodes", "4", "--json", *COMM_SET, check=True)
    summary = _last_json(p.stdout)
    assert summary["comm"] == "attention" and summary["topology"] == "knn:2"
    cfg = json.loads((out / "config.json").read_text())
    a = cfg["algo"]
    assert (a["comm"], a["topology"], a["msg_dim"], a["top_k"], a["msg_dropout"]) == ("attention", "knn:2", 4, 1, 0.2)
    assert cfg["comm"]["topology"] == {"spec": "knn:2", "kind": "knn", "n_agents": 4, "k_max": 2}
    vol = cfg["comm"]["volume"]
    assert vol["messages_per_step"] == 4 * 2 and vol["floats_per_step"] == 4 * 2 * 4 and vol["broadcast_floats_per_step"] == 4 * 3 * 4
    rows = _rows(out)
    assert all(float(r["msgs_per_step"]) == 8 and float(r["msg_floats_per_step"]) == 32 for r in rows)
    # the checkpoint holds the message head; marl-eval re-runs the final evaluation exactly
    ev = json.loads((out / "eval.json").read_text())
    p2 = cli("evaluate", str(out), "--episodes", "4", "--json", check=True)
    assert _last_json(p2.stdout)["returns"] == ev["returns"]


def test_spread_16_knn3_measures_n_k_d_floats_per_step_against_broadcast(cli, tmp_path):
    """The acceptance numbers: knn:3 sends n*k*d floats per step, broadcast n*(n-1)*d."""
    n, k, d = 16, 3, 8
    got = {}
    for topo in ("knn:3", "broadcast"):
        out = tmp_path / topo.replace(":", "")
        p = cli("train", "--env", "spread", "--set", f"env.n_agents={n}", "--set", "comm=mean", "--set", f"topology={topo}",
                "--set", f"msg_dim={d}", "--steps", "1200", "--n-envs", "4", "--eval-episodes", "2", "--out", str(out), "--json", check=True)
        got[topo] = _last_json(p.stdout)
        assert "messages" in p.stdout or "messages" in p.stderr  # the human summary says it too
    assert got["knn:3"]["msg_floats_per_step"] == n * k * d == 384
    assert got["broadcast"]["msg_floats_per_step"] == n * (n - 1) * d == 1920
    assert got["knn:3"]["broadcast_floats_per_step"] == 1920


def test_eval_under_message_loss(cli, tmp_path):
    out = tmp_path / "r"
    cli("train", "--env", "scout", "--steps", "600", "--set", "comm=mean", "--out", str(out), "--eval-episodes", "2", "--quiet", check=True)
    heard = []
    for loss in ("0", "0.5", "1"):
        p = cli("evaluate", str(out), "--episodes", "16", "--msg-loss", loss, "--json", check=True)
        res = _last_json(p.stdout)
        assert res["msg_loss"] == float(loss)
        heard.append(res["msgs_heard_per_step"])
        assert "heard per step" in p.stderr
    assert heard[0] == pytest.approx(12 * 3 / 4) and heard[2] == 0 and 0 < heard[1] < heard[0]
    p = cli("evaluate", str(out), "--msg-loss", "2")
    assert p.returncode == 2 and "--msg-loss must be in [0, 1]" in p.stderr


@pytest.mark.parametrize(
    "args,message",
    [
        (["--set", "comm=shout"], "comm must be one of none, mean, knn, attention"),
        (["--set", "comm=mean", "--set", "topology=knn:1"], "knn:1 needs agent positions; env two_step has none"),
        (["--env", "scout", "--set", "comm=mean", "--set", "topology=knn:9"], "knn"),
        (["--env", "scout", "--set", "comm=mean", "--set", "topology=graph:/nonexistent.json"], "/nonexistent.json"),
        (["--env", "scout", "--set", "comm=mean", "--set", "msg_dropout=1"], "msg_dropout must be in [0, 1)"),
        (["--env", "scout", "--set", "comm=knn", "--set", "comm_reduce=max"], "comm_reduce must be mean or sum"),
    ],
)
def test_comm_user_errors_are_one_line(args, message, cli, tmp_path):
    p = cli("train", *args, "--out", str(tmp_path / "r"))
    assert p.returncode == 2
    lines = p.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and message in lines[0], p.stderr
    assert not (tmp_path / "r" / "config.json").exists()
