"""Command-line tools: marl-train, marl-eval, marl-export, marl-agent, marl-swarm.

Each is a click command run through ``common.run_command``: a user error is
one ``error:`` line on stderr and exit status 2; ``--json`` makes the last
stdout line one JSON object (docs/design.md, conventions).
"""
