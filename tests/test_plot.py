"""marl-plot: statistics over seeds with a known answer, curves and tables of
synthetic run directories, and the swarm picture of a hand-written metrics file.

No training here: the run directories hold exactly the files marl-train
writes (config.json, metrics.csv, eval.csv, eval.json) with values chosen so
that every aggregate is known in advance.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("matplotlib")

from PIL import Image  # noqa: E402

from marl_edge.viz import curves as C  # noqa: E402
from marl_edge.viz.stats import bootstrap, iqm  # noqa: E402

FIVE = np.array([1.0, 2.0, 3.0, 4.0, 100.0])  # one lucky seed


def test_mean_and_iqm_of_known_values():
    assert bootstrap(FIVE, "mean", n_boot=10).value == pytest.approx(22.0)
    # IQM of 5 values drops floor(5/4) = 1 from each end: mean of 2, 3, 4
    assert bootstrap(FIVE, "iqm", n_boot=10).value == pytest.approx(3.0)
    assert iqm(np.array([5.0, 1.0, 9.0, 3.0, 7.0, 11.0, 2.0, 8.0])) == pytest.approx(np.mean([3.0, 5.0, 7.0, 8.0]))


def _brute_force(values: np.ndarray, strata: list[str], stat, n_boot: int, seed: int) -> tuple[float, float]:
    """The documented resampling, one bootstrap sample at a time."""
    rng = np.random.default_rng(seed)
    draws = {}
    for s in dict.fromkeys(strata):
        members = [i for i, x in enumerate(strata) if x == s]
        draws[s] = (members, rng.integers(0, len(members), size=(n_boot, len(members))))
    samples = []
    for b in range(n_boot):
        picked = [values[members[j]] for members, idx in draws.values() for j in idx[b]]
        samples.append(stat(sorted(picked)))
    return float(np.percentile(samples, 2.5)), float(np.percentile(samples, 97.5))


def _py_mean(xs):
    return sum(xs) / len(xs)


def _py_iqm(sorted_xs):
    k = len(sorted_xs) // 4
    mid = sorted_xs[k : len(sorted_xs) - k]
    return sum(mid) / len(mid)


@pytest.mark.parametrize("stat,fn", [("mean", _py_mean), ("iqm", _py_iqm)])
def test_bootstrap_ci_equals_a_brute_force_resample(stat, fn):
    e = bootstrap(FIVE, stat, n_boot=999, seed=7)
    assert (float(e.low), float(e.high)) == pytest.approx(_brute_force(FIVE, ["a"] * 5, fn, 999, 7), abs=1e-12)
    # stratified: two envs of 3 and 2 seeds are resampled separately
    vals = np.array([1.0, 2.0, 3.0, 10.0, 20.0])
    strata = ["spread", "spread", "spread", "scout", "scout"]
    e = bootstrap(vals, stat, strata, n_boot=999, seed=7)
    assert (float(e.low), float(e.high)) == pytest.approx(_brute_force(vals, strata, fn, 999, 7), abs=1e-12)


def test_bootstrap_ci_contains_the_centre_and_excludes_the_outside():
    vals = np.array([4.0, 4.5, 5.0, 5.5, 6.0])
    e = bootstrap(vals, "mean", n_boot=4000, seed=0)
    assert e.low < 5.0 < e.high
    assert 4.0 < e.low and e.high < 6.0  # a resampled mean never leaves [min, max], and all-min is rare
    # one lucky seed in 20 widens the mean's interval far more than the IQM's, which cuts it off
    lucky = np.append(np.arange(1.0, 20.0), 1000.0)
    m, q = bootstrap(lucky, "mean", n_boot=4000, seed=0), bootstrap(lucky, "iqm", n_boot=4000, seed=0)
    assert m.high - m.low > 20 * (q.high - q.low)
    assert 5.0 < q.low < 10.5 < q.high < 16.0
    # one stratum with a single run: every resample is that run
    e = bootstrap(np.array([3.0, 7.0]), "mean", ["a", "b"], n_boot=100, seed=0)
    assert float(e.low) == float(e.high) == 5.0
    # and a fixed seed gives the same interval twice
    a, b = bootstrap(FIVE, "iqm", n_boot=300, seed=5), bootstrap(FIVE, "iqm", n_boot=300, seed=5)
    assert (a.low, a.high) == (b.low, b.high)


# ---- synthetic run directories --------------------------------------------------------------


def _run(root: Path, name: str, algo: str, seed: int, offset: float, steps: list[int], final: float | None,
         eval_csv: bool = True, lr: float = 5e-4) -> Path:
    """A run whose curve is ``offset + steps / 1000`` (eval.csv) and ``offset - 1`` (metrics.csv)."""
    d = root / name
    d.mkdir(parents=True)
    config = {"run": {"env": "spread", "algo": algo, "seed": seed, "steps": steps[-1], "n_envs": 8, "env_options": {}},
              "algo": {"lr": lr, "hidden_dim": 64}, "env_spec": {}, "total_steps": steps[-1], "comm": None}
    (d / "config.json").write_text(json.dumps(config))
    with open(d / "metrics.csv", "w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["env_steps", "episodes", "return_mean", "wall_s"])
        w.writerow([steps[0] // 2, 1, "", 0.1])  # an interval in which no episode ended
        for s in steps:
            w.writerow([s, s // 25, offset - 1 + s / 1000, 0.5])
    if eval_csv:
        with open(d / "eval.csv", "w", newline="") as f:
            w = csv.writer(f)
            w.writerow(["env_steps", "episodes", "return_mean", "return_std", "return_min", "return_max", "wall_s"])
            for s in steps:
                w.writerow([s, 32, offset + s / 1000, 0.1, 0, 1, 1.0])
    if final is not None:
        (d / "eval.json").write_text(json.dumps({"mean_return": final, "returns": [final]}))
    return d


@pytest.fixture
def sweep(tmp_path) -> Path:
    """qmix: 5 seeds with offsets 0, 1, 2, 3, 10 (mean 3.2, IQM 2) sampled at different steps;
    vdn: 3 seeds with offsets 5, 6, 7 (mean = IQM = 6)."""
    root = tmp_path / "sweep"
    grids = [[0, 1000, 2000, 3000, 4000], [0, 500, 1500, 2500, 4000], [0, 4000], [0, 2000, 4000], [0, 100, 4000]]
    for s, (off, grid) in enumerate(zip([0.0, 1.0, 2.0, 3.0, 10.0], grids)):
        _run(root, f"qmix_s{s}", "qmix", s, off, grid, final=off)
    for s, off in enumerate([5.0, 6.0, 7.0]):
        _run(root / "more", f"vdn_s{s}", "vdn", s, off, [0, 2000, 4000], final=off)
    return root


def test_curves_are_interpolated_and_aggregated(sweep):
    runs = [C.load_run(p) for p in C.find_runs([sweep])]
    assert len(runs) == 8
    assert C.choose_source(runs, "auto") == "eval"
    groups = C.group_runs(runs, "algo")
    assert [(g.label, len(g.runs)) for g in groups] == [("qmix", 5), ("vdn", 3)]
    q = C.aggregate_curve(groups[0], "eval", "mean", 200, 0, points=5)
    np.testing.assert_allclose(q.steps, [0, 1000, 2000, 3000, 4000])
    # linear curves stay linear under interpolation: mean offset 3.2 plus the step term
    np.testing.assert_allclose(q.estimate.value, 3.2 + q.steps / 1000, atol=1e-12)
    qi = C.aggregate_curve(groups[0], "eval", "iqm", 200, 0, points=5)
    np.testing.assert_allclose(qi.estimate.value, 2.0 + q.steps / 1000, atol=1e-12)
    assert np.all(q.estimate.low <= q.estimate.value) and np.all(q.estimate.value <= q.estimate.high)
    # the band is that of whole curves: the same offsets at every point, so its width is constant
    np.testing.assert_allclose(np.diff(q.estimate.high - q.estimate.low), 0.0, atol=1e-9)
    # metrics.csv: the training return, rows without a return skipped
    t = C.aggregate_curve(groups[1], "train", "mean", 200, 0, points=3)
    np.testing.assert_allclose(t.estimate.value, 5.0 + t.steps / 1000, atol=1e-12)


def test_group_by_config_names_what_differs(tmp_path):
    for s in range(2):
        _run(tmp_path, f"a{s}", "qmix", s, 0.0, [0, 100], final=1.0, lr=1e-3)
        _run(tmp_path, f"b{s}", "qmix", s, 0.0, [0, 100], final=2.0, lr=1e-4)
    groups = C.group_runs([C.load_run(p) for p in C.find_runs([tmp_path])], "config")
    assert [g.label for g in groups] == ["qmix spread lr=0.0001", "qmix spread lr=0.001"]
    assert [len(g.runs) for g in groups] == [2, 2]


def test_marl_plot_writes_the_figure_and_the_final_table(sweep, tmp_path, cli):
    out = tmp_path / "curves.png"
    p = cli("plot", str(sweep), "--out", str(out), "--group-by", "algo", "--stat", "iqm", "--n-boot", "500", "--json", check=True)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["source"] == "eval" and res["runs"] == 8
    assert "greedy evaluation" in p.stderr
    with Image.open(out) as im:
        assert im.format == "PNG" and im.size == (800, 500)
    # final table: IQM of eval.json's mean_return, CI as the library computes it
    want = {"qmix": bootstrap(np.array([0.0, 1.0, 2.0, 3.0, 10.0]), "iqm", n_boot=500, seed=0),
            "vdn": bootstrap(np.array([5.0, 6.0, 7.0]), "iqm", n_boot=500, seed=0)}
    rows = list(csv.DictReader(open(out.with_suffix(".csv"))))
    assert [r["group"] for r in rows] == ["qmix", "vdn"]
    for r in rows:
        e = want[r["group"]]
        assert (float(r["value"]), float(r["ci_low"]), float(r["ci_high"])) == (float(e.value), float(e.low), float(e.high))
        assert r["stat"] == "iqm" and r["runs"] in ("5", "3")
    assert float(rows[0]["value"]) == 2.0
    md = out.with_suffix(".md").read_text()
    assert "| qmix | 5 | 2 |" in md and "| vdn | 3 | 6 |" in md


def test_marl_plot_falls_back_to_training_returns(sweep, tmp_path, cli):
    _run(sweep, "qmix_old", "qmix", 9, 0.0, [0, 4000], final=None, eval_csv=False)  # an older run: no eval.csv, no eval.json
    out = tmp_path / "c.png"
    p = cli("plot", "curves", str(sweep), "--out", str(out), "--group-by", "algo", "--n-boot", "50", "--json", check=True)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res["source"] == "train" and "training return (metrics.csv" in p.stderr
    assert res["groups"][0]["runs"] == 5  # the run without eval.json is left out of the table, and said so
    assert "5 (1 without eval.json)" in out.with_suffix(".md").read_text()
    bad = cli("plot", str(sweep), "--out", str(out), "--source", "eval")
    assert bad.returncode == 2 and bad.stderr.startswith("error: 1 run(s) have no eval.csv")
    assert len(bad.stderr.strip().splitlines()) == 1
    nothing = cli("plot", str(tmp_path / "nope"), "--out", str(out))
    assert nothing.returncode == 2 and "is not a directory" in nothing.stderr


# ---- swarm metrics ---------------------------------------------------------------------------


def _session(agent: int, steps: int, act: float) -> dict:
    lat = {"p50": act, "p99": 3 * act, "n": steps, "mean": 1.2 * act}
    return {"agent": agent, "steps": steps, "stopped": "done", "rejoins": 0, "act_us": lat, "step_us": {k: 4 * v for k, v in lat.items()},
            "wait_us": lat, "messages": {"sent": 2 * steps, "sent_bytes": 182 * steps, "received": 2 * steps, "received_bytes": 0,
                                         "dropped": steps // 4, "stale": 1, "invalid": 0, "invalid_reasons": {}}}


def test_marl_plot_swarm(tmp_path, cli):
    f = tmp_path / "m.jsonl"
    summary = {"swarm": "b123", "agents": 3, "transport": "ipc", "mode": "lockstep", "episodes": 4, "returns": [1.0, 2.0, None, 3.0],
               "steps": 40, "step_ms_p50": 1.0, "step_ms_p99": None, "msgs_per_step": 6.0,
               "absences": [{"agent": 1, "step": 8, "why": "killed"}, {"agent": 2, "step": 30, "why": "silent"}],
               "rejoins": [{"agent": 1, "step": 20, "why": "killed", "absent_s": 1.0}]}
    lines = [_session(0, 40, 100.0), _session(1, 20, 150.0), _session(2, 30, 120.0), {"summary": summary}]
    f.write_text("\n".join(json.dumps(x) for x in lines) + "\n")
    out = tmp_path / "swarm.png"
    p = cli("plot", "swarm", str(f), "--out", str(out), "--json", check=True)
    res = json.loads(p.stdout.strip().splitlines()[-1])
    assert res == {"out": str(out), "sessions": 3, "episodes": 4, "absences": 2}
    with Image.open(out) as im:
        assert im.size == (1200, 850)
    f.write_text(json.dumps(_session(0, 4, 1.0)) + "\n")
    bad = cli("plot", "swarm", str(f), "--out", str(out))
    assert bad.returncode == 2 and "no summary line" in bad.stderr and len(bad.stderr.strip().splitlines()) == 1


# ---- what the room loads ------------------------------------------------------------------------


def _python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)


def test_viz_imports_neither_torch_nor_matplotlib_until_it_draws():
    code = ("import json, sys\nimport marl_edge.viz.stats, marl_edge.viz.curves, marl_edge.viz.episode, marl_edge.viz.render, "
            "marl_edge.viz.swarm, marl_edge.cli.plot\nprint(json.dumps(sorted({m.split('.')[0] for m in sys.modules})))\n")
    p = _python(code)
    assert p.returncode == 0, p.stderr[-2000:]
    loaded = set(json.loads(p.stdout.strip().splitlines()[-1]))
    assert not loaded & {"torch", "onnx", "matplotlib", "PIL"}


def test_without_matplotlib_the_commands_say_how_to_install_it(tmp_path):
    """An install without the plot extra: one line, exit 2, before anything is evaluated."""
    code = ("import sys\nsys.modules['matplotlib'] = None  # as if it were not installed\n"
            "from marl_edge.cli import plot\nsys.argv = ['marl-plot', 'swarm', sys.argv[1], '--out', sys.argv[2]]\nplot.main()\n")
    (tmp_path / "m.jsonl").write_text(json.dumps({"summary": {}}) + "\n")
    p = subprocess.run([sys.executable, "-c", code, str(tmp_path / "m.jsonl"), str(tmp_path / "x.png")], capture_output=True, text=True, timeout=120)
    assert p.returncode == 2 and p.stderr.strip() == "error: pictures need matplotlib: pip install 'marl-edge[plot]'"
