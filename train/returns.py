"""Return and advantage estimators over padded episode batches [B, T, ...]:
TD(lambda) targets (value learners, COMA's critic) and GAE(lambda) (PPO)."""

from __future__ import annotations

import torch


def lambda_returns(
    reward: torch.Tensor, terminated: torch.Tensor, filled: torch.Tensor, next_q: torch.Tensor, gamma: float, lam: float
) -> torch.Tensor:
    """TD(lambda) targets, computed backwards over time.

    ``reward, terminated, filled``: [B, T, ...]; ``next_q``: [B, T, ...], the
    target value of the state after step t. At the last real step (and with
    lam = 0 everywhere) this is the one-step target r + gamma * next_q, with no
    bootstrap after a terminal step.
    """
    not_term = 1.0 - terminated
    if lam == 0.0:
        return reward + gamma * not_term * next_q
    T = reward.shape[1]
    out = torch.zeros_like(reward)
    g_next = next_q[:, T - 1]
    for t in range(T - 1, -1, -1):
        if t < T - 1:
            # continue the lambda-return only if step t+1 is real
            cont = filled[:, t + 1]
            g_next = cont * ((1 - lam) * next_q[:, t] + lam * out[:, t + 1]) + (1 - cont) * next_q[:, t]
        else:
            g_next = next_q[:, t]
        out[:, t] = reward[:, t] + gamma * not_term[:, t] * g_next
    return out


def gae(reward: torch.Tensor, value: torch.Tensor, terminated: torch.Tensor, filled: torch.Tensor, gamma: float, lam: float) -> torch.Tensor:
    """GAE(lambda) advantages. reward, terminated, filled: [B, T, n] (filled and
    terminated broadcast over agents); value: [B, T+1, n], where value[:, t+1]
    is V of the observation after step t (at a padded step it is ignored).
    A terminal step does not bootstrap; the last filled step of a time-limit
    end bootstraps from V of its last observation."""
    B, T = reward.shape[:2]
    adv = torch.zeros_like(reward)
    last = torch.zeros_like(reward[:, 0])
    for t in range(T - 1, -1, -1):
        not_term = 1.0 - terminated[:, t]
        delta = reward[:, t] + gamma * not_term * value[:, t + 1] - value[:, t]
        cont = filled[:, t + 1] if t + 1 < T else torch.zeros_like(filled[:, t])  # is step t+1 real?
        last = delta + gamma * lam * not_term * cont * last
        adv[:, t] = last * filled[:, t]
    return adv
