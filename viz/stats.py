"""Aggregate statistics over seeds: mean, IQM and stratified bootstrap CIs.

numpy only. A bootstrap resamples *runs* (seeds), never the points of one
curve: the unit of variation is the seed. With several strata in a group
(say one algorithm on two envs) each stratum is resampled on its own, so
every bootstrap sample keeps as many runs of each stratum as the data has
(the stratified bootstrap of Agarwal et al. 2021, "Deep RL at the edge of
the statistical precipice").

Draw order, so that a result can be reproduced outside this module:
``rng = np.random.default_rng(seed)``; then for each stratum, in order of
first appearance, ``rng.integers(0, n_s, size=(n_boot, n_s))``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import numpy as np

from ..errors import UserError

STATS = ("mean", "iqm")


class PlotError(UserError, ValueError):
    """A user-facing problem with what was asked to be plotted."""


def iqm(x: np.ndarray, axis: int = 0) -> np.ndarray:
    """Interquartile mean along ``axis``: drop ``floor(n/4)`` values from each
    end after sorting and average the rest (a 25 % trimmed mean). Robust to
    one lucky or unlucky seed, yet uses half the data, unlike the median."""
    x = np.sort(np.asarray(x, dtype=np.float64), axis=axis)
    n = x.shape[axis]
    cut = n // 4
    return np.take(x, np.arange(cut, n - cut), axis=axis).mean(axis=axis)


def stat_fn(name: str) -> Callable[[np.ndarray, int], np.ndarray]:
    """The aggregate called ``name`` (``mean`` or ``iqm``), as ``f(x, axis)``."""
    if name == "mean":
        return lambda x, axis=0: np.asarray(x, dtype=np.float64).mean(axis=axis)
    if name == "iqm":
        return iqm
    raise PlotError(f"--stat must be one of {', '.join(STATS)}, got {name!r}")


@dataclass(frozen=True)
class Estimate:
    """A point estimate with its bootstrap confidence interval (same shape)."""

    value: np.ndarray
    low: np.ndarray
    high: np.ndarray


def bootstrap(
    values: np.ndarray,
    stat: str = "mean",
    strata: Sequence[str] | None = None,
    n_boot: int = 2000,
    seed: int = 0,
    level: float = 0.95,
) -> Estimate:
    """``stat`` over axis 0 of ``values [runs, ...]`` with a percentile
    bootstrap CI at ``level``, resampling runs within each stratum.

    A trailing axis (a curve's grid points) is resampled with the same run
    indices at every point, so the band is that of whole curves."""
    v = np.asarray(values, dtype=np.float64)
    if v.ndim == 0 or v.shape[0] == 0:
        raise PlotError("no runs to aggregate")
    if n_boot < 1:
        raise PlotError(f"--n-boot must be >= 1, got {n_boot}")
    if not 0.0 < level < 1.0:
        raise PlotError(f"the confidence level must be in (0, 1), got {level}")
    f = stat_fn(stat)
    labels = list(strata) if strata is not None else ["all"] * v.shape[0]
    if len(labels) != v.shape[0]:
        raise ValueError(f"{len(labels)} strata for {v.shape[0]} runs")
    rng = np.random.default_rng(seed)
    picks = []
    for s in dict.fromkeys(labels):  # strata in order of first appearance
        members = np.flatnonzero(np.asarray(labels) == s)
        picks.append(members[rng.integers(0, len(members), size=(n_boot, len(members)))])
    idx = np.concatenate(picks, axis=1)  # [n_boot, runs]
    boot = f(v[idx], axis=1)  # [n_boot, ...]
    alpha = (1.0 - level) / 2.0
    low, high = np.percentile(boot, [100 * alpha, 100 * (1 - alpha)], axis=0)
    return Estimate(f(v, axis=0), low, high)
