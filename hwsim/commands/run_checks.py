"""What every run must hold, whatever its system: the checks `hwsim validate` makes on any scenario.

Each is a row of PASS / FAIL / n/a (`Check`): the run ended as it should; no two operations
overlap on a unit that does one thing at a time; no bank held more than its capacity; no
unit did more work than its peak allows in the time it ran, and no link carried more than
its bandwidth allows (with the loads a symmetric system worked out for the links it did not
simulate); every span lies inside the simulated time; every message landed after it left. A system's own checks (the pipeline's
schedule, closed forms and math) come on top, in `validate`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from hwsim.report.summary import unit_table

SLACK = 1e-9
"""Relative slack of the comparisons: float rounding of sums of op times."""


@dataclass(frozen=True)
class Check:
    name: str
    result: str  # PASS, FAIL or n/a
    detail: str


def check(name: str, ok: bool, detail: str) -> Check:
    return Check(name, "PASS" if ok else "FAIL", detail)


def run_checks(scenario, outcome) -> list[Check]:
    """The checks any finished run must pass (see the module docstring)."""
    ended = outcome.status == "ok"
    out = [check("simulation ends ok", ended, outcome.diagnosis or f"status {outcome.status}")]
    trace = outcome.trace
    shared = _shared_links(scenario, trace)
    out.append(no_overlap(trace, shared))
    out.append(memory_within_capacity(trace, outcome.status))
    out.append(_within_peak(unit_table(trace, outcome.sim_time_s), shared))
    if not shared:
        out.append(_links_within_bandwidth(outcome))
    out.append(_spans_inside(trace, outcome.sim_time_s))
    out.append(_messages_in_order(trace))
    out += energy_checks(scenario, outcome)
    return out


def energy_checks(scenario, outcome) -> list[Check]:
    """With an energy model: each device's energy is its parts' sum and its power over time integrates to it;
    each device averages within its power cap (the limiter holds each GEMM at the cap, but not the other units:
    over it, the preset's clocks are more than the board can hold)."""
    from hwsim.report.energy import EnergyModel

    model = EnergyModel(scenario, outcome, unit_table(outcome.trace, outcome.sim_time_s))
    if not model.modelled or outcome.sim_time_s <= 0:
        return [Check("energy: parts and power add up", "n/a", "no energy model (hardware.energy)")]
    devices, power = model.devices, model.power
    parts = devices[["compute_j", "onchip_j", "vector_j", "memory_j", "static_j"]].sum(axis=1)
    integral = (power.power_w * (power.end_s - power.start_s)).groupby(power.device).sum()
    by_device = devices.set_index("device").energy_j
    worst = float(np.max(np.abs(integral[by_device.index] / by_device - 1))) if len(by_device) else 0.0
    ok = np.allclose(parts, devices.energy_j, rtol=1e-9) and worst <= 1e-6 and (devices.energy_j >= 0).all()
    out = [
        check("energy: parts and power add up", ok, f"{len(devices)} devices; power over time within {worst:.1e} of each total")
    ]
    capped = devices[devices.cap_w.notna()]
    if capped.empty:
        out.append(Check("energy: within each power cap", "n/a", "no device has a cap"))
        return out
    over = capped[capped.over_cap]
    top = capped.loc[(capped.average_power_w / capped.cap_w).idxmax()]
    detail = f"highest average {top.average_power_w:.4g} W of {top.cap_w:.4g} W ({top.device})"
    if not over.empty:
        clock = top.clock_under_cap_hz
        detail += f"; over the cap: {', '.join(over.device[:5])}" + (
            f" (arrays at {clock / 1e6:.0f} MHz would fit)" if clock else ""
        )
    out.append(check("energy: within each power cap", over.empty, detail))
    return out


def _shared_links(scenario, trace) -> set[str]:
    """Links that carry messages side by side at full rate (the `ideal` sharing model: no contention), so
    their spans may overlap and their bytes exceed bandwidth x time."""
    net = scenario.hardware.network
    if net is None or net.model != "ideal":
        return set()
    return set(trace.units.unit[trace.units.kind == "link"])


def no_overlap(trace, exempt: set[str] = frozenset()) -> Check:
    """No two operations overlap on a unit (each does one thing at a time), except `exempt` units."""
    worst, units = "", 0
    for unit, rows in trace.busy.groupby("unit", observed=True):
        if unit in exempt:
            continue
        units += 1
        start, end = rows.start_s.to_numpy(), rows.end_s.to_numpy()
        order = np.argsort(start, kind="stable")
        start, end = start[order], end[order]
        clash = np.nonzero(start[1:] < end[:-1] - 1e-15 * np.maximum(1.0, end[:-1]))[0]
        if len(clash):
            worst = f"{unit}: an op at {start[clash[0] + 1]:.9g} s starts before the one ending {end[clash[0]]:.9g} s"
            break
    return check("simulation: no two ops overlap on a unit", not worst, worst or f"{units} units")


def memory_within_capacity(trace, status: str) -> Check:
    """Every bank's occupancy stayed within its capacity (a run that ran out of memory fails this)."""
    banks = trace.memory.groupby("bank", observed=True).used_bytes.max()
    capacity = trace.units.set_index("unit").capacity_bytes
    over = [b for b, peak in banks.items() if peak > capacity[b]]
    return check(
        "simulation: memory within each bank's capacity",
        not over and status != "out_of_memory",
        ", ".join(over) or (f"{len(banks)} banks" if status != "out_of_memory" else "the run ran out of memory"),
    )


def _within_peak(units: pd.DataFrame, shared: set[str]) -> Check:
    """achieved / peak at most 1 for every unit with a peak: FLOP at the precision it ran, bytes at the
    bank's or link's rate."""
    rated = units[units.achieved_fraction.notna() & ~units.unit.isin(shared)]
    over = rated[rated.achieved_fraction > 1 + SLACK]
    worst = rated.loc[rated.achieved_fraction.idxmax()] if len(rated) else None
    detail = (
        f"{over.unit.iloc[0]} at {over.achieved_fraction.iloc[0]:.1%} of its peak"
        if len(over)
        else (
            f"{len(rated)} units; the highest {worst.unit} at {worst.achieved_fraction:.1%}"
            if worst is not None
            else "no rated unit"
        )
    )
    return check("units: work within each unit's peak (achieved / peak at most 100 %)", over.empty, detail)


def _links_within_bandwidth(outcome) -> Check:
    """Every link of the fabric carried at most bandwidth x simulated time, counting the loads a symmetric
    system worked out for the links it did not simulate (`mirrored_links`)."""
    name = "fabric: every link's bytes within its bandwidth x the simulated time"
    if outcome.cluster is None or outcome.sim_time_s <= 0:
        return Check(name, "n/a", "no fabric, or no time simulated")
    links = outcome.cluster.fabric.links(outcome.sim_time_s)
    mirrored = getattr(outcome.system, "mirrored_links", None)
    links = mirrored(links) if mirrored is not None else links
    used = links[links.bytes > 0]
    over = used[used.util > 1 + SLACK]
    if len(over):
        return check(name, False, f"{over.link.iloc[0]} at {over.util.iloc[0]:.1%}")
    top = f"; the busiest {used.link.iloc[used.util.argmax()]} at {used.util.max():.1%}" if len(used) else ""
    return check(name, True, f"{len(used)} of {len(links)} links carried bytes{top}")


def _spans_inside(trace, sim_time_s: float) -> Check:
    """Every busy span starts at 0 or later, ends no earlier than it starts, and ends by the run's end."""
    limit = sim_time_s * (1 + SLACK) + 1e-15
    bad, rows = "", 0
    for chunk in trace.chunks("busy", ["unit", "start_s", "end_s"]):
        rows += len(chunk)
        wrong = chunk[(chunk.start_s < 0) | (chunk.end_s < chunk.start_s) | (chunk.end_s > limit)]
        if len(wrong):
            r = wrong.iloc[0]
            bad = f"{r.unit}: [{r.start_s:.9g}, {r.end_s:.9g}] s in a run of {sim_time_s:.9g} s"
            break
    return check("trace: every span inside the simulated time", not bad, bad or f"{rows:,} spans")


def _messages_in_order(trace) -> Check:
    """Every delivered message landed no earlier than it was sent."""
    bad, rows = "", 0
    for chunk in trace.chunks("messages", ["src", "dst", "sent_s", "delivered_s"]):
        rows += len(chunk)
        early = chunk[chunk.delivered_s < chunk.sent_s]
        if len(early):
            r = early.iloc[0]
            bad = f"{r.src} -> {r.dst} sent at {r.sent_s:.9g} s, delivered at {r.delivered_s:.9g} s"
            break
    return check("trace: every message delivered after it was sent", not bad, bad or f"{rows:,} messages")
