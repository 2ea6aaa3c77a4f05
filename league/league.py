"""An AlphaStar-style league: main agents, main exploiters and league exploiters (docs/league.md).

AlphaStar (Vinyals et al. 2019) trains three kinds of learner against a
growing pool of frozen snapshots. Here a snapshot is a league member: an
exported bundle (``selfplay.export_learner``), played by ONNX Runtime through
``TeamView``, exactly as in self-play. What each role plays, and when it is
frozen or re-initialised (``LeagueConfig`` holds the numbers):

- **main agents** never reset. Each new episode's opponent is drawn from a
  mixture: ``pfsp`` (50 %) PFSP over all members; ``selfplay`` (35 %) the
  newest snapshot of a main agent (or, while the learner wins less than
  ``selfplay_floor`` of its games against it, variance-weighted PFSP over that
  main agent's snapshots); ``verification`` (15 %) the past main exploiters
  while one of them still beats it (win rate below ``selfplay_floor``), else
  the main agents' older snapshots it has forgotten how to beat (win rate
  below ``win_threshold``), else self-play. A main agent is snapshotted every
  ``snapshot_every`` env steps.
- **main exploiters** play the main agents' newest snapshots (variance PFSP
  over a main agent's snapshots while they win less than
  ``exploiter_floor``). They are snapshotted when they beat every main agent's
  newest snapshot with a win rate above ``win_threshold``, or after
  ``main_exploiter_budget`` env steps, and re-initialised each time.
- **league exploiters** play PFSP over all members. They are snapshotted when
  they beat every member with a win rate above ``win_threshold``, or after
  ``league_exploiter_budget`` env steps, and re-initialised with probability
  ``league_exploiter_reset`` when they are.

The opponents a learner plays live in the league as bundles, so "the current
main agent" is the main agent's newest snapshot: main agents are frozen every
``snapshot_every`` steps, not after every update as in AlphaStar.

**Turns.** The learners take turns in one process, round-robin: each trains
``chunk`` env steps against opponents drawn from the distribution its role
gives (computed from the payoff table at the start of the turn), then the
running episodes end and no new ones start, so a turn ends between episodes.
Every finished episode is one game in the payoff table (``payoff.py``). A
learner trains ``steps`` env steps in all, whatever its resets.

**Resume.** After every round (a turn of each learner) the league commits:
each learner's weights, optimiser, counters, RNG states and unused episodes
are saved as a checkpoint in its run directory (``train/checkpoint.py``),
then ``state.json`` (the round, each learner's counters and episode-seed
generator, the league's generator, the number of members and the payoff
counts) is written atomically. ``--resume`` restores the last commit and
drops members listed or bundles exported after it, then replays the rest.
As nothing depends on wall-clock time or on unseeded randomness, a league
killed at any moment and resumed ends with the same ``members.json`` (but for
the ``created`` times) and the same ``payoff.json`` as one never killed.

A reset learner is a new learner built with the seed ``[seed, learner,
generation]``, and its payoff row is new (``<learner>@<generation>``).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable

import numpy as np
import torch

from ..envs import make
from ..envs.rollout import Rollout
from ..envs.team_view import TeamView
from ..train import checkpoint as ckpt
from ..train.config import RunConfig, _set_value
from ..train.learner import Learner
from ..train.registry import build_learner
from ..train.rundir import RunSpec, create_run_dir, make_run_spec
from .members import CONFIG, LeagueDir, Member, write_json_atomic
from .opponents import LeagueError, Pool
from .payoff import Payoff, outcome
from .pfsp import WEIGHTINGS, pfsp_weights
from .selfplay import export_learner

ROLES = ("main", "main_exploiter", "league_exploiter")
STATE = "state.json"
MODE = "league"  # a league member's Member.mode


@dataclass
class LeagueConfig:
    """A league run (``marl-league league --config FILE``): every key of a config file is a field.

    The defaults are AlphaStar's proportions and thresholds; its budgets (a
    snapshot every 2e9 steps, exploiters timing out after 4e9 and 2e9) are
    scaled to ``snapshot_every``."""

    game: str = "rps"  # a registered env with two teams (EnvSpec.teams), symmetric: a snapshot plays the other seat
    game_options: dict[str, Any] = field(default_factory=dict)
    team: int = 0  # the seat the learners play
    algo: str = "ippo"
    set: dict[str, Any] = field(default_factory=dict)  # algorithm keys, as marl-train --set takes them
    main_agents: int = 1
    main_exploiters: int = 1
    league_exploiters: int = 1
    steps: int = 20_000  # env steps of each learner
    chunk: int = 500  # env steps of one learner's turn
    snapshot_every: int = 2_000  # main agents: env steps between snapshots (AlphaStar: 2e9)
    main_exploiter_budget: int = 4_000  # a main exploiter is snapshotted and reset after this many steps at the latest (4e9)
    league_exploiter_budget: int = 2_000  # a league exploiter is snapshotted after this many steps at the latest (2e9)
    selfplay: float = 0.35  # main agents: share of games against the main agents' newest snapshots
    pfsp: float = 0.5  # main agents: share of PFSP games against all members
    verification: float = 0.15  # main agents: share against past main exploiters / forgotten snapshots
    pfsp_weighting: str = "hard"  # hard: (1 - p)^k; variance: p (1 - p)
    pfsp_k: float = 2.0
    win_threshold: float = 0.7  # exploiters are frozen when they beat their targets this often; main agents revisit forgotten snapshots below it
    min_games: int = 20  # games against an opponent before a win rate above win_threshold counts
    selfplay_floor: float = 0.3  # main agents: below this win rate, play the opponent's past snapshots instead
    exploiter_floor: float = 0.1  # main exploiters: below this win rate, play the main agent's past snapshots instead
    league_exploiter_reset: float = 0.25  # probability that a league exploiter is re-initialised at a snapshot
    sample_opponents: bool = True  # opponents with logits sample from them (mixed strategies)
    n_envs: int = 8
    seed: int = 0
    parity_steps: int = 16  # the export's torch vs ONNX Runtime check per snapshot

    def validate(self) -> None:
        for k in ("steps", "chunk", "snapshot_every", "main_exploiter_budget", "league_exploiter_budget", "n_envs", "parity_steps",
                  "main_agents", "min_games"):
            if getattr(self, k) < 1:
                raise LeagueError(f"{k} must be >= 1, got {getattr(self, k)}")
        for k in ("main_exploiters", "league_exploiters", "seed"):
            if getattr(self, k) < 0:
                raise LeagueError(f"{k} must be >= 0, got {getattr(self, k)}")
        for k in ("selfplay", "pfsp", "verification", "win_threshold", "selfplay_floor", "exploiter_floor", "league_exploiter_reset"):
            if not 0.0 <= getattr(self, k) <= 1.0:
                raise LeagueError(f"{k} must be in [0, 1], got {getattr(self, k)}")
        if abs(self.selfplay + self.pfsp + self.verification - 1.0) > 1e-9:
            raise LeagueError(f"selfplay + pfsp + verification must be 1, got {self.selfplay + self.pfsp + self.verification}")
        if self.pfsp_weighting not in WEIGHTINGS:
            raise LeagueError(f"pfsp_weighting must be one of {', '.join(WEIGHTINGS)}, got {self.pfsp_weighting!r}")
        if self.pfsp_k <= 0:
            raise LeagueError(f"pfsp_k must be > 0, got {self.pfsp_k}")

    def learner_names(self) -> list[tuple[str, str]]:
        """``(name, role)`` of every learner, in turn order: ``main0``, ``main_exploiter0``, ``league_exploiter0``, ..."""
        counts = {"main": self.main_agents, "main_exploiter": self.main_exploiters, "league_exploiter": self.league_exploiters}
        return [(f"{role}{k}", role) for role in ROLES for k in range(counts[role])]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


CONFIG_KEYS = tuple(f.name for f in dataclasses.fields(LeagueConfig))


def league_config_from_dict(raw: Any, where: str) -> LeagueConfig:
    """A ``LeagueConfig`` from a mapping of its fields (a config file or ``league.json``)."""
    if not isinstance(raw, dict):
        raise LeagueError(f"{where} must hold a mapping of keys ({', '.join(CONFIG_KEYS)})")
    unknown = [k for k in raw if k not in CONFIG_KEYS]
    if unknown:
        raise LeagueError(f"{where}: unknown key {unknown[0]!r}; keys: {', '.join(CONFIG_KEYS)}")
    for k in ("set", "game_options"):
        if not isinstance(raw.get(k) or {}, dict):
            raise LeagueError(f"{where}: {k} must be a mapping of key: value")
    defaults = LeagueConfig()
    for f in dataclasses.fields(LeagueConfig):
        if f.name in raw and f.name not in ("set", "game_options"):
            want, v = type(getattr(defaults, f.name)), raw[f.name]
            if want is bool:
                ok = isinstance(v, bool)
            elif want in (int, float):
                ok = isinstance(v, (int, float) if want is float else int) and not isinstance(v, bool)
            else:
                ok = isinstance(v, want)
            if not ok:
                kind = {bool: "true or false", int: "an integer", float: "a number", str: "a string"}[want]
                raise LeagueError(f"{where}: {f.name} must be {kind}, got {v!r}")
    cfg = LeagueConfig(**{k: (float(v) if isinstance(getattr(defaults, k), float) else v) for k, v in raw.items()})
    cfg.set = {str(k): _set_value(v) for k, v in (cfg.set or {}).items()}
    cfg.game_options = dict(cfg.game_options or {})
    cfg.validate()
    return cfg


def read_league_config(path: Path) -> LeagueConfig:
    """A league config file (YAML or JSON: JSON is YAML); algorithm keys go under ``set``."""
    import yaml

    p = Path(path)
    try:
        raw = yaml.safe_load(p.read_text())
    except FileNotFoundError:
        raise LeagueError(f"config file {p} does not exist") from None
    except (OSError, UnicodeDecodeError) as e:
        raise LeagueError(f"cannot read config file {p}: {e}") from None
    except yaml.YAMLError as e:
        raise LeagueError(f"config file {p} is not valid YAML/JSON: {str(e).splitlines()[0]}") from None
    return league_config_from_dict(raw, f"config file {p}")


# ---- matchmaking: who a learner plays, from the payoff table ------------------------------------


@dataclass
class Table:
    """What matchmaking reads: the members (oldest first), the payoff counts, and where each member is in them."""

    members: list[Member]
    payoff: Payoff

    def __post_init__(self) -> None:
        self._rows = self.payoff.indices()

    def row(self, m: int) -> int:
        return self._rows[self.members[m].name]

    def history(self, learner: str) -> list[int]:
        """Member indices of ``learner``'s snapshots, oldest first."""
        return [i for i, m in enumerate(self.members) if m.learner == learner]

    def win_rates(self, me: int, ms: list[int]) -> np.ndarray:
        return self.payoff.win_rates(me, [self.row(m) for m in ms])

    def games(self, me: int, ms: list[int]) -> np.ndarray:
        return self.payoff.games[me, [self.row(m) for m in ms]]


def _on(n: int, ms: list[int], p: np.ndarray) -> np.ndarray:
    out = np.zeros(n)
    out[ms] = p
    return out


def drop_declining_tail(win_rates: np.ndarray) -> int:
    """How many of a learner's snapshots (oldest first) to look at for forgetting: all but the
    newest run along which the win rate never rises. Newer snapshots are stronger, so a falling
    win rate at the end is expected; a dip before a rise is a snapshot it has forgotten how to beat."""
    i = len(win_rates) - 1
    while i > 0 and win_rates[i - 1] >= win_rates[i]:
        i -= 1
    return i + 1 if i > 0 else 0


def opponent_distribution(cfg: LeagueConfig, role: str, me: int, table: Table, mains: list[str]) -> np.ndarray:
    """The probability of each member (oldest first) being the opponent of a new episode of the
    learner whose payoff row is ``me`` and whose role is ``role``; ``mains`` are the main agents' names."""
    n = len(table.members)
    everyone = list(range(n))

    def pfsp(ms: list[int], weighting: str) -> np.ndarray:
        return _on(n, ms, pfsp_weights(table.win_rates(me, ms), weighting, cfg.pfsp_k))

    def against_main(main: str, floor: float) -> np.ndarray:
        hist = table.history(main)
        if table.win_rates(me, hist[-1:])[0] > floor:
            return _on(n, hist[-1:], np.ones(1))
        return pfsp(hist, "variance")

    if role == "league_exploiter":
        return pfsp(everyone, cfg.pfsp_weighting)
    if role == "main_exploiter":
        return np.mean([against_main(m, cfg.exploiter_floor) for m in mains], axis=0)
    if role != "main":
        raise LeagueError(f"role must be one of {', '.join(ROLES)}, got {role!r}")

    exploiters = [i for i, m in enumerate(table.members) if m.role == "main_exploiter"]
    exploited = exploiters and table.win_rates(me, exploiters).min() < cfg.selfplay_floor

    def verification(main: str) -> np.ndarray:
        if exploited:
            return pfsp(exploiters, "hard")
        hist = table.history(main)
        hist = hist[: drop_declining_tail(table.win_rates(me, hist))]
        if hist and table.win_rates(me, hist).min() < cfg.win_threshold:
            return pfsp(hist, "hard")
        return against_main(main, cfg.selfplay_floor)  # nothing to verify: self-play

    selfplay = np.mean([against_main(m, cfg.selfplay_floor) for m in mains], axis=0)
    verify = np.mean([verification(m) for m in mains], axis=0)
    p = cfg.pfsp * pfsp(everyone, cfg.pfsp_weighting) + cfg.selfplay * selfplay + cfg.verification * verify
    return p / p.sum()


def snapshot_due(cfg: LeagueConfig, role: str, since_snapshot: int, me: int, table: Table, mains: list[str]) -> bool:
    """Whether the learner (payoff row ``me``) is frozen into a member now."""
    if since_snapshot <= 0:
        return False
    if role == "main":
        return since_snapshot >= cfg.snapshot_every

    def beats(ms: list[int]) -> bool:
        return bool(ms) and bool(((table.games(me, ms) >= cfg.min_games) & (table.win_rates(me, ms) > cfg.win_threshold)).all())

    if role == "main_exploiter":
        return since_snapshot >= cfg.main_exploiter_budget or beats([table.history(m)[-1] for m in mains])
    return since_snapshot >= cfg.league_exploiter_budget or beats(list(range(len(table.members))))


class _Choice:
    """A ``Pool`` sampler holding the current learner's distribution over the members."""

    def __init__(self) -> None:
        self.p = np.zeros(0)

    def probabilities(self, n_members: int) -> np.ndarray:
        if len(self.p) != n_members:
            raise LeagueError(f"internal: opponent distribution over {len(self.p)} members, the pool has {n_members}")
        return self.p


# ---- the learners ------------------------------------------------------------------------------


@dataclass
class LearnerState:
    """A learner's bookkeeping, saved in ``state.json`` at each commit."""

    name: str
    role: str
    index: int  # its place in turn order
    generation: int = 0  # resets so far
    env_steps: int = 0  # env steps trained, over all generations
    gen_steps: int = 0  # env steps of the current generation (its schedules: entropy, epsilon)
    since_snapshot: int = 0  # env steps since its last snapshot or reset
    snapshots: int = 0
    checkpoint: int = -1  # the step of its committed checkpoint
    seed_rng: dict[str, Any] = field(default_factory=dict)  # its episode-seed generator

    @property
    def row_name(self) -> str:
        return f"{self.name}@{self.generation}"


def _learner_seed(seed: int, index: int, generation: int) -> int:
    return int(np.random.SeedSequence([seed, index, generation]).generate_state(1)[0] >> 1)


class League:
    """A league directory and its learners in memory; ``run()`` trains it to the end."""

    def __init__(self, root: Path, cfg: LeagueConfig, resume: bool) -> None:
        cfg.validate()
        self.cfg = cfg
        self.env_options = {"game": cfg.game, "game_options": dict(cfg.game_options), "team": cfg.team}
        self.env = make("team_view", n_envs=cfg.n_envs, **self.env_options)
        assert isinstance(self.env, TeamView)
        self.choice = _Choice()
        self.pool = Pool(self.choice, batch=cfg.n_envs, n_agents=len(self.env.theirs), sample=cfg.sample_opponents)
        self.env.set_pool(self.pool)
        self.mains = [name for name, role in cfg.learner_names() if role == "main"]
        self.learners: dict[str, Learner] = {}
        try:
            self._open(Path(root), resume)
        except BaseException:
            self.env.close()
            raise
        self.seed_rngs = {}
        for st in self.states:
            g = np.random.default_rng(0)
            g.bit_generator.state = st.seed_rng
            self.seed_rngs[st.name] = g

    def _open(self, root: Path, resume: bool) -> None:
        cfg = self.cfg
        if resume:
            self.dir = LeagueDir(root)
            self._restore()
        else:
            self.dir = LeagueDir.create(root, {"league": cfg.to_dict()})
            self.rng = np.random.default_rng([cfg.seed, 0x1EA9])  # resets of league exploiters
            self.round = 0
            self.members: list[Member] = []
            self.payoff = Payoff()
            self.states = [LearnerState(name, role, i, seed_rng=np.random.default_rng([cfg.seed, i, 0]).bit_generator.state)
                           for i, (name, role) in enumerate(cfg.learner_names())]
            for st in self.states:
                create_run_dir(self.run_spec(), self.dir.learner_path(st.name))
                self.learners[st.name] = self.build(st)
                self.payoff.add(st.row_name, "learner", st.role, st.name)

    # ---- building, saving and restoring learners ----
    def run_spec(self) -> RunSpec:
        cfg = self.cfg
        run = RunConfig(env="team_view", algo=cfg.algo, steps=cfg.steps, seed=cfg.seed, n_envs=cfg.n_envs, eval_episodes=0,
                        env_options=self.env_options, keep_checkpoints=1)
        overrides: dict[str, Any] = dict(cfg.set)
        if self.env.spec.n_agents == 1:
            overrides.setdefault("agent_id", False)  # one agent a team: an agent id carries nothing
        return make_run_spec(run, overrides)

    def build(self, st: LearnerState) -> Learner:
        """A fresh learner for ``st``'s current generation (its own seed: the same weights every time)."""
        rs = self.run_spec()
        seed = _learner_seed(self.cfg.seed, st.index, st.generation)
        torch.set_num_threads(max(1, rs.run.torch_threads))
        torch.manual_seed(seed)
        return build_learner(self.cfg.algo, self.env.spec, rs.algo_cfg, n_envs=self.cfg.n_envs, seed=seed, total_steps=rs.total_steps,
                             topology=rs.topology())

    def _restore(self) -> None:
        path = self.dir.root / STATE
        if not path.is_file():
            raise LeagueError(f"{self.dir.root} has no {STATE} to resume from (it was stopped before its first commit); start it again with another --out")
        state = json.loads(path.read_text())
        self.round = int(state["round"])
        self.rng = np.random.default_rng(0)
        self.rng.bit_generator.state = state["rng"]
        self.payoff = Payoff.from_dict(state["payoff"])
        self.members = self.dir.truncate(int(state["members"]))
        for m in self.members:
            self.pool.add(self.dir.bundle_path(m))
        self.states = [LearnerState(**d) for d in state["learners"]]
        for st in self.states:
            learner = self.build(st)
            root = self.dir.learner_path(st.name) / "checkpoints"
            ckpt.clean_partial(root)
            cpath = ckpt.find_checkpoint(root, st.checkpoint)
            tensors, saved = ckpt.load_checkpoint(cpath)
            ckpt.restore(tensors, saved, learner.modules(), learner.optim)
            learner.load_counters(saved["learner"])
            buffer = learner.checkpoint_buffer()
            if buffer is not None and (cpath / "buffer.npz").exists():
                buffer.load(cpath / "buffer.npz")
            self.learners[st.name] = learner
        self.payoff.write(self.dir.root)

    def commit(self) -> None:
        """Checkpoint every learner, then write state.json (the commit point), then payoff.json."""
        for st in self.states:
            learner = self.learners[st.name]
            buffer = learner.checkpoint_buffer()
            extra = {"buffer.npz": buffer.save} if buffer is not None else {}
            ckpt.save_checkpoint(self.dir.learner_path(st.name) / "checkpoints", st.env_steps, learner.modules(), learner.optim,
                                 {"learner": learner.counters(), "env_steps": st.env_steps}, extra)
            st.checkpoint = st.env_steps
            st.seed_rng = self.seed_rngs[st.name].bit_generator.state
        write_json_atomic(self.dir.root / STATE, {
            "round": self.round,
            "members": len(self.members),
            "rng": self.rng.bit_generator.state,
            "learners": [asdict(st) for st in self.states],
            "payoff": self.payoff.to_dict(),
        })
        self.payoff.write(self.dir.root)
        for st in self.states:  # only the committed checkpoint is needed from now on
            for step, p in ckpt.list_checkpoints(self.dir.learner_path(st.name) / "checkpoints"):
                if step != st.checkpoint:
                    shutil.rmtree(p, ignore_errors=True)

    # ---- the loop ----
    @property
    def table(self) -> Table:
        return Table(self.members, self.payoff)

    def snapshot(self, st: LearnerState, on_snapshot: Callable[[Member, Path], None] | None) -> None:
        member = self.dir.new_member(st.name, MODE, st.env_steps, st.role)
        export_learner(self.dir.learner_path(st.name), self.learners[st.name], st.env_steps, self.dir.bundle_path(member),
                       self.cfg.parity_steps)
        self.dir.add(member)
        self.members.append(member)
        self.pool.add(self.dir.bundle_path(member))
        self.payoff.add(member.name, "member", st.role, st.name)
        st.snapshots += 1
        st.since_snapshot = 0
        if on_snapshot is not None:
            on_snapshot(member, self.dir.bundle_path(member))

    def reset(self, st: LearnerState) -> None:
        st.generation += 1
        st.gen_steps = 0
        st.since_snapshot = 0
        self.learners[st.name] = self.build(st)
        self.payoff.add(st.row_name, "learner", st.role, st.name)

    def play_turn(self, st: LearnerState) -> None:
        """``chunk`` env steps of ``st`` against its role's opponents; every finished episode is a game."""
        learner, me, table = self.learners[st.name], self.payoff.index(st.row_name), self.table
        self.choice.p = opponent_distribution(self.cfg, st.role, me, table, self.mains)
        budget = min(self.cfg.chunk, self.cfg.steps - st.env_steps)
        seed_rng, env = self.seed_rngs[st.name], self.env
        opponent: dict[int, int] = {}  # episode index -> member
        rollouts: list[Rollout] = []

        def next_seeds(k: int) -> np.ndarray:
            if rollouts and rollouts[0].env_steps >= budget:  # the turn is over: let the running episodes end
                return np.zeros(0, dtype=np.int64)
            return seed_rng.integers(0, 2**31 - 1, size=k)

        def note(ro: Rollout) -> None:
            for s in np.flatnonzero(ro.active):
                opponent.setdefault(int(ro.slot_index[s]), int(env.member[s]))

        ro = Rollout(env, learner.behaviour_policy(st.gen_steps), next_seeds, record=True, topology=learner.topology,
                     credit=learner.credit)
        rollouts.append(ro)
        note(ro)
        while ro.active.any():
            learner.behaviour_policy(st.gen_steps + ro.env_steps)
            finished = ro.step()
            note(ro)
            if finished:
                for e in finished:
                    self.payoff.record(me, table.row(opponent.pop(e.index)), outcome(e.ret))
                learner.observe({k: np.stack([e.data[k] for e in finished]) for k in finished[0].data})
        st.env_steps += ro.env_steps
        st.gen_steps += ro.env_steps
        st.since_snapshot += ro.env_steps

    def turn(self, st: LearnerState, on_snapshot: Callable[[Member, Path], None] | None) -> None:
        self.play_turn(st)
        me = self.payoff.index(st.row_name)
        due = snapshot_due(self.cfg, st.role, st.since_snapshot, me, self.table, self.mains)
        if st.role == "main" and st.env_steps >= self.cfg.steps:
            due = st.since_snapshot > 0  # the final main agent is always a member
        if not due:
            return
        self.snapshot(st, on_snapshot)
        if st.role == "main_exploiter" or (st.role == "league_exploiter" and self.rng.random() < self.cfg.league_exploiter_reset):
            self.reset(st)

    def run(self, progress: Callable[[dict[str, Any]], None] | None = None,
            on_snapshot: Callable[[Member, Path], None] | None = None) -> dict[str, Any]:
        t0 = time.perf_counter()
        try:
            if self.round == 0 and not self.members:
                for st in self.states:  # the main agents' initial weights are the first members
                    if st.role == "main":
                        self.snapshot(st, on_snapshot)
                self.commit()
            while any(st.env_steps < self.cfg.steps for st in self.states):
                for st in self.states:
                    if st.env_steps >= self.cfg.steps:
                        continue
                    self.turn(st, on_snapshot)
                    if progress is not None:
                        progress({"round": self.round + 1, "learner": st.name, "env_steps": sum(s.env_steps for s in self.states),
                                  "total_steps": self.cfg.steps * len(self.states), "members": len(self.members)})
                self.round += 1
                self.commit()
        finally:
            self.env.close()
        return self.summary(time.perf_counter() - t0)

    def summary(self, wall: float) -> dict[str, Any]:
        elo = self.payoff.elo()
        by_role = {role: sum(m.role == role for m in self.members) for role in ROLES}
        return {
            "league_dir": str(self.dir.root),
            "game": self.cfg.game,
            "algo": self.cfg.algo,
            "seed": self.cfg.seed,
            "rounds": self.round,
            "members": len(self.members),
            "members_by_role": by_role,
            "games": int(self.payoff.games.sum() // 2),
            "learners": [{"name": st.name, "role": st.role, "env_steps": st.env_steps, "snapshots": st.snapshots, "resets": st.generation,
                          "elo": round(float(elo[self.payoff.index(st.row_name)]), 1)} for st in self.states],
            "wall_s": round(wall, 2),
        }


def run_league(league_dir: Path, cfg: LeagueConfig | None = None, resume: bool = False,
               progress: Callable[[dict[str, Any]], None] | None = None,
               on_snapshot: Callable[[Member, Path], None] | None = None) -> dict[str, Any]:
    """Train a new league into ``league_dir`` (``cfg``), or continue the one there (``resume``;
    ``cfg``, when given, must equal the one it was started with). Returns a summary."""
    league_dir = Path(league_dir)
    if resume:
        if not (league_dir / CONFIG).is_file():
            raise LeagueError(f"{league_dir} is not a league directory (no {CONFIG}); start one without --resume")
        stored = json.loads((league_dir / CONFIG).read_text())
        if "league" not in stored:
            raise LeagueError(f"{league_dir} holds a self-play run, not a league; it cannot be resumed")
        saved = league_config_from_dict(stored["league"], str(league_dir / CONFIG))
        if cfg is not None and cfg.to_dict() != saved.to_dict():
            diff = [k for k in CONFIG_KEYS if getattr(cfg, k) != getattr(saved, k)]
            raise LeagueError(f"--config differs from the league's own ({', '.join(diff)}); resume without --config or with the same file")
        cfg = saved
    elif cfg is None:
        raise LeagueError("a new league needs a config (--config FILE)")
    return League(league_dir, cfg, resume).run(progress, on_snapshot)
