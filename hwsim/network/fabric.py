"""The fabric: a topology's links as hardware, a link-sharing model, and what each link carried.

Every directed link is a `Link` unit (`hwsim.hardware`), named from its ends
(`w0.nic.up`, `leaf0->spine1`, `npu3->npu4`; see `Topology.link_name`). A link is
registered with the recorder the first time it carries something, and reports when it
was busy: under `store_and_forward` each message's hold, under `flow` the spans in which
at least one flow crossed it (labelled with the first flow, "+k" for k more that
joined), under `ideal` each message's own serialization (these may overlap). `links()`
is one row per link: bytes, busy time, utilization.

Outages: `down(npu, start, end)` takes every link of an NPU down for a window; the
cluster loses a message whose sender is down when it is sent, or whose receiver is down
when it arrives.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd
import simpy

from hwsim.hardware import Link
from hwsim.network.sharing import MODELS
from hwsim.network.topology import Topology


class Fabric:
    """`topology`'s links with `bandwidth` and `latency` (arrays, bytes/s and s), shared by `model`."""

    def __init__(self, env: simpy.Environment, topology: Topology, model: str, names: list[str]):
        self.env = env
        self.topology = topology
        self.names = list(names) + list(topology.nodes[len(names) :])
        self.bandwidth = np.asarray(topology.bandwidth, float)
        self.latency = np.asarray(topology.latency, float)
        self.units = [
            Link(env, topology.link_name(i, self.names), self.bandwidth[i], self.latency[i]) for i in range(topology.links)
        ]
        self._bytes = [0.0] * topology.links  # lists: cheaper than arrays a link at a time
        self._seen = [False] * topology.links
        self._unseen = topology.links  # links that have not carried anything yet
        self.observed = False  # whether any link reports busy spans (has observers)
        # per link, as lists (cheaper than arrays an element at a time): busy seconds, flows on it, when
        # its busy span began, the span's first flow's label, flows that joined, bytes
        self._busy = [0.0] * topology.links
        self._active = [0] * topology.links
        self._since = [0.0] * topology.links
        self._label: list[str] = [""] * topology.links
        self._joined = [0] * topology.links
        self._span_bytes = [0.0] * topology.links
        self.first_use: Callable[[int], None] = lambda i: None
        """Called with a link's id the first time it carries something (the cluster registers it)."""
        self.outages: dict[int, list[tuple[float, float]]] = {}
        self.model = MODELS[model](env, self)

    # --- transfers ----------------------------------------------------------------

    def route(self, a: int, b: int) -> tuple[int, ...]:
        return self.topology.route(a, b)

    def transfer(self, a: int, b: int, nbytes: int, label: str, overhead: float = 0.0, sent: simpy.Event | None = None):
        """Process: `nbytes` from NPU a to NPU b under the sharing model (nothing to do when a == b);
        `sent` succeeds when the last byte has left NPU a."""
        return self.model.transfer(self.topology.route(a, b), nbytes, label, overhead, sent)

    def transfer_group(self, pairs: list[tuple[int, int, int]], label: str, overhead: float = 0.0):
        """Process: messages (a, b, nbytes) that leave together, done when the last has landed (the
        sharing model's `transfer_group`)."""
        route = self.topology.route
        return self.model.transfer_group([route(a, b) for a, b, _ in pairs], [n for _, _, n in pairs], label, overhead)

    def use(self, path: tuple[int, ...]) -> None:
        """Register the links of `path` that carry something for the first time (see `first_use`)."""
        if self._unseen:
            seen = self._seen
            for i in path:
                if not seen[i]:
                    self.touch(i)

    def path_latency(self, path: tuple[int, ...]) -> float:
        return self.topology.cost(path)[0]

    def path_bandwidth(self, path: tuple[int, ...]) -> float:
        """The slowest link's bandwidth on `path`."""
        return self.topology.cost(path)[1]

    def unloaded(self, a: int, b: int, nbytes: float, overhead: float = 0.0) -> float:
        """A message's time from NPU a to NPU b with nothing else on the fabric."""
        return self.model.unloaded(self.route(a, b), nbytes, overhead)

    def set_links(self, npu: int, bandwidth: float | None = None, latency: float | None = None, factor: float = 1.0) -> None:
        """Change every link of NPU `npu` (before it carries anything): a device's own NIC on a
        single switch, an override, a client's bandwidth factor."""
        for i in self.topology.npu_links(npu):
            if bandwidth is not None:
                self.bandwidth[i] = bandwidth
            if latency is not None:
                self.latency[i] = latency
            self.bandwidth[i] *= factor
            self.units[i].rate = self.units[i].clock_hz = self.bandwidth[i]
            self.units[i].latency = self.latency[i]
            self.topology.set_link(i, float(self.bandwidth[i]), float(self.latency[i]))
        if hasattr(self.model, "capacity"):
            self.model.capacity = self.bandwidth.copy()

    def set_rates(self, bandwidth: np.ndarray) -> None:
        """Every link's bandwidth at once, on an idle fabric (a collective's size-dependent rates)."""
        for i in np.flatnonzero(bandwidth != self.bandwidth):
            self.bandwidth[i] = bandwidth[i]
            self.units[i].rate = self.units[i].clock_hz = self.bandwidth[i]
            self.topology.set_link(i, float(self.bandwidth[i]), float(self.latency[i]))
        if hasattr(self.model, "capacity"):
            self.model.capacity = self.bandwidth.copy()

    # --- what links carry (called by the sharing models) -----------------------------

    def touch(self, i: int) -> None:
        if not self._seen[i]:
            self._seen[i] = True
            self._unseen -= 1
            self.first_use(i)
            self.observed = self.observed or bool(self.units[i].observers)

    @property
    def bytes(self) -> np.ndarray:
        """Bytes each link has carried so far."""
        return np.array(self._bytes)

    def add_bytes(self, path: tuple[int, ...], nbytes: float) -> None:
        counts = self._bytes
        for i in path:
            counts[i] += nbytes

    def started(self, path: tuple[int, ...], nbytes: int, label: str) -> None:
        """A flow began on `path` (the flow model): the links it opens a busy span on note when."""
        self.use(path)
        now, active, counts = self.env.now, self._active, self._bytes
        for i in path:
            counts[i] += nbytes
            if active[i] == 0:
                self._since[i] = now
            active[i] += 1
        if self.observed:
            for i in path:
                if self.units[i].observers:
                    if active[i] == 1:
                        self._label[i], self._joined[i], self._span_bytes[i] = label, 0, 0.0
                    else:
                        self._joined[i] += 1
                    self._span_bytes[i] += nbytes

    def ended(self, path: tuple[int, ...]) -> None:
        """A flow on `path` sent its last byte: the links it leaves idle close their busy span."""
        now, active = self.env.now, self._active
        for i in path:
            active[i] -= 1
            if active[i] == 0:
                self._busy[i] += now - self._since[i]
                if self.observed and self.units[i].observers:
                    label = self._label[i] + (f" +{self._joined[i]}" if self._joined[i] else "")
                    self.units[i].record(label, self._since[i], now, self._span_bytes[i])

    def carried(self, path: tuple[int, ...], nbytes: int, label: str, start: float) -> None:
        """A message alone on `path` from `start` (the ideal model): each observed link reports the span
        of its own serialization (a link's busy time is its bytes / its bandwidth)."""
        self.use(path)
        self.add_bytes(path, nbytes)
        if self.observed:
            for i in path:
                if self.units[i].observers:
                    self.units[i].record(label, start, start + nbytes / float(self.bandwidth[i]), float(nbytes))

    # --- outages --------------------------------------------------------------------

    def down(self, npu: int, start: float, end: float) -> None:
        self.outages.setdefault(npu, []).append((start, end))

    def is_down(self, npu: int) -> bool:
        return any(start <= self.env.now < end for start, end in self.outages.get(npu, ()))

    # --- the table ------------------------------------------------------------------

    def links(self, sim_time_s: float) -> pd.DataFrame:
        """One row per link: its ends, level, bandwidth and latency; bytes carried, busy time, and
        utilization = bytes / (bandwidth x simulated time)."""
        t = self.topology
        if self.model.name == "store_and_forward":
            busy = np.array([unit.busy_total for unit in self.units], float)
        elif self.model.name == "ideal":
            busy = self.bytes / self.bandwidth
        else:
            busy = np.array(self._busy)
        span = sim_time_s if sim_time_s > 0 else np.nan
        return pd.DataFrame(
            {
                "link": [u.name for u in self.units],
                "src": [self.names[u] for u in t.src],
                "dst": [self.names[v] for v in t.dst],
                "level": t.level,
                "bandwidth_bytes_per_s": self.bandwidth,
                "latency_s": self.latency,
                "bytes": self.bytes,
                "busy_s": busy,
                "util": self.bytes / (self.bandwidth * span),
            }
        )
