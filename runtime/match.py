"""A match: team A's bundle against team B's bundle in the two-team game they were trained on. torch-free.

A league member (docs/league.md) is a bundle of **one** team: its env is
``team_view`` with the options ``{game, game_options, team}``, and its agents
are that team's agents. A match puts two such bundles into the full game:

- bundle A plays the team it was trained as (``team`` in its env options);
  bundle B plays the other team, whatever team it was trained as (self-play
  trains team 0 and lets its snapshots play team 1, so the game must be
  symmetric for that seat to make sense, as in the league);
- bundle agent ``i`` plays the ``i``-th agent of its team (``EnvSpec.teams``).

``plan_match`` checks that two bundles can meet, with one line when not.
``evaluate_match`` plays the match in process with ONNX Runtime (``marl-eval
A --opponent B``); ``runtime.swarm.MatchLauncher`` plays it as a swarm, one
``marl-agent`` process per agent (``marl-swarm A --opponent B``). Both play
greedily (the runtime's policies are deterministic) and both play episode
``i`` with the seed ``episode_seeds(seed, episodes)[i]``, so a lossless
lock-step swarm returns exactly what the in-process match returns.

Each team's return is its own agents' rewards, scalarised as the game says
(the return ``marl-eval`` gives that team's bundle). A win for team A is an
episode in which A's return is above B's, a draw one where they are equal.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import zmq

from ..envs import EnvSpec, TimeStep, episode_seeds, make
from ..envs.base import scalarise
from ..wire import protocol as P
from .bundle import Bundle, BundleError, load_bundle
from .team import BundleTeamPolicy
from .transport import POLLIN, Transport, ZmqTransport
from .world import Stage

TEAM_ENV = "team_view"  # the env of a one-team bundle (envs/team_view.py)


class MatchError(BundleError):
    """Two bundles that cannot play each other (one line)."""


@dataclass(frozen=True)
class Seat:
    """One bundle in the match: the team it plays and the game's index of each of its agents."""

    bundle: Bundle
    team: int
    agents: tuple[int, ...]

    @property
    def trained_as(self) -> int:
        return trained_team(self.bundle)


@dataclass(frozen=True)
class Match:
    """Two one-team bundles seated in their common game: ``seats[0]`` is team A's (the bundle
    given first), ``seats[1]`` team B's."""

    game: str
    game_options: dict[str, Any]
    spec: EnvSpec
    seats: tuple[Seat, Seat]

    def make_env(self, n_envs: int) -> Any:
        return make(self.game, n_envs=n_envs, **self.game_options)

    def stage(self, swarm: str) -> Stage:
        """The game as a world plays it, keeping team A's and team B's returns."""
        s = self.spec
        expect = P.Expect(swarm, s.n_agents, obs_dim=s.obs_dim, n_actions=s.n_actions or 0)
        return Stage(s, lambda: self.make_env(1), None, expect, teams=tuple(seat.agents for seat in self.seats))

    def describe(self) -> dict[str, Any]:
        """What the summaries report about the seats."""
        return {"game": self.game, "game_options": self.game_options,
                "teams": [{"bundle": str(seat.bundle.path), "team": seat.team, "trained_as": seat.trained_as, "agents": list(seat.agents)}
                          for seat in self.seats]}


def trained_team(b: Bundle) -> int:
    """The team a one-team bundle was trained as: its manifest's ``seat`` (bundles written
    before that field: the ``team`` option of its team_view env)."""
    seat = b.manifest.seat
    return seat.team if seat is not None else int(b.manifest.env.options.get("team", 0))


def _game_of(b: Bundle, role: str) -> tuple[str, dict[str, Any]]:
    env = b.manifest.env
    if env.name != TEAM_ENV:
        raise MatchError(f"{role} {b.path} is not a one-team bundle (its env is {env.name!r}, not {TEAM_ENV!r}); "
                         "a match plays two bundles made by marl-league against each other")
    game, options = env.options.get("game"), env.options.get("game_options") or {}
    if not isinstance(game, str) or not isinstance(options, dict):
        raise MatchError(f"{role} {b.path}: its team_view options name no game (env.options.game); re-export it with marl-league")
    return game, options


def plan_match(a: Bundle, b: Bundle) -> Match:
    """Seat bundle ``a`` (team A) and bundle ``b`` (team B) in their game, or say in one line why they cannot meet:
    not one-team bundles, different games (or game options), team sizes or observation/action sizes that do not
    fit the seats, or messages (a match has no message routing between a team's processes yet)."""
    (game, options), (game_b, options_b) = _game_of(a, "bundle"), _game_of(b, "opponent")
    env = make(game, n_envs=1, **options)
    spec = env.spec
    env.close()
    if game_b != game:
        raise MatchError(f"the bundles play different games: {a.path} plays {game}, {b.path} plays {game_b}")
    env_b = make(game_b, n_envs=1, **options_b)
    same = json.dumps(env_b.spec.options, sort_keys=True) == json.dumps(spec.options, sort_keys=True)  # with every default filled in
    env_b.close()
    if not same:
        raise MatchError(f"the bundles play {game} with different options: {json.dumps(options, sort_keys=True)} "
                         f"against {json.dumps(options_b, sort_keys=True)}")
    for role, x in (("bundle", a), ("opponent", b)):
        seat = x.manifest.seat
        if seat is not None and (seat.game, seat.teams) != (game, spec.teams):
            raise MatchError(f"{role} {x.path} records team {seat.team} of {seat.game} with teams {[list(t) for t in seat.teams]}, "
                             f"but {game} now has teams {[list(t) for t in spec.teams]}")
        if x.communicates:
            raise MatchError(f"{role} {x.path} sends messages (comm {x.manifest.comm}); a match does not route a team's messages yet")
    team_a = trained_team(a)
    if len(spec.teams) != 2 or team_a not in (0, 1):
        raise MatchError(f"a match needs a game of two teams and a bundle of team 0 or 1; {game} has {len(spec.teams) or 1} team(s), "
                         f"{a.path} plays team {team_a}")
    seats = []
    for role, x, team in (("bundle", a, team_a), ("opponent", b, 1 - team_a)):
        agents = tuple(spec.teams[team])
        if x.n_agents != len(agents):
            raise MatchError(f"{role} {x.path} has {x.n_agents} agents, but team {team} of {game} has {len(agents)}")
        xs = x.manifest.env_spec
        if (xs.obs_dim, xs.n_actions) != (spec.obs_dim, spec.n_actions):
            raise MatchError(f"{role} {x.path} sees {xs.obs_dim} observations and {xs.n_actions} actions, "
                             f"{game}'s agents {spec.obs_dim} and {spec.n_actions}")
        seats.append(Seat(x, team, agents))
    return Match(game, dict(options), spec, (seats[0], seats[1]))


def outcomes(returns_a: list[float], returns_b: list[float]) -> dict[str, int]:
    """Team A's wins, draws and losses, episode by episode (returns compared)."""
    pairs = list(zip(returns_a, returns_b))
    return {"wins": sum(x > y for x, y in pairs), "draws": sum(x == y for x, y in pairs), "losses": sum(x < y for x, y in pairs)}


def _team_view(ts: TimeStep, agents: list[int]) -> TimeStep:
    """What a team's bundle sees of the game's time step: its own agents' columns."""
    return TimeStep(obs=ts.obs[:, agents], state=ts.state, avail_actions=ts.avail_actions[:, agents], reward=ts.reward[:, agents],
                    done=ts.done, terminated=ts.terminated, positions=None if ts.positions is None else ts.positions[:, agents],
                    t=ts.t, info=ts.info)


def play_match(match: Match, seeds: np.ndarray, n_envs: int) -> tuple[list[list[float]], list[int]]:
    """Play one episode per seed in ``n_envs`` slots (a finished slot starts the next seed):
    each episode's ``[return A, return B]`` and length, in seed order."""
    env = match.make_env(n_envs)
    how = match.spec.reward_scalarisation
    seats = [list(seat.agents) for seat in match.seats]
    teams = [BundleTeamPolicy(seat.bundle, n_envs) for seat in match.seats]
    episode = np.arange(n_envs)  # which episode each slot plays
    rets = np.zeros((n_envs, 2))
    lengths = np.zeros(n_envs, dtype=np.int64)
    out_ret: list[list[float]] = [[0.0, 0.0] for _ in seeds]
    out_len = [0] * len(seeds)
    try:
        ts = env.reset(seeds[:n_envs])
        for team in teams:
            team.reset(np.ones(n_envs, dtype=bool))
        nxt, active = n_envs, np.ones(n_envs, dtype=bool)
        while active.any():
            joint = np.zeros((n_envs, match.spec.n_agents), dtype=np.int64)
            for agents, team in zip(seats, teams):
                joint[:, agents] = team.act(_team_view(ts, agents))
            ts = env.step(joint)
            for k, agents in enumerate(seats):
                r = scalarise(ts.reward[:, agents], how, axis=1)
                for s in np.flatnonzero(active):
                    rets[s, k] += float(r[s])
            lengths[active] += 1
            ended = active & ts.done
            for s in np.flatnonzero(ended):
                out_ret[episode[s]], out_len[episode[s]] = rets[s].tolist(), int(lengths[s])
            restart = np.zeros(n_envs, dtype=bool)
            for s in np.flatnonzero(ended):
                if nxt < len(seeds):
                    episode[s], nxt = nxt, nxt + 1
                    restart[s] = True
                else:
                    active[s] = False
            if restart.any():
                slot_seeds = np.zeros(n_envs, dtype=np.int64)
                slot_seeds[restart] = seeds[episode[restart]]
                ts = env.reset(slot_seeds, mask=restart)
                for team in teams:
                    team.reset(restart)
                rets[restart], lengths[restart] = 0.0, 0
    finally:
        env.close()
    return out_ret, out_len


def evaluate_match(path: Path | str, opponent: Path | str, episodes: int, seed: int | None = None, n_envs: int | None = None,
                   trusted_keys: Any = None) -> dict[str, Any]:
    """Bundle ``path`` (team A) against bundle ``opponent`` (team B), greedily, in one process with ONNX Runtime.
    ``seed`` defaults to bundle A's source seed (as ``marl-eval`` and ``marl-swarm`` do). With ``trusted_keys``
    both bundles must be signed by one of them."""
    if episodes < 1:
        raise MatchError(f"episodes must be >= 1, got {episodes}")
    a, b = load_bundle(path, trusted_keys=trusted_keys), load_bundle(opponent, trusted_keys=trusted_keys)
    match = plan_match(a, b)
    seed = a.manifest.source.seed if seed is None else seed
    n_envs = min(n_envs or 32, episodes)
    rets, lengths = play_match(match, episode_seeds(seed, episodes), n_envs)
    ra, rb = [r[0] for r in rets], [r[1] for r in rets]
    return {
        "bundle": str(path),
        "opponent": str(opponent),
        "seed": seed,
        "episodes": episodes,
        "mean_return": float(np.mean(ra)),
        "std_return": float(np.std(ra)),
        "returns": ra,
        "opponent_returns": rb,
        "lengths": lengths,
        **outcomes(ra, rb),
        "checkpoint_step": a.manifest.source.checkpoint_step,
        "match": match.describe(),
    }


# ---- the world's side: one transport per team ---------------------------------------------------------


class _TeamReceiver:
    """What one team's transport sees of the world: its own swarm id and frame sizes, its
    agents as ``0 .. len(team) - 1`` (as its bundle numbers them), mapped to the world's agents."""

    def __init__(self, world: Any, agents: tuple[int, ...], ex: P.Expect) -> None:
        self.world, self.agents, self.ex, self.swarm = world, agents, ex, ex.swarm

    @property
    def counters(self) -> P.Counters:
        return self.world.counters

    @property
    def live(self) -> np.ndarray:
        return self.world.live[list(self.agents)]

    @property
    def finished(self) -> bool:
        return self.world.finished

    @property
    def bye(self) -> dict[int, dict[str, Any]]:
        return {i: self.world.bye[g] for i, g in enumerate(self.agents) if g in self.world.bye}

    def accept(self, i: int, env: dict[str, Any]) -> None:
        self.world.accept(self.agents[i], env)


class TeamsTransport(Transport):
    """One world serving two teams, each over its own transport (a ZeroMQ ROUTER, with
    its own swarm id and, over CURVE, its own keys): every team's processes speak
    the protocol of a normal swarm of their own bundle, numbered as their bundle
    numbers them. The world's agent ``g`` is agent ``i`` of one team; ids in the
    frames the world sends (``to``, ``inbox``, ``peers``) are translated, and only
    a team's own agents appear in them."""

    def __init__(self, teams: list[tuple[ZmqTransport, tuple[int, ...], P.Expect]]) -> None:
        self.teams = teams
        self.seat = {g: (k, i) for k, (_, agents, _) in enumerate(teams) for i, g in enumerate(agents)}
        self.endpoints: list[str] = []

    def open(self, world: Any) -> str:
        self.endpoints = [t.open(_TeamReceiver(world, agents, ex)) for t, agents, ex in self.teams]
        self.endpoint = self.endpoints[0]
        return self.endpoint

    def poll(self, timeout_ms: int) -> None:
        socks = [(t.sock, POLLIN) for t, _, _ in self.teams]
        if not zmq.zmq_poll(socks, timeout_ms):
            return
        for t, _, _ in self.teams:
            t.poll(0)

    def _local(self, k: int, ids: list[int]) -> list[int]:
        return [self.seat[j][1] for j in ids if self.seat[j][0] == k]

    def send_obs(self, i: int, ep: int, t: int, o: np.ndarray, av: Any, first: bool, to: list[int], inbox: list[int],
                 peers: list[list[Any]] | None = None) -> None:
        k, li = self.seat[i]
        if peers is not None:
            peers = [[self.seat[j][1], addr] for j, addr in peers if self.seat[j][0] == k]
        self.teams[k][0].send_obs(li, ep, t, o, av, first, self._local(k, to), self._local(k, inbox), peers)

    def send_stop(self, i: int, why: str) -> None:
        k, li = self.seat[i]
        self.teams[k][0].send_stop(li, why)

    def send_hb(self, i: int) -> None:
        k, li = self.seat[i]
        self.teams[k][0].send_hb(li)

    def send_absent(self, i: int, why: str) -> None:
        k, li = self.seat[i]
        self.teams[k][0].send_absent(li, why)

    def close(self) -> None:
        for t, _, _ in self.teams:
            t.close()
