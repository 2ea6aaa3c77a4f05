"""The ONNX Runtime policy wrapper: one agent's exported graph, its recurrent
state, pre-bound buffers. torch-free; the deployed agent and the in-process
bundle evaluation both use it.

Session: one intra-op and one inter-op thread (per-agent processes; more
threads only hurt p99 at batch 1), all graph optimisations on. Inputs and
outputs are numpy arrays bound once with io-binding (the OrtValues share
their memory), so a step copies the new observation in, runs, and reads the
outputs in place: no per-call allocation and no ``session.run`` argument
marshalling. The hidden state of a recurrent graph is carried from
``hidden_out`` to ``hidden`` inside the wrapper; a feed-forward graph (no
``hidden`` input) has none, and ``reset`` is then a no-op.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

import numpy as np

from .bundle import BundleError, IOSpec, Manifest

DTYPES = {"float32": np.float32, "int64": np.int64, "bool": np.bool_}


def session_options(threads: int = 1) -> Any:
    import onnxruntime as ort

    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    so.execution_mode = ort.ExecutionMode.ORT_SEQUENTIAL
    so.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    so.log_severity_level = 3
    return so


def make_session(model: Path | bytes, threads: int = 1) -> Any:
    import onnxruntime as ort

    try:
        src = model if isinstance(model, bytes) else str(model)
        return ort.InferenceSession(src, sess_options=session_options(threads), providers=["CPUExecutionProvider"])
    except Exception as e:  # ORT raises its own Fail/InvalidGraph/... types
        raise BundleError(f"{model if not isinstance(model, bytes) else 'model'}: ONNX Runtime cannot load it: {str(e).splitlines()[0]}") from None


def check_session_io(sess: Any, inputs: Sequence[IOSpec], outputs: Sequence[IOSpec], where: str) -> None:
    """The graph's I/O names and shapes must be the manifest's (batch dimension dynamic)."""
    got_in = [(x.name, list(x.shape[1:])) for x in sess.get_inputs()]
    want_in = [(x.name, list(x.shape[1:])) for x in inputs]
    if got_in != want_in:
        raise BundleError(f"{where}: graph inputs {got_in} do not match the manifest's {want_in}")
    got_out = [(x.name, list(x.shape[1:])) for x in sess.get_outputs()]
    want_out = [(x.name, list(x.shape[1:])) for x in outputs]
    if got_out != want_out:
        raise BundleError(f"{where}: graph outputs {got_out} do not match the manifest's {want_out}")


class OrtPolicy:
    """One agent's policy at a fixed batch size ``batch`` (1 on a robot).

    ``act(obs, avail_actions, msg_in=None, msg_mask=None, prev_action=None)``
    returns ``(action [b] (or [b, action_dim] for a continuous actor, which
    takes ``avail_actions=None``), msg_out [b, d] or None, q/logits [b, A] or
    None)``; the arrays are
    the wrapper's own output buffers (copy them to keep them past the next
    call). ``reset(mask=None)`` zeroes the hidden state (of the rows in mask);
    ``recurrent`` is False for a feed-forward graph (no ``hidden`` input,
    nothing to reset, ``hidden`` is None).
    """

    def __init__(
        self,
        model: Path | bytes,
        inputs: Sequence[IOSpec | dict[str, Any]],
        outputs: Sequence[IOSpec | dict[str, Any]],
        batch: int = 1,
        threads: int = 1,
        where: str = "policy",
    ) -> None:
        inputs, outputs = [IOSpec.of(x) for x in inputs], [IOSpec.of(x) for x in outputs]  # the manifest's, or export.graph.io_specs'
        self.sess = make_session(model, threads)
        check_session_io(self.sess, inputs, outputs, where)
        self.batch = int(batch)
        self.input_names = [x.name for x in inputs]
        self.output_names = [x.name for x in outputs]
        self.io = self.sess.io_binding()
        import onnxruntime as ort

        self.buf: dict[str, np.ndarray] = {}
        self._values = []  # keep the OrtValues alive
        for spec, bind in [(x, self.io.bind_ortvalue_input) for x in inputs] + [(x, self.io.bind_ortvalue_output) for x in outputs]:
            arr = np.zeros([self.batch, *spec.shape[1:]], dtype=DTYPES[spec.dtype])
            self.buf[spec.name] = arr
            v = ort.OrtValue.ortvalue_from_numpy(arr)
            self._values.append(v)
            bind(spec.name, v)
        self.recurrent = "hidden" in self.buf
        if self.recurrent != ("hidden_out" in self.buf):
            raise BundleError(f"{where}: a recurrent graph has both 'hidden' and 'hidden_out', a feed-forward one neither")
        self.communicates = "msg_in" in self.buf
        self.takes_prev_action = "prev_action" in self.buf
        self.continuous = "avail_actions" not in self.buf
        self.diag = self.output_names[-1] if self.output_names[-1] in ("q", "logits") else None

    @classmethod
    def from_agent_dir(cls, agent_dir: Path | str, manifest: Manifest | None = None, batch: int = 1, threads: int = 1) -> "OrtPolicy":
        """Load ``agent_dir`` (checked against ``manifest``, or the bundle's own swarm.json one level up)."""
        from .bundle import MANIFEST, load_agent_dir, read_manifest

        agent_dir = Path(agent_dir)
        if manifest is None:
            manifest = read_manifest(agent_dir.parent / MANIFEST, "the bundle manifest next to the agent folder")
        entry = load_agent_dir(agent_dir, manifest)
        return cls(entry.policy_path, manifest.inputs, manifest.outputs, batch, threads, where=str(entry.policy_path))

    def reset(self, mask: np.ndarray | None = None) -> None:
        if not self.recurrent:
            return
        h = self.buf["hidden"]
        if mask is None:
            h[:] = 0.0
        else:
            h[np.asarray(mask, dtype=bool)] = 0.0

    @property
    def hidden(self) -> np.ndarray | None:
        return self.buf["hidden"] if self.recurrent else None

    def act(
        self,
        obs: np.ndarray,
        avail_actions: np.ndarray | None,
        msg_in: np.ndarray | None = None,
        msg_mask: np.ndarray | None = None,
        prev_action: np.ndarray | None = None,
    ) -> tuple[np.ndarray, np.ndarray | None, np.ndarray]:
        b = self.buf
        np.copyto(b["obs"], obs, casting="same_kind")
        if not self.continuous:
            np.copyto(b["avail_actions"], avail_actions, casting="unsafe")
        if self.communicates:
            if msg_in is None or msg_mask is None:
                raise ValueError("this policy communicates: pass msg_in [b, k_max, d] and msg_mask [b, k_max]")
            np.copyto(b["msg_in"], msg_in, casting="same_kind")
            np.copyto(b["msg_mask"], msg_mask, casting="unsafe")
        if self.takes_prev_action:
            if prev_action is None:
                b["prev_action"][:] = 0.0
            else:
                np.copyto(b["prev_action"], prev_action, casting="same_kind")
        self.sess.run_with_iobinding(self.io)
        if self.recurrent:
            np.copyto(b["hidden"], b["hidden_out"])
        return b["action"], (b["msg_out"] if self.communicates else None), (b[self.diag] if self.diag else None)
