"""Evaluation matches between league members: in process, or as Ray tasks.

A match is ``MatchSpec.episodes`` episodes of a two-team game (a registered
env with ``EnvSpec.teams``) with bundle A playing team 0 and bundle B team 1.
Both bundles are played by the runtime's ONNX Runtime policy through
``opponents.Member`` (docs/design.md contract 5), exactly as self-play plays
its opponents: an actor-critic's bundle samples from its masked softmax when
``sample`` is set, anything else plays its greedy action.

**Determinism.** Episode ``i`` is ``episode_seeds(seed, episodes)[i]``, and
each side's sampled actions come from a generator seeded by that episode
seed (one stream per side), so a spec gives the same result whatever the
batch, the process or the machine that plays it. That is what makes a Ray
run equal an in-process run: ``wall_s`` is the only field that differs, and
it is left out of comparisons.

**Ray** (the optional ``ray`` extra) runs one task per match. It is imported
only by ``play_matches`` with ``workers >= 1``. Bundles are **shipped as
bytes** inside the task (each distinct bundle is put into Ray's object store
once) and unpacked into a temporary folder on the worker, which is removed
after the match: the nodes of a cluster need the package installed, but no
shared filesystem and no copy of the league directory.
"""

from __future__ import annotations

import tempfile
import time
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from ..envs import EnvSpec, make
from ..envs.base import episode_seeds
from ..errors import UserError
from ..runtime.bundle import MANIFEST, load_bundle
from .opponents import LeagueError, Member

MAX_BATCH = 64  # episodes played at once by one match (larger matches run in chunks; results do not depend on it)
DRAW_TOL = 1e-6  # |team A's return| at most this is a draw (returns are sums of float32 rewards)
RAY_EXTRA = "pip install 'marl-edge[ray]'"


@dataclass(frozen=True)
class MatchSpec:
    """Bundle A (team 0) against bundle B (team 1) in ``game`` for ``episodes`` episodes."""

    bundle_a: Path
    bundle_b: Path
    game: str = "rps"
    game_options: dict[str, Any] = field(default_factory=dict)
    episodes: int = 100
    seed: int = 0
    sample: bool = True  # mixed strategies from the logits (greedy for bundles without logits)


@dataclass(frozen=True)
class MatchResult:
    """Outcomes of team A (bundle A) and both teams' mean returns over the match's episodes."""

    wins: int
    draws: int
    losses: int
    return_a: float
    return_b: float
    episodes: int
    wall_s: float = field(default=0.0, compare=False)  # the only field that depends on where it ran

    def to_dict(self) -> dict[str, Any]:
        return {"wins": self.wins, "draws": self.draws, "losses": self.losses, "return_a": self.return_a,
                "return_b": self.return_b, "episodes": self.episodes, "wall_s": self.wall_s}


def check_match(spec: MatchSpec) -> EnvSpec:
    """The game's spec, once the match is known to be playable: a two-team game with discrete
    actions, and bundles whose policies fit their team (agents, observations, actions).
    ``play_matches`` checks every spec before it starts Ray, so errors name the user's paths."""
    if spec.episodes < 1:
        raise LeagueError(f"a match needs at least 1 episode, got {spec.episodes}")
    env = make(spec.game, n_envs=1, **spec.game_options)
    gs = env.spec
    env.close()
    if len(gs.teams) != 2 or not gs.discrete:
        raise LeagueError(f"{spec.game}: a match needs a game with two teams and discrete actions")
    for path, team in zip((spec.bundle_a, spec.bundle_b), gs.teams):
        bs = load_bundle(path, verify_files=False).manifest.env_spec
        if (bs.n_agents, bs.obs_dim, bs.n_actions) != (len(team), gs.obs_dim, gs.n_actions):
            raise LeagueError(f"{path}: the bundle has {bs.n_agents} agent(s), obs_dim {bs.obs_dim} and {bs.n_actions} actions; "
                              f"its team in {spec.game} has {len(team)}, {gs.obs_dim} and {gs.n_actions}")
    return gs


def play_match(spec: MatchSpec) -> MatchResult:
    """Play ``spec`` in this process (see the module docstring); the same spec gives the same result."""
    start = time.perf_counter()
    teams = [list(t) for t in check_match(spec).teams]
    batch = min(spec.episodes, MAX_BATCH)
    env = make(spec.game, n_envs=batch, **spec.game_options)
    try:
        sides = [Member(Path(p), batch, len(t), spec.sample) for p, t in zip((spec.bundle_a, spec.bundle_b), teams)]
        n_chunks = -(-spec.episodes // batch)
        seeds = episode_seeds(spec.seed, n_chunks * batch)  # prefix-stable: padding the last chunk changes nothing before it
        returns = np.concatenate([_play_chunk(env, sides, teams, seeds[c * batch:(c + 1) * batch])
                                  for c in range(n_chunks)])[:spec.episodes]
    finally:
        env.close()
    ra = returns[:, 0]
    return MatchResult(wins=int((ra > DRAW_TOL).sum()), draws=int((np.abs(ra) <= DRAW_TOL).sum()), losses=int((ra < -DRAW_TOL).sum()),
                       return_a=float(ra.mean()), return_b=float(returns[:, 1].mean()), episodes=spec.episodes,
                       wall_s=time.perf_counter() - start)


def _play_chunk(env: Any, sides: list[Member], teams: list[list[int]], seeds: np.ndarray) -> np.ndarray:
    """Team returns ``[len(seeds), 2]`` (per step, the mean reward of the team's agents, summed)."""
    b = len(seeds)
    ts = env.reset(seeds)
    everyone = np.ones(b, dtype=bool)
    for side in sides:
        side.reset(everyone)
    # one stream per side and episode, seeded by the episode seed (as TeamView seeds its opponent)
    rngs = [[np.random.default_rng([int(s), 0xA11, k]) for s in seeds] for k in range(2)]
    returns = np.zeros((b, 2))
    while not ts.done.all():
        rows = np.flatnonzero(~ts.done)
        joint = np.zeros((b, env.spec.n_agents), dtype=np.int64)
        for k, (side, team) in enumerate(zip(sides, teams)):
            acts = side.act(ts.obs[:, team], ts.avail_actions[:, team], rows, [rngs[k][r] for r in rows])
            joint[np.ix_(rows, team)] = acts
        ts = env.step(joint)
        for k, team in enumerate(teams):
            returns[:, k] += ts.reward[:, team].astype(np.float64).mean(axis=1)
    return returns


# ---- many matches: in process or on Ray --------------------------------------------------------------


@dataclass(frozen=True)
class BundleBytes:
    """A bundle folder as bytes (relative path -> content), to ship to a worker without a shared filesystem."""

    files: dict[str, bytes]

    @classmethod
    def read(cls, path: Path) -> "BundleBytes":
        path = Path(path)
        if not (path / MANIFEST).is_file():
            raise LeagueError(f"{path} is not a bundle (no {MANIFEST})")
        return cls({p.relative_to(path).as_posix(): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()})

    def write(self, out: Path) -> Path:
        """Unpack into the new folder ``out`` and return it (``load_bundle`` checks the files' sha256 when the match loads it)."""
        for name, data in self.files.items():
            target = Path(out) / name
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(data)
        return Path(out)


def play_shipped(spec: MatchSpec, a: BundleBytes, b: BundleBytes) -> MatchResult:
    """``play_match`` on a worker: the bundles arrive as bytes, live in a temporary folder for the match only."""
    with tempfile.TemporaryDirectory(prefix="marl-edge-match-") as tmp:
        return play_match(replace(spec, bundle_a=a.write(Path(tmp) / "a"), bundle_b=b.write(Path(tmp) / "b")))


def _import_ray() -> Any:
    try:
        import ray
    except ImportError:
        raise LeagueError(f"matches on Ray (--workers >= 1) need Ray: {RAY_EXTRA}, or use --workers 0 to play in this process") from None
    return ray


def check_workers(workers: int, address: str | None) -> None:
    if workers < 0:
        raise LeagueError(f"--workers must be >= 0, got {workers}")
    if workers == 0 and address is not None:
        raise LeagueError("--address joins a Ray cluster; give --workers >= 1 with it")


def play_matches(specs: Sequence[MatchSpec], workers: int = 0, address: str | None = None,
                 progress: Callable[[int], None] | None = None) -> list[MatchResult]:
    """Every spec's result, in spec order.

    ``workers=0``: in this process, one match after the other. ``workers>=1``:
    one Ray task per match, on a local Ray of ``workers`` CPUs (``address=None``)
    or on the cluster at ``address`` ("auto" or "HOST:6379"),
    whose CPUs then set the parallelism. A Ray started here is shut down before
    returning; one the caller started (``ray.is_initialized()``) is used and left running.
    ``progress(n_done)`` is called as matches finish (in any order on Ray)."""
    check_workers(workers, address)
    if workers == 0:
        results = []
        for s in specs:
            results.append(play_match(s))
            if progress is not None:
                progress(len(results))
        return results
    ray = _import_ray()
    import logging

    for s in specs:
        check_match(s)
    shipped = {p: BundleBytes.read(p) for p in dict.fromkeys(Path(x) for s in specs for x in (s.bundle_a, s.bundle_b))}
    ours = not ray.is_initialized()  # a caller's running Ray is used as it is, and left running
    if ours and address is None:
        ray.init(num_cpus=workers, include_dashboard=False, logging_level=logging.WARNING)
    elif ours:
        ray.init(address=address, logging_level=logging.WARNING)
    try:
        refs = {p: ray.put(bb) for p, bb in shipped.items()}  # each bundle enters the object store once
        task = ray.remote(num_cpus=1)(play_shipped)
        pending = [task.remote(s, refs[Path(s.bundle_a)], refs[Path(s.bundle_b)]) for s in specs]
        try:
            waiting = list(pending)
            while waiting:
                done, waiting = ray.wait(waiting, num_returns=1)
                ray.get(done)  # raises a task's error as soon as it is known
                if progress is not None:
                    progress(len(pending) - len(waiting))
            return list(ray.get(pending))
        except ray.exceptions.RayTaskError as e:
            if isinstance(e.cause, UserError):  # a user error on the worker stays a one-line user error
                raise e.cause from None
            raise
    finally:
        if ours:
            ray.shutdown()


# ---- a round-robin of a league's members: the payoff by evaluation ----------------------------------------


def member_game(bundle: Path) -> tuple[str, dict[str, Any]]:
    """The game a member was trained in, read from its bundle: a self-play member's env is
    ``team_view``, whose options name the game and its options."""
    env = load_bundle(bundle, verify_files=False).manifest.env
    if env.name != "team_view" or "game" not in env.options:
        raise LeagueError(f"{bundle}: not a league member (its env is {env.name!r}, not a team of a two-team game)")
    return str(env.options["game"]), dict(env.options.get("game_options") or {})


def is_symmetric(game: str, game_options: dict[str, Any]) -> bool:
    """Whether swapping seats cannot change a match: known only for matrix games, whose payoff
    is then antisymmetric (``A == -A^T``). Any other game counts as asymmetric (both seats are played)."""
    env = make(game, n_envs=1, **game_options)
    try:
        payoff = env.spec.options.get("payoff")
    finally:
        env.close()
    if payoff is None:
        return False
    a = np.asarray(payoff, dtype=np.float64)
    return a.ndim == 2 and a.shape[0] == a.shape[1] and bool(np.allclose(a, -a.T))


def round_robin(bundles: Sequence[Path], game: str, game_options: dict[str, Any], episodes: int, seed: int = 0,
                sample: bool = True, both_seats: bool = True) -> list[tuple[int, int, MatchSpec]]:
    """``(i, j, spec)`` for every pair ``i < j``: member ``i`` in seat 0 against ``j`` in seat 1, and
    with ``both_seats`` also ``j`` in seat 0 against ``i``. Every match uses the same episode
    seeds, so every pair meets in the same episodes (common random numbers)."""
    out = []
    for i in range(len(bundles)):
        for j in range(i + 1, len(bundles)):
            for a, b in ((i, j), (j, i)) if both_seats else ((i, j),):
                out.append((a, b, MatchSpec(Path(bundles[a]), Path(bundles[b]), game, dict(game_options), episodes, seed, sample)))
    return out


def payoff_table(names: Sequence[str], pairs: Sequence[tuple[int, int]], results: Sequence[MatchResult]) -> dict[str, Any]:
    """Counts over every match, seats added up: ``wins[i][j]`` games ``i`` won against ``j``,
    ``draws[i][j]`` (symmetric) drawn games between them, ``games[i][j]`` (symmetric) all their
    games; ``win_rate[i][j]`` = (wins + draws / 2) / games (None where they never met); and
    Elo ratings fitted to the counts (``league.elo.elo_ratings``)."""
    from .elo import elo_ratings

    m = len(names)
    wins, draws = np.zeros((m, m), dtype=np.int64), np.zeros((m, m), dtype=np.int64)
    for (a, b), r in zip(pairs, results):
        wins[a, b] += r.wins
        wins[b, a] += r.losses
        draws[a, b] += r.draws
        draws[b, a] += r.draws
    games = wins + wins.T + draws
    with np.errstate(invalid="ignore", divide="ignore"):
        rate = (wins + 0.5 * draws) / games
    elo = elo_ratings(wins, np.triu(draws))  # each drawn game once (elo_ratings adds the two triangles)
    return {
        "members": list(names),
        "wins": wins.tolist(),
        "draws": draws.tolist(),
        "games": games.tolist(),
        "win_rate": [[None if g == 0 else round(float(x), 6) for x, g in zip(rr, gg)] for rr, gg in zip(rate, games)],
        "elo": {n: round(float(e), 2) for n, e in zip(names, elo)},
    }
