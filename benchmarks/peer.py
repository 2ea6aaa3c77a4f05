"""marl-edge beside EPyMARL on the same LBF / RWARE tasks: returns, env steps and wall-clock.

For every task × algorithm × seed the script trains one marl-edge run (the
``marl-train`` CLI) and one EPyMARL run (its ``src/main.py`` with its own
algorithm configs, in its own venv: ``benchmarks/peer_setup.sh``), one run at
a time (``--jobs 2`` runs two at once), and prints a Markdown table:

- the final greedy return (mean ± std over seeds), on EPyMARL's scale: the
  SUM of the agents' rewards (EPyMARL's default ``common_reward=True``,
  ``reward_scalarisation=sum``);
- env steps and wall-clock to the first greedy evaluation at or above the
  task's threshold, and env steps to the first training-return row at or
  above it;
- training seconds, env steps per second, process seconds, and the ratio of
  the wall-clocks (EPyMARL ÷ marl-edge: above 1, marl-edge is faster).

How each side's numbers are read:

- EPyMARL logs its greedy test return every ``test_interval`` env steps
  (``test_nepisode`` episodes, ``test_greedy=True``) into its sacred
  ``metrics.json`` (``test_return_mean`` with env steps ``t_env`` and a
  timestamp), next to the training return ``return_mean``. Its tests run
  inside the training loop, so their time is subtracted: a test block lasts
  from the training-stats row logged at the same ``t_env`` to the test row.
- marl-edge has no periodic greedy evaluation during training. It saves a
  checkpoint every ``steps / test-points`` env steps; after training, each
  checkpoint is evaluated greedily (the same number of episodes as
  EPyMARL's tests, ``marl_edge.train.evaluation.evaluate_run``, what
  ``marl-eval RUN --checkpoint STEP`` runs, in one process). The wall-clock at
  a checkpoint is read off ``metrics.csv`` (``wall_s`` by ``env_steps``). The
  final greedy return is the run's own ``eval.json`` (the final checkpoint).
  The training return is ``metrics.csv``'s ``return_mean``.
- Scale: marl-edge reports the team return as the MEAN over agents
  (``TimeStep.team_reward``) unless its run config says
  ``reward_scalarisation=sum``. The script reads ``reward_scalarisation``
  from the run's ``config.json`` (anywhere in it): ``sum`` is used as it is,
  ``mean`` or no such key is multiplied by the number of agents. EPyMARL's
  side is read the same way from its sacred ``config.json``.

Examples::

    bash benchmarks/peer_setup.sh ~/peer
    .venv/bin/python benchmarks/peer.py --epymarl ~/peer/epymarl --epymarl-python ~/peer/venv/bin/python --dry-run
    .venv/bin/python benchmarks/peer.py --epymarl ~/peer/epymarl --epymarl-python ~/peer/venv/bin/python \\
        --tasks Foraging-5x5-2p-1f-coop-v3 --algos vdn --seeds 0 --steps 20000 --json smoke.json
    .venv/bin/python benchmarks/peer.py --epymarl ~/peer/epymarl --epymarl-python ~/peer/venv/bin/python \\
        --steps 500000 --json peer.json            # the full default study: hours

The script itself needs only the standard library; marl-edge runs with
``--me-python`` (default: the repository's ``.venv``), EPyMARL with
``--epymarl-python``.
"""

from __future__ import annotations

import argparse
import concurrent.futures as cf
import csv
import datetime as dt
import json
import os
import platform
import re
import shlex
import statistics
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
FRAMEWORKS = ("marl-edge", "epymarl")

# task -> the greedy-return threshold (SUM over agents) and EPyMARL's time_limit (its README's values;
# marl-edge is given the same limit as env.episode_limit). LBF: the rewards of one episode sum to 1.0
# when every food item is eaten. RWARE: +1 per delivered shelf per agent.
DEFAULT_TASKS: dict[str, dict[str, Any]] = {
    "lbforaging:Foraging-5x5-2p-1f-coop-v3": {"threshold": 0.9, "time_limit": 50},
    "lbforaging:Foraging-8x8-2p-2f-coop-v3": {"threshold": 0.8, "time_limit": 50},
    "lbforaging:Foraging-2s-8x8-2p-2f-coop-v3": {"threshold": 0.8, "time_limit": 50},
    "rware:rware-tiny-2ag-v2": {"threshold": 5.0, "time_limit": 500},
}
DEFAULT_ALGOS = ("qmix", "vdn", "mappo")

# Runs in the marl-edge venv: greedy evaluation of every checkpoint of a run directory, one JSON line each.
CHECKPOINT_EVAL = r"""
import json, sys
from pathlib import Path
from marl_edge.train import checkpoint as ckpt
from marl_edge.train.evaluation import evaluate_run
run, episodes, seed = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
for step, _ in ckpt.list_checkpoints(run / "checkpoints"):
    r = evaluate_run(run, episodes, seed, step)
    print(json.dumps({"step": step, "mean_return": r["mean_return"]}), flush=True)
"""


# ---- tasks and settings ------------------------------------------------------------------------------
def task_key(name: str) -> str:
    """``Foraging-...`` / ``rware-...`` / ``module:EnvId`` -> EPyMARL's ``env_args.key`` (``module:EnvId``)."""
    if ":" in name:
        return name
    if name.startswith("Foraging"):
        return f"lbforaging:{name}"
    if name.startswith("rware"):
        return f"rware:{name}"
    raise SystemExit(f"error: task {name!r}: give it as MODULE:ENV_ID (e.g. lbforaging:Foraging-8x8-2p-2f-coop-v3)")


def short(key: str) -> str:
    return key.split(":", 1)[1]


def n_agents_of(key: str) -> int | None:
    m = re.search(r"-(\d+)p-", key) or re.search(r"-(\d+)ag-", key)
    return int(m.group(1)) if m else None


def default_time_limit(key: str) -> int | None:
    if key.startswith("lbforaging:"):
        return 50
    if key.startswith("rware:"):
        return 500
    return None


def parse_kv(items: list[str], what: str) -> dict[str, str]:
    out = {}
    for it in items:
        if "=" not in it:
            raise SystemExit(f"error: {what} {it!r}: expected KEY=VALUE")
        k, v = it.split("=", 1)
        out[k.strip()] = v.strip()
    return out


def scoped_sets(items: list[str], what: str) -> dict[str, dict[str, str]]:
    """``KEY=VALUE`` (every algorithm) and ``ALGO:KEY=VALUE`` -> {algo or '*': {key: value}}."""
    out: dict[str, dict[str, str]] = {}
    for k, v in parse_kv(items, what).items():
        algo, _, key = k.rpartition(":")
        out.setdefault(algo or "*", {})[key] = v
    return out


def config_sets(cfg: dict[str, Any], key: str, algo: str) -> dict[str, Any]:
    """Settings of a tuned-config file {TASK|'*': {ALGO|'*': {KEY: VALUE}}}, most specific last."""
    out: dict[str, Any] = {}
    for t in ("*", short(key), key):
        for a in ("*", algo):
            out.update(cfg.get(t, {}).get(a, {}))
    return out


def fmt_me(v: Any) -> str:
    return ("true" if v else "false") if isinstance(v, bool) else str(v)


def fmt_epy(v: Any) -> str:
    return repr(v) if isinstance(v, bool) else str(v)


def scale_from_config(cfg: Any, n_agents: int) -> tuple[float, str]:
    """(factor to the SUM-over-agents scale, the reward_scalarisation found or 'absent')."""
    found: list[str] = []

    def walk(x: Any) -> None:
        if isinstance(x, dict):
            for k, v in x.items():
                if k == "reward_scalarisation" and isinstance(v, str):
                    found.append(v)
                walk(v)
        elif isinstance(x, list):
            for v in x:
                walk(v)

    walk(cfg)
    how = found[0] if found else "absent"
    return (1.0 if how == "sum" else float(n_agents)), how


# ---- one run -----------------------------------------------------------------------------------------
@dataclass
class Job:
    framework: str
    key: str
    algo: str
    seed: int
    steps: int
    interval: int
    test_episodes: int
    time_limit: int
    threshold: float | None
    sets: dict[str, Any]
    out: Path
    cmd: list[str] = field(default_factory=list)
    cwd: Path | None = None
    result: dict[str, Any] = field(default_factory=dict)

    @property
    def label(self) -> str:
        return f"{short(self.key)}_{self.algo}_s{self.seed}"


def marl_train_cmd(me_python: str) -> list[str]:
    exe = Path(me_python).parent / "marl-train"
    return [str(exe)] if exe.exists() else [me_python, "-m", "marl_edge.cli.train"]


def me_job(args: argparse.Namespace, job: Job) -> Job:
    run = job.out / "marl-edge" / job.label
    sets = dict(job.sets)
    n_envs = sets.pop("n_envs", None)
    fixed = {
        "checkpoint_every": job.interval,
        "log_every": job.interval,
        "keep_checkpoints": args.test_points + 5,
        "save_buffer": False,
        "env.episode_limit": job.time_limit,
    }
    cmd = [*marl_train_cmd(args.me_python), "--algo", job.algo, "--env", f"gym:{job.key}", "--steps", str(job.steps),
           "--seed", str(job.seed), "--out", str(run), "--quiet", "--json", "--eval-episodes", str(job.test_episodes)]
    if n_envs is not None:
        cmd += ["--n-envs", str(n_envs)]
    tuned = ROOT / "configs" / job.key.split(":")[0] / job.key.split(":")[-1] / f"{job.algo}.yaml"
    if tuned.exists() and not args.no_tuned:  # the repository's tuned config; the flags above and --set win
        cmd += ["--config", str(tuned)]
    for k, v in {**fixed, **sets}.items():
        cmd += ["--set", f"{k}={fmt_me(v)}"]
    job.cmd, job.result["run_dir"] = cmd, str(run)
    return job


def epy_job(args: argparse.Namespace, job: Job) -> Job:
    sets = {
        "env_args.time_limit": job.time_limit,
        "env_args.key": job.key,
        "seed": job.seed,
        "t_max": job.steps,
        "test_interval": job.interval,
        "test_nepisode": job.test_episodes,
        "log_interval": job.interval,
        "runner_log_interval": job.interval,
        "learner_log_interval": job.interval,
        "common_reward": True,
        "reward_scalarisation": "sum",
        "save_model": False,
        "use_tensorboard": False,
        **job.sets,
    }
    job.cmd = [args.epymarl_python, "src/main.py", f"--config={job.algo}", "--env-config=gymma", "with",
               *(f"{k}={fmt_epy(v)}" for k, v in sets.items())]
    job.cwd = Path(args.epymarl)
    return job


def run_proc(job: Job, log: Path) -> tuple[int, float]:
    log.parent.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    with open(log, "w") as f:
        rc = subprocess.run(job.cmd, cwd=job.cwd, stdout=f, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL).returncode
    return rc, time.perf_counter() - t0


def first_at_or_above(curve: list[tuple[int, float]], thr: float | None) -> int | None:
    if thr is None:
        return None
    for step, v in curve:
        if v >= thr:
            return step
    return None


def interp(xs: list[float], ys: list[float], x: float) -> float:
    if x <= xs[0]:
        return ys[0]
    for i in range(1, len(xs)):
        if x <= xs[i]:
            f = (x - xs[i - 1]) / max(1e-12, xs[i] - xs[i - 1])
            return ys[i - 1] + f * (ys[i] - ys[i - 1])
    return ys[-1]


def tail(path: Path, n: int = 15) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-n:])
    except OSError:
        return ""


def run_logged(job: Job, prefix: str, what: str) -> Path | None:
    """Run the job's command into its log; record process time; None (and an error) if it failed."""
    log = job.out / "logs" / f"{prefix}_{job.label}.log"
    rc, proc_s = run_proc(job, log)
    job.result.update(process_s=proc_s, log=str(log))
    if rc != 0:
        job.result["error"] = f"{what} exited {rc}:\n{tail(log)}"
        return None
    return log


def execute_me(args: argparse.Namespace, job: Job) -> None:
    run = Path(job.result["run_dir"])
    log = run_logged(job, "marl-edge", "marl-train")
    if log is None:
        return
    r = job.result
    summary = json.loads([ln for ln in log.read_text().splitlines() if ln.startswith("{")][-1])  # --json: the last JSON line
    cfg = json.loads((run / "config.json").read_text())
    n = int(cfg["env_spec"]["n_agents"])
    factor, how = scale_from_config(cfg, n)
    r.update(n_agents=n, reward_scalarisation=how, scale=factor, env_steps=summary["env_steps"], train_s=summary["wall_s"])
    with open(run / "metrics.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    steps = [0.0] + [float(x["env_steps"]) for x in rows]
    walls = [0.0] + [float(x["wall_s"]) for x in rows]
    r["train_curve"] = [(int(x["env_steps"]), float(x["return_mean"]) * factor) for x in rows if x["return_mean"]]
    r["final_return"] = json.loads((run / "eval.json").read_text())["mean_return"] * factor
    r["final_step"] = summary["env_steps"]
    # the greedy curve: every checkpoint, evaluated after training (not in train_s)
    t0 = time.perf_counter()
    ev = subprocess.run([args.me_python, "-c", CHECKPOINT_EVAL, str(run), str(job.test_episodes), str(job.seed)],
                        capture_output=True, text=True, stdin=subprocess.DEVNULL)
    r["checkpoint_eval_s"] = time.perf_counter() - t0
    if ev.returncode != 0:
        r["error"] = f"checkpoint evaluation exited {ev.returncode}:\n{ev.stderr[-2000:]}"
        return
    pts = [json.loads(line) for line in ev.stdout.splitlines() if line.startswith("{")]
    r["greedy_curve"] = [(p["step"], p["mean_return"] * factor) for p in pts]
    r["greedy_curve_wall_s"] = [interp(steps, walls, p["step"]) for p in pts]
    hit = first_at_or_above(r["greedy_curve"], job.threshold)
    r["steps_to_threshold"] = hit
    r["wall_to_threshold"] = None if hit is None else interp(steps, walls, hit)
    r["train_steps_to_threshold"] = first_at_or_above(r["train_curve"], job.threshold)


def epy_config_name(epymarl: str, algo: str) -> str:
    text = (Path(epymarl) / "src" / "config" / "algs" / f"{algo}.yaml").read_text()
    m = re.search(r"^name:\s*[\"']?([^\"'\s#]+)", text, re.M)
    return m.group(1) if m else algo


def _ts(s: str) -> float:
    return dt.datetime.fromisoformat(s).timestamp()


def execute_epy(args: argparse.Namespace, job: Job) -> None:
    log = run_logged(job, "epymarl", "EPyMARL")
    if log is None:
        return
    r = job.result
    m = re.search(r'Started run with ID "(\d+)"', log.read_text(errors="replace"))
    if m is None:
        r["error"] = f"no sacred run ID in {log}"
        return
    # main.py files a run under results/sacred/NAME/KEY/ID, NAME being the algorithm config's own `name:`
    d = Path(args.epymarl) / "results" / "sacred" / epy_config_name(args.epymarl, job.algo) / job.key / m.group(1)
    if not (d / "metrics.json").exists() or json.loads((d / "config.json").read_text()).get("seed") != job.seed:
        r["error"] = f"EPyMARL's sacred run directory {d} is missing or is not this run"
        return
    r["sacred_dir"] = str(d)
    cfg = json.loads((d / "config.json").read_text())
    run_info = json.loads((d / "run.json").read_text())
    metrics = json.loads((d / "metrics.json").read_text())
    if not cfg.get("common_reward", True):
        r["error"] = "common_reward=False: EPyMARL then logs per-agent returns; this table compares team returns"
        return
    n = n_agents_of(job.key)  # LBF's -Np-, RWARE's -Nag- (needed only to rescale a 'mean' scalarisation)
    factor, how = scale_from_config(cfg, n or 0)
    if factor == 0:
        r["error"] = f"reward_scalarisation={how} and the number of agents of {job.key} is unknown"
        return
    r.update(n_agents=n, reward_scalarisation=how, scale=factor)
    start, stop = _ts(run_info["start_time"]), _ts(run_info["stop_time"])

    def series(name: str) -> list[tuple[int, float, float]]:
        s = metrics.get(name, {"steps": [], "values": [], "timestamps": []})
        return [(int(a), float(b), _ts(c)) for a, b, c in zip(s["steps"], s["values"], s["timestamps"])]

    test, train = series("test_return_mean"), series("return_mean")
    train_ts = {step: ts for step, _, ts in train}
    # a test block runs right after the training-stats row of the same t_env; it ends with its own row
    test_s = [max(0.0, ts - train_ts[step]) if step in train_ts else 0.0 for step, _, ts in test]
    r["tests_timed"] = all(step in train_ts for step, _, _ in test)
    r["test_s"] = sum(test_s)
    r["test_env_steps"] = sum(v for _, v, _ in series("test_ep_length_mean")) * job.test_episodes
    r["train_s"] = stop - start - r["test_s"]
    all_steps = [st for k in metrics.values() for st in k["steps"]]
    r["env_steps"] = max([job.steps, *all_steps])
    r["greedy_curve"] = [(step, v * factor) for step, v, _ in test]
    before = 0.0
    walls = []
    for (step, _, ts), dur in zip(test, test_s):
        walls.append(train_ts.get(step, ts) - start - before)  # training time up to this test, tests excluded
        before += dur
    r["greedy_curve_wall_s"] = walls
    r["train_curve"] = [(step, v * factor) for step, v, _ in train]
    r["final_return"] = r["greedy_curve"][-1][1] if test else None
    r["final_step"] = r["greedy_curve"][-1][0] if test else None  # its last test: within one interval of t_max
    hit = first_at_or_above(r["greedy_curve"], job.threshold)
    r["steps_to_threshold"] = hit
    r["wall_to_threshold"] = None if hit is None else walls[[s for s, _ in r["greedy_curve"]].index(hit)]
    r["train_steps_to_threshold"] = first_at_or_above(r["train_curve"], job.threshold)


# ---- table -------------------------------------------------------------------------------------------
def table(headers: list[str], rows: list[list[str]]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) if rows else len(h) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.ljust(w[i]) for i, c in enumerate(cells)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (x + 2) for x in w) + "|", *(line(r) for r in rows)])


def mean_pm(xs: list[float], digits: int = 2) -> str:
    if not xs:
        return "—"
    if len(xs) == 1:
        return f"{xs[0]:.{digits}f}"
    return f"{statistics.mean(xs):.{digits}f} ± {statistics.pstdev(xs):.{digits}f}"


def reached(xs: list[float | None], n: int, fmt: str) -> str:
    ok = [x for x in xs if x is not None]
    if not ok:
        return f"— (0/{n})"
    return f"{format(statistics.mean(ok), fmt)} ({len(ok)}/{n})"


def group_stats(jobs: list[Job]) -> dict[str, Any]:
    ok = [j.result for j in jobs if "error" not in j.result]
    n = len(jobs)
    g: dict[str, Any] = {"seeds": [j.seed for j in jobs], "n": n, "failed": n - len(ok)}
    if not ok:
        return g
    g["final_returns"] = [r["final_return"] for r in ok if r.get("final_return") is not None]
    g["steps_to_threshold"] = [r["steps_to_threshold"] for r in ok]
    g["wall_to_threshold"] = [r["wall_to_threshold"] for r in ok]
    g["train_steps_to_threshold"] = [r["train_steps_to_threshold"] for r in ok]
    g["train_s"] = [r["train_s"] for r in ok]
    g["process_s"] = [r["process_s"] for r in ok]
    g["steps_per_s"] = [r["env_steps"] / max(1e-9, r["train_s"]) for r in ok]
    return g


def ratio(a: list[float | None], b: list[float | None]) -> str:
    a2, b2 = [x for x in a if x is not None], [x for x in b if x is not None]
    if not a2 or not b2:
        return "—"
    return f"{statistics.mean(a2) / max(1e-9, statistics.mean(b2)):.2f}×"


def report(args: argparse.Namespace, jobs: list[Job]) -> tuple[str, list[dict[str, Any]]]:
    rows, out = [], []
    for key in args.keys:
        for algo in args.algos:
            stats = {}
            for fw in args.frameworks:
                js = [j for j in jobs if j.key == key and j.algo == algo and j.framework == fw]
                stats[fw] = g = group_stats(js)
                out.append({"task": key, "algo": algo, "framework": fw, "threshold": args.thresholds.get(key), **g,
                            "runs": [{"seed": j.seed, "cmd": j.cmd, **j.result} for j in js]})
            for fw in args.frameworks:
                g = stats[fw]
                thr = args.thresholds.get(key)
                name = f"{short(key)} (≥ {thr:g})" if thr is not None else short(key)
                if g["n"] == 0:  # (--merge of studies that did not all run this group)
                    rows.append([name, algo, fw, "0", "not run", *["—"] * 7])
                    continue
                if g.get("failed") == g["n"]:
                    rows.append([name, algo, fw, str(g["n"]), f"failed ({g['n']}/{g['n']})", *["—"] * 7])
                    continue
                rat = "—"
                if fw == "marl-edge" and "epymarl" in stats and "train_s" in stats["epymarl"]:
                    e = stats["epymarl"]
                    rat = f"{ratio(e['wall_to_threshold'], g['wall_to_threshold'])} / {ratio(e['train_s'], g['train_s'])}"
                fails = f" ({g['failed']} failed)" if g["failed"] else ""
                rows.append([
                    name, algo, fw, f"{g['n']}{fails}",
                    mean_pm(g["final_returns"]),
                    reached(g["steps_to_threshold"], g["n"], ",.0f"),
                    reached(g["wall_to_threshold"], g["n"], ".0f"),
                    reached(g["train_steps_to_threshold"], g["n"], ",.0f"),
                    f"{statistics.mean(g['train_s']):.0f}",
                    f"{statistics.mean(g['steps_per_s']):,.0f}",
                    f"{statistics.mean(g['process_s']):.0f}",
                    rat,
                ])
    headers = ["task (threshold)", "algo", "framework", "seeds", "final greedy return", "env steps to thr (greedy)",
               "wall s to thr (greedy)", "env steps to thr (train return)", "train s", "steps/s", "process s",
               "EPyMARL ÷ marl-edge wall (thr / train)"]
    return table(headers, rows), out


def header_text(args: argparse.Namespace) -> str:
    return "\n".join([
        f"Returns are team returns on EPyMARL's scale: the SUM of the agents' rewards per episode "
        f"(EPyMARL: common_reward=True, reward_scalarisation=sum; marl-edge: ×n_agents unless its config.json says "
        f"reward_scalarisation=sum). Budget {args.steps:,} env steps per run; seeds {', '.join(map(str, args.seeds))}; "
        f"{args.test_episodes} greedy episodes per evaluation, about every {args.interval:,} env steps. Final greedy return: "
        f"marl-edge's eval.json (the checkpoint at the end of the budget), EPyMARL's last test (within one interval of t_max).",
        "Greedy curve: EPyMARL's own test runs (test_return_mean at t_env); marl-edge has no periodic greedy evaluation "
        "during training, so each of its checkpoints (one per interval) is evaluated greedily after training and its "
        "wall-clock is read off metrics.csv at that step. 'train return' is the return under exploration "
        "(EPyMARL return_mean, marl-edge metrics.csv return_mean).",
        "Steps and seconds to threshold: mean over the seeds that reached it (k/n reached). 'train s': the framework's "
        "own training clock (marl-edge: train() from the first rollout step; EPyMARL: the sacred run's start to stop, "
        "its test runs subtracted). 'process s': the whole subprocess, imports and set-up included (EPyMARL's tests "
        "and marl-edge's final evaluation included). Ratio > 1: marl-edge took less wall-clock.",
    ])


# ---- main --------------------------------------------------------------------------------------------
def machine_info() -> dict[str, Any]:
    rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True, text=True).stdout.strip()
    return {"nproc": os.cpu_count(), "machine": platform.machine(), "python": platform.python_version(),
            "git": rev or "?", "load_start": os.getloadavg()[0], "time": time.strftime("%Y-%m-%dT%H:%M:%S%z")}


def epymarl_commit(path: str) -> str:
    return subprocess.run(["git", "-C", path, "rev-parse", "HEAD"], capture_output=True, text=True).stdout.strip() or "?"


def build_parser() -> argparse.ArgumentParser:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    csv_list = lambda s: [x for x in s.split(",") if x]  # noqa: E731
    ap.add_argument("--tasks", type=csv_list, default=list(DEFAULT_TASKS),
                    help="MODULE:ENV_ID (EPyMARL's env_args.key) or a bare Foraging-.../rware-... id; default: " + ", ".join(DEFAULT_TASKS))
    ap.add_argument("--algos", type=csv_list, default=list(DEFAULT_ALGOS), help="algorithm names (the same in both frameworks)")
    ap.add_argument("--seeds", type=lambda s: [int(x) for x in s.split(",")], default=[0, 1])
    ap.add_argument("--steps", type=int, default=200_000, help="env steps per run (EPyMARL's t_max)")
    ap.add_argument("--threshold", action="append", default=[], metavar="TASK=VALUE",
                    help="greedy-return threshold (sum over agents) of a task; overrides the defaults")
    ap.add_argument("--time-limit", action="append", default=[], metavar="TASK=STEPS",
                    help="episode limit (EPyMARL env_args.time_limit, marl-edge env.episode_limit); default LBF 50, RWARE 500")
    ap.add_argument("--test-points", type=int, default=20, help="greedy evaluations per run (interval = steps / points)")
    ap.add_argument("--test-episodes", type=int, default=20, help="episodes per greedy evaluation (EPyMARL's test_nepisode)")
    ap.add_argument("--frameworks", type=csv_list, default=list(FRAMEWORKS))
    ap.add_argument("--epymarl", default=None, help="EPyMARL's clone (peer_setup.sh: TARGET/epymarl)")
    ap.add_argument("--epymarl-python", default=None, help="the python of EPyMARL's venv (peer_setup.sh: TARGET/venv/bin/python)")
    default_me = ROOT / ".venv" / "bin" / "python"
    ap.add_argument("--me-python", default=str(default_me) if default_me.exists() else sys.executable,
                    help="python with marl-edge installed (default: the repository's .venv)")
    ap.add_argument("--me-set", action="append", default=[], metavar="[ALGO:]KEY=VALUE",
                    help="marl-train --set for every run, or for one algorithm (n_envs=N becomes --n-envs)")
    ap.add_argument("--me-config", type=Path, default=None,
                    help="tuned marl-edge settings, JSON {TASK|'*': {ALGO|'*': {KEY: VALUE}}}; --me-set wins")
    ap.add_argument("--no-tuned", action="store_true",
                    help="ignore the repository's tuned configs (configs/PACKAGE/TASK/ALGO.yaml, used when present)")
    ap.add_argument("--epy-set", action="append", default=[], metavar="[ALGO:]KEY=VALUE", help="EPyMARL sacred overrides")
    ap.add_argument("--epy-config", type=Path, default=None, help="tuned EPyMARL settings, same JSON shape as --me-config")
    ap.add_argument("--jobs", type=int, default=1, help="runs at once (each run uses ~1 core; EPyMARL's mappo runs 10 env processes)")
    ap.add_argument("--out", type=Path, default=None, help="where run directories and logs go (default runs/peer-TIME)")
    ap.add_argument("--json", type=Path, default=None, help="write every run and the table's numbers as JSON")
    ap.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    ap.add_argument("--merge", type=Path, nargs="+", default=None, metavar="JSON",
                    help="run nothing: print one table from the --json files of earlier studies")
    return ap


def make_jobs(args: argparse.Namespace) -> list[Job]:
    me_cfg = json.loads(args.me_config.read_text()) if args.me_config else {}
    epy_cfg = json.loads(args.epy_config.read_text()) if args.epy_config else {}
    me_cli, epy_cli = scoped_sets(args.me_set, "--me-set"), scoped_sets(args.epy_set, "--epy-set")
    jobs = []
    for key in args.keys:
        for algo in args.algos:
            for seed in args.seeds:
                for fw in args.frameworks:
                    cfg, cli = (me_cfg, me_cli) if fw == "marl-edge" else (epy_cfg, epy_cli)
                    sets = {**config_sets(cfg, key, algo), **cli.get("*", {}), **cli.get(algo, {})}
                    job = Job(fw, key, algo, seed, args.steps, args.interval, args.test_episodes, args.time_limits[key],
                              args.thresholds.get(key), sets, args.out)
                    jobs.append(me_job(args, job) if fw == "marl-edge" else epy_job(args, job))
    return jobs


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    if args.merge:
        return merge(args.merge)
    for fw in args.frameworks:
        if fw not in FRAMEWORKS:
            raise SystemExit(f"error: unknown framework {fw!r}; choose from {', '.join(FRAMEWORKS)}")
    if "epymarl" in args.frameworks and not (args.epymarl and args.epymarl_python):
        raise SystemExit("error: --epymarl DIR and --epymarl-python PY are needed (bash benchmarks/peer_setup.sh TARGET installs them); "
                         "or --frameworks marl-edge")
    # absolute paths (EPyMARL runs in its own folder); abspath, not resolve: a venv's python is a symlink
    args.me_python = os.path.abspath(args.me_python)
    if args.epymarl:
        args.epymarl, args.epymarl_python = os.path.abspath(args.epymarl), os.path.abspath(args.epymarl_python)
    args.keys = [task_key(t) for t in args.tasks]
    thr = {task_key(k): float(v) for k, v in parse_kv(args.threshold, "--threshold").items()}
    tl = {task_key(k): int(v) for k, v in parse_kv(args.time_limit, "--time-limit").items()}
    args.thresholds, args.time_limits = {}, {}
    for key in args.keys:
        d = DEFAULT_TASKS.get(key, {})
        args.thresholds[key] = thr.get(key, d.get("threshold"))
        limit = tl.get(key, d.get("time_limit") or default_time_limit(key))
        if limit is None:
            raise SystemExit(f"error: {key}: give its episode limit with --time-limit {short(key)}=STEPS")
        args.time_limits[key] = limit
    args.interval = max(1, args.steps // max(1, args.test_points))
    args.out = args.out or Path("runs") / f"peer-{time.strftime('%Y%m%d-%H%M%S')}"
    args.out = args.out.resolve()
    jobs = make_jobs(args)

    if args.dry_run:
        for j in jobs:
            cd = f"cd {shlex.quote(str(j.cwd))} && " if j.cwd else ""
            print(f"# {j.framework} {j.label}\n{cd}{shlex.join(j.cmd)}")
            if j.framework == "marl-edge":
                print(f"{shlex.quote(args.me_python)} -c <CHECKPOINT_EVAL> {shlex.quote(j.result['run_dir'])} {j.test_episodes} {j.seed}")
        return 0

    info = machine_info()
    if "epymarl" in args.frameworks:
        info["epymarl_commit"] = epymarl_commit(args.epymarl)
    print(f"# marl-edge beside EPyMARL  (git {info['git']}, EPyMARL {info.get('epymarl_commit', 'n/a')[:12]}, "
          f"nproc {info['nproc']}, load {info['load_start']:.2f})", flush=True)
    print(f"# {len(jobs)} runs, {args.jobs} at a time -> {args.out}", file=sys.stderr, flush=True)
    lock = threading.Lock()
    done = [0]

    def execute(job: Job) -> Job:
        try:
            (execute_me if job.framework == "marl-edge" else execute_epy)(args, job)
        except Exception as e:  # a broken run is reported in the table, not a crash of the study
            job.result["error"] = f"{type(e).__name__}: {e}"
        with lock:
            done[0] += 1
            r = job.result
            msg = r["error"].splitlines()[0] if "error" in r else (
                f"final {r.get('final_return', float('nan')):.3f}, thr at {r.get('steps_to_threshold')}, "
                f"train {r.get('train_s', 0):.0f} s, process {r.get('process_s', 0):.0f} s")
            print(f"  [{done[0]}/{len(jobs)}] {job.framework} {job.label}: {msg}", file=sys.stderr, flush=True)
        return job

    settings = {k: (str(v) if isinstance(v, Path) else v) for k, v in vars(args).items()}

    def write_json(finished: list[Job], partial: bool) -> None:
        if args.json:  # written after every run too, so a study stopped half-way keeps what it measured
            _, out = report(args, finished)
            tmp = args.json.with_name(args.json.name + ".tmp")
            tmp.write_text(json.dumps({"machine": info, "settings": settings, "partial": partial, "results": out},
                                      indent=2, default=str))
            os.replace(tmp, args.json)

    finished: list[Job] = []

    def execute_and_save(job: Job) -> Job:
        execute(job)
        with lock:
            finished.append(job)
            write_json(finished, partial=True)
        return job

    with cf.ThreadPoolExecutor(max_workers=max(1, args.jobs)) as pool:
        list(pool.map(execute_and_save, jobs))

    text, out = report(args, jobs)
    print()
    print(header_text(args))
    print()
    print(text)
    info["load_end"] = os.getloadavg()[0]
    print(f"\nload average: {info['load_start']:.2f} at the start, {info['load_end']:.2f} at the end")
    write_json(jobs, partial=False)
    return 0 if all("error" not in j.result for j in jobs) else 1


def merge(paths: list[Path]) -> int:
    """One table from the --json files of several studies (e.g. one per task or seed, run in different sessions)."""
    jobs: list[Job] = []
    keys: list[str] = []
    algos: list[str] = []
    thresholds: dict[str, float | None] = {}
    steps, seeds, frameworks = set(), set(), []
    for p in paths:
        data = json.loads(p.read_text())
        st = data["settings"]
        steps.add(st["steps"])
        for g in data["results"]:
            key, algo, fw = g["task"], g["algo"], g["framework"]
            keys += [key] if key not in keys else []
            algos += [algo] if algo not in algos else []
            frameworks += [fw] if fw not in frameworks else []
            thresholds[key] = g.get("threshold")
            for r in g["runs"]:
                seeds.add(r["seed"])
                job = Job(fw, key, algo, r["seed"], st["steps"], st["interval"], st["test_episodes"], 0, g.get("threshold"),
                          {}, Path(st["out"]))
                job.result = {k: v for k, v in r.items() if k not in ("seed",)}
                job.cmd = r.get("cmd", [])
                jobs.append(job)
    ns = argparse.Namespace(keys=keys, algos=algos, frameworks=frameworks, thresholds=thresholds)
    text, _ = report(ns, jobs)
    print(f"# merged from {', '.join(str(p) for p in paths)}; budgets {', '.join(f'{s:,}' for s in sorted(steps))} env steps; "
          f"seeds {', '.join(map(str, sorted(seeds)))}")
    print()
    print(text)
    return 0


if __name__ == "__main__":
    sys.exit(main())
