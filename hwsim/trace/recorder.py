"""Probes: a recorder that subscribes to hardware and systems and keeps flat records.

Components never record anything themselves; they call their observers, and the
recorder attached from outside appends one tuple per event to a table
(`store.TableStore`). A table holds its rows in memory until a long run makes it
spill to Parquet, so memory stays bounded however long the run. `Recorder.trace()`
closes the tables and hands them to a `Trace`.
"""

from __future__ import annotations

from collections.abc import Iterator

import pandas as pd

from hwsim.hardware import Device, MemoryBank, Message, Unit
from hwsim.trace import store
from hwsim.trace.store import SpillFolder, TableStore

TABLES = {
    "busy": {"unit": "s", "kind": "s", "label": "s", "start_s": "f", "end_s": "f", "work": "f"},
    "memory": {"bank": "s", "time_s": "f", "used_bytes": "i", "event": "s"},
    "messages": {"src": "s", "dst": "s", "tag": "s", "bytes": "i", "sent_s": "f", "delivered_s": "f"},
    "metrics": {"time_s": "f", "step": "i", "metric": "s", "value": "f"},
    "phases": {"device": "s", "step": "i", "phase": "s", "seconds": "f", "end_s": "f"},
    "ops": {"device": "s", "step": "i", "op": "s", "stage": "i", "microbatch": "i", "start_s": "f", "end_s": "f"},
    "collectives": {"name": "s", "op": "s", "algorithm": "s", "bytes": "i", "start_s": "f", "end_s": "f"},
}
"""The event tables and their columns (s: string, f: float, i: integer)."""
UNIT_COLUMNS = ["unit", "kind", "device", "clock_hz", "peak_per_s", "capacity_bytes", "precision"]


class Trace:
    """Everything a run recorded, as tables (times in simulated seconds).

    busy: one row per operation on a unit (`work` is FLOP for compute units and
    bytes for memory ports and links); memory: bank occupancy after each
    allocation or free; messages: one row per delivered message; metrics: learning
    and step metrics; units: the units that existed and their peaks; phases: where
    each step of a device's controller spent its time (systems that split steps);
    ops: the ops of a schedule as a device ran them (forward / backward of a stage
    for a micro-batch, a stage's all-reduce and update; microbatch -1 where none);
    collectives: one row per collective a system ran (its name, operation, algorithm,
    bytes per NPU, start and end).

    Each table is a DataFrame attribute (`trace.busy`). A long run's big tables live in
    Parquet files; `chunks(name)` walks a table without loading it whole, and
    `on_disk(name)` says whether it was spilled.
    """

    def __init__(self, stores: dict[str, TableStore], units: pd.DataFrame):
        self.stores = stores
        self.units = units
        self._frames: dict[str, pd.DataFrame] = {}

    def __getattr__(self, name: str) -> pd.DataFrame:
        stores = self.__dict__.get("stores", {})
        if name not in stores:
            raise AttributeError(name)
        if name not in self._frames:
            self._frames[name] = stores[name].frame()
        return self._frames[name]

    def chunks(self, name: str, columns: list[str] | None = None) -> Iterator[pd.DataFrame]:
        """Table `name` in order, a DataFrame at a time (one for a table that stayed in memory)."""
        if name in self._frames:
            frame = self._frames[name]
            yield frame if columns is None else frame[columns]
            return
        yield from self.stores[name].chunks(columns)

    def rows(self, name: str) -> int:
        return len(self.stores[name])

    def on_disk(self, name: str) -> bool:
        return self.stores[name].on_disk


class Recorder:
    """Collects flat records from the components it is attached to; tables with more than
    `spill_rows` rows go to Parquet files chunk by chunk."""

    def __init__(self, spill_rows: int | None = None) -> None:
        folder, self.spill_rows = SpillFolder(), spill_rows or store.SPILL_ROWS
        self.tables = {name: TableStore(name, columns, folder, self.spill_rows) for name, columns in TABLES.items()}
        self._messages, self._metrics, self._phases, self._ops, self._collectives = (
            self.tables[n].append for n in ("messages", "metrics", "phases", "ops", "collectives")
        )
        # one row per operation and per allocation: appended here, without a call, on the hot path
        self._busy_rows, self._memory_rows = self.tables["busy"].rows, self.tables["memory"].rows
        self.units: list[tuple[Unit, str]] = []  # every attached unit and its device: the units table at the end

    def attach_device(self, device: Device) -> None:
        for unit in device.units:
            self.attach_unit(unit, device.name)
        device.nic.delivery_observers.append(self._on_message)

    def attach_unit(self, unit: Unit, device: str = "") -> None:
        if isinstance(unit, MemoryBank):
            unit.level_observers.append(self._on_level)
            self._on_level(unit, unit.env.now, unit.used, "start")
        self.units.append((unit, device))
        unit.observers.append(self._on_busy)

    def metric(self, time_s: float, step: int, name: str, value: float) -> None:
        """The observer systems call with learning and step metrics."""
        self._metrics((time_s, step, name, float(value)))

    def phase(self, device: str, step: int, phase: str, seconds: float, end_s: float) -> None:
        """The observer systems call with the time one step of `device` spent in `phase`."""
        self._phases((device, step, phase, float(seconds), float(end_s)))

    def op(self, device: str, step: int, op: str, stage: int, microbatch: int, start_s: float, end_s: float) -> None:
        """The observer systems call when `device` finished one op of a schedule."""
        self._ops((device, step, op, stage, microbatch, float(start_s), float(end_s)))

    def collective(self, name: str, op: str, algorithm: str, nbytes: int, start_s: float, end_s: float) -> None:
        """The observer systems call when a collective (`hwsim.collectives`) ended."""
        self._collectives((name, op, algorithm, int(nbytes), float(start_s), float(end_s)))

    def _on_busy(self, unit: Unit, label: str, start: float, end: float, work: float) -> None:
        rows = self._busy_rows
        rows.append((unit.name, unit.kind, label, start, end, work))
        if len(rows) >= self.spill_rows:
            self.tables["busy"].spill()

    def _on_level(self, bank: MemoryBank, time_s: float, used: int, event: str) -> None:
        rows = self._memory_rows
        rows.append((bank.name, time_s, used, event))
        if len(rows) >= self.spill_rows:
            self.tables["memory"].spill()

    def messages(self, rows) -> None:
        """Delivered messages in bulk, rows of (src, dst, tag, bytes, sent_s, delivered_s) (a
        collective's round, `hwsim.network.cluster.ClusterTransport`)."""
        self.tables["messages"].extend(rows)

    def _on_message(self, message: Message, delivered_s: float) -> None:
        self._messages((message.src, message.dst, message.tag, message.nbytes, message.sent_s, delivered_s))

    def trace(self) -> Trace:
        for table in self.tables.values():
            table.close()
        return Trace(dict(self.tables), pd.DataFrame([_unit_row(u, device) for u, device in self.units], columns=UNIT_COLUMNS))


def _unit_row(unit: Unit, device: str) -> tuple:
    """A unit as the units table holds it, at the end of the run (an arithmetic unit's peak is at the
    precisions it ran)."""
    bank = isinstance(unit, MemoryBank)
    capacity, precision = (unit.capacity, unit.precision) if bank else (None, None)
    return (unit.name, unit.kind, device, unit.clock_hz, unit.peak_per_s, capacity, precision)
