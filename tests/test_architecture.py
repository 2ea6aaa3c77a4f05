"""The architecture of docs/design.md, checked: who may import whom, which rooms
stay torch-free, that every relative Markdown link lands inside the
repository, and that nothing tracked points at a file outside it.

Static checks only (``ast`` and text): nothing here imports the package, so
they run in a second and need neither torch nor onnxruntime.
"""

from __future__ import annotations

import ast
import re
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PKG = "marl_edge"

# --------------------------------------------------------------------------
# The rooms and the allowed import directions (docs/design.md, "Import rules").
# A room is a top-level folder of the repository (a subpackage of marl_edge)
# or a root module (errors.py). Importing from one's own room is always fine;
# so is ``from marl_edge import __version__`` (the root __init__ imports nothing).
# --------------------------------------------------------------------------
ROOT_INIT = "__init__"
ALLOWED: dict[str, set[str]] = {
    ROOT_INIT: set(),
    "errors": set(),
    "envs": {"errors"},
    "wire": {"errors"},
    "robots": {"envs", "wire", "errors"},
    "runtime": {"envs", "wire", "robots", "errors"},
    "train": {"envs", "errors"},
    "export": {"train", "envs", "runtime", "wire", "errors"},
    "viz": {"envs", "errors"},
    "league": {"envs", "train", "export", "runtime", "errors"},
    "cli": {"envs", "wire", "robots", "runtime", "train", "export", "viz", "league", "errors"},
}
# What a robot installs leaves these out (pyproject's "train" extra); the edge rooms never import them.
EDGE_ROOMS = ("envs", "wire", "runtime", "robots", "viz")
TRAIN_ONLY_MODULES = ("torch", "onnx", "safetensors", "tensorboard")
NOT_ROOMS = {"tests", "benchmarks", "scripts", "docs"}


@dataclass(frozen=True)
class Edge:
    src: str  # room of the importing file
    dst: str  # room of the imported module
    file: str  # path relative to the root that was scanned
    line: int
    text: str  # the import as written

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.src} -> {self.dst} ({self.text})"


def package_files(root: Path) -> list[Path]:
    """Every .py file of the package rooted at ``root``: root modules plus every
    top-level folder that is a package (holds an __init__.py), recursively."""
    files = sorted(p for p in root.glob("*.py"))
    for d in sorted(root.iterdir()):
        if d.is_dir() and not d.name.startswith(".") and d.name not in NOT_ROOMS and (d / "__init__.py").is_file():
            files += sorted(p for p in d.rglob("*.py") if not any(part.startswith(".") for part in p.relative_to(root).parts))
    return files


def module_name(root: Path, path: Path) -> tuple[list[str], bool]:
    """(dotted parts under marl_edge, is_package) of a file of the package."""
    rel = path.relative_to(root).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        return [PKG] + parts[:-1], True
    return [PKG] + parts, False


def room_of_file(root: Path, path: Path) -> str:
    rel = path.relative_to(root)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _room_of_target(parts: list[str], names: list[str], root: Path) -> list[str]:
    """Rooms a resolved import target ``parts`` (starting with marl_edge) refers to.
    ``from marl_edge import x``: x may be a room (a folder, or errors.py) or an
    attribute of the root __init__."""
    if len(parts) > 1:
        return [parts[1]]
    out = []
    for n in names:
        if (root / n).is_dir() or (root / f"{n}.py").is_file():
            out.append(n)
        else:
            out.append(ROOT_INIT)
    return out or [ROOT_INIT]


def imports_of(root: Path, path: Path) -> list[tuple[int, str, list[str], str]]:
    """Every import in ``path``, wherever it sits (module level, functions,
    ``if TYPE_CHECKING``): (line, top-level external module or '', rooms, text)."""
    src = path.read_text(encoding="utf-8")
    tree = ast.parse(src, filename=str(path))
    mod, is_pkg = module_name(root, path)
    out = []
    lines = src.splitlines()
    for node in ast.walk(tree):
        if not isinstance(node, (ast.Import, ast.ImportFrom)):
            continue
        text = " ".join(x.strip() for x in lines[node.lineno - 1 : node.end_lineno]).strip("()")
        if isinstance(node, ast.Import):
            for a in node.names:
                parts = a.name.split(".")
                if parts[0] == PKG:
                    out.append((node.lineno, "", _room_of_target(parts, [], root), text))
                else:
                    out.append((node.lineno, parts[0], [], text))
        elif isinstance(node, ast.ImportFrom):
            names = [a.name for a in node.names]
            if node.level == 0:
                parts = (node.module or "").split(".")
                if parts[0] != PKG:
                    out.append((node.lineno, parts[0], [], text))
                    continue
            else:
                base = mod if is_pkg else mod[:-1]
                if node.level - 1 >= len(base):
                    raise AssertionError(f"{path}:{node.lineno}: relative import climbs above {PKG}: {text}")
                base = base[: len(base) - (node.level - 1)]
                parts = base + (node.module.split(".") if node.module else [])
            out.append((node.lineno, "", _room_of_target(parts, names, root), text))
    return out


def import_graph(root: Path) -> list[Edge]:
    """Every cross-room import of the package at ``root``."""
    edges = []
    for path in package_files(root):
        src = room_of_file(root, path)
        for line, _ext, rooms, text in imports_of(root, path):
            for dst in rooms:
                if dst != src:
                    edges.append(Edge(src, dst, str(path.relative_to(root)), line, text))
    return edges


def forbidden_edges(root: Path, allowed: dict[str, set[str]] = ALLOWED) -> list[str]:
    """Each import that crosses rooms against the table, as ``file:line: a -> b (import)``."""
    bad = []
    for e in import_graph(root):
        if e.src not in allowed:
            bad.append(f"{e.file}:{e.line}: room {e.src!r} is not in the table of allowed edges (tests/test_architecture.py ALLOWED, docs/design.md)")
        elif e.dst != ROOT_INIT and e.dst not in allowed[e.src]:
            bad.append(str(e))
    return bad


def train_only_imports(root: Path, rooms=EDGE_ROOMS, banned=TRAIN_ONLY_MODULES) -> list[str]:
    """Imports of torch/onnx/... (onnxruntime is not one of them) in the edge rooms."""
    bad = []
    for path in package_files(root):
        if room_of_file(root, path) not in rooms:
            continue
        for line, ext, _rooms, text in imports_of(root, path):
            if ext in banned:
                bad.append(f"{path.relative_to(root)}:{line}: {text}")
    return bad


def test_import_directions():
    """Every import between rooms follows an allowed edge (docs/design.md)."""
    bad = forbidden_edges(ROOT)
    assert not bad, "forbidden imports between rooms (see docs/design.md, import rules):\n" + "\n".join(bad)


def test_edge_rooms_never_import_torch_or_onnx():
    """envs, wire, runtime and robots run on a robot without the training extra."""
    bad = train_only_imports(ROOT)
    assert not bad, "an edge room imports a training-only module:\n" + "\n".join(bad)


def test_every_room_is_in_the_table():
    rooms = {room_of_file(ROOT, p) for p in package_files(ROOT)}
    assert rooms <= set(ALLOWED), f"rooms without a row in ALLOWED: {sorted(rooms - set(ALLOWED))}"


def _write(root: Path, rel: str, text: str = "") -> None:
    p = root / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)


def test_checker_reports_forbidden_imports(tmp_path):
    """The checker itself, on a tiny tree: it finds forbidden edges (absolute,
    relative, inside a function), passes the allowed ones, and flags torch in
    an edge room but not onnxruntime."""
    r = tmp_path
    _write(r, "__init__.py", '__version__ = "0"\n')
    _write(r, "errors.py", "class UserError(Exception):\n    pass\n")
    for room in ("envs", "wire", "robots", "runtime", "train", "export", "cli"):
        _write(r, f"{room}/__init__.py")
    _write(r, "envs/base.py", "from ..errors import UserError\n")  # allowed
    _write(r, "envs/bad.py", "import numpy\n\n\ndef f():\n    from ..train import learner\n")  # envs -> train, line 5
    _write(r, "robots/sim.py", "from marl_edge.runtime.agent import X\nfrom ..wire import protocol\n")  # robots -> runtime, line 1
    _write(r, "wire/deep/__init__.py")
    _write(r, "wire/deep/x.py", "from ... import errors\nfrom ...envs import base\n")  # wire -> errors ok, wire -> envs bad, line 2
    _write(r, "export/bundle.py", "from .. import __version__\nfrom ..runtime import bundle\nimport torch\n")  # all fine
    _write(r, "runtime/policy.py", "import onnxruntime as ort\n\n\ndef g():\n    import onnx.helper\n")  # onnx in runtime, line 5
    _write(r, "cli/train.py", "from ..train import registry\nfrom ..export import bundle\n")  # fine
    _write(r, "extra/__init__.py", "from ..envs import base\n")  # a room the table does not know
    _write(r, "tests/test_x.py", "from marl_edge.train import x\n")  # not part of the package

    bad = forbidden_edges(r)
    assert "envs/bad.py:5: envs -> train (from ..train import learner)" in bad
    assert "robots/sim.py:1: robots -> runtime (from marl_edge.runtime.agent import X)" in bad
    assert "wire/deep/x.py:2: wire -> envs (from ...envs import base)" in bad
    assert any(b.startswith("extra/__init__.py:1: room 'extra' is not in the table") for b in bad)
    assert len(bad) == 4, bad

    heavy = train_only_imports(r)
    assert heavy == ["runtime/policy.py:5: import onnx.helper"]


# --------------------------------------------------------------------------
# Markdown links
# --------------------------------------------------------------------------
def tracked(*patterns: str) -> list[Path]:
    """Tracked files matching git pathspecs; without git, the same from the tree."""
    try:
        out = subprocess.run(["git", "ls-files", "-z", "--", *patterns], cwd=ROOT, capture_output=True, check=True, timeout=30).stdout
        files = [ROOT / f for f in out.decode().split("\0") if f]
        if files:
            return sorted(p for p in files if p.is_file())
    except (OSError, subprocess.SubprocessError):
        pass
    found: set[Path] = set()
    for pat in patterns:  # git's "*.md" matches in every folder; a pattern with a "/" is anchored at the root
        hits = ROOT.glob(pat) if "/" in pat else ROOT.rglob(pat)
        found.update(p for p in hits if not any(x.startswith(".") for x in p.relative_to(ROOT).parts))
    return sorted(p for p in found if p.is_file())


FENCE = re.compile(r"^\s{0,3}(`{3,}|~{3,})")
INLINE_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\[\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
REF_DEF = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s|$)")
CODE_SPAN = re.compile(r"(`+)(?:(?!\1).)+?\1")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
HEADING = re.compile(r"^\s{0,3}(#{1,6})\s+(.*?)\s*#*\s*$")
HTML_ID = re.compile(r"<a\s+[^>]*(?:name|id)=\"([^\"]+)\"", re.I)


def prose_lines(text: str):
    """(line number, line) outside fenced code blocks, inline code removed."""
    fence = None
    for i, line in enumerate(text.splitlines(), 1):
        m = FENCE.match(line)
        if m:
            mark = m.group(1)
            if fence is None:
                fence = mark[0] * len(mark)
            elif mark.startswith(fence):
                fence = None
            continue
        if fence is None:
            yield i, CODE_SPAN.sub("", line)


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: the text (links and code marks stripped),
    lower-cased, punctuation dropped, spaces to hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(md: Path) -> set[str]:
    out: set[str] = set()
    seen: dict[str, int] = {}
    fence = None
    for line in md.read_text(encoding="utf-8").splitlines():
        m = FENCE.match(line)
        if m:
            mark = m.group(1)
            fence = mark[0] * len(mark) if fence is None else (None if mark.startswith(fence) else fence)
            continue
        if fence is not None:
            continue
        out.update(HTML_ID.findall(line))
        h = HEADING.match(line)
        if h:
            s = slug(h.group(2))
            n = seen.get(s, 0)
            seen[s] = n + 1
            out.add(s if n == 0 else f"{s}-{n}")
    return out


def md_links(md: Path):
    for i, line in prose_lines(md.read_text(encoding="utf-8")):
        for target in INLINE_LINK.findall(line):
            yield i, target
        m = REF_DEF.match(line)
        if m:
            yield i, m.group(1)


def broken_links(files: list[Path], root: Path = ROOT) -> list[str]:
    bad = []
    for md in files:
        rel = md.relative_to(root)
        for line, target in md_links(md):
            if SCHEME.match(target):  # http:, https:, mailto:, ...
                continue
            path, _, anchor = target.partition("#")
            if not path:
                dest = md
            else:
                if path.startswith("/"):
                    bad.append(f"{rel}:{line}: {target} (an absolute path; link relative to {rel.parent or '.'})")
                    continue
                dest = (md.parent / path).resolve()
                try:
                    dest.relative_to(root)
                except ValueError:
                    bad.append(f"{rel}:{line}: {target} (outside the repository)")
                    continue
                if not dest.exists():
                    bad.append(f"{rel}:{line}: {target} (no such file or folder)")
                    continue
            if anchor and dest.suffix == ".md" and dest.is_file() and anchor not in anchors(dest):
                bad.append(f"{rel}:{line}: {target} (no heading #{anchor} in {dest.relative_to(root)})")
    return bad


def test_markdown_links_resolve():
    """Every relative link in every tracked .md file reaches a file or folder of
    the repository, and its #anchor (if any) a heading of the target page."""
    files = tracked("*.md")
    assert files, "no tracked Markdown found"
    bad = broken_links(files)
    assert not bad, "broken Markdown links:\n" + "\n".join(bad)


def test_link_checker_reports_bad_links(tmp_path):
    _write(tmp_path, "docs/a.md", "# Top\n\n## 2. The `msg` frame\n\nsee [b](b.md), [up](../README.md), [folder](../src)\n")
    _write(tmp_path, "docs/b.md", "# B\n```\n[not a link](nowhere.md)\n```\nText `[code](x.md)` and [web](https://example.org/x.md).\n"
           "[ok](a.md#2-the-msg-frame) [here](#b) [gone](missing.md) [bad anchor](a.md#nope)\n[ext](../../out.md)\n[r]: c.md\n")
    _write(tmp_path, "README.md", "[a](docs/a.md#top)\n")
    (tmp_path / "src").mkdir()
    bad = broken_links([tmp_path / "docs/a.md", tmp_path / "docs/b.md", tmp_path / "README.md"], root=tmp_path)
    assert bad == [
        "docs/b.md:6: missing.md (no such file or folder)",
        "docs/b.md:6: a.md#nope (no heading #nope in docs/a.md)",
        "docs/b.md:7: ../../out.md (outside the repository)",
        "docs/b.md:8: c.md (no such file or folder)",
    ], bad


# --------------------------------------------------------------------------
# Stand-alone: the repository refers to nothing outside itself
# --------------------------------------------------------------------------
# Paths that exist only on the machine a text was written on. /tmp is not one:
# ``--bundles /tmp/x`` or ``ipc:///tmp/w.sock`` is a fine example anywhere.
MACHINE_PATH = re.compile(r"(?<![\w.~-])/(?:work|root|home|Users|mnt|shared)/[^\s'\"`)>]*")
MD_MENTION = re.compile(r"(?<![\w/.-])((?:\.{1,2}/)*[\w-]+(?:/[\w.-]+)*\.md)\b")


# Markdown files the tools write into their outputs (not files of the repository)
WRITTEN_BY_THE_TOOLS = {"sweep.md"}  # marl-train --seeds/--grid: ROOT/sweep.md


def _md_mention_ok(name: str, where: Path, root: Path) -> bool:
    """A mention of a .md file names a file of the repository: relative to the
    mentioning file, to the repository root, or (a bare name) to docs/; or it
    names a file the tools write (``WRITTEN_BY_THE_TOOLS``)."""
    if Path(name).name in WRITTEN_BY_THE_TOOLS:
        return True
    for base in (where.parent, root, root / "docs"):
        p = (base / name).resolve()
        try:
            p.relative_to(root)
        except ValueError:
            continue
        if p.is_file():
            return True
    return False


# built from parts, so this file does not itself name the paths it looks for
SHARED = "../" + "shared"
ONE_MACHINE = "/" + "work/main/x"


def outside_references(files: list[Path], root: Path = ROOT) -> list[str]:
    bad = []
    for f in files:
        rel = f.relative_to(root)
        text = f.read_text(encoding="utf-8", errors="replace")
        for i, line in enumerate(text.splitlines(), 1):
            seen: set[str] = set()
            for m in MACHINE_PATH.finditer(line):
                bad.append(f"{rel}:{i}: {m.group(0)} (a path on one machine)")
            if SHARED in line:
                bad.append(f"{rel}:{i}: {SHARED} (outside the repository)")
            for m in MD_MENTION.finditer(line):
                if m.group(1) not in seen and not _md_mention_ok(m.group(1), f, root):
                    seen.add(m.group(1))
                    bad.append(f"{rel}:{i}: {m.group(1)} (not a file of the repository)")
    return bad


def standalone_files() -> list[Path]:
    """The text a reader of the repository follows: every Markdown file, the
    package's and the benchmarks' and scripts' sources (docstrings and
    comments cite docs there). tests/ is left out: tests write files of
    their own under tmp dirs."""
    files = tracked("*.md", "*.py", "*.sh", "*.toml", "robots/Containerfile", ".ci/run")
    return [f for f in files if f.relative_to(ROOT).parts[0] != "tests"]


def test_nothing_refers_outside_the_repository():
    """No tracked doc or source names a file that is not in the repository
    (a design or notes file kept elsewhere, a machine's absolute path)."""
    bad = outside_references(standalone_files())
    assert not bad, "references to files outside the repository:\n" + "\n".join(bad)


def test_outside_reference_checker(tmp_path):
    _write(tmp_path, "docs/design.md", "# d\n")
    _write(tmp_path, "docs/other.md", "# o\n")
    _write(tmp_path, "envs/base.py", '"""The env contract (docs/design.md contract 1; see other.md)."""\n')
    _write(tmp_path, "runtime/x.py", f'"""See {SHARED}/design.md and NOTES.md."""\nPATH = "{ONE_MACHINE}"  # and /tmp/ok\n')
    files = [tmp_path / "envs/base.py", tmp_path / "runtime/x.py"]
    bad = outside_references(files, root=tmp_path)
    assert bad == [
        f"runtime/x.py:1: {SHARED} (outside the repository)",
        f"runtime/x.py:1: {SHARED}/design.md (not a file of the repository)",
        "runtime/x.py:1: NOTES.md (not a file of the repository)",
        f"runtime/x.py:2: {ONE_MACHINE} (a path on one machine)",
    ], bad


# --------------------------------------------------------------------------
# Packaging: every room is shipped
# --------------------------------------------------------------------------
def test_every_package_folder_is_in_pyproject():
    """pyproject lists the subpackages explicitly (the root is the package), so a
    new room or sub-folder (wire/, train/mixers/) must be added there or a
    non-editable install silently leaves it out."""
    try:
        import tomllib
    except ImportError:  # Python 3.10
        tomllib = pytest.importorskip("tomli")
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    listed = set(cfg["packages"])
    dirs = cfg.get("package-dir", {})
    want = {PKG}
    for path in package_files(ROOT):
        if path.name == "__init__.py" and path.parent != ROOT:
            want.add(".".join(module_name(ROOT, path)[0]))
    missing = sorted(want - listed)
    assert not missing, f"packages missing from pyproject.toml [tool.setuptools] packages: {missing}"
    rooms = sorted({n.split(".")[1] for n in want if n.count(".") >= 1})
    unmapped = [r for r in rooms if dirs.get(f"{PKG}.{r}") != r]
    assert not unmapped, f"rooms missing from [tool.setuptools.package-dir]: {unmapped}"


# --------------------------------------------------------------------------
# Contract numbers cited in code and docs exist in docs/design.md
# --------------------------------------------------------------------------
CITATION = re.compile(r"design\.md\)?,?\s+contracts?\s+(\d+(?:\s*(?:-|–|,|and)\s*\d+)*)")


def cited_contracts(text: str) -> list[tuple[int, int]]:
    """(line, contract number) for each "design.md contract N" / "contracts 2-3" / "contracts 4 and 5"."""
    out = []
    for i, line in enumerate(text.splitlines(), 1):
        for m in CITATION.finditer(line):
            spec = m.group(1)
            nums = [int(x) for x in re.findall(r"\d+", spec)]
            if re.search(r"\d\s*[-–]\s*\d", spec) and len(nums) == 2:
                nums = list(range(nums[0], nums[1] + 1))
            out += [(i, n) for n in nums]
    return out


def test_cited_contracts_exist():
    """Code and docs cite "docs/design.md contract N"; design.md has exactly
    contracts 1..6 as headings, and every cited N is one of them."""
    design = (ROOT / "docs" / "design.md").read_text(encoding="utf-8")
    heads = [int(n) for n in re.findall(r"^### Contract (\d+):", design, flags=re.M)]
    assert heads == [1, 2, 3, 4, 5, 6], heads
    bad = []
    for f in standalone_files() + tracked("tests/*.py"):
        if f == Path(__file__).resolve():  # its own examples
            continue
        for line, n in cited_contracts(f.read_text(encoding="utf-8", errors="replace")):
            if n not in heads:
                bad.append(f"{f.relative_to(ROOT)}:{line}: contract {n}")
    assert not bad, "citations of contracts design.md does not have:\n" + "\n".join(bad)


def test_citation_parser():
    text = "x (docs/design.md contracts 2-3) and [design.md](design.md) contracts 4 and 5\ndesign.md contract 7\n"
    assert cited_contracts(text) == [(1, 2), (1, 3), (1, 4), (1, 5), (2, 7)]
