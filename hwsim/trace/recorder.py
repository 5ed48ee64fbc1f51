"""Probes: a recorder that subscribes to hardware and systems and keeps flat records.

Components never record anything themselves; they call their observers, and the
recorder attached from outside appends one tuple per event. `Recorder.trace()`
turns the lists into pandas DataFrames.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from hwsim.hardware import Device, MemoryBank, Message, Unit

BUSY_COLUMNS = ["unit", "kind", "label", "start_s", "end_s", "work"]
MEMORY_COLUMNS = ["bank", "time_s", "used_bytes", "event"]
MESSAGE_COLUMNS = ["src", "dst", "tag", "bytes", "sent_s", "delivered_s"]
METRIC_COLUMNS = ["time_s", "step", "metric", "value"]
UNIT_COLUMNS = ["unit", "kind", "device", "clock_hz", "peak_per_s", "capacity_bytes", "precision"]
PHASE_COLUMNS = ["device", "step", "phase", "seconds", "end_s"]
OP_COLUMNS = ["device", "step", "op", "stage", "microbatch", "start_s", "end_s"]


@dataclass
class Trace:
    """Everything a run recorded, as tables (times in simulated seconds).

    busy: one row per operation on a unit (`work` is FLOP for compute units and
    bytes for memory ports and links); memory: bank occupancy after each
    allocation or free; messages: one row per delivered message; metrics: learning
    and step metrics; units: the units that existed and their peaks; phases: where
    each step of a device's controller spent its time (systems that split steps);
    ops: the ops of a schedule as a device ran them (forward / backward of a stage
    for a micro-batch, a stage's all-reduce and update; microbatch -1 where none).
    """

    busy: pd.DataFrame
    memory: pd.DataFrame
    messages: pd.DataFrame
    metrics: pd.DataFrame
    units: pd.DataFrame
    phases: pd.DataFrame
    ops: pd.DataFrame


class Recorder:
    """Collects flat records from the components it is attached to."""

    def __init__(self) -> None:
        self.busy: list[tuple] = []
        self.memory: list[tuple] = []
        self.messages: list[tuple] = []
        self.metrics: list[tuple] = []
        self.units: list[tuple] = []
        self.phases: list[tuple] = []
        self.ops: list[tuple] = []

    def attach_device(self, device: Device) -> None:
        for unit in device.units:
            self.attach_unit(unit, device.name)
        device.nic.delivery_observers.append(self._on_message)

    def attach_unit(self, unit: Unit, device: str = "") -> None:
        capacity = precision = None
        if isinstance(unit, MemoryBank):
            capacity, precision = unit.capacity, unit.precision
            unit.level_observers.append(self._on_level)
            self.memory.append((unit.name, unit.env.now, unit.used, "start"))
        self.units.append((unit.name, unit.kind, device, unit.clock_hz, unit.peak_per_s, capacity, precision))
        unit.observers.append(self._on_busy)

    def metric(self, time_s: float, step: int, name: str, value: float) -> None:
        """The observer systems call with learning and step metrics."""
        self.metrics.append((time_s, step, name, float(value)))

    def phase(self, device: str, step: int, phase: str, seconds: float, end_s: float) -> None:
        """The observer systems call with the time one step of `device` spent in `phase`."""
        self.phases.append((device, step, phase, float(seconds), float(end_s)))

    def op(self, device: str, step: int, op: str, stage: int, microbatch: int, start_s: float, end_s: float) -> None:
        """The observer systems call when `device` finished one op of a schedule."""
        self.ops.append((device, step, op, stage, microbatch, float(start_s), float(end_s)))

    def _on_busy(self, unit: Unit, label: str, start: float, end: float, work: float) -> None:
        self.busy.append((unit.name, unit.kind, label, start, end, work))

    def _on_level(self, bank: MemoryBank, time_s: float, used: int, event: str) -> None:
        self.memory.append((bank.name, time_s, used, event))

    def _on_message(self, message: Message, delivered_s: float) -> None:
        self.messages.append((message.src, message.dst, message.tag, message.nbytes, message.sent_s, delivered_s))

    def trace(self) -> Trace:
        return Trace(
            busy=pd.DataFrame(self.busy, columns=BUSY_COLUMNS),
            memory=pd.DataFrame(self.memory, columns=MEMORY_COLUMNS),
            messages=pd.DataFrame(self.messages, columns=MESSAGE_COLUMNS),
            metrics=pd.DataFrame(self.metrics, columns=METRIC_COLUMNS),
            units=pd.DataFrame(self.units, columns=UNIT_COLUMNS),
            phases=pd.DataFrame(self.phases, columns=PHASE_COLUMNS),
            ops=pd.DataFrame(self.ops, columns=OP_COLUMNS),
        )
