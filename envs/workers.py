"""Third-party envs stepped in worker processes (``--set env.workers=W``).

Why: a ``pz:`` or ``gym:`` env (LBF, RWARE, MPE2) is ``B`` copies of a
single-instance Python env that ``PettingZooEnv`` steps one after the other,
so training on it keeps one core busy with the env and leaves the others idle.
``WorkerPoolEnv`` splits the ``B`` slots into ``W`` contiguous slices and
steps each slice in its own process, all at once.

How:

* Worker ``w`` builds its slice itself, ``registry.make(name, n_envs=k,
  **options)``: the very env the training process would have built, only
  smaller. Only the name and the options cross the process boundary, so
  nothing unpicklable (an env, a factory closure) has to.
* Workers are started with "spawn": the training process has torch and its
  thread pools loaded, and forking such a process is unsafe. A spawned worker
  imports numpy, this package and the env's own package, nothing else.
* Commands (``reset``, ``step``, ``close``) go over one pipe per worker as
  a few raw bytes (no pickling on the per-step path); the bulk arrays (seeds, mask and actions in; obs, state, avail, reward, done,
  terminated, t, positions out) live in one shared-memory segment, each worker
  reading and writing its own rows.
* The pool's base-class bookkeeping (``_t``, ``_done``, ``_terminated``) *is*
  rows of that segment. The rollout loop parks idle slots by writing
  ``env._done``; each worker copies its rows of ``done`` into its env before
  every command, so a parked slot stays frozen there too.
* Exactness: a slot is a pure function of its seed and its actions (the
  contract of ``base.py``) and each worker runs the in-process env class, so
  the pool returns the same TimeSteps as in-process stepping, partial resets
  included, and its ``spec`` is the in-process env's spec.
* Failure: an exception in a worker comes back as an ``EnvError`` naming the
  worker and the original error; a worker that dies is one too. The pool is
  then closed: an env that failed mid-step has no defined state. Workers are
  daemonic, ignore Ctrl-C (the training process handles it and closes the
  pool) and leave when the training process's end of their pipe closes or
  their parent changes. ``close()`` (also run when the pool is garbage
  collected or the interpreter exits) stops them and unlinks the segment.
"""

from __future__ import annotations

import multiprocessing as mp
import os
import pickle
import secrets
import signal
import traceback
import weakref
from multiprocessing import shared_memory
from typing import Any, Sequence

import numpy as np

from .base import EnvError, EnvSpec, MultiAgentEnv, TimeStep

START_METHOD = "spawn"
SHM_PREFIX = "marl_edge_"  # segments are /dev/shm/marl_edge_<pid>_<random>
_ALIGN = 64

Layout = dict[str, tuple[tuple[int, ...], str, int]]  # name -> (shape, dtype, byte offset)


def shm_layout(spec: EnvSpec, n_envs: int) -> tuple[Layout, int]:
    """Where each shared array lives in the segment, and the segment's size."""
    B, n = n_envs, spec.n_agents
    arrays: dict[str, tuple[tuple[int, ...], str]] = {
        "seeds": ((B,), "int64"),
        "mask": ((B,), "bool"),
        "actions": ((B, n), "int64") if spec.discrete else ((B, n, spec.action_dim), "float32"),
        "obs": ((B, n, spec.obs_dim), "float32"),
        "state": ((B, spec.state_dim), "float32"),
        "avail": ((B, n, spec.n_actions or 1), "bool"),
        "reward": ((B, n), "float32"),
        "done": ((B,), "bool"),
        "terminated": ((B,), "bool"),
        "t": ((B,), "int64"),
    }
    if spec.has_positions:
        arrays["positions"] = ((B, n, spec.pos_dim), "float32")
    layout: Layout = {}
    offset = 0
    for name, (shape, dtype) in arrays.items():
        layout[name] = (shape, dtype, offset)
        nbytes = int(np.prod(shape)) * np.dtype(dtype).itemsize
        offset += -(-nbytes // _ALIGN) * _ALIGN
    return layout, max(offset, 1)


def _views(buf: Any, layout: Layout) -> dict[str, np.ndarray]:
    return {k: np.ndarray(shape, dtype=dtype, buffer=buf, offset=off) for k, (shape, dtype, off) in layout.items()}


def _describe(e: BaseException) -> str:
    """``Type: message (at file:line)`` of an exception, for the parent's EnvError."""
    text = f"{type(e).__name__}: {e}"
    frames = traceback.extract_tb(e.__traceback__)
    if frames:
        text += f" (at {os.path.basename(frames[-1].filename)}:{frames[-1].lineno})"
    return text


# ---------------------------------------------------------------------------
# the worker process
# ---------------------------------------------------------------------------
def _write(rows: dict[str, np.ndarray], ts: TimeStep) -> None:
    rows["obs"][:] = ts.obs
    rows["state"][:] = ts.state
    rows["avail"][:] = ts.avail_actions
    rows["reward"][:] = ts.reward
    rows["done"][:] = ts.done
    rows["terminated"][:] = ts.terminated
    rows["t"][:] = ts.t
    if "positions" in rows:
        rows["positions"][:] = ts.positions


def _next_command(conn: Any, parent_pid: int) -> bytes | None:
    """The next command, or None when the training process is gone."""
    while not conn.poll(1.0):
        if os.getppid() != parent_pid:
            return None
    try:
        return conn.recv_bytes()
    except (EOFError, OSError):
        return None


def _ok(conn: Any, payload: Any = None) -> None:
    """Replies are ``+`` (and a pickled payload, at start-up only) or ``-`` and the error."""
    conn.send_bytes(b"+" if payload is None else b"+" + pickle.dumps(payload))


def _failed(conn: Any, e: BaseException) -> None:
    conn.send_bytes(b"-" + _describe(e).encode())


def _worker(conn: Any, name: str, options: dict[str, Any], n_envs: int, parent_pid: int) -> None:
    """A worker's life: build the slice, report its spec, then serve commands."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    env: MultiAgentEnv | None = None
    shm = None
    rows: dict[str, np.ndarray] = {}
    try:
        from .registry import make

        try:
            env = make(name, n_envs=n_envs, **options)
            _ok(conn, env.spec)
        except Exception as e:  # noqa: BLE001 (any build error goes back to the parent)
            _failed(conn, e)
            return
        while (cmd := _next_command(conn, parent_pid)) not in (None, b"close"):
            try:
                if cmd.startswith(b"attach"):
                    shm_name, layout, (lo, hi) = pickle.loads(cmd[len(b"attach"):])
                    shm = shared_memory.SharedMemory(name=shm_name)
                    rows = {k: v[lo:hi] for k, v in _views(shm.buf, layout).items()}
                else:
                    env._done[:] = rows["done"]  # noqa: SLF001 (slots the caller parked stay frozen here too)
                    if cmd == b"reset":
                        ts = env.reset(rows["seeds"].copy(), mask=rows["mask"].copy())
                    else:
                        ts = env.step(rows["actions"].copy())
                    _write(rows, ts)
                _ok(conn)
            except Exception as e:  # noqa: BLE001
                _failed(conn, e)
    except (EOFError, OSError):
        pass  # the training process is gone
    finally:
        rows = {}
        if env is not None:
            try:
                env.close()
            except Exception:  # noqa: BLE001 (leaving anyway)
                pass
        if shm is not None:
            try:
                shm.close()
            except BufferError:
                pass  # a view outlived ``rows``: the mapping goes with the process


# ---------------------------------------------------------------------------
# the training process's side
# ---------------------------------------------------------------------------
def _shutdown(procs: list, conns: list, shms: list) -> None:
    """Stop the workers (politely, then by force) and unlink the segment. Idempotent."""
    for c in conns:
        try:
            c.send_bytes(b"close")
        except (OSError, ValueError):
            pass
    for p in procs:
        p.join(timeout=5)
        if p.is_alive():
            p.terminate()
            p.join(timeout=5)
        if p.is_alive():
            p.kill()
            p.join()
    for c in conns:
        c.close()
    for shm in shms:
        try:
            shm.close()
        except BufferError:
            pass  # arrays of a garbage-collected pool still point into it: the mapping goes with them
        try:
            shm.unlink()
        except FileNotFoundError:
            pass
    procs.clear()
    conns.clear()
    shms.clear()


class WorkerPoolEnv(MultiAgentEnv):
    """``n_envs`` slots of the registry env ``name`` stepped in ``workers`` processes.

    Made by ``registry.make(name, n_envs, workers=W, **options)`` for ``pz:``
    and ``gym:`` envs; behaves exactly like ``make(name, n_envs, **options)``.
    """

    def __init__(self, name: str, n_envs: int, workers: int, options: dict[str, Any]) -> None:
        super().__init__(n_envs)
        W = max(1, min(int(workers), self.n_envs))
        sizes = [self.n_envs // W + (w < self.n_envs % W) for w in range(W)]
        edges = np.cumsum([0, *sizes])
        self.name = name
        self.bounds = [(int(edges[w]), int(edges[w + 1])) for w in range(W)]
        self._procs: list[Any] = []
        self._conns: list[Any] = []
        self._shms: list[shared_memory.SharedMemory] = []
        self._buf: dict[str, np.ndarray] | None = None
        self._closer = weakref.finalize(self, _shutdown, self._procs, self._conns, self._shms)
        ctx = mp.get_context(START_METHOD)
        try:
            for w, (lo, hi) in enumerate(self.bounds):
                mine, theirs = ctx.Pipe()
                p = ctx.Process(target=_worker, args=(theirs, name, dict(options), hi - lo, os.getpid()),
                                name=f"marl-edge env worker {w}", daemon=True)
                self._conns.append(mine)
                try:
                    p.start()
                except Exception as e:  # noqa: BLE001 (e.g. an option that cannot be pickled)
                    raise EnvError(f"{name}: cannot start env worker {w}: {_describe(e)}") from None
                finally:
                    theirs.close()
                self._procs.append(p)
            specs = self._gather(range(W))
            if any(s != specs[0] for s in specs):
                raise EnvError(f"{name}: the env workers built envs with different specs")
            self.spec = specs[0]
            layout, size = shm_layout(self.spec, self.n_envs)
            shm = shared_memory.SharedMemory(create=True, size=size, name=f"{SHM_PREFIX}{os.getpid()}_{secrets.token_hex(6)}")
            self._shms.append(shm)
            self._buf = _views(shm.buf, layout)
            self._buf["done"][:] = True
            self._t, self._done, self._terminated = self._buf["t"], self._buf["done"], self._buf["terminated"]
            for w, bounds in enumerate(self.bounds):
                self._conns[w].send_bytes(b"attach" + pickle.dumps((shm.name, layout, bounds)))
            self._gather(range(W))
        except BaseException:
            self.close()
            raise

    @property
    def n_workers(self) -> int:
        return len(self.bounds)

    # ---- talking to the workers -------------------------------------------------
    def _gather(self, workers: Sequence[int]) -> list[Any]:
        """Every listed worker's reply; any failure closes the pool and raises an EnvError."""
        out, errors = [], []
        for w in workers:
            try:
                reply = self._conns[w].recv_bytes()
            except (EOFError, OSError):
                p = self._procs[w] if w < len(self._procs) else None
                if p is not None:
                    p.join(timeout=1)
                reply = f"-the process exited (exit code {None if p is None else p.exitcode})".encode()
            if reply[:1] == b"+":
                out.append(pickle.loads(reply[1:]) if len(reply) > 1 else None)
            else:
                lo, hi = self.bounds[w]
                errors.append(f"{self.name}: env worker {w} (slots {lo}..{hi - 1}) failed: {reply[1:].decode()}")
        if errors:
            self.close()
            raise EnvError(errors[0] + (f" (and {len(errors) - 1} more worker(s))" if len(errors) > 1 else ""))
        return out

    def _call(self, command: bytes, mask: np.ndarray) -> None:
        """Run ``command`` in the workers that hold a slot of ``mask`` (the others have nothing to do)."""
        if self._buf is None:
            raise EnvError(f"{self.name}: the env worker pool is closed")
        busy = [w for w, (lo, hi) in enumerate(self.bounds) if mask[lo:hi].any()]
        for w in busy:
            try:
                self._conns[w].send_bytes(command)
            except (OSError, ValueError):
                pass  # a dead worker: _gather reports it
        self._gather(busy)

    # ---- public API ---------------------------------------------------------------
    def reset(self, seeds: int | Sequence[int] | np.ndarray, mask: np.ndarray | None = None) -> TimeStep:
        if self._buf is None:
            raise EnvError(f"{self.name}: the env worker pool is closed")
        seeds, idx = self._reset_args(seeds, mask)
        restart = np.zeros(self.n_envs, dtype=bool)
        restart[idx] = True
        self._seeds[idx] = seeds[idx]
        self._buf["seeds"][:] = seeds
        self._buf["mask"][:] = restart
        self._call(b"reset", restart)
        return self._timestep(np.zeros((self.n_envs, self.spec.n_agents), dtype=np.float32))

    def step(self, actions: np.ndarray) -> TimeStep:
        if self._buf is None:
            raise EnvError(f"{self.name}: the env worker pool is closed")
        if not self._started:
            raise EnvError("call reset() before step()")
        actions = self._check_actions(actions)
        active = ~self._done
        self._buf["actions"][:] = actions
        self._call(b"step", active)
        reward = np.where(active[:, None], self._buf["reward"], 0.0).astype(np.float32)
        return self._timestep(reward)

    def close(self) -> None:
        if self._buf is not None:  # keep the bookkeeping readable, detached from the segment
            self._t, self._done, self._terminated = self._t.copy(), self._done.copy(), self._terminated.copy()
            self._buf = None
        self._closer()

    # ---- hooks: the TimeStep is read from the segment ----------------------------
    def _reset_slots(self, idx: np.ndarray) -> None:  # pragma: no cover (reset is the workers')
        raise NotImplementedError

    def _step(self, actions: np.ndarray, active: np.ndarray) -> tuple[np.ndarray, np.ndarray]:  # pragma: no cover
        raise NotImplementedError

    def _obs(self) -> np.ndarray:
        return self._buf["obs"].copy()

    def _state(self) -> np.ndarray:
        return self._buf["state"].copy()

    def _avail(self) -> np.ndarray:
        return self._buf["avail"].copy()

    def _positions(self) -> np.ndarray | None:
        return self._buf["positions"].copy() if "positions" in self._buf else None
