"""Competitive teams: self-play against frozen opponents that are exported bundles (docs/league.md).

Only ``selfplay`` (the training driver) loads torch; the opponents, the modes,
the league directory and the exploitability need the edge install alone. The
team's env, ``team_view``, is a built-in env (``envs/team_view.py``).
"""
