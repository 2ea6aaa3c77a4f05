"""Registers the built-in envs."""

from .registry import register
from .two_step import TwoStepEnv

register("two_step", TwoStepEnv, "two-step cooperative matrix game (QMIX paper); optimum 8", train_steps=10_000)
