"""Summary statistics of the runtime's measurements. torch-free."""

from __future__ import annotations

import math

import numpy as np


def percentiles(xs: "list[float] | np.ndarray") -> dict[str, float]:
    if len(xs) == 0:
        return {"p50": math.nan, "p99": math.nan, "n": 0}
    a = np.asarray(xs)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "n": len(xs)}
