"""Energy and power of a run, from what its units did and its hardware's energy model (`hardware.energy`).

A device's energy is its units' work at their energy per operation (dynamic) plus its idle power over the
whole run (static), as Antepara et al. (SC'25, Eq. 1) model a GPU: P = min(TDP, P_idle + sum of energy per
operation x rate):
- the arrays: each MAC (half a FLOP of their work) at `energy.mac` of the run's compute precision, and the
  on-chip traffic the tile model gives per FLOP (`hardware.tile_traffic`) at `energy.l2` and `energy.l1`
  per byte; an array held for a given time (work not counted) at its peak for that time;
- the vector unit: each FLOP at `energy.vector` (the same for a given time);
- each bank: each byte moved at `energy.memory[bank]`;
- the board's `energy.static` watts from the run's start to its end.
The power limiter: no interval of the arrays draws more than `energy.cap` with the idle power (SC'25's min:
an A100's fp16 GEMM runs at its 400 W TDP, Table 2); what it holds back is `limited_j`. The arrays' time is not
stretched: the presets' GEMM rates are measured at the cap (the A100's 1305 MHz clock, MAMF). Other units'
power is not limited, so a device can still average over its cap; it is reported, with the arrays' clock at
which it would fit.
The cluster adds what every device sent over the fabric at `energy.network` per byte (the top-level
hardware's), and counts each simulated device as many times as it stands for NPUs (a symmetric 3D run
simulates one tensor rank of one replica per pipeline position: `system.represented`). The NPUs' boards
only: host CPUs, NICs, switches, fans and cooling are not in.

Power over time: the run cut into `BINS` equal windows; a unit's busy interval spreads its energy evenly
over its length. Peak power is the highest window's.
"""

from __future__ import annotations

from functools import cached_property

import numpy as np
import pandas as pd

from hwsim.hardware import tile_traffic
from hwsim.systems.storage import element_bytes

BINS = 200
"""Windows of the power-over-time table."""
MEMORY_KINDS = ("memory",)


class EnergyModel:
    """The energy of one finished run (`scenario`, `outcome`, its `units` table from `summary.unit_table`)."""

    def __init__(self, scenario, outcome, units: pd.DataFrame):
        self.scenario, self.outcome, self.units = scenario, outcome, units
        self.sim_s = float(outcome.sim_time_s)
        self.precision = getattr(scenario.system, "compute_precision", None) or getattr(scenario.system, "precision", "fp32")
        cluster = outcome.cluster
        self.hardware = {dev.name: dev.spec for dev in cluster.devices.values()} if cluster is not None else {}
        represented = getattr(outcome.system, "represented", None)
        self.count = {name: (represented(name) if represented else 1) for name in self.hardware}

    @property
    def modelled(self) -> bool:
        """Whether every device's hardware has an energy model."""
        return bool(self.hardware) and all(spec.energy is not None for spec in self.hardware.values())

    @cached_property
    def per_work(self) -> pd.DataFrame:
        """Per unit of a modelled device: joules per unit of its work (an array's FLOP with its on-chip traffic;
        `onchip`: the traffic's share of it), and its peak work rate (for work held for a given time)."""
        rows = []
        bytes_ = element_bytes(self.precision)
        for row in self.units.itertuples():
            spec = self.hardware.get(row.device)
            if spec is None or spec.energy is None:
                continue
            energy, onchip = spec.energy, 0.0
            if row.kind == "systolic":
                l2, l1 = tile_traffic(spec.systolic, bytes_)
                onchip = l2 * energy.l2 + l1 * energy.l1
                mac = getattr(energy.mac, self.precision)
                if mac is None:  # fp8 without its own figure: half a bf16 MAC, the same power per cycle
                    mac = energy.mac.bf16 / 2
                per = mac / 2 + onchip  # a MAC is two FLOPs of work
            elif row.kind == "vector":
                per = energy.vector
            elif row.kind in MEMORY_KINDS:
                per = energy.memory.get(row.unit.removeprefix(f"{row.device}."), 0.0)
            else:
                continue
            share = onchip / per if per > 0 else 0.0
            rows.append(
                {
                    "unit": row.unit,
                    "device": row.device,
                    "kind": row.kind,
                    "per_work": per,
                    "onchip": share,
                    "peak": row.peak_per_s,
                }
            )
        return pd.DataFrame(rows, columns=["unit", "device", "kind", "per_work", "onchip", "peak"])

    @cached_property
    def _spent(self) -> tuple[np.ndarray, pd.DataFrame]:
        """One pass over the busy intervals: each device's dynamic joules in each of BINS windows, and its joules
        by part (compute, onchip, vector, memory) with what the power limiter held back (limited)."""
        names = list(self.hardware)
        index = {name: i for i, name in enumerate(names)}
        energy = np.zeros((len(names), BINS))
        parts = pd.DataFrame(0.0, index=names, columns=["compute", "onchip", "vector", "memory", "limited"])
        per = self.per_work
        if per.empty or self.sim_s <= 0:
            return energy, parts
        width = self.sim_s / BINS
        info = per.set_index("unit")
        room = {n: (s.energy.cap - s.energy.static if s.energy.cap is not None else np.inf) for n, s in self.hardware.items()}
        for chunk in self.outcome.trace.chunks("busy", ["unit", "start_s", "end_s", "work"]):
            chunk = chunk[chunk.unit.isin(info.index)]
            if chunk.empty:
                continue
            unit = info.loc[chunk.unit.astype(str)]
            start, end = chunk.start_s.to_numpy(float), chunk.end_s.to_numpy(float)
            work = chunk.work.to_numpy(float)
            given = (work == 0) & (end > start)  # held for a given time: at peak
            joules = np.where(given, (end - start) * unit.peak.to_numpy(float), work) * unit.per_work.to_numpy(float)
            kind, device = unit.kind.to_numpy(), unit.device.to_numpy()
            arrays = kind == "systolic"
            allowed = (end - start) * np.array([room[d] for d in device])
            held = np.where(arrays & (end > start), np.maximum(joules - allowed, 0.0), 0.0)
            joules = joules - held
            share = unit.onchip.to_numpy(float)
            frame = pd.DataFrame(
                {
                    "device": device,
                    "compute": np.where(arrays, joules * (1 - share), 0.0),
                    "onchip": np.where(arrays, joules * share, 0.0),
                    "vector": np.where(kind == "vector", joules, 0.0),
                    "memory": np.where(np.isin(kind, MEMORY_KINDS), joules, 0.0),
                    "limited": held,
                }
            )
            parts = parts.add(frame.groupby("device").sum(), fill_value=0.0)
            _spread(energy, np.array([index[d] for d in device]), start, end, joules, width)
        return energy, parts

    @cached_property
    def devices(self) -> pd.DataFrame:
        """One row per device: energy by part (J), average and peak power (W), the NPUs it stands for, its
        cap, what the limiter held back, whether it averages over the cap and the arrays' clock that would
        bring it under."""
        parts = self._spent[1]
        rows = []
        peak = self.power.groupby("device").power_w.max() if not self.power.empty else pd.Series(dtype=float)
        for name, spec in self.hardware.items():
            if spec.energy is None:
                continue
            part = parts.loc[name]
            arrays = float(part.compute + part.onchip)
            dynamic = arrays + float(part.vector + part.memory)
            static = spec.energy.static * self.sim_s
            total = dynamic + static
            average = total / self.sim_s if self.sim_s > 0 else 0.0
            cap = spec.energy.cap
            over = cap is not None and average > cap
            arrays_w = arrays / self.sim_s if self.sim_s > 0 else 0.0
            clock = None
            if over and arrays_w > 0:
                left = cap - (average - arrays_w)  # what the cap leaves the arrays
                clock = max(0.0, left) / arrays_w * spec.systolic.clock
            rows.append(
                {
                    "device": name,
                    "hardware": spec.name,
                    "represents": self.count[name],
                    "compute_j": float(part.compute),
                    "onchip_j": float(part.onchip),
                    "vector_j": float(part.vector),
                    "memory_j": float(part.memory),
                    "static_j": static,
                    "energy_j": total,
                    "limited_j": float(part.limited),
                    "average_power_w": average,
                    "peak_power_w": float(peak.get(name, average)),
                    "cap_w": cap,
                    "over_cap": over,
                    "clock_under_cap_hz": clock,
                }
            )
        return pd.DataFrame(rows)

    @cached_property
    def power(self) -> pd.DataFrame:
        """Power per device over time: (start_s, end_s, device, power_w) for each of BINS windows, and the
        cluster's (device "cluster": every NPU each device stands for, plus the network)."""
        if self.per_work.empty or self.sim_s <= 0:
            return pd.DataFrame(columns=["start_s", "end_s", "device", "power_w"])
        names = list(self.hardware)
        width = self.sim_s / BINS
        static = np.array([self.hardware[n].energy.static for n in names])
        power = self._spent[0] / width + static[:, None]
        edges = np.arange(BINS + 1) * width
        counts = np.array([self.count[n] for n in names], float)
        cluster = (power * counts[:, None]).sum(axis=0) + self.network_j / self.sim_s
        rows = len(names) + 1
        return pd.DataFrame(
            {
                "start_s": np.tile(edges[:-1], rows),
                "end_s": np.tile(edges[1:], rows),
                "device": np.repeat([*names, "cluster"], BINS),
                "power_w": np.concatenate([power.ravel(), cluster]),
            }
        )

    @cached_property
    def network_j(self) -> float:
        """What every device sent over the fabric, at the top-level hardware's energy per byte."""
        energy = self.scenario.hardware.energy
        if energy is None:
            return 0.0
        from hwsim.report.summary import network_bytes

        return float(network_bytes(self.outcome.trace, self.outcome.system)) * energy.network

    def summary(self, steps: int, samples: int, step_time_s: float | None, target_s: float | None) -> dict | None:
        """The `energy` section of summary.json (None without an energy model for every device)."""
        if not self.modelled:
            return None
        devices = self.devices
        boards = float((devices.energy_j * devices.represents).sum())
        cluster = boards + self.network_j
        npus = int(devices.represents.sum())
        power = self.power[self.power.device == "cluster"].power_w
        per_step = cluster / steps if steps else None
        out = {
            "total_j": cluster,
            "total_kwh": cluster / 3.6e6,
            "per_step_j": per_step,
            "per_sample_j": cluster / samples if samples else None,
            "edp_js": per_step * step_time_s if per_step is not None and step_time_s else None,
            "network_j": self.network_j,
            "limited_j": float((devices.limited_j * devices.represents).sum()),
            "npus": npus,
            "average_power_w": cluster / self.sim_s if self.sim_s > 0 else 0.0,
            "peak_power_w": float(power.max()) if len(power) else 0.0,
            "average_power_per_npu_w": boards / self.sim_s / npus if self.sim_s > 0 and npus else 0.0,
            "to_target_j": self.until(target_s) if target_s is not None else None,
            "over_cap": devices.device[devices.over_cap].tolist(),
            "devices": {row.pop("device"): row for row in devices.to_dict("records")},
        }
        return out

    def until(self, t: float) -> float:
        """The cluster's energy from the start to simulated time t."""
        power = self.power[self.power.device == "cluster"]
        seen = np.clip(t - power.start_s.to_numpy(), 0.0, (power.end_s - power.start_s).to_numpy())
        return float((power.power_w.to_numpy() * seen).sum())


def _spread(energy: np.ndarray, rows: np.ndarray, start: np.ndarray, end: np.ndarray, joules: np.ndarray, width: float) -> None:
    """Add each interval's joules into `energy[row]`'s windows of `width` seconds, evenly over [start, end]
    (an instant's into the window it falls in)."""
    bins = energy.shape[1]
    first = np.minimum((start / width).astype(int), bins - 1)
    last = np.minimum((end / width).astype(int), bins - 1)
    one = first == last
    np.add.at(energy, (rows[one], first[one]), joules[one])
    many = ~one
    if not many.any():
        return
    r, s, e, j, f, la = rows[many], start[many], end[many], joules[many], first[many], last[many]
    rate = j / (e - s)
    np.add.at(energy, (r, f), rate * ((f + 1) * width - s))
    np.add.at(energy, (r, la), rate * (e - la * width))
    between = np.zeros((energy.shape[0], bins + 1))  # full windows in between, as a difference array
    np.add.at(between, (r, f + 1), rate * width)
    np.add.at(between, (r, la), -rate * width)
    energy += np.cumsum(between, axis=1)[:, :bins]
