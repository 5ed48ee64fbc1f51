"""The numbers of a run: time, throughput, utilization and idle cycles, FLOP/s, memory, bytes, learning."""

from __future__ import annotations

import numpy as np
import pandas as pd

from hwsim.trace import Trace

COMPUTE_KINDS = ("systolic", "vector")


def unit_table(trace: Trace, sim_time_s: float) -> pd.DataFrame:
    """One row per unit: busy and idle time, utilization, idle cycles, work and its rate.

    util = busy_s / sim_time_s. Cycles (busy and idle) are time x clock and are given
    for compute units only; for memory ports and links `work` is bytes moved and
    `achieved_per_s` is bytes/s over the whole run, against `peak_per_s` (bandwidth).
    An arithmetic unit's peak is at the precision it ran. A compute unit's `work` is NaN
    (n/a) when some of its busy time did uncounted work (a layer or an optimizer given as a
    time, not as a GEMM or element count).
    """
    parts = [
        chunk.assign(dur_s=chunk.end_s - chunk.start_s, uncounted=chunk.work.eq(0) & (chunk.end_s > chunk.start_s))
        .groupby("unit", observed=True)
        .agg(busy_s=("dur_s", "sum"), ops=("dur_s", "size"), work=("work", "sum"), uncounted=("uncounted", "sum"))
        for chunk in trace.chunks("busy", ["unit", "start_s", "end_s", "work"])
    ]
    columns = ["busy_s", "ops", "work", "uncounted"]
    per_unit = pd.concat(parts).groupby(level=0).sum() if parts else pd.DataFrame(columns=columns)
    table = trace.units.set_index("unit")[["kind", "device", "clock_hz", "peak_per_s"]].join(per_unit)
    table[["busy_s", "work"]] = table[["busy_s", "work"]].astype(float).fillna(0.0)
    table[["ops", "uncounted"]] = table[["ops", "uncounted"]].fillna(0).astype(int)
    span = sim_time_s if sim_time_s > 0 else np.nan
    table["util"] = table.busy_s / span
    table["idle_s"] = sim_time_s - table.busy_s
    compute = table.kind.isin(COMPUTE_KINDS)
    table["busy_cycles"] = np.where(compute, np.round(table.busy_s * table.clock_hz), np.nan)
    table["idle_cycles"] = np.where(compute, np.round(table.idle_s * table.clock_hz), np.nan)
    # a compute unit held for a given time (a layer or an optimizer timed by the user) did work nobody
    # counted: n/a, not 0
    unknown = compute & (table.uncounted > 0)
    table.loc[unknown, "work"] = np.nan
    table["achieved_per_s"] = table.work / span
    peak = table.peak_per_s.where(table.peak_per_s > 0)  # a track without a peak: n/a
    table["achieved_fraction"] = table.achieved_per_s / peak
    return table.reset_index()[
        [
            "unit",
            "kind",
            "device",
            "ops",
            "busy_s",
            "idle_s",
            "util",
            "busy_cycles",
            "idle_cycles",
            "work",
            "achieved_per_s",
            "peak_per_s",
            "achieved_fraction",
        ]
    ]


def memory_table(trace: Trace) -> pd.DataFrame:
    """One row per bank: capacity, peak occupancy and final occupancy."""
    banks = trace.units[trace.units.kind == "memory"].set_index("unit")
    peaks, finals = [], []
    for chunk in trace.chunks("memory", ["bank", "used_bytes"]):
        levels = chunk.groupby("bank", observed=True).used_bytes
        peaks.append(levels.max())
        finals.append(levels.last())
    peak = pd.concat(peaks).groupby(level=0).max() if peaks else pd.Series(dtype="int64")
    final = pd.concat(finals).groupby(level=0).last() if finals else pd.Series(dtype="int64")
    out = pd.DataFrame(
        {
            "precision": banks.precision,
            "capacity_bytes": banks.capacity_bytes.astype("int64"),
            "peak_bytes": peak,
            "final_bytes": final,
        }
    )
    out["peak_fraction"] = out.peak_bytes / out.capacity_bytes
    return out.rename_axis("bank").reset_index()


def summarize(scenario, outcome, units: pd.DataFrame, memory: pd.DataFrame, energy=None) -> dict:
    """The run's `summary.json` contents (provenance is added by the caller); `energy`: the run's
    `report.energy.EnergyModel` (made here if not given)."""
    trace, sim = outcome.trace, outcome.sim_time_s
    metrics = trace.metrics
    steps = metrics[metrics.metric == "step_time_s"]  # one row per step of each training device
    devices = getattr(scenario.system, "workers", 1)  # step-time rows per step
    per_row = getattr(outcome.system, "samples_per_step", None) or getattr(scenario.system, "batch", 0)
    samples = len(steps) * per_row
    step_count = int(len(steps) // devices)
    local = getattr(outcome.system, "local_work", None)
    if local is not None:  # federated: local steps and samples summed over clients
        step_count, samples = local()
    systolic = units[units.kind == "systolic"]
    precision = getattr(scenario.system, "compute_precision", None) or getattr(scenario.system, "precision", "fp32")
    peak_flops = float(systolic.peak_per_s.sum())  # each unit's peak at the precision it ran
    counted = not systolic.work.isna().any()  # else some work was a given time: FLOP unknown
    achieved = (float(systolic.work.sum()) / sim if sim > 0 else 0.0) if counted else None

    def last(name: str) -> float | None:
        rows = metrics[metrics.metric == name]
        return float(rows.value.iloc[-1]) if len(rows) else None

    out = {
        "scenario": scenario.name,
        "status": outcome.status,
        "diagnosis": outcome.diagnosis,
        "sim_time_s": sim,
        "steps": step_count,
        "samples": int(samples),
        "samples_per_s": samples / sim if sim > 0 else 0.0,
        "step_time_s": float(steps.value.mean()) if len(steps) else None,
        "flops": {
            "compute_precision": precision,
            "achieved_flop_per_s": achieved,
            "peak_flop_per_s": peak_flops,
            "fraction_of_peak": achieved / peak_flops if peak_flops and achieved is not None else None,
        },
        "units": {
            row.unit: {
                "kind": row.kind,
                "busy_s": row.busy_s,
                "util": row.util,
                "busy_cycles": None if np.isnan(row.busy_cycles) else int(row.busy_cycles),
                "idle_cycles": None if np.isnan(row.idle_cycles) else int(row.idle_cycles),
                "work": None if np.isnan(row.work) else row.work,
            }
            for row in units.itertuples()
        },
        "memory": {
            row.bank: {
                "precision": row.precision,
                "capacity_bytes": int(row.capacity_bytes),
                "peak_bytes": None if np.isnan(row.peak_bytes) else int(row.peak_bytes),
            }
            for row in memory.itertuples()
        },
        "bytes_moved": {
            "memory": int(units[units.kind == "memory"].work.sum()),
            "network": network_bytes(trace, outcome.system),
        },
        "learning": {
            "final_loss": last("loss"),
            "final_test_loss": last("test_loss"),
            "final_test_accuracy": last("test_accuracy"),
            **time_to_accuracy(trace, scenario.run.target_accuracy),
        },
    }
    failures = getattr(getattr(getattr(outcome, "cluster", None), "fabric", None), "model", None)
    if getattr(failures, "failures", None) is not None:
        out["network_failures"] = failures.failures.summary(sim)
    if energy is None:
        from hwsim.report.energy import EnergyModel

        energy = EnergyModel(scenario, outcome, units)
    learning = out["learning"]
    out["energy"] = energy.summary(step_count, int(samples), out["step_time_s"], learning.get("time_to_target_s"))
    phases = phase_table(trace)
    if not phases.empty:
        out["phases"] = {row.pop("device"): row for row in phases.to_dict("records")}
    # each system's section comes from its report module, imported only for that system
    if outcome.status == "ok" and not trace.ops.empty and scenario.system.kind == "pipeline":
        from hwsim.report.pipeline import pipeline_summary

        out["pipeline"] = pipeline_summary(trace, outcome.system)
        if getattr(outcome.system, "fill", None) is not None:
            from hwsim.report.filling import fill_summary

            out["fill"] = fill_summary(trace, outcome.system)
    if outcome.status == "ok" and hasattr(outcome.system, "predictions"):
        from hwsim.report.online import online_summary

        out["online"] = online_summary(trace, outcome.system)
    if outcome.status == "ok" and hasattr(outcome.system, "round_table"):
        from hwsim.report.federated import federated_summary

        out["federated"] = federated_summary(trace, outcome.system, scenario.run.target_accuracy)
    extra = getattr(outcome.system, "summary", None)
    if extra is not None:
        out |= extra(trace)
    return out


def network_bytes(trace: Trace, system) -> int:
    """Bytes sent over the network: the delivered messages, or what a symmetric system worked out its ranks
    sent (`network_bytes`: a 3D run simulates one rank per group)."""
    sent = getattr(system, "network_bytes", None)
    if sent is not None:
        return int(sent())
    return int(sum(chunk.bytes.sum() for chunk in trace.chunks("messages", ["bytes"])))


def time_to_accuracy(trace: Trace, target: float | None) -> dict:
    """When test accuracy first reached `target` (simulated seconds), and the network bytes delivered by then."""
    if target is None:
        return {"target_accuracy": None, "time_to_target_s": None, "network_bytes_to_target": None}
    acc = trace.metrics[trace.metrics.metric == "test_accuracy"]
    hit = acc[acc.value >= target]
    if hit.empty:
        return {"target_accuracy": target, "time_to_target_s": None, "network_bytes_to_target": None}
    t = float(hit.time_s.iloc[0])
    sent = int(sum(m.bytes[m.delivered_s <= t].sum() for m in trace.chunks("messages", ["bytes", "delivered_s"])))
    return {"target_accuracy": target, "time_to_target_s": t, "network_bytes_to_target": sent}


def phase_table(trace: Trace) -> pd.DataFrame:
    """Mean seconds per step in each phase, one row per device (empty if the system records none)."""
    phases = trace.phases
    if phases.empty:
        return pd.DataFrame()
    order = list(dict.fromkeys(phases.phase))
    steps = phases.groupby("device").step.nunique()
    table = phases.pivot_table(index="device", columns="phase", values="seconds", aggfunc="sum")[order]
    table = table.div(steps, axis=0).add_suffix("_s")
    table["step_s"] = table.sum(axis=1)
    return table.rename_axis(None, axis=1).reset_index()
