"""The wire formats both ends speak (torch-free; numpy, msgpack and the
standard library only): ``wire.protocol`` for the ZeroMQ frames between the
world, the agents and the simulated robots, ``wire.udp`` for the datagrams of
the UDP robot link. Imports nothing of marl_edge but ``errors``."""
