"""Frames for tests, built with plain msgpack (its smallest widths): what
another language's encoder may send. The runtime writes the per-step kinds
with its codecs only (``wire.protocol``); the receivers accept any width."""

from __future__ import annotations

from typing import Any

import msgpack
import numpy as np


def envelope(swarm: str, sender: int, kind: str, ep: int = 0, t: int = 0, **fields: Any) -> bytes:
    """One frame: the envelope, then ``fields`` (numpy arrays as raw float32 / uint8 bytes)."""
    env: dict[str, Any] = {"v": 1, "sw": swarm, "from": sender, "k": kind, "ep": ep, "t": t}
    for k, v in fields.items():
        if isinstance(v, np.ndarray):
            v = np.ascontiguousarray(v, dtype=np.uint8 if v.dtype == bool else "<f4").tobytes()
        env[k] = v
    return msgpack.packb(env, use_bin_type=True)
