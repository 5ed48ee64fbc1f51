"""Figures from a run's tables: unit timeline (Gantt), utilization, memory over time, learning.

Figures are built with `matplotlib.figure.Figure` (no pyplot state), so they work
headless and display in Jupyter.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.patches import Patch

from hwsim.report.downsample import busy_fractions, level_envelope

# Colour per op category; the category is the first word of an op's label (or its alias), and every op
# of a link or a communication track is "comm".
CATEGORIES = {
    "fwd": "#4C72B0",
    "bwd": "#DD8452",
    "wgt": "#C5A0DE",
    "update": "#55A868",
    "decompress": "#8172B3",
    "compress": "#937860",
    "read": "#64B5CD",
    "write": "#8C8C8C",
    "store": "#DA8BC3",
    "comm": "#C44E52",
}
OTHER = "#CCB974"
ALIASES = {"forward": "fwd", "F": "fwd", "backward": "bwd", "B": "bwd", "W": "wgt", "optimizer": "update"}
"""First words of other systems' labels (a 3D run's "F 3.5", a timed layer's "forward") and their category."""
COMM_KINDS = ("link", "network")
"""Units whose every op is communication."""


def time_scale(t_max: float) -> tuple[float, str]:
    """(factor, unit) that shows times up to `t_max` seconds as numbers below 1000."""
    for factor, unit in ((1.0, "s"), (1e3, "ms"), (1e6, "us"), (1e9, "ns")):
        if t_max * factor >= 1.0:
            return factor, unit
    return 1e9, "ns"


def _category(label: str) -> str:
    word = label.split(" ", 1)[0]
    word = ALIASES.get(word, word)
    return word if word in CATEGORIES else "other"


def categories_of(labels: pd.Series) -> pd.Series:
    """The category (first word, or "other") of each op label (worked out once per distinct label)."""
    codes, distinct = pd.factorize(labels)
    return pd.Series(np.array([_category(str(label)) for label in distinct], dtype=object)[codes], index=labels.index)


def comm_labelled(chunks, comm: set[str]):
    """The busy chunks with every op of a communication unit (`comm`) labelled "comm"."""
    for chunk in chunks:
        # labels read back from Parquet are categorical: widen to plain strings before adding "comm"
        yield chunk.assign(label=chunk.label.astype(object).where(~chunk.unit.isin(comm), "comm")) if comm else chunk


PIXEL_BINS = 800
"""Columns of the whole-run panels: about one per pixel of the plot's width."""


def timeline(busy: pd.DataFrame, units: list[str], ax, window: tuple[float, float] | None = None) -> None:
    """Draw a Gantt chart on `ax`: one row per unit, one `broken_barh` call per row (every op a bar)."""
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
    _unit_rows(ax, units, seen)
    if window is not None:
        ax.set_xlim(window[0] * factor, window[1] * factor)
    ax.set_xlabel(f"simulated time ({unit_name})")


def _unit_rows(ax, units: list[str], seen) -> None:
    ax.set_yticks(range(len(units)), units)
    ax.set_ylim(-0.6, len(units) - 0.4)
    ax.invert_yaxis()
    handles = [Patch(color=CATEGORIES.get(c, OTHER), label=c) for c in [*CATEGORIES, "other"] if c in seen]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)


def busy_shares(ax, fractions: np.ndarray, units: list[str], t_end: float) -> None:
    """Draw per-pixel busy shares on `ax`: in each unit's row, each column is filled to the share of
    that column the unit was busy, stacked by op category (`fractions` from `busy_fractions`)."""
    names = [*CATEGORIES, "other"]
    t_end = max(t_end, 1e-12)  # a run that failed at time 0
    factor, unit_name = time_scale(t_end)
    bins = fractions.shape[2]
    x = np.linspace(0, t_end * factor, bins + 1)
    seen = set()
    for i in range(len(units)):
        base = np.full(bins, i - 0.4)
        for c, name in enumerate(names):
            share = np.minimum(fractions[c, i], 1.0)
            if not share.any():
                continue
            seen.add(name)
            top = base + 0.8 * share
            ax.fill_between(
                x, np.append(base, base[-1]), np.append(top, top[-1]), step="post", color=CATEGORIES.get(name, OTHER), linewidth=0
            )
            base = top
    _unit_rows(ax, units, seen)
    ax.set_xlim(0, t_end * factor)
    ax.set_xlabel(f"simulated time ({unit_name}); each column filled to the share of it the unit was busy")


def timeline_figure(trace, units: list[str], t_end: float, zoom: tuple[float, float, int] | None, note: str = "") -> Figure:
    """The whole run as per-pixel busy shares, and (if `zoom` is given) a window of it below with every op
    as a bar; units that never worked are named, not drawn; `note` is added to the title (for example
    which units are shown)."""
    names = [*CATEGORIES, "other"]
    columns = ["unit", "label", "start_s", "end_s"]
    comm = set(trace.units.unit[trace.units.kind.isin(COMM_KINDS)])
    chunks = comm_labelled(trace.chunks("busy", columns), comm)
    fractions = busy_fractions(chunks, units, names, categories_of, t_end, PIXEL_BINS)
    worked = fractions.sum(axis=(0, 2)) > 0
    idle = [u for u, w in zip(units, worked, strict=True) if not w]
    shown = [u for u, w in zip(units, worked, strict=True) if w]
    fractions = fractions[:, worked, :]
    panels = 2 if zoom else 1
    fig = Figure(figsize=(11, 1.2 + 0.45 * len(shown) * panels + 0.8 * (panels - 1)), layout="constrained")
    axes = fig.subplots(panels, 1, squeeze=False)[:, 0]
    busy_shares(axes[0], fractions, shown, t_end)
    never = f"never busy: {', '.join(idle[:4])}" + (f" and {len(idle) - 4} more" if len(idle) > 4 else "") if idle else ""
    axes[0].set_title("\n".join(x for x in ("Unit timeline: whole run" + note, never) if x), fontsize="medium")
    if zoom:
        window = zoom[:2]
        rows = [c[(c.end_s > window[0]) & (c.start_s < window[1])] for c in comm_labelled(trace.chunks("busy", columns), comm)]
        timeline(pd.concat(rows, ignore_index=True), shown, axes[1], window)
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
        text = f"{row.util:.1%}"
        if not np.isnan(row.idle_cycles):
            text += f"  ({int(row.idle_cycles):,} idle cycles)"
        ax.text(0.01, yi, text, va="center", fontsize="small", color="black")
    ax.set_yticks(y, units.unit)
    ax.invert_yaxis()
    ax.set_xlim(0, 1)
    ax.set_xlabel("share of simulated time")
    ax.set_title("Utilization per unit" + note)
    ax.legend(loc="lower right", fontsize="small")
    return fig


MAX_BANK_LINES = 12
"""The most banks of one kind a memory panel draws (those with the highest peaks)."""


def memory_figure(trace, banks: pd.DataFrame, t_end: float, zoom: tuple[float, float, int] | None) -> Figure:
    """Occupancy of each bank over the whole run (left) and the zoom window (right).

    Banks of the same name on several devices ("w0.params", "w1.params") share a panel,
    one colour per device. The whole run shows, per pixel column, the band between the
    lowest and highest level held, on an axis up to the capacity (dashed); the zoom shows
    every change, scaled to the peak (the capacity is drawn there too when it is within
    1.5x of the peak). Banks that never held anything are named in the figure title.
    """
    used = banks[banks.peak_bytes > 0]
    unused = banks.bank[banks.peak_bytes <= 0].tolist()
    groups = list(dict.fromkeys(_bank_kind(b) for b in used.bank)) or [_bank_kind(b) for b in banks.bank[:1]]
    shown = used.nlargest(MAX_BANK_LINES * len(groups), "peak_bytes", keep="first")
    columns = ["bank", "time_s", "used_bytes"]
    envelopes = level_envelope(trace.chunks("memory", columns), list(shown.bank), t_end, PIXEL_BINS)
    window_rows = None
    if zoom:
        parts = [c[c.time_s <= zoom[1]] for c in trace.chunks("memory", columns)]
        window_rows = pd.concat(parts, ignore_index=True)
    cols = 2 if zoom else 1
    fig = Figure(figsize=(11, 0.8 + 2.2 * len(groups)), layout="constrained")
    axes = fig.subplots(len(groups), cols, squeeze=False)
    t_end = max(t_end, 1e-12)  # a run that failed at time 0
    factor, unit = time_scale(t_end)
    x = np.linspace(0, t_end * factor, PIXEL_BINS + 1)
    for row, kind in zip(axes, groups, strict=True):
        members = used[used.bank.map(_bank_kind) == kind]
        of = len(members)
        members = members.nlargest(MAX_BANK_LINES, "peak_bytes", keep="first").sort_index()
        peak = max(float(members.peak_bytes.max()) if len(members) else 0.0, 1.0)
        capacity = float(members.capacity_bytes.max()) if len(members) else 0.0
        size_factor, size_unit = size_scale(max(peak, capacity))
        whole = row[0]
        for i, bank in enumerate(members.bank):
            lo, hi = envelopes.get(bank, np.full((2, PIXEL_BINS), np.nan)) * size_factor
            label = bank.rsplit(".", 1)[0] if len(members) > 1 else None
            color = f"C{i % 10}"
            whole.fill_between(x, np.append(lo, lo[-1]), np.append(hi, hi[-1]), step="post", color=color, alpha=0.5, linewidth=0)
            whole.step(x, np.append(hi, hi[-1]), where="post", color=color, linewidth=0.8, label=label)
        if capacity:
            whole.axhline(capacity * size_factor, color="#C44E52", linestyle="--", label="capacity")
        whole.set_ylim(0, max(capacity, peak) * size_factor * 1.05)
        whole.set_xlim(0, t_end * factor)
        whole.set_ylabel(size_unit)
        whole.set_xlabel(f"simulated time ({unit}); band: lowest to highest level in each pixel column")
        if zoom:
            _zoom_levels(row[1], window_rows, members, zoom, peak, capacity)
        if whole.get_legend_handles_labels()[0]:
            whole.legend(
                loc="upper left", bbox_to_anchor=(1.0, 1.0) if cols == 1 else (0.0, 1.0), fontsize="x-small", frameon=False
            )
        precision = members.precision.iloc[0] if len(members) else ""
        whole.set_title(
            f"{kind} ({precision}): peak {peak * size_factor:,.1f} {size_unit} of {capacity * size_factor:,.1f} {size_unit}"
            + (f" (the {len(members)} of {of} banks with the highest peaks)" if of > len(members) else ""),
            fontsize="medium",
        )
    if unused:
        names = ", ".join(unused[:6]) + (f" and {len(unused) - 6} more" if len(unused) > 6 else "")
        fig.suptitle(f"Memory over time (never used: {names})", fontsize="medium")
    return fig


def _zoom_levels(ax, rows: pd.DataFrame, members: pd.DataFrame, zoom, peak: float, capacity: float) -> None:
    """Every level change of `members` in the zoom window, scaled to the peak."""
    size_factor, size_unit = size_scale(peak)
    factor, unit = time_scale(zoom[1])
    for i, bank in enumerate(members.bank):
        levels = rows[rows.bank == bank]
        ax.step(levels.time_s * factor, levels.used_bytes * size_factor, where="post", linewidth=1, color=f"C{i % 10}")
    if capacity and capacity <= 1.5 * peak:
        ax.axhline(capacity * size_factor, color="#C44E52", linestyle="--")
        title = f"the first {zoom[2]} steps"
    else:
        title = f"the first {zoom[2]} steps (capacity {capacity * size_factor:,.0f} {size_unit}, above)"
    ax.set_xlim(zoom[0] * factor, zoom[1] * factor)
    ax.set_ylim(bottom=0)
    ax.set_ylabel(size_unit)
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_title(title, fontsize="medium")


def _bank_kind(bank: str) -> str:
    """The bank's name without its device ("w0.params" -> "params"; a device's name may hold dots too:
    "t0.p3.d0.hbm" -> "hbm")."""
    return bank.rsplit(".", 1)[1] if "." in bank else bank


def size_scale(peak: float) -> tuple[float, str]:
    for factor, unit in ((2.0**-30, "GiB"), (2.0**-20, "MiB"), (2.0**-10, "KiB")):
        if peak * factor >= 1.0:
            return factor, unit
    return 1.0, "B"


MAX_LINE_POINTS = 2000
"""The most points a learning curve draws; a longer one is averaged over runs of points."""
MARKED_POINTS = 200
"""Curves with more points than this are drawn without markers."""


def _thinned(rows: pd.DataFrame, label: str) -> tuple[pd.DataFrame, str]:
    """A curve's rows, and its label: as they are, or (a long run) the mean of each run of consecutive
    points, about one per pixel."""
    if len(rows) <= MAX_LINE_POINTS:
        return rows, label
    per = -(-len(rows) // MAX_LINE_POINTS)
    return rows[["time_s", "value"]].groupby(np.arange(len(rows)) // per).mean(), f"{label} (mean of each {per:,})"


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
    loss, label = _thinned(loss.assign(time_s=loss.time_s * factor), "batch loss")
    acc, acc_label = _thinned(acc.assign(time_s=acc.time_s * factor), "test accuracy")
    if not loss.empty:
        ax.plot(loss.time_s, loss.value, color="#DD8452", alpha=0.3, linewidth=0.8, label=label)
        smooth = loss.value.rolling(max(1, len(loss) // 30), min_periods=1).mean()
        ax.plot(loss.time_s, smooth, color="#DD8452", label="batch loss (rolling mean)")
    test_loss = metrics[metrics.metric == "test_loss"]
    test_loss, test_label = _thinned(test_loss.assign(time_s=test_loss.time_s * factor), "test loss")
    marker = 3 if len(test_loss) <= MARKED_POINTS else 0
    if not test_loss.empty:
        ax.plot(test_loss.time_s, test_loss.value, "o-", color="#C44E52", markersize=marker, label=test_label)
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel("loss")
    ax.set_ylim(bottom=0)
    lines, labels = ax.get_legend_handles_labels()
    if not acc.empty:
        ax2 = ax.twinx()
        marker = 3 if len(acc) <= MARKED_POINTS else 0
        ax2.plot(acc.time_s, acc.value, "s-", color="#4C72B0", markersize=marker, label=acc_label)
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


def _power_scale(peak: float) -> tuple[float, str]:
    for scale, unit in ((1e6, "MW"), (1e3, "kW")):
        if peak >= scale:
            return scale, unit
    return 1.0, "W"


KINDS_SHOWN = 6
"""At most this many kinds of hardware get a line of their own in the power plot."""


def power(table: pd.DataFrame, devices: pd.DataFrame, shown: int = 12) -> Figure:
    """Power over time: each device (or, with more than `shown`, each kind of hardware's mean and range),
    its cap and idle power marked; and the cluster's (every NPU the devices stand for, and the network)."""
    fig = Figure(figsize=(11, 4.2), layout="constrained")
    left, right = fig.subplots(1, 2)
    scale_t, unit_t = time_scale(float(table.end_s.max()))
    per = table[table.device != "cluster"]
    mid = (per.start_s + per.end_s) / 2 * scale_t
    per = per.assign(t=mid)
    kinds = devices.set_index("device").hardware
    if kinds.nunique() > KINDS_SHOWN:  # per-device hardware (a federated run's clients): one group
        kinds = kinds.map(lambda _: "all devices")
    if per.device.nunique() <= shown:
        for name, rows in per.groupby("device", sort=False):
            left.plot(rows.t, rows.power_w, lw=1, label=name)
    else:
        for kind, rows in per.assign(kind=per.device.map(kinds)).groupby("kind", sort=False):
            band = rows.groupby("t").power_w
            left.fill_between(band.min().index, band.min(), band.max(), alpha=0.25)
            left.plot(band.mean().index, band.mean(), lw=1.2, label=f"{kind} (mean of {rows.device.nunique()}, range shaded)")
    for cap in devices.cap_w.dropna().unique():
        left.axhline(cap, color="black", ls="--", lw=0.8)
        left.annotate(f"cap {cap:.0f} W", (0, cap), xytext=(2, 2), textcoords="offset points", fontsize=7)
    left.set_xlabel(f"simulated time ({unit_t})")
    left.set_ylabel("power per device (W)")
    left.set_ylim(0, 1.1 * max(float(per.power_w.max()), float(devices.cap_w.max()) if devices.cap_w.notna().any() else 0.0))
    left.legend(fontsize=7, loc="lower right")
    cluster = table[table.device == "cluster"]
    scale_p, unit_p = _power_scale(float(cluster.power_w.max()) if len(cluster) else 0.0)
    right.plot((cluster.start_s + cluster.end_s) / 2 * scale_t, cluster.power_w / scale_p, color="tab:red", lw=1.2)
    npus = int(devices.represents.sum())
    right.set_title(f"cluster: {npus:,} NPUs", fontsize=9)
    right.set_xlabel(f"simulated time ({unit_t})")
    right.set_ylabel(f"power ({unit_p})")
    right.set_ylim(0, 1.1 * float(cluster.power_w.max()) / scale_p if len(cluster) else 1.0)
    fig.suptitle("Power over time (the boards' idle power plus each unit's energy per operation)")
    return fig
