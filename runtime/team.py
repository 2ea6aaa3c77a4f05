"""A whole bundle in one process: one ``OrtPolicy`` per agent, batched over
``n_envs`` episode slots, routed exactly as in training (``envs.rollout``).
torch-free. ``marl-eval BUNDLE`` uses it; so does the export's parity check.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from ..envs import TimeStep, episode_seeds
from ..envs.rollout import agent_stats_summary, evaluate
from .bundle import Bundle, BundleError, load_bundle
from .policy import OrtPolicy


def gather_inbox(msg: np.ndarray, idx: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """``msg [B, n, d]`` (last step's messages), ``idx/mask [B, n, k]`` -> ``msg_in [B, n, k, d]``, ``mask``."""
    B = msg.shape[0]
    safe = np.where(mask, idx, 0)
    msg_in = msg[np.arange(B)[:, None, None], safe]  # [B, n, k, d]
    return msg_in * mask[..., None], mask


class BundleTeamPolicy:
    """The team of a bundle as a ``TeamPolicy`` (``reset(mask)``, ``act(ts)``).

    ``msg_loss`` drops each heard message with that probability (a lossy link),
    drawn from ``loss_rng``.
    """

    def __init__(
        self, bundle: Bundle, n_envs: int, msg_loss: float = 0.0, loss_rng: np.random.Generator | None = None, policies: list[Any] | None = None
    ) -> None:
        self.bundle = bundle
        n = bundle.n_agents
        self.n_envs, self.n = n_envs, n
        if policies is None:
            policies = [OrtPolicy(bundle.agent(i).policy_path, bundle.inputs, bundle.outputs, batch=n_envs, where=f"agent {i}") for i in range(n)]
        self.policies = policies
        self.communicates = bundle.communicates
        d = max(1, bundle.msg_dim)
        self.msg = np.zeros((n_envs, n, d), dtype=np.float32)
        spec = bundle.manifest.env_spec
        self.action_dim = spec.action_dim or 0  # continuous actors output float vectors
        n_actions = spec.n_actions or 1
        self.q = np.zeros((n_envs, n, n_actions), dtype=np.float32)
        self.last = np.zeros((n_envs, n, n_actions), dtype=np.float32)
        self.msg_loss = msg_loss
        self.loss_rng = loss_rng or np.random.default_rng(0)
        self.heard = 0

    def reset(self, mask: np.ndarray) -> None:
        mask = np.asarray(mask, dtype=bool)
        for p in self.policies:
            p.reset(mask)
        self.msg[mask] = 0.0
        self.last[mask] = 0.0

    @property
    def hidden(self) -> np.ndarray | None:
        """[n_envs, n, hidden_dim]; None for feed-forward policies (no state)."""
        if not self.bundle.recurrent:
            return None
        return np.stack([p.hidden for p in self.policies], axis=1)

    def act(self, ts: TimeStep) -> np.ndarray:
        B, n = self.n_envs, self.n
        actions = np.zeros((B, n, self.action_dim), dtype=np.float32) if self.action_dim else np.zeros((B, n), dtype=np.int64)
        new_msg = np.empty_like(self.msg)
        msg_in = msg_mask = None
        if self.communicates:
            if ts.inbox_idx is None or ts.inbox_mask is None:
                raise ValueError("a communicating bundle needs the inbox routing: run it in a Rollout with its topology")
            mask = ts.inbox_mask
            if self.msg_loss > 0:
                mask = mask & (self.loss_rng.random(mask.shape) >= self.msg_loss)
            self.heard += int(mask[~ts.done].sum())
            msg_in, msg_mask = gather_inbox(self.msg, ts.inbox_idx, mask)
        for i, p in enumerate(self.policies):
            a, m, q = p.act(
                ts.obs[:, i],
                None if self.action_dim else ts.avail_actions[:, i],
                None if msg_in is None else msg_in[:, i],
                None if msg_mask is None else msg_mask[:, i],
                self.last[:, i] if p.takes_prev_action else None,
            )
            actions[:, i] = a
            if q is not None:
                self.q[:, i] = q
            if m is not None:
                new_msg[:, i] = m
        if self.communicates:
            self.msg = new_msg
        if self.policies[0].takes_prev_action and not self.action_dim:
            self.last = np.eye(self.last.shape[-1], dtype=np.float32)[actions]
        return actions


def evaluate_bundle(path: Path | str, episodes: int, seed: int | None = None, n_envs: int | None = None, msg_loss: float = 0.0,
                    trusted_keys: Any = None, n_agents: int | None = None) -> dict[str, Any]:
    """Greedy returns of a bundle with ONNX Runtime, in one process; the same
    ``seed`` and ``episodes`` play the same episodes as ``marl-eval RUN_DIR``.
    With ``trusted_keys`` the bundle must be signed by one of them (``load_bundle``).
    ``n_agents``: play a team of that size (``Bundle.at_team_size``, docs/team-size.md)."""
    if not 0.0 <= msg_loss <= 1.0:
        raise BundleError(f"message loss must be in [0, 1], got {msg_loss}")
    b = load_bundle(path, trusted_keys=trusted_keys)
    if n_agents is not None:
        b = b.at_team_size(n_agents)
    seed = b.manifest.source.seed if seed is None else seed
    n_envs = n_envs or max(1, min(episodes, 32))
    env = b.make_env(n_envs)
    team = BundleTeamPolicy(b, n_envs, msg_loss=msg_loss, loss_rng=np.random.default_rng([seed, 7]))
    try:
        eps = evaluate(env, team, episode_seeds(seed, episodes), topology=b.topology())
    finally:
        env.close()
    returns = [e.ret for e in eps]
    out = {
        "bundle": str(path),
        "seed": seed,
        "episodes": episodes,
        "mean_return": float(np.mean(returns)),
        "std_return": float(np.std(returns)),
        "returns": returns,
        "lengths": [e.length for e in eps],
        "checkpoint_step": b.manifest.source.checkpoint_step,
        "n_agents": b.n_agents,
    }
    if b.signer:
        out["signed_by"] = b.signer
    if b.communicates:
        out["msg_loss"] = msg_loss
        out["msgs_heard_per_step"] = team.heard / max(1, sum(e.length for e in eps))
    if (stats := agent_stats_summary(eps)) is not None:
        out["agent_stats"] = stats
    return out
