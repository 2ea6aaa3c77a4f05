"""Evaluating a learner or a run, and loading a run's acting network.

Imports the run-directory code and the registry, never the training loop
(``train.loop``): exporting or evaluating a run does not load it.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..envs import MultiAgentEnv, episode_seeds, make, make_sized
from ..envs.rollout import agent_stats_summary, evaluate
from . import checkpoint as ckpt
from .learner import Learner
from .networks import RNNAgent
from .policy import TorchTeamPolicy
from .registry import build_learner
from .rundir import RunError, RunSpec, load_run_spec


# The evaluation during training plays the episodes of this seed (the run's seed plus
# this offset), the same ones each time: fixed, so the curve moves only with the policy,
# and apart from the final evaluation's episodes (the run's own seed), so picking a step
# by eval.csv does not select on the episodes eval.json reports.
DURING_EVAL_SEED_OFFSET = 1_000_000


def during_eval_seed(run_seed: int) -> int:
    """The evaluation seed of the evaluation during training (eval.csv's ``eval_seed``)."""
    return run_seed + DURING_EVAL_SEED_OFFSET


def greedy_evaluate(
    net: RNNAgent,
    rs: RunSpec,
    episodes: int,
    seed: int,
    n_envs: int | None = None,
    msg_loss: float = 0.0,
    sample: bool = False,
    env: MultiAgentEnv | None = None,
) -> dict[str, Any]:
    """Greedy returns of ``episodes`` episodes seeded by ``seed``; ``msg_loss``
    drops each heard message with that probability (a lossy link).

    ``env``: play in this env (kept open; the evaluation during training reuses
    one) instead of a new one of ``n_envs`` slots. Episodes are pure functions of
    their seeds, so the env's size and history do not change the returns.

    ``sample``: a stochastic actor (a ``logits`` head: MAPPO, IPPO, COMA)
    draws its actions from its policy instead of taking the argmax, with a
    stream seeded by ``seed`` (so a seed still fixes the result); the output
    says which with ``"mode": "greedy" | "sampled"``."""
    if not 0.0 <= msg_loss <= 1.0:
        raise RunError(f"message loss must be in [0, 1], got {msg_loss}")
    if sample and net.head != "logits":
        raise RunError(f"sampled evaluation needs a stochastic actor (mappo, ippo, coma); this policy's output is {net.head!r}")
    own_env = env is None
    if env is None:
        env = make(rs.run.env, n_envs=n_envs or max(1, min(episodes, 32)), **rs.run.env_options)
    n_envs = env.n_envs
    topology = rs.topology()
    was_training = net.training
    net.eval()
    try:
        # epsilon 0: greedy; message loss drawn from its own seeded stream
        greedy = TorchTeamPolicy(net, n_envs, np.random.default_rng([seed, 11]), msg_loss=msg_loss, loss_rng=np.random.default_rng([seed, 7]), sample=sample)
        eps = evaluate(env, greedy, episode_seeds(seed, episodes), topology=topology)
    finally:
        net.train(was_training)
        if own_env:
            env.close()
    returns = [e.ret for e in eps]
    out = {
        "seed": seed,
        "episodes": episodes,
        "mode": "sampled" if sample else "greedy",
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
        "lengths": [e.length for e in eps],
    }
    if topology is not None:
        out["msg_loss"] = msg_loss
        out["msgs_heard_per_step"] = greedy.heard / max(1, sum(e.length for e in eps))
    if (stats := agent_stats_summary(eps)) is not None:
        out["agent_stats"] = stats
    return out


def evaluate_learner(learner: Learner, rs: RunSpec, episodes: int, seed: int) -> dict[str, Any]:
    return greedy_evaluate(learner.acting_network(), rs, episodes, seed)


def load_policy_net(run_dir: Path, step: int | None = None) -> tuple[RNNAgent, RunSpec, int]:
    """The acting network of a run's checkpoint (latest by default)."""
    rs = load_run_spec(run_dir)
    try:
        path = ckpt.find_checkpoint(Path(run_dir) / "checkpoints", step)
    except ckpt.CheckpointError as e:
        raise RunError(str(e)) from e
    tensors, state = ckpt.load_checkpoint(path)
    learner = build_learner(rs.run.algo, rs.env_spec, rs.algo_cfg, n_envs=1, seed=rs.run.seed, total_steps=rs.total_steps, topology=rs.topology())
    net = learner.acting_network()
    try:
        net.load_state_dict(ckpt.module_state(tensors, "agent"))
    except (RuntimeError, ckpt.CheckpointError) as e:
        raise RunError(f"checkpoint {path} does not fit the run's network: {e}") from e
    return net, rs, int(state["step"])


def evaluate_run(
    run_dir: Path, episodes: int, seed: int | None = None, step: int | None = None, msg_loss: float = 0.0, sample: bool = False,
    n_agents: int | None = None,
) -> dict[str, Any]:
    """``n_agents``: play a team of that size with the same parameters (up to the run's
    ``max_agents``, in an env that can change its size; docs/team-size.md)."""
    net, rs, ck_step = load_policy_net(run_dir, step)
    seed = rs.run.seed if seed is None else seed
    env = None
    if n_agents is not None and n_agents != rs.env_spec.n_agents:
        if rs.topology() is not None:
            raise RunError(f"{run_dir}: a communicating team runs at its trained size ({rs.env_spec.n_agents}); its topology fixes n")
        env = make_sized(rs.run.env, n_agents, max(1, min(episodes, 32)), rs.run.env_options)  # an env that cannot resize says so
    try:
        if env is not None:
            net = net.with_team_size(n_agents)
        out = greedy_evaluate(net, rs, episodes, seed, msg_loss=msg_loss, sample=sample, env=env)
    finally:
        if env is not None:
            env.close()
    out["n_agents"] = net.n_agents
    out["checkpoint_step"] = ck_step
    out["run_dir"] = str(run_dir)
    return out
