"""The robot adapter: what the agent process needs from a robot. torch-free.

An agent process runs one exported policy. Everything robot-specific sits
behind this small interface, so the same agent runs on the simulated robot
(``robots.sim``, served by the world simulator) and on real hardware (write an
adapter around your drivers; ``robots.udp`` is a worked example).

Per step the adapter delivers an ``Observation``: the observation vector, the
available actions, and the two neighbour lists of docs/design.md contracts 2-3 --
``inbox`` (whose previous-step messages this agent hears now, in slot order)
and ``send_to`` (who hears the message it emits now). A robot that computes
neighbours itself calls ``envs.topology`` with its positions, the same code
training used. The agent answers with ``apply(observation, action)``.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass
class Observation:
    episode: int
    step: int
    obs: np.ndarray  # [obs_dim] float32
    avail: np.ndarray  # [n_actions] bool
    inbox: list[int] = field(default_factory=list)  # senders heard at this step, slot order
    send_to: list[int] = field(default_factory=list)  # receivers of this step's message
    first: bool = False  # a new episode (or a rejoin): reset the recurrent state
    peers: dict[int, str] | None = None  # updated peer endpoints, when the adapter learns them


class Stop:
    """Returned by ``observe`` when the robot (or the world) says to shut down."""

    def __init__(self, reason: str = "stop") -> None:
        self.reason = reason


class Absent:
    """Returned by ``observe`` when the world says it counts this agent absent
    (it stalled past the heartbeat timeout): the agent starts over with a
    fresh state and calls ``rejoin``."""

    def __init__(self, reason: str = "absent") -> None:
        self.reason = reason


class RobotAdapter(ABC):
    """One robot. All methods are called from the agent's single thread."""

    @abstractmethod
    def connect(self, agent_id: int, hello: dict[str, Any]) -> None:
        """Open the link to the robot (and announce ``hello``: the agent's
        message endpoint, pid, bundle id) before the first ``observe``."""

    @abstractmethod
    def observe(self, timeout_s: float) -> Observation | Stop | None:
        """The next observation, ``Stop``, or None if nothing came within
        ``timeout_s`` (the agent then sends a heartbeat and asks again)."""

    @abstractmethod
    def apply(self, ob: Observation, action: int | np.ndarray) -> None:
        """Carry out ``action`` for the step of ``ob`` (an int, or a float32
        vector for a continuous box)."""

    def heartbeat(self) -> None:
        """Tell whoever supervises the robot that the agent is alive."""

    def rejoin(self) -> None:
        """Say hello again (as ``connect`` did): the world counted this agent
        absent, or went silent. A link whose heartbeat already takes an agent
        back (``robots.udp``) need not do more."""

    @property
    def last_heard(self) -> float:
        """``time.monotonic()`` when the last valid frame came from the world or
        robot, counting the ones ``observe`` does not return (a heartbeat's
        answer); 0.0 if the adapter does not keep it."""
        return 0.0

    def report(self, status: dict[str, Any]) -> None:
        """The agent's counters now (``runtime.agent``'s ``status``), sent every
        few seconds when asked (``marl-agent --report-every``): the simulated
        robot forwards them to the world (a ``status`` frame, docs/protocol.md),
        where ``marl-swarm --live`` shows them. A link without such a frame
        drops them."""

    def goodbye(self, metrics: dict[str, Any]) -> None:
        """Last words before ``close`` (the simulated robot forwards metrics)."""

    def close(self) -> None:
        pass

    @property
    def invalid_frames(self) -> int:
        """Malformed frames the adapter received and dropped."""
        return 0
