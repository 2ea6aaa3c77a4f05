"""Command-line tools: marl-train, marl-eval (more to come: marl-export, marl-agent, marl-swarm)."""
