"""Per-agent act latency at batch 1: torch eager vs the runtime's ORT wrapper
vs bare ONNX Runtime with io-binding, side by side in one run (issue 4).

Three policies, each built directly from the training code's networks
(``train.networks.RNNAgent`` with random weights; latency does not depend on
what the weights learned) and exported with the exporter (``export.graph``):

    mlp        the feed-forward agent (``recurrent=false``: fc -> ReLU -> fc ->
               ReLU -> fc, hidden size ``--mlp-hidden``, default ``--hidden``),
               no messages; its graph has no hidden input or output.
    gru        the default recurrent agent (``--hidden``, default 64), no messages.
    attention  the same recurrent agent with comm=attention (TarMAC-like
               aggregator over ``k_max`` inbox slots) and a message head.

Each policy is timed three ways, one call at a time:

    torch      the per-agent torch module exactly as exported
               (``AgentPolicy``), under ``torch.no_grad()``, on tensors made
               beforehand; the hidden state (if any) is carried from the output.
    wrapper    ``runtime.policy.OrtPolicy.act`` -- what the deployed agent
               calls each step: copy the inputs in, run, carry the hidden (if any).
    bare ORT   ``session.run_with_iobinding`` on inputs and outputs bound
               once (same session options as the wrapper): the floor.

Repeats are interleaved (repeat r times every policy x method, in rotating
order), so background load hits every column alike. p50 and p99 are over all
calls of all repeats; the per-repeat p50 range is shown too. The ratios
printed are wrapper / bare ORT (target <= 1.5x) and torch / wrapper (target
>= 4x). Nothing is asserted.

    .venv/bin/python benchmarks/act_latency.py                 # ~30 s
    .venv/bin/python benchmarks/act_latency.py --calls 5000 --repeats 9 --json lat.json
    .venv/bin/python benchmarks/act_latency.py --env scout --hidden 128
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path
from typing import Any, Callable

import numpy as np

TARGET_WRAPPER = 1.5  # wrapper / bare ORT, at most
TARGET_TORCH = 4.0  # torch eager / wrapper, at least
METHODS = ("torch", "wrapper", "bare")
METHOD_LABEL = {"torch": "torch eager (no_grad)", "wrapper": "ORT wrapper (OrtPolicy.act)", "bare": "bare ORT io-binding"}


def loadavg() -> list[float] | None:
    return [round(x, 2) for x in os.getloadavg()] if hasattr(os, "getloadavg") else None


def cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown cpu"


# ---- the policies -------------------------------------------------------------------------


def build_policies(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Three (name, torch AgentPolicy, ONNX bytes, I/O specs) from the training code's networks."""
    import torch

    from marl_edge.envs import make
    from marl_edge.envs.topology import parse_topology
    from marl_edge.export.graph import export_policy, io_specs
    from marl_edge.train.comm import CommConfig
    from marl_edge.train.networks import RNNAgent

    env = make(args.env, n_envs=1)
    spec = env.spec
    env.close()
    topo = parse_topology(args.topology, spec.n_agents)
    mlp_hidden = args.mlp_hidden or args.hidden
    configs = [
        ("mlp", f"MLP h={mlp_hidden} (recurrent=false), no comm", mlp_hidden, None, False),
        ("gru", f"GRU h={args.hidden}, no comm", args.hidden, None, True),
        ("attention", f"GRU h={args.hidden}, comm=attention d={args.msg_dim} k_max={topo.k_max}", args.hidden,
         CommConfig(comm="attention", topology=args.topology, msg_dim=args.msg_dim), True),
    ]
    out = []
    for i, (name, desc, hidden, comm, recurrent) in enumerate(configs):
        torch.manual_seed(i)
        net = RNNAgent(spec.obs_dim, spec.n_actions, spec.n_agents, hidden_dim=hidden, comm=comm,
                       k_max=topo.k_max if comm is not None else 0, recurrent=recurrent).eval()
        pol = net.agent_policy(0).eval()
        ins, outs = io_specs(pol, spec.obs_dim, spec.n_actions, hidden)
        model = export_policy(pol, ins, outs)
        params = sum(p.numel() for p in net.cores[0].parameters())
        out.append({"name": name, "desc": desc, "policy": pol, "model": model, "inputs": ins, "outputs": outs,
                    "params": params, "onnx_bytes": len(model)})
    return out


def make_inputs(p: dict[str, Any], n: int, seed: int) -> list[dict[str, np.ndarray]]:
    """``n`` batch-1 input sets (numpy, the graph's dtypes), the same for every method."""
    rng = np.random.default_rng(seed)
    sets = []
    for _ in range(n):
        d: dict[str, np.ndarray] = {}
        for x in p["inputs"]:
            shape = [1, *x["shape"][1:]]
            if x["dtype"] == "bool":
                a = rng.random(shape) > 0.3
                if x["name"] == "avail_actions":
                    a[:, 0] = True
            else:
                a = rng.standard_normal(shape).astype(np.float32)
            d[x["name"]] = a
        sets.append(d)
    return sets


def torch_caller(p: dict[str, Any], sets: list[dict[str, np.ndarray]]) -> Callable[[int], None]:
    import torch

    pol = p["policy"]
    names = [x["name"] for x in p["inputs"]]
    tsets = [[torch.from_numpy(s[k].copy()) for k in names] for s in sets]
    m = len(tsets)
    no_grad = torch.no_grad
    if "hidden" not in names:  # feed-forward: nothing to carry

        def call_ff(i: int) -> None:
            with no_grad():
                pol(*tsets[i % m])

        return call_ff
    hi = names.index("hidden")
    state = {"h": torch.zeros_like(tsets[0][hi])}

    def call(i: int) -> None:
        args = tsets[i % m]
        args[hi] = state["h"]
        with no_grad():
            out = pol(*args)
        state["h"] = out[1]

    return call


def wrapper_caller(p: dict[str, Any], sets: list[dict[str, np.ndarray]]) -> Callable[[int], None]:
    from marl_edge.runtime.policy import OrtPolicy

    pol = OrtPolicy(p["model"], p["inputs"], p["outputs"], batch=1)
    comm = pol.communicates
    m = len(sets)
    args = [(s["obs"], s["avail_actions"], s.get("msg_in") if comm else None, s.get("msg_mask") if comm else None) for s in sets]

    def call(i: int) -> None:
        pol.act(*args[i % m])

    return call


def bare_caller(p: dict[str, Any], sets: list[dict[str, np.ndarray]]) -> Callable[[int], None]:
    import onnxruntime as ort

    from marl_edge.runtime.policy import DTYPES, make_session

    sess = make_session(p["model"])
    io = sess.io_binding()
    keep = []
    for x in p["inputs"]:
        v = ort.OrtValue.ortvalue_from_numpy(np.ascontiguousarray(sets[0][x["name"]]))
        keep.append(v)
        io.bind_ortvalue_input(x["name"], v)
    for x in p["outputs"]:
        v = ort.OrtValue.ortvalue_from_numpy(np.zeros([1, *x["shape"][1:]], dtype=DTYPES[x["dtype"]]))
        keep.append(v)
        io.bind_ortvalue_output(x["name"], v)
    run = sess.run_with_iobinding

    def call(i: int, _keep=keep) -> None:
        run(io)

    return call


# ---- timing ---------------------------------------------------------------------------------


def time_calls(call: Callable[[int], None], n: int, warmup: int) -> np.ndarray:
    """Per-call wall time in µs, one call at a time."""
    for i in range(warmup):
        call(i)
    clock = time.perf_counter_ns
    out = np.empty(n, dtype=np.int64)
    for i in range(n):
        t0 = clock()
        call(i)
        out[i] = clock() - t0
    return out / 1000.0


def pct(x: np.ndarray, q: float) -> float:
    return float(np.percentile(x, q))


def table(headers: list[str], rows: list[list[str]]) -> str:
    w = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]
    line = lambda cells: "| " + " | ".join(c.rjust(w[i]) if i else c.ljust(w[i]) for i, c in enumerate(cells)) + " |"  # noqa: E731
    return "\n".join([line(headers), "|" + "|".join("-" * (x + 2) for x in w) + "|", *(line(r) for r in rows)])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="spread", help="env whose obs/action sizes the policies take (default spread)")
    ap.add_argument("--hidden", type=int, default=64, help="hidden size of the gru and attention policies (the learners' default)")
    ap.add_argument("--mlp-hidden", type=int, default=None, help="hidden size of the mlp policy (default: --hidden)")
    ap.add_argument("--msg-dim", type=int, default=8)
    ap.add_argument("--topology", default="broadcast", help="topology of the attention policy (sets k_max)")
    ap.add_argument("--calls", type=int, default=2000, help="timed calls per repeat per policy x method")
    ap.add_argument("--warmup", type=int, default=200, help="untimed calls before each timed block")
    ap.add_argument("--repeats", type=int, default=7, help="interleaved repeats")
    ap.add_argument("--torch-threads", type=int, default=1, help="torch intra-op threads (ORT uses 1, as on a robot)")
    ap.add_argument("--json", type=Path, default=None, help="write every number here")
    args = ap.parse_args()

    import onnxruntime as ort
    import torch

    torch.set_num_threads(args.torch_threads)
    from marl_edge import __version__
    from marl_edge.train.rundir import git_revision

    info: dict[str, Any] = {
        "nproc": os.cpu_count(), "cpu": cpu_model(), "python": platform.python_version(), "torch": torch.__version__,
        "torch_threads": args.torch_threads, "onnxruntime": ort.__version__, "numpy": np.__version__,
        "marl-edge": __version__, "git": git_revision(), "loadavg_start": loadavg(),
    }
    git = info["git"] or {}
    print("# per-agent act latency at batch 1 (µs)")
    print(f"machine: {info['nproc']} cpus, {info['cpu']}, load avg {info['loadavg_start']}")
    print(f"python {info['python']}, torch {info['torch']} ({args.torch_threads} thread), onnxruntime {info['onnxruntime']} "
          f"(1 intra-op thread), numpy {info['numpy']}, git {str(git.get('revision') or '-')[:10]}{' (dirty)' if git.get('dirty') else ''}")
    print(f"{args.repeats} interleaved repeats x {args.calls} calls per policy x method (warm-up {args.warmup}); env {args.env}")
    sys.stdout.flush()

    pols = build_policies(args)
    callers: dict[tuple[str, str], Callable[[int], None]] = {}
    for i, p in enumerate(pols):
        sets = make_inputs(p, 64, seed=i)
        callers[(p["name"], "torch")] = torch_caller(p, sets)
        callers[(p["name"], "wrapper")] = wrapper_caller(p, sets)
        callers[(p["name"], "bare")] = bare_caller(p, sets)

    keys = list(callers)
    samples: dict[tuple[str, str], list[np.ndarray]] = {k: [] for k in keys}
    t0 = time.perf_counter()
    for r in range(args.repeats):
        order = keys[r % len(keys):] + keys[: r % len(keys)]  # rotate: no column always runs first or last
        for k in order:
            samples[k].append(time_calls(callers[k], args.calls, args.warmup))
        print(f"  repeat {r + 1}/{args.repeats} done ({time.perf_counter() - t0:.0f} s, load avg {loadavg()})", file=sys.stderr, flush=True)
    info["loadavg_end"] = loadavg()

    res: dict[str, dict[str, Any]] = {}
    for p in pols:
        res[p["name"]] = {"desc": p["desc"], "params": p["params"], "onnx_bytes": p["onnx_bytes"]}
        for m in METHODS:
            allx = np.concatenate(samples[(p["name"], m)])
            reps = [pct(x, 50) for x in samples[(p["name"], m)]]
            res[p["name"]][m] = {"p50_us": pct(allx, 50), "p99_us": pct(allx, 99), "mean_us": float(allx.mean()),
                                 "repeat_p50_min_us": min(reps), "repeat_p50_max_us": max(reps), "calls": int(allx.size)}
        r = res[p["name"]]
        r["wrapper_over_bare_p50"] = r["wrapper"]["p50_us"] / r["bare"]["p50_us"]
        r["wrapper_over_bare_p99"] = r["wrapper"]["p99_us"] / r["bare"]["p99_us"]
        r["torch_over_wrapper_p50"] = r["torch"]["p50_us"] / r["wrapper"]["p50_us"]
        r["torch_over_wrapper_p99"] = r["torch"]["p99_us"] / r["wrapper"]["p99_us"]

    print("\npolicies:")
    for p in pols:
        print(f"  {p['name']:<10} {p['desc']}; {p['params']:,} parameters, {p['onnx_bytes']:,} B ONNX")
    names = [p["name"] for p in pols]
    rows = []
    for m in METHODS:
        rows.append([METHOD_LABEL[m]] + [f"{res[n][m]['p50_us']:.1f} / {res[n][m]['p99_us']:.1f}" for n in names])
    rows.append(["wrapper / bare ORT (p50, p99)"] + [f"{res[n]['wrapper_over_bare_p50']:.2f}x, {res[n]['wrapper_over_bare_p99']:.2f}x" for n in names])
    rows.append(["torch / wrapper (p50, p99)"] + [f"{res[n]['torch_over_wrapper_p50']:.1f}x, {res[n]['torch_over_wrapper_p99']:.1f}x" for n in names])
    print(f"\np50 / p99 µs per call (all {args.repeats * args.calls:,} calls of each cell)\n")
    print(table(["", *names], rows))
    print("\nper-repeat p50 range (µs)\n")
    print(table(["", *names], [[METHOD_LABEL[m]] + [f"{res[n][m]['repeat_p50_min_us']:.1f}–{res[n][m]['repeat_p50_max_us']:.1f}" for n in names] for m in METHODS]))
    w_ok = all(res[n]["wrapper_over_bare_p50"] <= TARGET_WRAPPER for n in names)
    t_ok = all(res[n]["torch_over_wrapper_p50"] >= TARGET_TORCH for n in names)
    w_txt = ", ".join("%s %.2fx" % (n, res[n]["wrapper_over_bare_p50"]) for n in names)
    t_txt = ", ".join("%s %.1fx" % (n, res[n]["torch_over_wrapper_p50"]) for n in names)
    print(f"\ntarget wrapper / bare ORT <= {TARGET_WRAPPER}x at p50: {'met' if w_ok else 'MISSED'} ({w_txt})")
    print(f"target torch / wrapper >= {TARGET_TORCH:.0f}x at p50: {'met' if t_ok else 'MISSED'} ({t_txt})")
    print(f"load avg start {info['loadavg_start']}, end {info['loadavg_end']}; {time.perf_counter() - t0:.0f} s timed")
    if args.json:
        doc = {"machine": info, "settings": vars(args) | {"json": str(args.json)}, "results": res,
               "targets": {"wrapper_over_bare_max": TARGET_WRAPPER, "torch_over_wrapper_min": TARGET_TORCH},
               "samples_p50_per_repeat": {f"{k[0]}/{k[1]}": [pct(x, 50) for x in v] for k, v in samples.items()}}
        args.json.write_text(json.dumps(doc, indent=2))
        print(f"wrote {args.json}")


if __name__ == "__main__":
    main()
