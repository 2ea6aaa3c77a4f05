"""Summary statistics of the runtime's measurements. torch-free."""

from __future__ import annotations

import math
from collections import deque

import numpy as np


def percentiles(xs: "list[float] | np.ndarray | Latency") -> dict[str, float]:
    if isinstance(xs, Latency):
        return xs.summary()
    if len(xs) == 0:
        return {"p50": math.nan, "p99": math.nan, "n": 0}
    a = np.asarray(xs)
    return {"p50": float(np.percentile(a, 50)), "p99": float(np.percentile(a, 99)), "n": len(xs)}


class Latency:
    """Per-step latencies in fixed memory, however long the run.

    ``add`` appends to a small buffer (one list append: the hot path); a full
    buffer is folded into a log-spaced histogram (bins ``REL`` = 1 % wide
    from ``LO`` to ``HI``, in the caller's unit) with one numpy call. While
    nothing was folded (at most ``batch`` values), ``summary`` is exact, as
    ``percentiles``; later its p50 and p99 are within 1 % of the exact
    values (clipped to the observed min and max); ``n`` and ``mean`` are
    always exact. Memory: ``NBINS`` int64 counts plus the buffer."""

    REL = 0.01
    LO, HI = 1e-6, 1e13
    NBINS = int(math.ceil(math.log(HI / LO) / math.log1p(REL))) + 2  # bin 0: below LO; the last: HI and above

    __slots__ = ("buf", "batch", "counts", "n", "total", "lo", "hi")

    def __init__(self, batch: int = 4096) -> None:
        self.buf: list[float] = []
        self.batch = batch
        self.counts: np.ndarray | None = None  # allocated at the first fold
        self.n, self.total = 0, 0.0  # folded values
        self.lo, self.hi = math.inf, -math.inf

    def add(self, x: float) -> None:
        buf = self.buf
        buf.append(x)
        if len(buf) >= self.batch:
            self._fold()

    def _fold(self) -> None:
        if not self.buf:
            return
        a = np.asarray(self.buf, dtype=np.float64)
        self.buf.clear()
        if self.counts is None:
            self.counts = np.zeros(self.NBINS, dtype=np.int64)
        self.n += len(a)
        self.total += float(a.sum())
        self.lo, self.hi = min(self.lo, float(a.min())), max(self.hi, float(a.max()))
        with np.errstate(divide="ignore", invalid="ignore"):
            k = np.floor(np.log(np.maximum(a, self.LO * 0.5) / self.LO) / math.log1p(self.REL)) + 1
        k = np.clip(np.nan_to_num(k, nan=0.0), 0, self.NBINS - 1).astype(np.int64)
        self.counts += np.bincount(k, minlength=self.NBINS)

    def __len__(self) -> int:
        return self.n + len(self.buf)

    def summary(self, scale: float = 1.0) -> dict[str, float]:
        """``{"p50", "p99", "n", "mean"}`` of the values times ``scale`` (NaN when empty)."""
        if self.counts is None:  # everything is still in the buffer: exact
            out = percentiles(np.asarray(self.buf, dtype=np.float64) * scale)
            out["mean"] = float(np.mean(self.buf)) * scale if self.buf else math.nan
            return out
        self._fold()
        cum = np.cumsum(self.counts)
        r = math.log1p(self.REL)

        def q(p: float) -> float:
            b = int(np.searchsorted(cum, p / 100 * (self.n - 1) + 1))  # the bin of the value of rank p
            mid = self.LO * math.exp((b - 0.5) * r) if 0 < b < self.NBINS - 1 else (self.lo if b == 0 else self.hi)
            return min(max(mid, self.lo), self.hi) * scale

        return {"p50": q(50), "p99": q(99), "n": self.n, "mean": self.total / self.n * scale}


class Recent:
    """The last ``size`` values, for "how is it doing now" (a live view, a
    status line) where ``Latency`` answers "how did it do over the run".
    ``add`` is one ``deque.append``; ``summary`` sorts at most ``size`` values."""

    __slots__ = ("values",)

    def __init__(self, size: int = 256) -> None:
        self.values: deque[float] = deque(maxlen=size)

    def add(self, x: float) -> None:
        self.values.append(x)

    def summary(self, scale: float = 1.0) -> dict[str, float]:
        """``{"p50", "p95", "n"}`` of the kept values times ``scale`` (NaN when empty)."""
        if not self.values:
            return {"p50": math.nan, "p95": math.nan, "n": 0}
        a = np.asarray(self.values, dtype=np.float64) * scale
        return {"p50": float(np.percentile(a, 50)), "p95": float(np.percentile(a, 95)), "n": len(a)}
