"""Competitive teams: self-play against frozen opponents that are exported bundles.

Importing this package registers the env ``team_view`` (``team_env.TeamView``),
so a league learner's run directory and its bundles rebuild their env by name.
torch is loaded only by ``selfplay`` (the training driver); the opponents,
the modes and the league directory need the edge install alone.
"""

from ..envs.registry import register
from .team_env import TeamView

register(
    "team_view",
    TeamView,
    "one team of a two-team env (game=..., team=...) against frozen league opponents (uniformly random without a pool)",
    train_steps=20_000,
)
