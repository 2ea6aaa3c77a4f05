"""The edge image's install line, exercised without docker (issue 5).

robots/Containerfile is the one place the edge install is written. This test
reads it: the files its COPY lines copy are copied into a build folder, and
its ``RUN pip install`` line runs there with a fresh venv's pip (no torch on
that venv's path). Then, from that venv: torch and onnx are not installed,
``marl-agent --help`` works, ``marl-eval BUNDLE`` gives the same returns as
``evaluate_bundle`` in the main venv, and ``marl-train`` says in one line to
install ``marl-edge[train]``.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

pytestmark = pytest.mark.slow  # a venv and a pip install: about a minute

CONTAINERFILE = ROOT / "robots" / "Containerfile"


def containerfile_instructions(path: Path = CONTAINERFILE) -> list[tuple[str, str]]:
    """(INSTRUCTION, arguments) pairs, comments dropped, ``\\`` continuations joined."""
    out, cur = [], ""
    for raw in path.read_text().splitlines():
        line = raw.strip()
        if not cur and (not line or line.startswith("#")):
            continue
        if line.endswith("\\"):
            cur += line[:-1] + " "
            continue
        cur += line
        word, _, rest = cur.strip().partition(" ")
        out.append((word.upper(), rest.strip()))
        cur = ""
    return out


def edge_recipe() -> tuple[list[tuple[list[str], str]], list[str]]:
    """The COPY lines before the install (sources, destination relative to the
    WORKDIR) and the install command, as the Containerfile has them."""
    ins = containerfile_instructions()
    pip_runs = [args for word, args in ins if word == "RUN" and "pip install" in args]
    assert len(pip_runs) == 1, f"want exactly one RUN pip install line in {CONTAINERFILE}, found {pip_runs}"
    copies = []
    for word, args in ins:
        if word == "RUN" and args == pip_runs[0]:
            break
        if word == "COPY":
            parts = shlex.split(args)
            assert not any(p.startswith("--") for p in parts), f"COPY flags are not modelled by this test: {args}"
            copies.append((parts[:-1], parts[-1]))
    return copies, shlex.split(pip_runs[0])


def build_context(dest: Path, copies: list[tuple[list[str], str]]) -> None:
    """What the image's WORKDIR holds before the install: the COPY lines, relative to the repository root."""
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc")
    for srcs, to in copies:
        target = dest / to
        for s in srcs:
            src = ROOT / s
            assert src.exists(), f"{CONTAINERFILE} copies {s}, which is not in the repository"
            if src.is_dir():
                shutil.copytree(src, target, ignore=ignore, dirs_exist_ok=True)  # COPY dir/ to/: its contents into to/
            elif to.endswith("/"):
                target.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target / src.name)
            else:
                target.parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, target)


def clean_env(venv: Path) -> dict[str, str]:
    """The environment of a shell on the robot: the venv first on PATH, nothing from this venv or checkout."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV", "PYTHONSTARTUP")}
    env["PATH"] = f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}"
    env["VIRTUAL_ENV"] = str(venv)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def run(cmd: list[str], env: dict[str, str], cwd: Path, timeout: float) -> subprocess.CompletedProcess:
    # subprocess.run kills and reaps the child when the timeout expires
    return subprocess.run(cmd, env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL)


@pytest.fixture(scope="module")
def edge(tmp_path_factory, make_bundle):
    """A fresh venv with the Containerfile's install line run in it, and a tiny talking scout bundle."""
    root = tmp_path_factory.mktemp("edge")
    timings = {}
    t0 = time.perf_counter()
    bundle = make_bundle(root, "scout_comm", steps=600, comm="attention", topology="knn:2")
    timings["bundle_s"] = time.perf_counter() - t0

    copies, install = edge_recipe()
    assert install[:2] == ["pip", "install"], install
    assert "torch" not in " ".join(install) and "[" not in " ".join(install), f"the edge install must not ask for extras: {install}"
    ctx = root / "context"
    ctx.mkdir()
    build_context(ctx, copies)

    venv = root / "venv"
    t0 = time.perf_counter()
    p = subprocess.run([sys.executable, "-m", "venv", str(venv)], capture_output=True, text=True, timeout=180)
    assert p.returncode == 0, p.stderr
    timings["venv_s"] = time.perf_counter() - t0
    env = clean_env(venv)
    py = venv / "bin" / "python"
    t0 = time.perf_counter()
    p = run([str(py), "-m", *install, "--quiet"], env, ctx, timeout=900)
    timings["install_s"] = time.perf_counter() - t0
    assert p.returncode == 0, f"{' '.join(install)} failed in a fresh venv:\n{p.stdout[-2000:]}\n{p.stderr[-4000:]}"
    print(f"\nedge install timings: {', '.join(f'{k} {v:.1f}' for k, v in timings.items())}")
    return {"venv": venv, "py": py, "env": env, "bundle": bundle, "cwd": root, "install": install}


def test_edge_install_has_no_torch_or_onnx(edge):
    code = (
        "import importlib.metadata as md, importlib.util as u, json\n"
        "names = sorted({d.metadata['Name'].lower() for d in md.distributions()})\n"
        "print(json.dumps({'dists': names, 'torch': u.find_spec('torch') is not None, 'onnx': u.find_spec('onnx') is not None}))\n"
    )
    p = run([str(edge["py"]), "-c", code], edge["env"], edge["cwd"], timeout=60)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    assert not got["torch"] and not got["onnx"], got
    dists = set(got["dists"])
    assert not dists & {"torch", "onnx", "safetensors", "tensorboard"}, dists
    assert {"marl-edge", "numpy", "onnxruntime", "pyzmq", "msgpack", "click"} <= dists, dists


def test_edge_venv_runs_marl_agent_help(edge):
    p = run([str(edge["venv"] / "bin" / "marl-agent"), "--help"], edge["env"], edge["cwd"], timeout=60)
    assert p.returncode == 0, p.stderr
    assert "Usage: marl-agent" in p.stdout and "AGENT_DIR" in p.stdout


def test_edge_venv_marl_eval_matches_the_main_venv(edge):
    from marl_edge.runtime.team import evaluate_bundle

    p = run([str(edge["venv"] / "bin" / "marl-eval"), str(edge["bundle"]), "--episodes", "4", "--seed", "3", "--json"],
            edge["env"], edge["cwd"], timeout=120)
    assert p.returncode == 0, p.stderr
    got = json.loads(p.stdout.strip().splitlines()[-1])
    want = evaluate_bundle(edge["bundle"], 4, 3)
    assert got["returns"] == want["returns"] and got["lengths"] == want["lengths"]
    assert got["seed"] == 3 and got["episodes"] == 4


def test_edge_venv_marl_train_says_to_install_the_train_extra(edge):
    for args in (["--steps", "10"], ["--help"]):
        p = run([str(edge["venv"] / "bin" / "marl-train"), *args], edge["env"], edge["cwd"], timeout=60)
        assert p.returncode != 0, p.stdout
        lines = [x for x in p.stderr.splitlines() if x.strip()]
        assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
        assert "marl-edge[train]" in lines[0] and "torch" in lines[0], lines[0]


def test_edge_venv_trusted_key_without_the_crypto_extra_says_what_to_install(edge, tmp_path):
    """Signed bundles need the crypto extra; the plain edge install runs unsigned ones and,
    given --trusted-key, says in one line what to install (no traceback)."""
    from marl_edge.runtime.signing import generate_signing_key

    p = run([str(edge["py"]), "-c", "import importlib.util as u; print(u.find_spec('cryptography') is not None)"], edge["env"], edge["cwd"], timeout=60)
    if p.stdout.strip() == "True":
        pytest.skip("the edge venv has cryptography (a dependency pulled it in)")
    _, pub, _ = generate_signing_key(tmp_path / "k")
    p = run([str(edge["venv"] / "bin" / "marl-eval"), str(edge["bundle"]), "--episodes", "1", "--trusted-key", str(pub)],
            edge["env"], edge["cwd"], timeout=120)
    assert p.returncode == 2, p.stderr
    lines = [x for x in p.stderr.splitlines() if x.strip()]
    assert len(lines) == 1 and "Traceback" not in p.stderr, p.stderr
    assert "marl-edge[crypto]" in lines[0] and "cryptography" in lines[0], lines[0]
