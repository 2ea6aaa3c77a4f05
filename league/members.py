"""The league directory: members as bundles plus who/when/what, written atomically.

::

    LEAGUE/
      league.json           the self-play config (mode, game, algo, budget, seed)
      members.json          the members, oldest first (Member.to_dict each)
      members/<name>/       each member's bundle (contract 5), made by the marl-export code
      learner/              self-play: the learner's run directory (config.json, checkpoints/):
                            the export reads a snapshot's weights from there
      learners/<name>/      a league (league.py): one run directory per learner
      payoff.json           a league: the payoff counts and Elo (payoff.py)
      state.json            a league: where --resume continues from (league.py)

Every JSON file is written to a temporary file and renamed; a bundle is
built in a temporary folder and renamed (``export.bundle.export_run``). A
crash leaves the old ``members.json`` or the new one, and a member is listed
only once its bundle is complete.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from .opponents import LeagueError

MEMBERS = "members.json"
CONFIG = "league.json"


def write_json_atomic(path: Path, obj: Any) -> None:
    """``obj`` as JSON at ``path``: a temporary file in the same folder, then ``os.replace``."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@dataclass(frozen=True)
class Member:
    """A frozen league member: who it is, when it was taken, what it is."""

    name: str  # e.g. "main-000004" (learner, then the snapshot's index)
    learner: str  # which learner it is a snapshot of
    mode: str  # the self-play mode that trained it (naive, fsp)
    env_steps: int  # the learner's env steps when it was taken
    created: str  # wall-clock time, ISO 8601
    bundle: str  # the bundle folder, relative to the league directory
    role: str = ""  # league: main | main_exploiter | league_exploiter ("" in self-play; older members.json have none)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


class LeagueDir:
    """A league directory on disk (see the module docstring)."""

    def __init__(self, root: Path) -> None:
        self.root = Path(root)

    @classmethod
    def create(cls, root: Path, config: dict[str, Any]) -> "LeagueDir":
        root = Path(root)
        if (root / MEMBERS).exists() or (root / CONFIG).exists():
            raise LeagueError(f"{root} already holds a league; choose another --out (marl-league league continues one with --resume)")
        try:
            (root / "members").mkdir(parents=True, exist_ok=True)
        except OSError as e:
            raise LeagueError(f"cannot write the league directory {root}: {e.strerror or e}") from None
        league = cls(root)
        write_json_atomic(root / CONFIG, config)
        write_json_atomic(root / MEMBERS, [])
        return league

    @property
    def learner_dir(self) -> Path:
        return self.root / "learner"

    def bundle_path(self, member: Member) -> Path:
        return self.root / member.bundle

    def members(self) -> list[Member]:
        path = self.root / MEMBERS
        if not path.is_file():
            raise LeagueError(f"{self.root} is not a league directory (no {MEMBERS})")
        try:
            return [Member(**d) for d in json.loads(path.read_text())]
        except (json.JSONDecodeError, TypeError) as e:
            raise LeagueError(f"{path} is corrupt: {e}") from None

    def config(self) -> dict[str, Any]:
        return json.loads((self.root / CONFIG).read_text())

    def learner_path(self, learner: str) -> Path:
        """A league learner's run directory."""
        return self.root / "learners" / learner

    def new_member(self, learner: str, mode: str, env_steps: int, role: str = "") -> Member:
        """The record of the next snapshot of ``learner`` (not yet listed)."""
        name = f"{learner}-{len(self.members()):06d}"
        return Member(name, learner, mode, int(env_steps), time.strftime("%Y-%m-%dT%H:%M:%S%z"), f"members/{name}", role)

    def truncate(self, n: int) -> list[Member]:
        """Keep the first ``n`` members and delete every other bundle folder (a resume
        drops what a killed run listed or exported after its last commit); returns the
        members kept."""
        kept = self.members()[:n]
        if len(kept) < n:
            raise LeagueError(f"{self.root / MEMBERS} lists {len(kept)} members, the league's state expects {n}; it cannot be resumed")
        write_json_atomic(self.root / MEMBERS, [m.to_dict() for m in kept])
        listed = {Path(m.bundle).name for m in kept}
        for p in (self.root / "members").iterdir():
            if p.name not in listed:
                shutil.rmtree(p, ignore_errors=True)
        return kept

    def add(self, member: Member) -> None:
        """List ``member`` (its bundle must be complete already)."""
        if not (self.bundle_path(member) / "swarm.json").is_file():
            raise LeagueError(f"{self.bundle_path(member)}: no bundle; export it before listing the member")
        write_json_atomic(self.root / MEMBERS, [m.to_dict() for m in self.members()] + [member.to_dict()])
