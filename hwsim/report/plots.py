"""Figures from a run's tables: unit timeline (Gantt), utilization, memory over time, learning.

Figures are built with `matplotlib.figure.Figure` (no pyplot state), so they work
headless and display in Jupyter.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

# Colour per op category; the category is the first word of an op's label.
CATEGORIES = {
    "fwd": "#4C72B0",
    "bwd": "#DD8452",
    "update": "#55A868",
    "decompress": "#8172B3",
    "compress": "#937860",
    "read": "#64B5CD",
    "write": "#8C8C8C",
    "store": "#DA8BC3",
}
OTHER = "#CCB974"


def time_scale(t_max: float) -> tuple[float, str]:
    """(factor, unit) that shows times up to `t_max` seconds as numbers below 1000."""
    for factor, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "us"), (1e9, "ns")):
        if t_max * factor >= 1.0:
            return factor, unit
    return 1e9, "ns"


def _category(label: str) -> str:
    word = label.split(" ", 1)[0]
    return word if word in CATEGORIES else "other"


def timeline(busy: pd.DataFrame, units: list[str], ax, window: tuple[float, float] | None = None) -> None:
    """Draw a Gantt chart on `ax`: one row per unit, one `broken_barh` call per row."""
    rows = busy if window is None else busy[(busy.end_s > window[0]) & (busy.start_s < window[1])]
    factor, unit_name = time_scale(window[1] if window else busy.end_s.max())
    seen = set()
    for i, unit in enumerate(units):
        ops = rows[rows.unit == unit]
        if ops.empty:
            continue
        cats = [_category(label) for label in ops.label]
        seen.update(cats)
        colors = [CATEGORIES.get(c, OTHER) for c in cats]
        spans = factor * np.column_stack([ops.start_s.to_numpy(), (ops.end_s - ops.start_s).to_numpy()])
        ax.broken_barh(spans, (i - 0.4, 0.8), facecolors=colors, linewidth=0)
    ax.set_yticks(range(len(units)), units)
    ax.set_ylim(-0.6, len(units) - 0.4)
    ax.invert_yaxis()
    if window is not None:
        ax.set_xlim(window[0] * factor, window[1] * factor)
    ax.set_xlabel(f"simulated time ({unit_name})")
    handles = [Patch(color=CATEGORIES.get(c, OTHER), label=c) for c in [*CATEGORIES, "other"] if c in seen]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)


def timeline_figure(busy: pd.DataFrame, units: list[str], zoom: tuple[float, float, int] | None, note: str = "") -> Figure:
    """The whole run, and (if `zoom` is given) a window of it below; units that never worked are named, not drawn;
    `note` is added to the title (for example which units are shown)."""
    idle = [u for u in units if u not in set(busy.unit)]
    units = [u for u in units if u not in idle]
    panels = 2 if zoom else 1
    fig = Figure(figsize=(11, 1.2 + 0.45 * len(units) * panels + 0.8 * (panels - 1)), layout="constrained")
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    timeline(busy, units, axes[0])
    axes[0].set_title("Unit timeline: whole run" + note + (f" (never busy: {', '.join(idle)})" if idle else ""))
    if zoom:
        timeline(busy, units, axes[1], zoom[:2])
        axes[1].set_title(f"Zoom: the first {zoom[2]} steps")
    return fig


def utilization_figure(units: pd.DataFrame, note: str = "") -> Figure:
    """Busy and idle share of the run per unit, with idle cycles for compute units."""
    fig = Figure(figsize=(9, 0.9 + 0.4 * len(units)), layout="constrained")
    ax = fig.subplots()
    y = np.arange(len(units))
    ax.barh(y, units.util, color="#4C72B0", label="busy")
    ax.barh(y, 1 - units.util, left=units.util, color="#E5E5E5", label="idle")
    for yi, row in zip(y, units.itertuples(), strict=True):
        note = f"{row.util:.1%}"
        if not np.isnan(row.idle_cycles):
            note += f"  ({int(row.idle_cycles):,} idle cycles)"
        ax.text(0.01, yi, note, va="center", fontsize="small", color="black")
    ax.set_yticks(y, units.unit)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of simulated time")
    ax.set_title("Utilization per unit" + note)
    ax.legend(loc="lower right", fontsize="small")
    return fig


MAX_BANK_LINES = 12
"""The most banks of one kind a memory panel draws (those with the highest peaks)."""


def memory_figure(memory: pd.DataFrame, banks: pd.DataFrame, zoom: tuple[float, float, int] | None) -> Figure:
    """Occupancy of each bank over the whole run (left) and the zoom window (right).

    Banks of the same name on several devices ("w0.params", "w1.params") share a panel,
    one line per device. The capacity is drawn as a dashed line when it is within 1.5x
    of the peak, and always stated in the panel title; banks that never held anything
    are named in the figure title instead of drawn.
    """
    used = banks[banks.peak_bytes > 0]
    unused = banks.bank[banks.peak_bytes <= 0].tolist()
    groups = list(dict.fromkeys(_bank_kind(b) for b in used.bank)) or [_bank_kind(b) for b in banks.bank[:1]]
    cols = 2 if zoom else 1
    fig = Figure(figsize=(11, 0.8 + 2.2 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), cols, squeeze=False)
    for row, kind in zip(axes, groups, strict=True):
        members = used[used.bank.map(_bank_kind) == kind]
        of = len(members)
        members = members.nlargest(MAX_BANK_LINES, "peak_bytes", keep="first").sort_index()
        peak = max(float(members.peak_bytes.max()) if len(members) else 0.0, 1.0)
        capacity = float(members.capacity_bytes.max()) if len(members) else 0.0
        size_factor, size_unit = size_scale(peak)
        for ax, window in zip(row, [None, zoom][:cols], strict=True):
            factor, unit = time_scale(window[1] if window else max(memory.time_s.max(), 1e-12))
            for bank in members.bank:
                levels = memory[memory.bank == bank]
                shown = levels if window is None else levels[levels.time_s <= window[1]]
                label = bank.rsplit(".", 1)[0] if len(members) > 1 else None
                ax.step(shown.time_s * factor, shown.used_bytes * size_factor, where="post", linewidth=1, label=label)
            if capacity and capacity <= 1.5 * peak:
                ax.axhline(capacity * size_factor, color="#C44E52", linestyle="--", label="capacity")
            ax.set_ylim(bottom=0)
            ax.set_ylabel(size_unit)
            ax.set_xlabel(f"simulated time ({unit})")
        if len(members) > 1 or (capacity and capacity <= 1.5 * peak):
            row[-1].legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="x-small", frameon=False)
        precision = members.precision.iloc[0] if len(members) else ""
        row[0].set_title(
            f"{kind} ({precision}): peak {peak * size_factor:,.1f} {size_unit} of {capacity * size_factor:,.1f} {size_unit}"
            + (f" (the {len(members)} of {of} banks with the highest peaks)" if of > len(members) else ""),
            fontsize="medium",
        )
        if zoom:
            row[1].set_title(f"the first {zoom[2]} steps", fontsize="medium")
    if unused:
        shown = ", ".join(unused[:6]) + (f" and {len(unused) - 6} more" if len(unused) > 6 else "")
        fig.suptitle(f"Memory over time (never used: {shown})", fontsize="medium")
    return fig


def _bank_kind(bank: str) -> str:
    """The bank's name without its device ("w0.params" -> "params")."""
    return bank.split(".", 1)[1] if "." in bank else bank


def size_scale(peak: float) -> tuple[float, str]:
    for factor, unit in ((2.0**-30, "GiB"), (2.0**-20, "MiB"), (2.0**-10, "KiB")):
        if peak * factor >= 1.0:
            return factor, unit
    return 1.0, "B"


def learning_figure(metrics: pd.DataFrame, target: tuple[float, float | None] | None = None) -> Figure | None:
    """Training loss and test accuracy against simulated time (None if nothing was learned);
    `target` = (accuracy, time it was reached or None) marks the time-to-accuracy."""
    loss = metrics[metrics.metric == "loss"]
    acc = metrics[metrics.metric == "test_accuracy"]
    if loss.empty and acc.empty:
        return None
    fig = Figure(figsize=(10, 4), layout="constrained")
    ax = fig.subplots()
    factor, unit = time_scale(metrics.time_s.max())
    loss, acc = loss.assign(time_s=loss.time_s * factor), acc.assign(time_s=acc.time_s * factor)
    if not loss.empty:
        ax.plot(loss.time_s, loss.value, color="#DD8452", alpha=0.3, linewidth=0.8, label="batch loss")
        smooth = loss.value.rolling(max(1, len(loss) // 30), min_periods=1).mean()
        ax.plot(loss.time_s, smooth, color="#DD8452", label="batch loss (rolling mean)")
    test_loss = metrics[metrics.metric == "test_loss"]
    test_loss = test_loss.assign(time_s=test_loss.time_s * factor)
    if not test_loss.empty:
        ax.plot(test_loss.time_s, test_loss.value, "o-", color="#C44E52", markersize=3, label="test loss")
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel("loss")
    ax.set_ylim(bottom=0)
    lines, labels = ax.get_legend_handles_labels()
    if not acc.empty:
        ax2 = ax.twinx()
        ax2.plot(acc.time_s, acc.value, "s-", color="#4C72B0", markersize=3, label="test accuracy")
        ax2.set_ylabel("test accuracy")
        ax2.set_ylim(0, 1)
        if target is not None:
            ax2.axhline(target[0], color="#4C72B0", linestyle=":", linewidth=1, label=f"target {target[0]:g}")
            if target[1] is not None:
                ax2.axvline(target[1] * factor, color="#4C72B0", linestyle=":", linewidth=1)
        more = ax2.get_legend_handles_labels()
        lines, labels = lines + more[0], labels + more[1]
    ax.legend(lines, labels, loc="center right", fontsize="small")
    ax.set_title("Learning over simulated time")
    return fig


PHASE_COLORS = {
    "decompress": "#8172B3",
    "compute": "#4C72B0",
    "compress": "#937860",
    "send": "#64B5CD",
    "wait": "#E5E5E5",
    "aggregate": "#55A868",
    "receive": "#DA8BC3",
}


def phases_figure(table: pd.DataFrame) -> Figure | None:
    """Mean step time per device, split into its phases (stacked bars); None without phases."""
    if table.empty:
        return None
    phases = [c[:-2] for c in table.columns if c.endswith("_s") and c != "step_s"]
    fig = Figure(figsize=(10, 1.2 + 0.45 * len(table)), layout="constrained")
    ax = fig.subplots()
    factor, unit = time_scale(table.step_s.max())
    y = np.arange(len(table))
    left = np.zeros(len(table))
    for phase in phases:
        width = table[f"{phase}_s"].to_numpy() * factor
        ax.barh(y, width, left=left, color=PHASE_COLORS.get(phase, OTHER), edgecolor="white", linewidth=0.5, label=phase)
        left += width
    ax.set_yticks(y, table.device)
    ax.invert_yaxis()
    ax.set_xlabel(f"mean time per step ({unit})")
    ax.set_title("Where each worker's step goes")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    return fig


def staleness_figure(metrics: pd.DataFrame) -> Figure | None:
    """Staleness of each applied update over simulated time, and its distribution (async servers)."""
    rows = metrics[metrics.metric == "staleness"]
    if rows.empty:
        return None
    fig = Figure(figsize=(10, 3.5), layout="constrained")
    ax, hist = fig.subplots(1, 2, width_ratios=(3, 1))
    factor, unit = time_scale(rows.time_s.max())
    ax.plot(rows.time_s * factor, rows.value, ".", markersize=3, color="#4C72B0")
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel("versions behind")
    ax.set_title("Staleness of each update when applied")
    values = rows.value.astype(int)
    hist.bar(*np.unique(values, return_counts=True), color="#4C72B0")
    hist.set_xlabel("versions behind")
    hist.set_ylabel("updates")
    return fig


def comparison_figure(table: pd.DataFrame, curves: dict[str, pd.DataFrame]) -> Figure:
    """Left: test accuracy over simulated time per scenario. Right: time-to-accuracy against
    network bytes sent until then; a scenario that never reached the target is drawn at
    its total bytes and run time, hollow."""
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    ax, scatter = fig.subplots(1, 2)
    t_max = max([c.time_s.max() for c in curves.values() if not c.empty] or [1.0])
    factor, unit = time_scale(t_max)
    colors = [f"C{i}" for i in range(len(table))]
    for color, row in zip(colors, table.itertuples(), strict=True):
        curve = curves.get(row.scenario)
        if curve is not None and not curve.empty:
            ax.plot(curve.time_s * factor, curve.value, "o-", markersize=3, color=color, label=row.scenario)
        reached = row.time_to_target_s is not None and row.time_to_target_s == row.time_to_target_s
        x = row.network_bytes_to_target if reached else row.network_bytes
        y = row.time_to_target_s if reached else row.sim_time_s
        scatter.plot(x / 2**20, y * factor, "o", markersize=9, color=color, fillstyle="full" if reached else "none")
        scatter.annotate(
            row.scenario + ("" if reached else " (not reached)"),
            (x / 2**20, y * factor),
            fontsize="small",
            xytext=(6, 4),
            textcoords="offset points",
        )
    target = table.target_accuracy.dropna()
    if not target.empty:
        ax.axhline(float(target.iloc[0]), color="grey", linestyle=":", linewidth=1, label=f"target {float(target.iloc[0]):g}")
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.legend(fontsize="small", loc="lower right")
    ax.set_title("Test accuracy over simulated time")
    scatter.set_xlabel("network bytes sent until the target (MiB)")
    scatter.set_ylabel(f"time to target accuracy ({unit})")
    scatter.set_xlim(left=0)
    scatter.set_ylim(bottom=0)
    scatter.set_title("Time-to-accuracy against bytes sent")
    return fig
