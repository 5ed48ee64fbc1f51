"""What crosses the network, and the parts of it that belong to a device: messages that carry
real byte buffers, a device's NIC (its inbox) and links.

The fabric that joins NICs (topologies, routes, link sharing) is `hwsim.network`; a
`Link` here is one direction of one cable, a unit that reports when it was busy.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import simpy

from hwsim.config.schema import NicSpec
from hwsim.hardware.unit import Unit


@dataclass
class Message:
    """What crosses the network: a real buffer (or a `Placeholder` of its size); its size on the wire is the buffer's size."""

    src: str
    dst: str
    tag: str
    payload: Any
    sent_s: float = 0.0
    meta: dict[str, Any] = field(default_factory=dict)

    @property
    def nbytes(self) -> int:
        """Bytes on the wire: the payload's `nbytes` (an array, or `Placeholder` in timing-only runs), else its length."""
        size = getattr(self.payload, "nbytes", None)
        return int(size) if size is not None else len(self.payload)


class Placeholder:
    """A payload of `nbytes` bytes whose contents are not simulated (timing-only runs)."""

    __slots__ = ("nbytes",)

    def __init__(self, nbytes: int):
        self.nbytes = int(nbytes)


DeliveryObserver = Callable[[Message, float], None]
"""Called as observer(message, delivered_s) when a message lands in an inbox."""


class Link(Unit):
    """One direction of a cable: `rate` bytes/s after `latency` s. Store-and-forward sharing holds
    it for each whole message (`busy`, FIFO); flow sharing reports the spans it was used (`record`)."""

    kind = "link"

    def __init__(self, env: simpy.Environment, name: str, rate: float, latency: float):
        # Report "cycles" of a link as bytes moved: clock = rate.
        super().__init__(env, name, rate)
        self.rate = rate
        self.latency = latency

    @property
    def peak_per_s(self) -> float:
        return self.rate


class Nic:
    """A device's network interface: its name on the fabric, its spec (the per-message overhead) and
    an inbox of delivered messages."""

    def __init__(self, env: simpy.Environment, name: str, spec: NicSpec):
        self.env = env
        self.name = name
        self.spec = spec
        self.inbox = simpy.Store(env)
        self.delivery_observers: list[DeliveryObserver] = []
