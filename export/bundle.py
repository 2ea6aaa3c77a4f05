"""``marl-export``: a run's checkpoint -> a verified bundle of per-agent ONNX policies.

Only the acting network goes in: each agent's ``AgentPolicy`` (its core, its
message head, its id folded in). Mixers, hypernetworks, critics, target
networks and optimiser state stay behind. A run with ``max_agents`` M gets
one graph per agent slot (``agent_0`` .. ``agent_<M-1>``), each with its slot's
id folded in, so the bundle runs any team of n <= M of a resizable env; the
parity check plays the trained n and M (docs/team-size.md). The bundle is built in a temporary
folder next to ``out``, verified, and renamed into place: a crash never
leaves half a bundle, and a failed verification leaves none.
"""

from __future__ import annotations

import json
import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable

import onnx

from .. import __version__
from ..runtime.bundle import (AGENT_CARD, FORMAT, FORMAT_VERSION, MANIFEST, POLICY_FILE, AgentCard, AgentRecord, BundleError, Manifest,
                              load_bundle, sha256_file)
from ..train.evaluation import load_policy_net
from ..train.rundir import git_revision, package_versions
from . import verify
from .graph import DEFAULT_OPSET, ExportError, export_policy, io_specs, parameter_count

QUANTIZE = ("none", "int8")
_PLACEHOLDER_FILES = {POLICY_FILE: "0" * 64, AGENT_CARD: "0" * 64}  # checked before the files exist; replaced by their sha256


def _write_json(path: Path, d: dict[str, Any]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(json.dumps(d, indent=2))
    os.replace(tmp, path)


def _prepare_out(out: Path, force: bool) -> Path:
    out = Path(out)
    if out.exists() and not force:
        raise ExportError(f"{out} already exists; pass --force to replace it, or choose another --out")
    if out.exists() and not (out / MANIFEST).is_file() and any(out.iterdir()):
        raise ExportError(f"{out} exists and is not a bundle; refusing to replace it even with --force")
    parent = out.parent if str(out.parent) else Path(".")
    try:
        parent.mkdir(parents=True, exist_ok=True)
        tmp = parent / f".tmp-{out.name}-{os.getpid()}"
        if tmp.exists():
            shutil.rmtree(tmp)
        tmp.mkdir()
    except OSError as e:
        raise ExportError(f"cannot write the bundle next to {out}: {e.strerror or e}") from None
    return tmp


def _publish(tmp: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.parent / f".old-{out.name}-{os.getpid()}"
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def export_run(
    run_dir: Path,
    out: Path,
    step: int | None = None,
    quantize: str = "none",
    opset: int = DEFAULT_OPSET,
    force: bool = False,
    min_agreement: float = 0.99,
    parity_steps: int = 200,
    say: Callable[[str], None] = lambda m: None,
    sign_key: Path | str | None = None,
) -> dict[str, Any]:
    """Export, verify and publish; returns the summary (also in swarm.json).

    With ``sign_key`` (an Ed25519 private key file, ``marl-keys signing``) the
    finished manifest is signed (``swarm.json.sig``, runtime/signing.py) before
    the bundle is published."""
    if quantize not in QUANTIZE:
        raise ExportError(f"--quantize must be one of {', '.join(QUANTIZE)}, got {quantize!r}")
    if not 0.0 <= min_agreement <= 1.0:
        raise ExportError(f"--min-agreement must be in [0, 1], got {min_agreement}")
    key = None
    if sign_key is not None:
        from ..runtime.signing import load_private_key

        key = load_private_key(sign_key)  # a bad key fails before the work, not after it
    t0 = time.perf_counter()
    net, rs, ck_step = load_policy_net(Path(run_dir), step)
    net.eval()
    out = Path(out)
    tmp = _prepare_out(out, force)
    try:
        summary = _build(tmp, net, rs, ck_step, Path(run_dir), quantize, opset, force, min_agreement, parity_steps, say)
        if key is not None:
            from ..runtime.signing import SIGNATURE, sign_manifest

            sig = sign_manifest(tmp / MANIFEST, key)
            load_bundle(tmp, trusted_keys=_own_public_key(key))  # the signature verifies and the files match what it signed
            summary["signed_by"] = sig["key_id"]
            say(f"signed   {SIGNATURE} with key {sig['key_id']} (Ed25519 over swarm.json, which lists every file's sha256)")
        _publish(tmp, out)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    summary["bundle"] = str(out)
    summary["wall_s"] = round(time.perf_counter() - t0, 2)
    return summary


def _team_seat(env_name: str, spec: Any) -> dict[str, Any] | None:
    """A one-team bundle (the ``team_view`` env a league learner trains on, docs/league.md)
    records which team of which game it plays: the manifest's ``seat``. The game's teams
    come from the game itself, built with the options the view recorded."""
    if env_name != "team_view":
        return None
    from ..envs import make

    o = spec.options
    game = make(o["game"], n_envs=1, **o["game_options"])
    teams = game.spec.teams
    game.close()
    return {"game": o["game"], "teams": [list(t) for t in teams], "team": int(o["team"])}


def _own_public_key(private_key: Any) -> Any:
    """The public half of ``private_key`` as the runtime's trusted keys (the export checks its own signature)."""
    from ..runtime.signing import TrustedKeys, key_id

    pub = private_key.public_key()
    return TrustedKeys(((key_id(pub), pub, "<the signing key>"),))


def _build(tmp: Path, net: Any, rs: Any, ck_step: int, run_dir: Path, quantize: str, opset: int, force: bool,
           min_agreement: float, parity_steps: int, say: Callable[[str], None]) -> dict[str, Any]:
    spec = rs.env_spec
    n = net.max_agents  # one graph per agent slot: the trained team's n, or max_agents (docs/team-size.md)
    ins, outs = io_specs(net.agent_policy(0), spec.obs_dim, spec.n_actions or spec.action_dim, net.hidden_dim)
    agent_params = [sum(p.numel() for p in net.cores[0 if net.shared else i].parameters()) for i in range(n)]
    # the folded agent-id one-hot: one float per slot, but a single slot folds a single float, which
    # parameter_count (like every scalar) does not count
    id_floats = n if net.agent_id and n > 1 else 0
    agents, onnx_floats = [], []
    for i in range(n):
        model = export_policy(net.agent_policy(i), ins, outs, opset)
        try:
            onnx.checker.check_model(onnx.load_from_string(model), full_check=True)
        except Exception as e:  # noqa: BLE001
            raise ExportError(f"agent {i}: onnx.checker rejects the graph: {str(e).splitlines()[0]}") from e
        d = tmp / f"agent_{i}"
        d.mkdir()
        (d / POLICY_FILE).write_bytes(model)
        floats = parameter_count(model)
        onnx_floats.append(floats)
        if floats - id_floats != agent_params[i]:
            raise ExportError(f"agent {i}: the graph holds {floats - id_floats:,} parameters, the agent network {agent_params[i]:,}")
        agents.append({"id": i, "dir": f"agent_{i}"})
    raw: dict[str, Any] = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "created": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "marl_edge_version": __version__,
        "versions": package_versions(),
        "env": {"name": rs.run.env, "options": rs.run.env_options},
        "env_spec": spec.to_dict(),
        "algo": rs.run.algo,
        "comm": rs.comm["comm"] if rs.comm else "none",
        "topology": rs.comm["topology"] if rs.comm else None,
        "msg_dim": net.msg_dim,
        "k_max": net.k_max,
        "recurrent": net.recurrent,  # False: feed-forward policies, no hidden/hidden_out in the graph
        "hidden_dim": net.hidden_dim,
        "opset": opset,
        "quantize": quantize,
        "inputs": ins,
        "outputs": outs,
        "parameters_per_agent": agent_params[0] if net.shared else agent_params,
        "agents": agents,
        "source": {"run_dir": str(run_dir.resolve()), "checkpoint_step": ck_step, "seed": rs.run.seed, "git": git_revision()},
        "max_agents": n,
    }
    if (seat := _team_seat(rs.run.env, spec)) is not None:
        raw["seat"] = seat

    # one schema for writing and reading: the manifest and the cards are written through runtime.bundle's
    # types, so what is written is what the runtime's checks accept (a file's checksums are filled in below)
    manifest = Manifest.parse({**raw, "agents": [{**a, "files": _PLACEHOLDER_FILES} for a in agents]}, tmp / MANIFEST)

    def write_cards() -> None:
        nonlocal manifest
        records = []
        for i in range(n):
            d = tmp / f"agent_{i}"
            card = AgentCard.for_agent(manifest, i, sha256_file(d / POLICY_FILE))
            _write_json(d / AGENT_CARD, card.to_dict())
            records.append(AgentRecord(i, f"agent_{i}", {POLICY_FILE: card.policy_sha256, AGENT_CARD: sha256_file(d / AGENT_CARD)}))
        manifest = manifest.replace(agents=tuple(records))
        _write_json(tmp / MANIFEST, manifest.to_dict())

    write_cards()
    bundle = load_bundle(tmp)
    par_at: dict[str, Any] = {}
    for size in verify.parity_sizes(bundle):  # the trained n first, then max_agents
        p = verify.parity(net, bundle.at_team_size(size), seed=rs.run.seed, min_steps=parity_steps)
        say(f"parity   torch vs ONNX Runtime at n={size}: {verify.summarise(p)}")
        worst = max(p["max_abs_diff"].values())
        if worst > verify.PARITY_TOL or p["action_agreement"] < 1.0:
            raise ExportError(f"parity failed: max |Δ| {worst:.2e} (limit {verify.PARITY_TOL:.0e}), actions agree {p['action_agreement']:.4%} "
                              f"(a team of {size})")
        par_at[str(size)] = p
    par = par_at[str(spec.n_agents)]
    ref = verify.reference_check(net, bundle)
    say(f"check    onnx.checker full check passed; onnx.reference vs torch: max |Δ| {ref:.1e}")
    if ref > 1e-4:
        raise ExportError(f"onnx.reference disagrees with torch: max |Δ| {ref:.2e}")
    verification: dict[str, Any] = {"parity": par, "parity_tolerance": verify.PARITY_TOL, "reference_max_abs_diff": ref, "checker": "full"}
    if len(par_at) > 1:
        verification["parity_at_n"] = par_at
    manifest = manifest.replace(verification=verification)
    summary: dict[str, Any] = {
        "agents": n,
        "max_agents": n,
        "parity_at_n": {k: v["action_agreement"] for k, v in par_at.items()},
        "parameters_per_agent": raw["parameters_per_agent"],
        "onnx_bytes": (tmp / "agent_0" / POLICY_FILE).stat().st_size,
        "parity": par,
        "reference_max_abs_diff": ref,
        "checkpoint_step": ck_step,
    }
    if quantize == "int8":
        summary["int8"] = _quantize(tmp, bundle, n, min_agreement, force, rs.run.seed, say)
        verification["int8"] = summary["int8"]
        write_cards()  # new files, new checksums
        summary["onnx_bytes"] = (tmp / "agent_0" / POLICY_FILE).stat().st_size
    else:
        _write_json(tmp / MANIFEST, manifest.to_dict())
    load_bundle(tmp)  # what we publish reads back clean
    return summary


def _quantize(tmp: Path, fp32: Any, n: int, min_agreement: float, force: bool, seed: int, say: Callable[[str], None]) -> dict[str, Any]:
    import logging

    from onnxruntime.quantization import QuantType, quantize_dynamic

    q_paths = []
    root = logging.getLogger()
    level = root.level
    root.setLevel(logging.ERROR)  # the quantiser's advice to pre-process models (not needed for these MLP/GRU graphs)
    try:
        for i in range(n):
            src = tmp / f"agent_{i}" / POLICY_FILE
            dst = tmp / f"agent_{i}" / "policy.int8.onnx"
            try:
                quantize_dynamic(str(src), str(dst), weight_type=QuantType.QInt8)
            except Exception as e:  # noqa: BLE001
                raise ExportError(f"agent {i}: int8 quantisation failed: {str(e).splitlines()[0]}") from e
            try:
                import onnx

                onnx.checker.check_model(onnx.load(str(dst)), full_check=True)  # the int8 graph is checked like the fp32 one
            except Exception as e:  # noqa: BLE001
                raise ExportError(f"agent {i}: the int8 graph fails onnx.checker: {str(e).splitlines()[0]}") from e
            q_paths.append(dst)
    finally:
        root.setLevel(level)
    agree = verify.quantized_agreement(fp32, q_paths, seed=seed)
    lat32 = verify.act_latency_us(tmp / "agent_0" / POLICY_FILE, fp32)
    lat8 = verify.act_latency_us(q_paths[0], fp32)
    size32 = (tmp / "agent_0" / POLICY_FILE).stat().st_size
    size8 = q_paths[0].stat().st_size
    res = {
        "action_agreement": agree["action_agreement"],
        "q_max_abs_diff": agree["max_abs_diff"]["q"],
        "steps": agree["steps"],
        "bytes_fp32": size32,
        "bytes_int8": size8,
        "act_us_p50_fp32": lat32["p50"],
        "act_us_p50_int8": lat8["p50"],
        "act_us_p99_fp32": lat32["p99"],
        "act_us_p99_int8": lat8["p99"],
        "min_agreement": min_agreement,
    }
    say(
        f"int8     onnx.checker full check passed; actions agree with fp32 {res['action_agreement']:.2%} over {agree['steps']:,} steps; "
        f"size {size32:,} -> {size8:,} B; act p50 {lat32['p50']:.1f} -> {lat8['p50']:.1f} µs"
    )
    if res["action_agreement"] < min_agreement:
        if not force:
            raise ExportError(
                f"int8 actions agree with fp32 only {res['action_agreement']:.2%} (< --min-agreement {min_agreement:.2%}); "
                "export fp32 (--quantize none), lower --min-agreement, or pass --force"
            )
        say(f"warning  int8 agreement below {min_agreement:.2%}; kept because of --force")
    for i, q in enumerate(q_paths):
        os.replace(q, tmp / f"agent_{i}" / POLICY_FILE)
    return res


def verify_bundle(bundle_dir: Path, run_dir: Path | None = None, parity_steps: int = 200) -> dict[str, Any]:
    """Re-run the export's checks on an existing fp32 bundle against its run
    (``run_dir`` defaults to the source recorded in swarm.json)."""
    b = load_bundle(bundle_dir)
    src = b.manifest.source
    if b.manifest.quantize != "none":
        raise ExportError(f"{bundle_dir} is quantised ({b.manifest.quantize}); parity to 1e-5 applies to fp32 bundles")
    net, rs, ck_step = load_policy_net(Path(run_dir or src.run_dir), src.checkpoint_step)
    verify.check_models(b)
    par = verify.parity(net, b, seed=rs.run.seed, min_steps=parity_steps)
    ref = verify.reference_check(net, b)
    ok = max(par["max_abs_diff"].values()) <= verify.PARITY_TOL and par["action_agreement"] == 1.0 and ref <= 1e-4
    return {"ok": ok, "parity": par, "reference_max_abs_diff": ref, "checkpoint_step": ck_step}


__all__ = ["export_run", "verify_bundle", "ExportError", "BundleError"]
