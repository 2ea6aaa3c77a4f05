"""The league's payoff table: game counts between players, kept exactly.

Players are the league's members (frozen bundles) and its learners. A
learner's row is its current *generation*: a learner that is reset
(re-initialised) starts a new row ``<learner>@<generation>``, and the old row
stays in the table, so every game ever played is still counted and a reset
learner's win rates start from scratch.

Each finished training episode is one game between the learner's team and
the member that played the other team. Its outcome comes from the learner
team's return ``R`` (the sum over the episode of the team reward): ``R > 0``
a win, ``R == 0`` a draw, ``R < 0`` a loss. That reading assumes a zero-sum
game, where the other team's return is ``-R``; every two-team env of the
toolkit is zero-sum.

Counts are stored from both sides: a win of ``i`` over ``j`` adds 1 to
``games[i, j]``, ``games[j, i]`` and ``wins[i, j]``; a draw adds 1 to
``draws[i, j]`` and ``draws[j, i]``. So ``games`` and ``draws`` are symmetric
and ``wins[i, j] + wins[j, i] + draws[i, j] == games[i, j]``.

The win rate of ``i`` against ``j`` counts a draw as half a win,
``(wins + draws / 2) / games``, and is 0.5 before they have played (what
AlphaStar's matchmaking assumes of an unknown opponent). The Elo ratings are
``league.elo.elo_ratings`` fitted to the same counts.

``payoff.json`` (in the league directory, written atomically) holds the
players, the three count matrices, the win-rate matrix and the Elo ratings.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from .elo import elo_ratings
from .members import write_json_atomic
from .opponents import LeagueError

PAYOFF = "payoff.json"
KINDS = ("member", "learner")


def outcome(team_return: float) -> int:
    """+1 win, 0 draw, -1 loss, from the learner team's episode return in a zero-sum game."""
    return int(np.sign(team_return))


@dataclass
class Player:
    name: str  # a member's name, or "<learner>@<generation>"
    kind: str  # member | learner
    role: str  # main | main_exploiter | league_exploiter ("" for self-play members)
    learner: str  # the learner it is (a member: the learner it is a snapshot of)


@dataclass
class Payoff:
    """Count matrices over ``players`` (grown by ``add``)."""

    players: list[Player] = field(default_factory=list)
    wins: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    draws: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))
    games: np.ndarray = field(default_factory=lambda: np.zeros((0, 0), dtype=np.int64))

    def index(self, name: str) -> int:
        for i, p in enumerate(self.players):
            if p.name == name:
                return i
        raise LeagueError(f"no player {name!r} in the payoff table")

    def indices(self) -> dict[str, int]:
        """Every player's index, by name."""
        return {p.name: i for i, p in enumerate(self.players)}

    def add(self, name: str, kind: str, role: str, learner: str) -> int:
        """A new player with no games; returns its index."""
        if kind not in KINDS:
            raise LeagueError(f"player kind must be one of {', '.join(KINDS)}, got {kind!r}")
        if any(p.name == name for p in self.players):
            raise LeagueError(f"player {name!r} is already in the payoff table")
        self.players.append(Player(name, kind, role, learner))
        m = len(self.players)
        for k in ("wins", "draws", "games"):
            grown = np.zeros((m, m), dtype=np.int64)
            grown[: m - 1, : m - 1] = getattr(self, k)
            setattr(self, k, grown)
        return m - 1

    def record(self, i: int, j: int, result: int) -> None:
        """One game of ``i`` against ``j``: ``result`` +1 (``i`` won), 0 (draw) or -1 (``i`` lost)."""
        if i == j:
            raise LeagueError("a player cannot play itself in the payoff table")
        self.games[i, j] += 1
        self.games[j, i] += 1
        if result > 0:
            self.wins[i, j] += 1
        elif result < 0:
            self.wins[j, i] += 1
        else:
            self.draws[i, j] += 1
            self.draws[j, i] += 1

    def win_rates(self, i: int, opponents: list[int] | np.ndarray) -> np.ndarray:
        """``i``'s win rate against each of ``opponents`` (draws count half; 0.5 before any game)."""
        js = np.asarray(opponents, dtype=np.int64)
        g = self.games[i, js].astype(np.float64)
        score = self.wins[i, js] + 0.5 * self.draws[i, js]
        return np.where(g > 0, score / np.maximum(g, 1), 0.5)

    def win_rate_matrix(self) -> np.ndarray:
        """Every pair's win rate, NaN where they have not played."""
        g = self.games.astype(np.float64)
        with np.errstate(invalid="ignore", divide="ignore"):
            return np.where(g > 0, (self.wins + 0.5 * self.draws) / g, np.nan)

    def elo(self) -> np.ndarray:
        """Elo ratings fitted to the counts (``draws`` passed once per pair: it is symmetric here)."""
        if not self.players:
            return np.zeros(0)
        return elo_ratings(self.wins, np.triu(self.draws, 1))

    def to_dict(self) -> dict[str, Any]:
        wr = self.win_rate_matrix()
        return {
            "players": [p.__dict__ for p in self.players],
            "wins": self.wins.tolist(),
            "draws": self.draws.tolist(),
            "games": self.games.tolist(),
            "win_rate": [[None if np.isnan(x) else round(float(x), 6) for x in row] for row in wr],
            "elo": [round(float(r), 3) for r in self.elo()],
        }

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "Payoff":
        players = [Player(**p) for p in d["players"]]
        m = len(players)

        def mat(key: str) -> np.ndarray:
            return np.asarray(d[key], dtype=np.int64).reshape(m, m)

        return cls(players, mat("wins"), mat("draws"), mat("games"))

    def write(self, league_root: Path) -> None:
        write_json_atomic(Path(league_root) / PAYOFF, self.to_dict())


def read_payoff(league_root: Path) -> Payoff:
    path = Path(league_root) / PAYOFF
    if not path.is_file():
        raise LeagueError(f"{league_root} has no {PAYOFF} (only a league run writes one: marl-league league)")
    try:
        return Payoff.from_dict(json.loads(path.read_text()))
    except (json.JSONDecodeError, KeyError, TypeError, ValueError) as e:
        raise LeagueError(f"{path} is corrupt: {e}") from None
