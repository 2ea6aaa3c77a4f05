"""Pictures: learning curves, swarm metrics and episode frames.

numpy for the numbers; matplotlib (the ``plot`` extra) only inside the
functions that draw, so importing this room costs nothing on a robot. It may
import ``envs`` (to replay an episode from its seed and actions) and
``errors``, never torch: ``marl-eval BUNDLE --render`` stays an edge command.
"""
