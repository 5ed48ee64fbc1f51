"""Devices and servers: compositions of arithmetic units, memory banks and a NIC (its links belong to
the fabric, `hwsim.network`)."""

from __future__ import annotations

from collections.abc import Callable, Generator

import simpy

from hwsim.config.schema import HardwareSpec
from hwsim.hardware.arithmetic import ArithmeticUnit, VectorUnit
from hwsim.hardware.memory import MemoryBank
from hwsim.hardware.network import Message, Nic
from hwsim.hardware.unit import Unit


class Device:
    """A training device: a systolic array, a vector unit, named banks and a NIC.

    Unit names are prefixed with the device name ("dev0.systolic", "dev0.params").
    The device does nothing on its own: a system runs its controller process.
    """

    def __init__(self, env: simpy.Environment, name: str, spec: HardwareSpec, precision: str = "fp32"):
        self.env = env
        self.name = name
        self.spec = spec
        self.systolic = ArithmeticUnit(env, f"{name}.systolic", spec.systolic, precision)
        self.vector = VectorUnit(env, f"{name}.vector", spec.vector)
        self.banks = {bank: MemoryBank(env, f"{name}.{bank}", bank_spec) for bank, bank_spec in spec.memory.items()}
        self.nic = Nic(env, f"{name}.nic", spec.nic)

    @property
    def units(self) -> list[Unit]:
        """Every unit that can be busy, for probes and reports."""
        return [self.systolic, self.vector, *self.banks.values()]

    def bank(self, name: str) -> MemoryBank:
        return self.banks[name]


Handler = Callable[["Server", Message], Generator]


class Server(Device):
    """A device whose controller serves messages: each one received is handed to `handler`.

    The handler is a generator (it may compute, move memory and reply through the
    fabric); messages are handled one at a time, in arrival order.
    """

    def __init__(self, env: simpy.Environment, name: str, spec: HardwareSpec, handler: Handler, precision: str = "fp32"):
        super().__init__(env, name, spec, precision)
        self.handler = handler
        self.process = env.process(self._serve())

    def _serve(self) -> Generator:
        while True:
            message = yield self.nic.inbox.get()
            yield from self.handler(self, message)
