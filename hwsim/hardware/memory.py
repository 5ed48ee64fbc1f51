"""A memory bank: precision, capacity, bandwidth, latency; holds named buffers of real arrays."""

from __future__ import annotations

from collections.abc import Callable, Generator
from typing import Any

import simpy

from hwsim.config.schema import BankSpec
from hwsim.config.units import format_quantity
from hwsim.errors import OutOfMemory
from hwsim.hardware.unit import Unit

LevelObserver = Callable[["MemoryBank", float, int, str], None]
"""Called as observer(bank, time_s, used_bytes, label) after every allocation or free."""


class MemoryBank(Unit):
    """Named buffers within a capacity, and a port that moves bytes at a bandwidth.

    A buffer is a real numpy array (full mode) or only a byte count (timing-only
    mode). Allocation is instantaneous bookkeeping; moving bytes (`read`, `write`)
    occupies the bank's single port for latency + bytes / bandwidth seconds.
    Exceeding the capacity raises `OutOfMemory`, naming the bank, the request and
    the buffers that hold the space.
    """

    kind = "memory"

    def __init__(self, env: simpy.Environment, name: str, spec: BankSpec):
        # A memory port moves bytes, not cycles; clock = bandwidth makes "cycles" bytes.
        super().__init__(env, name, spec.rate)
        self.spec = spec
        self.precision = spec.precision
        self.capacity = int(spec.capacity)
        self.used = 0
        self.peak = 0
        self._buffers: dict[str, Any] = {}
        self._sizes: dict[str, int] = {}
        self.level_observers: list[LevelObserver] = []

    # --- bookkeeping (no simulated time) ---------------------------------------

    def allocate(self, name: str, array: Any = None, nbytes: int | None = None) -> None:
        """Hold `array` (or `nbytes` without data) under `name`, replacing any buffer of that name.

        `array` is a numpy array or any buffer object with an `nbytes` attribute; it is
        charged exactly that many bytes.
        """
        size = int(array.nbytes if array is not None else nbytes or 0)
        old = self._sizes.get(name, 0)
        if self.used - old + size > self.capacity:
            raise OutOfMemory(self._diagnose(name, size, old))
        self._buffers[name] = array
        self._sizes[name] = size
        self.used += size - old
        self.peak = max(self.peak, self.used)
        self._notify(f"alloc {name}")

    def free(self, name: str) -> None:
        self.used -= self._sizes.pop(name)
        del self._buffers[name]
        self._notify(f"free {name}")

    def get(self, name: str) -> Any:
        return self._buffers[name]

    def size_of(self, name: str) -> int:
        return self._sizes[name]

    def holds(self, name: str) -> bool:
        return name in self._sizes

    def buffer_names(self) -> list[str]:
        return list(self._sizes)

    def reset_peak(self) -> None:
        """Start measuring the peak afresh from what is held now."""
        self.peak = self.used

    # --- data movement (simulated time) ----------------------------------------

    def transfer_time(self, nbytes: int) -> float:
        return self.spec.latency + nbytes / self.spec.rate

    def read(self, nbytes: int, label: str) -> Generator:
        yield from self.busy(self.transfer_time(nbytes), label, float(nbytes))

    def write(self, nbytes: int, label: str) -> Generator:
        yield from self.busy(self.transfer_time(nbytes), label, float(nbytes))

    @property
    def peak_per_s(self) -> float:
        return self.spec.rate

    # ---------------------------------------------------------------------------

    def _notify(self, label: str) -> None:
        for notify in self.level_observers:
            notify(self, self.env.now, self.used, label)

    def _diagnose(self, name: str, size: int, old: int) -> str:
        """The message of an allocation of `size` bytes under `name` (holding `old` bytes now) that does not
        fit: `name`'s own bytes are counted once, as what it grows from, not as another holder."""
        q = lambda x: format_quantity(x, "size")  # noqa: E731
        holders = sorted(((n, s) for n, s in self._sizes.items() if n != name), key=lambda kv: -kv[1])
        held = ", ".join(f"{n} {q(s)}" for n, s in holders[:5])
        more = f" and {len(holders) - 5} more" if len(holders) > 5 else ""
        free = self.capacity - self.used + old
        holding = f"held by {held}{more}" if held else "nothing else is held"
        needs = f"grows from {q(old)} to {q(size)}" if name in self._sizes else f"needs {q(size)}"
        return (
            f"out of memory in bank '{self.name}' ({self.precision}, capacity "
            f"{q(self.capacity)}) at t={self.env.now:.6g} s: "
            f"'{name}' {needs} but only {q(free)} is free for it; {holding}"
        )
