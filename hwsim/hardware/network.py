"""Network interfaces, links and a switch: messages that carry real byte buffers.

Topology: a star. Every NIC has a full-duplex link to one port of the switch, an
uplink (NIC -> switch) and a downlink (switch -> NIC), each a `Link`.

Sharing model (store-and-forward, whole messages, FIFO):

1. The sender's uplink is held for overhead + bytes / line_rate (the per-message
   NIC overhead, then serialization). Messages queue for it in request order.
2. The message crosses the uplink in `latency` and is stored in the switch.
3. The receiver's downlink is held for bytes / line_rate, then the message crosses
   it in `latency` and lands in the receiver's inbox.

Flows that share a link therefore take turns a whole message at a time: their
aggregate throughput is the line rate (as under fair sharing), but a message that
arrives behind another waits for all of it. Latency does not hold a link, so
back-to-back messages pipeline. An unloaded message of B bytes takes
overhead + 2 (B / rate + latency).

Outages: `Switch.link_down(nic, start, end)` takes a NIC's link down for a window. A
message sent while its sender's link is down, or reaching the switch while its
receiver's link is down, is lost: never delivered, reported to `loss_observers`.
"""

from __future__ import annotations

from collections.abc import Callable, Generator
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
    """One direction of a cable: serializes whole messages at `rate` bytes/s, FIFO."""

    kind = "link"

    def __init__(self, env: simpy.Environment, name: str, rate: float, latency: float):
        # Report "cycles" of a link as bytes moved: clock = rate.
        super().__init__(env, name, rate)
        self.rate = rate
        self.latency = latency

    def carry(self, nbytes: int, label: str, extra_s: float = 0.0) -> Generator:
        """Serialize `nbytes` (after `extra_s` of per-message work), then propagate."""
        yield from self.busy(extra_s + nbytes / self.rate, label, float(nbytes))
        yield self.env.timeout(self.latency)

    @property
    def peak_per_s(self) -> float:
        return self.rate


class Nic:
    """A network interface: an uplink, a downlink and an inbox of delivered messages."""

    def __init__(self, env: simpy.Environment, name: str, spec: NicSpec):
        self.env = env
        self.name = name
        self.spec = spec
        self.uplink = Link(env, f"{name}.up", spec.bandwidth, spec.latency)
        self.downlink = Link(env, f"{name}.down", spec.bandwidth, spec.latency)
        self.inbox = simpy.Store(env)
        self.delivery_observers: list[DeliveryObserver] = []

    @property
    def units(self) -> list[Unit]:
        return [self.uplink, self.downlink]


class Switch:
    """Connects NICs by name; `send` moves a message from one NIC to another."""

    def __init__(self, env: simpy.Environment):
        self.env = env
        self.ports: dict[str, Nic] = {}
        self.outages: dict[str, list[tuple[float, float]]] = {}
        self.loss_observers: list[DeliveryObserver] = []
        """Called as observer(message, lost_s) when a message is lost to an outage."""

    def link_down(self, nic: str, start: float, end: float) -> None:
        """Take the link of NIC `nic` down from `start` to `end` (seconds)."""
        if nic not in self.ports:
            raise ValueError(f"no NIC named {nic!r} is connected")
        self.outages.setdefault(nic, []).append((start, end))

    def is_down(self, nic: str) -> bool:
        """Whether the link of `nic` is down now."""
        return any(start <= self.env.now < end for start, end in self.outages.get(nic, ()))

    def connect(self, nic: Nic) -> None:
        if nic.name in self.ports:
            raise ValueError(f"a NIC named {nic.name!r} is already connected")
        self.ports[nic.name] = nic

    def send(self, src: str, dst: str, payload: Any, tag: str = "", **meta: Any) -> Generator:
        """Process: deliver `payload` from NIC `src` to NIC `dst`'s inbox; returns the Message (None if lost)."""
        sender, receiver = self.ports[src], self.ports[dst]
        message = Message(src, dst, tag, payload, self.env.now, meta)
        if self.is_down(src):
            return self._lose(message)
        label = f"{tag} -> {dst}" if tag else f"-> {dst}"
        yield from sender.uplink.carry(message.nbytes, label, sender.spec.overhead)
        if self.is_down(dst):
            return self._lose(message)
        yield from receiver.downlink.carry(message.nbytes, f"{tag} <- {src}" if tag else f"<- {src}")
        yield receiver.inbox.put(message)
        for notify in sender.delivery_observers:
            notify(message, self.env.now)
        return message

    def _lose(self, message: Message) -> None:
        for notify in self.loss_observers:
            notify(message, self.env.now)
