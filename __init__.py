"""marl-edge: centralised training, decentralised execution on the edge."""

__version__ = "0.1.0"
