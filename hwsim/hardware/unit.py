"""A unit that does one operation at a time, and tells its observers when it was busy."""

from __future__ import annotations

from collections.abc import Callable, Generator

import simpy

BusyObserver = Callable[["Unit", str, float, float, float], None]
"""Called as observer(unit, label, start_s, end_s, flops) when an operation ends."""


class Unit:
    """A hardware resource with capacity one: operations queue in request order (FIFO).

    `clock_hz` converts busy seconds to cycles in reports (idle cycles = idle time x clock).
    Probes subscribe by appending to `observers`; the unit never records anything itself.
    """

    kind = "unit"

    def __init__(self, env: simpy.Environment, name: str, clock_hz: float):
        self.env = env
        self.name = name
        self.clock_hz = clock_hz
        self.observers: list[BusyObserver] = []
        self.busy_total = 0.0  # seconds busy so far
        self._resource = simpy.Resource(env, capacity=1)

    def busy(self, seconds: float, label: str, flops: float = 0.0) -> Generator:
        """Occupy the unit for `seconds` once it is free (a SimPy process step); returns when it started."""
        with self._resource.request() as request:
            yield request
            start = self.env.now
            yield self.env.timeout(seconds)
        self.record(label, start, self.env.now, flops)
        return start

    def record(self, label: str, start: float, end: float, work: float = 0.0) -> None:
        """Report a span in which the unit was busy (what `busy` does when it ends; a shared link whose
        use another model times reports its spans this way)."""
        self.busy_total += end - start
        for notify in self.observers:
            notify(self, label, start, end, work)

    @property
    def peak_per_s(self) -> float:
        """Peak work per second (FLOP/s for compute units, bytes/s for memory and links)."""
        return 0.0

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r})"
