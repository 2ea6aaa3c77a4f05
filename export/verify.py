"""Checks that an exported bundle is the trained team.

1. ``onnx.checker`` full check of every graph.
2. Parity: multi-step rollouts on the run's own env, with messages
   routed by the run's topology, played by the torch team and, in lock-step
   on the same observations, by the bundle's ONNX Runtime policies (each with
   its own hidden state, if recurrent, and messages). Reports max |Δ| of every output and
   the greedy action agreement; the torch actions drive the env.
3. An independent second opinion: ``onnx.reference.ReferenceEvaluator`` (pure
   numpy) on a few steps of each graph against the torch per-agent policy.
4. For int8 bundles: agreement of the quantised team with the fp32 team on
   the same rollouts, file size and act latency side by side.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

import numpy as np
import torch

from ..envs import episode_seeds
from ..envs.rollout import Rollout
from ..runtime.bundle import Bundle
from ..runtime.policy import OrtPolicy
from ..runtime.team import BundleTeamPolicy
from ..train.networks import RNNAgent
from ..train.policy import TorchTeamPolicy
from .graph import example_inputs

PARITY_TOL = 1e-5
INT8_CONTINUOUS_TOL = 0.01  # int8 check of a continuous actor: |Δaction| within 1 % of the box


def parity_sizes(bundle: Bundle) -> list[int]:
    """The team sizes the export's parity plays: the trained n, and max_agents when the
    bundle holds more slots (docs/team-size.md)."""
    n, m = bundle.manifest.n_agents, bundle.slots
    return [n] if m == n else [n, m]


def check_models(bundle: Bundle) -> None:
    import onnx

    for i in range(bundle.slots):
        onnx.checker.check_model(onnx.load(str(bundle.agent(i).policy_path)), full_check=True)


class _Tee:
    """Feeds the same timesteps to a reference team and a candidate team."""

    def __init__(self, ref: Any, cand: Any, compare: list[str], tol: float = PARITY_TOL) -> None:
        self.ref, self.cand, self.compare, self.tol = ref, cand, compare, tol
        self.max_diff = {k: 0.0 for k in compare}
        self.agree = 0
        self.total = 0
        self.steps = 0

    def reset(self, mask: np.ndarray) -> None:
        self.ref.reset(mask)
        self.cand.reset(mask)

    def act(self, ts: Any) -> np.ndarray:
        a_ref = np.asarray(self.ref.act(ts))
        a_cand = np.asarray(self.cand.act(ts))
        live = ~ts.done
        self.steps += int(live.sum())
        if a_ref.ndim == 3:  # continuous: actions agree within the parity tolerance
            d = np.abs(a_ref - a_cand).max(-1)
            self.max_diff["action"] = max(self.max_diff.get("action", 0.0), float(d[live].max()) if live.any() else 0.0)
            same = d <= self.tol
        else:
            same = a_ref == a_cand
        self.agree += int(same[live].sum())
        self.total += int(live.sum()) * a_ref.shape[1]
        for k in self.compare:
            r, c = _get(self.ref, k), _get(self.cand, k)
            d = float(np.abs(r[live] - c[live]).max()) if live.any() else 0.0
            self.max_diff[k] = max(self.max_diff[k], d)
        return a_ref


def _get(team: Any, what: str) -> np.ndarray:
    v = {"q": team.q, "hidden_out": team.hidden, "msg_out": team.msg}[what]
    return v.detach().numpy() if isinstance(v, torch.Tensor) else v


def lockstep(
    ref: Any, cand: Any, bundle: Bundle, compare: list[str], n_envs: int, seed: int, min_steps: int, min_episodes: int, tol: float = PARITY_TOL
) -> dict[str, Any]:
    env = bundle.make_env(n_envs)
    tee = _Tee(ref, cand, compare, tol)
    seeds = episode_seeds(seed, 100_000)
    started = 0

    def next_seeds(k: int) -> np.ndarray:
        nonlocal started
        if tee.steps >= min_steps and started >= min_episodes:
            return np.zeros(0, dtype=np.int64)
        out = seeds[started : started + k]
        started += len(out)
        return out

    ro = Rollout(env, tee, next_seeds, topology=bundle.topology())
    episodes = 0
    while ro.active.any():
        episodes += len(ro.step())
    env.close()
    return {
        "episodes": episodes,
        "steps": tee.steps,
        "max_abs_diff": tee.max_diff,
        "action_agreement": tee.agree / max(1, tee.total),
    }


def parity(net: RNNAgent, bundle: Bundle, seed: int = 0, min_steps: int = 200, min_episodes: int = 8, n_envs: int = 4) -> dict[str, Any]:
    """Torch team vs the bundle's ORT policies on the same rollouts."""
    net.eval()
    ref = TorchTeamPolicy(net.with_team_size(bundle.n_agents), n_envs, np.random.default_rng(0))  # the bundle's team size
    cand = BundleTeamPolicy(bundle, n_envs)
    discrete = not net.continuous
    compare = (["q"] if discrete else []) + (["hidden_out"] if bundle.recurrent else []) + (["msg_out"] if bundle.communicates else [])
    with torch.no_grad():
        return lockstep(ref, cand, bundle, compare, n_envs, seed, min_steps, min_episodes)


def reference_check(net: RNNAgent, bundle: Bundle, steps: int = 3, batch: int = 2) -> float:
    """Max |Δ| between onnx.reference and the torch per-agent policy over a few
    steps (recurrent policies carry their hidden state from step to step)."""
    import onnx
    from onnx.reference import ReferenceEvaluator

    worst = 0.0
    recurrent = bundle.recurrent
    for i in range(bundle.slots):
        pol = net.agent_policy(i).eval()
        ev = ReferenceEvaluator(onnx.load(str(bundle.agent(i).policy_path)))
        h_t = torch.zeros(batch, bundle.hidden_dim)
        h_r = np.zeros((batch, bundle.hidden_dim), dtype=np.float32)
        for t in range(steps):
            args = list(example_inputs([x.to_dict() for x in bundle.inputs], batch=batch, seed=100 * i + t))
            names = [x.name for x in bundle.inputs]
            if recurrent:
                args[names.index("hidden")] = h_t
            with torch.no_grad():
                out_t = pol(*args)
            feeds = {n: a.numpy() for n, a in zip(names, args)}
            if recurrent:
                feeds["hidden"] = h_r
            out_r = ev.run(None, feeds)
            for a, b in zip(out_t, out_r):
                worst = max(worst, float(np.abs(a.numpy().astype(np.float64) - np.asarray(b, dtype=np.float64)).max()))
            if recurrent:
                h_t = out_t[1]
                h_r = np.asarray(out_r[1], dtype=np.float32)
    return worst


def act_latency_us(model: Path, bundle: Bundle, calls: int = 2000) -> dict[str, float]:
    """p50 / p99 of one batch-1 act through the runtime wrapper."""
    pol = OrtPolicy(model, bundle.inputs, bundle.outputs, batch=1)
    rng = np.random.default_rng(0)
    feeds = [rng.standard_normal((1, *x.shape[1:])).astype(np.float32) if x.dtype == "float32" else np.ones((1, *x.shape[1:]), bool)
             for x in bundle.inputs if x.name != "hidden"]
    names = [x.name for x in bundle.inputs if x.name != "hidden"]
    kw = dict(zip(names, feeds))
    args = (kw["obs"], kw.get("avail_actions"), kw.get("msg_in"), kw.get("msg_mask"), kw.get("prev_action"))
    for _ in range(200):
        pol.act(*args)
    ts = np.empty(calls)
    for j in range(calls):
        t0 = time.perf_counter_ns()
        pol.act(*args)
        ts[j] = time.perf_counter_ns() - t0
    return {"p50": float(np.percentile(ts, 50) / 1e3), "p99": float(np.percentile(ts, 99) / 1e3)}


def quantized_agreement(fp32: Bundle, int8_models: list[Path], seed: int = 0, min_steps: int = 200, n_envs: int = 4) -> dict[str, Any]:
    ref = BundleTeamPolicy(fp32, n_envs)
    pols = [OrtPolicy(p, fp32.inputs, fp32.outputs, batch=n_envs, where=f"agent {i} (int8)") for i, p in enumerate(int8_models[: fp32.n_agents])]
    cand = BundleTeamPolicy(fp32, n_envs, policies=pols)
    discrete = fp32.manifest.env_spec.discrete
    compare = ["q"] if discrete else (["hidden_out"] if fp32.recurrent else [])  # a feed-forward box actor: |Δaction| only
    # continuous actions "agree" within 1 % of the box's half-width (int8 weights cannot give 1e-5)
    tol = PARITY_TOL if discrete else INT8_CONTINUOUS_TOL * float(fp32.manifest.env_spec.action_high or 1.0)
    out = lockstep(ref, cand, fp32, compare, n_envs, seed, min_steps, min_episodes=8, tol=tol)
    out["max_abs_diff"].setdefault("q", out["max_abs_diff"].get("action", out["max_abs_diff"].get("hidden_out", 0.0)))
    return out


def summarise(p: dict[str, Any]) -> str:
    diffs = ", ".join(f"{k} {v:.1e}" for k, v in p["max_abs_diff"].items())
    return f"{p['steps']:,} team steps over {p['episodes']} episodes: max |Δ| {diffs}; actions agree {p['action_agreement']:.2%}"

