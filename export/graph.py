"""One agent's policy graph to ONNX (docs/design.md contract 4).

The exported module is ``train.networks.AgentPolicy``: the very module whose
team-level twin acted in training, with the agent id folded in as a constant.
Legacy TorchScript-based exporter (``dynamo=False``): one self-contained file,
the recurrent state as an explicit input/output (``hidden``/``hidden_out``;
a feed-forward agent's graph has neither), the batch dimension dynamic
(exported from a batch of 2, never 1, and asserted afterwards).
"""

from __future__ import annotations

import io
import warnings
from pathlib import Path
from typing import Any

import torch

from ..errors import UserError
from ..runtime.bundle import BundleError
from ..train.networks import AgentPolicy

DEFAULT_OPSET = 17
MIN_OPSET = 14  # GRU-cell maths, Softmax on the last axis, TopK with a tensor k


class ExportError(UserError, RuntimeError):
    """A user-facing export failure (parity, checker, bad options)."""


def io_specs(policy: AgentPolicy, obs_dim: int, n_actions: int, hidden_dim: int) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """Names, shapes (``None`` = batch) and dtypes of the graph's inputs and outputs
    (``n_actions`` is the action vector's size for a continuous actor). Only
    the policy's own names are listed: no ``hidden``/``hidden_out`` for a
    feed-forward policy (``hidden_dim`` is then unused)."""
    continuous = "avail_actions" not in policy.input_names
    shapes_in = {
        "obs": ([None, obs_dim], "float32"),
        "avail_actions": ([None, n_actions], "bool"),
        "hidden": ([None, hidden_dim], "float32"),
        "msg_in": ([None, policy.k_max, policy.msg_dim], "float32"),
        "msg_mask": ([None, policy.k_max], "bool"),
        "prev_action": ([None, n_actions], "float32"),
    }
    shapes_out = {
        "action": ([None, n_actions], "float32") if continuous else ([None], "int64"),
        "hidden_out": ([None, hidden_dim], "float32"),
        "msg_out": ([None, policy.msg_dim], "float32"),
        "q": ([None, n_actions], "float32"),
        "logits": ([None, n_actions], "float32"),
    }
    ins = [{"name": k, "shape": shapes_in[k][0], "dtype": shapes_in[k][1]} for k in policy.input_names]
    outs = [{"name": k, "shape": shapes_out[k][0], "dtype": shapes_out[k][1]} for k in policy.output_names]
    return ins, outs


def example_inputs(inputs: list[dict[str, Any]], batch: int = 2, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for x in inputs:
        shape = [batch, *x["shape"][1:]]
        if x["dtype"] == "bool":
            t = torch.rand(shape, generator=g) > 0.3
            if x["name"] == "avail_actions":
                t[:, 0] = True
            out.append(t)
        else:
            out.append(torch.randn(shape, generator=g))
    return tuple(out)


def export_policy(policy: AgentPolicy, inputs: list[dict[str, Any]], outputs: list[dict[str, Any]], opset: int = DEFAULT_OPSET) -> bytes:
    """The ONNX model (bytes) of ``policy``; raises ExportError on failure."""
    if not MIN_OPSET <= opset <= 21:
        raise ExportError(f"--opset must be in {MIN_OPSET}..21, got {opset}")
    policy = policy.eval()
    args = example_inputs(inputs, batch=2)
    names_in = [x["name"] for x in inputs]
    names_out = [x["name"] for x in outputs]
    buf = io.BytesIO()
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the legacy exporter's deprecation notice
        try:
            torch.onnx.export(
                policy,
                args,
                buf,
                input_names=names_in,
                output_names=names_out,
                dynamic_axes={n: {0: "batch"} for n in names_in + names_out},
                opset_version=opset,
                do_constant_folding=True,
                dynamo=False,
            )
        except Exception as e:  # noqa: BLE001 -- report any exporter failure as one line
            raise ExportError(f"torch.onnx.export failed: {str(e).splitlines()[0]}") from e
    model = buf.getvalue()
    check_batch_is_dynamic(model)
    return model


def check_batch_is_dynamic(model: bytes) -> None:
    import onnx

    m = onnx.load_from_string(model)
    for v in list(m.graph.input) + list(m.graph.output):
        dims = v.type.tensor_type.shape.dim
        if not dims or dims[0].dim_value != 0 or not dims[0].dim_param:
            raise ExportError(f"exported graph has a fixed batch dimension on {v.name!r}; it must be dynamic")


def parameter_count(model: bytes | Path) -> int:
    """Floats held by the graph's non-scalar initializers and constant nodes:
    the agent network's parameters plus the folded agent-id one-hot (if any)."""
    import numpy as np
    import onnx
    from onnx import numpy_helper

    m = onnx.load_from_string(model) if isinstance(model, bytes) else onnx.load(str(model))
    sizes = [int(np.prod(t.dims)) for t in m.graph.initializer if t.data_type == onnx.TensorProto.FLOAT]
    for node in m.graph.node:
        if node.op_type == "Constant":
            for a in node.attribute:
                if a.name == "value" and a.t.data_type == onnx.TensorProto.FLOAT:
                    sizes.append(int(numpy_helper.to_array(a.t).size))
    return sum(s for s in sizes if s > 1)


__all__ = ["BundleError", "ExportError", "export_policy", "io_specs", "parameter_count", "DEFAULT_OPSET"]
