"""Registers the built-in envs."""

from .dilemma import DilemmaEnv
from .matrix import MatrixGameEnv
from .registry import register
from .rendezvous import RendezvousEnv
from .rps import RPSEnv
from .scout import ScoutEnv
from .spread import SpreadEnv
from .tag import TagEnv
from .team_view import TeamView
from .two_step import TwoStepEnv
from .warehouse import WarehouseEnv

register("two_step", TwoStepEnv, "two-step cooperative matrix game (QMIX paper); optimum 8", train_steps=10_000)
register(
    "matrix",
    MatrixGameEnv,
    "repeated cooperative matrix game from any payoff table (payoff=[[...]], one axis per agent); default: climbing",
    train_steps=20_000,
)
register("climbing", MatrixGameEnv, "climbing game (Claus & Boutilier); optimum 11 beside -30 penalties", train_steps=20_000, preset="climbing")
register("penalty", MatrixGameEnv, "penalty game; optima 10, miscoordination -k (k=100)", train_steps=20_000, preset="penalty")
register(
    "rps",
    RPSEnv,
    "two-team zero-sum biased rock-paper-scissors (rock beats scissors by 2; payoff=[[...]]); Nash (1/4, 1/2, 1/4), value 0",
    train_steps=20_000,
)
register(
    "tag",
    TagEnv,
    "two-team zero-sum capture the flag with tagging on a 7x7 grid (team_size=2 a side); +1/-1 at the end; local window obs, mirrored",
    train_steps=200_000,
)
register(
    "team_view",
    TeamView,
    "one team of a two-team env (game=rps, team=0) against an opponent pool (marl-league); without one, a uniformly random opponent",
    train_steps=20_000,
)
register(
    "rendezvous",
    RendezvousEnv,
    "grid rendezvous: +10 when every agent stands on the goal block at once; local window obs",
    train_steps=100_000,
)
register("spread", SpreadEnv, "cooperative navigation: cover n landmarks, avoid collisions (discrete or continuous)", train_steps=200_000)
register(
    "scout",
    ScoutEnv,
    "one agent sees the target, the others must be told (needs comm); silent ceiling 1.75, talking 3.44",
    train_steps=40_000,
)
register(
    "dilemma",
    DilemmaEnv,
    "iterated prisoner's dilemma, per-agent rewards (mixed motive): mutual C pays 3 each per round, mutual D 1",
    train_steps=50_000,
)
register(
    "warehouse",
    WarehouseEnv,
    "robots fetch requested packages from shelves to the delivery zone; +1 per delivery, +0.5 per pickup; local window obs",
    train_steps=200_000,
)
register(
    "warehouse_sparse",
    WarehouseEnv,
    "warehouse with one team reward when every package is delivered (needs every robot; hard)",
    train_steps=200_000,
    reward="sparse",
)
