"""Pipeline figures and numbers from a run's `ops` table: bubbles, reductions, activations, Gantt chart.

Two bubble figures are given, and each says which definition it uses:

- `bubble_fraction` = idle / (devices x makespan): the share of the devices' time,
  over the pipeline part of a step (first forward start to last backward end), in
  which a device's arithmetic units run no forward or backward op (with a split
  backward, "backward" is its B and W ops: input and weight gradients);
- `bubble_vs_ideal` = makespan / ideal - 1, where ideal is the busiest device's
  forward and backward time in the step (what a step would take with no bubble).

`bubble_s` is the literature's bubble, the one the schedules' closed forms give
(`policies.timing.bubbles`): the most idle time of any device of replica 0 between
its own first and last op of the step, averaged over the steps. With unequal stages
it also counts a lightly loaded device's idle time; `overhead_s` = makespan - ideal
(the absolute `bubble_vs_ideal`) is what the step loses to the schedule.

Gradient reduction on a device is `exposed` where it runs after the device's last
backward of the step (nothing left to hide it behind) and `overlapped` otherwise.
"""

from __future__ import annotations

import re

import numpy as np
import pandas as pd
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.figure import Figure
from matplotlib.font_manager import FontProperties
from matplotlib.patches import Patch

from hwsim.policies import Op, Shape, Timed, bubbles, peak_activations
from hwsim.report.plots import size_scale, time_scale

BUBBLE_DEFINITIONS = {
    "bubble_fraction": "idle / (devices x makespan) over the pipeline part of each step (forward/backward ops only)",
    "bubble_vs_ideal": "makespan / ideal - 1, ideal = the busiest device's forward + backward time in the step",
    "bubble_s": "the most idle time of a device between its own first and last op of the step (replica 0, mean over steps)",
    "overhead_s": "makespan - ideal: what the pipeline part of a step takes beyond the busiest device's compute",
}
COLOURS = {
    "forward": "#4C72B0",
    "backward": "#DD8452",
    "weight": "#CCB974",
    "update": "#55A868",
    "all-reduce": "#C44E52",
    "send": "#8172B3",
    "receive": "#64B5CD",
    "idle": "#E8E8E8",
    "fill forward": "#937860",
    "fill backward": "#DA8BC3",
    "fill update": "#8C8C8C",
}
COMPUTE_OPS = ("forward", "backward", "weight", "update", "fill forward", "fill backward", "fill update")
PIPELINE_OPS = {"forward": "F", "backward": "B", "weight": "W"}
"""The trace's names of a schedule's ops (W: a split backward's weight gradient)."""


def device_index(name: str) -> tuple[int, int]:
    """(replica, device) of a pipeline device name: "d3" or "r1.d3"."""
    if name.startswith("r"):
        r, d = name.split(".")
        return int(r[1:]), int(d[1:])
    return 0, int(name[1:])


def op_times(ops: pd.DataFrame, step: int, replica: int = 0) -> dict[Op, Timed]:
    """The schedule's ops (F, B, W) of one step of one replica, as `policies.timing` writes them."""
    rows = ops[(ops.step == step) & ops.op.isin(list(PIPELINE_OPS))]
    return _timed(rows[[device_index(n)[0] == replica for n in rows.device]])


def _timed(rows: pd.DataFrame) -> dict[Op, Timed]:
    """A schedule's op rows of one replica as {Op: Timed}."""
    return {
        Op(PIPELINE_OPS[op], int(stage), int(mb)): Timed(device_index(device)[1], start, end)
        for op, stage, mb, device, start, end in zip(
            rows.op, rows.stage, rows.microbatch, rows.device, rows.start_s, rows.end_s, strict=True
        )
    }


def _union(spans: list[tuple[float, float]]) -> list[tuple[float, float]]:
    merged: list[list[float]] = []
    for start, end in sorted(spans):
        if merged and start <= merged[-1][1]:
            merged[-1][1] = max(merged[-1][1], end)
        else:
            merged.append([start, end])
    return [(a, b) for a, b in merged]


def device_table(ops: pd.DataFrame, shape: Shape) -> pd.DataFrame:
    """Per device and step: compute busy and idle time, reduction time exposed and overlapped, activation peak."""
    rows = []
    compute = ops[ops.op.isin(list(PIPELINE_OPS))]
    for step, in_step in compute.groupby("step"):
        begin, finish = in_step.start_s.min(), in_step.end_s.max()
        reductions = ops[(ops.step == step) & (ops.op == "allreduce")]
        by_device = {d: list(zip(g.start_s, g.end_s, strict=True)) for d, g in reductions.groupby("device")}
        peaks = {}
        for replica, ops_of_replica in in_step.groupby([device_index(n)[0] for n in in_step.device]):
            for d, peak in enumerate(peak_activations(shape, _timed(ops_of_replica))):
                peaks[replica, d] = peak
        for device, mine in in_step.groupby("device"):
            busy = float((mine.end_s - mine.start_s).sum())
            last_backward = float(mine[mine.op != "forward"].end_s.max())
            spans = _union(by_device.get(device, []))
            reduce_s = sum(b - a for a, b in spans)
            exposed = sum(max(0.0, b - max(a, last_backward)) for a, b in spans)
            rows.append(
                {
                    "device": device,
                    "step": step,
                    "makespan_s": finish - begin,
                    "busy_s": busy,
                    "idle_s": (finish - begin) - busy,
                    "allreduce_s": reduce_s,
                    "exposed_allreduce_s": exposed,
                    "overlapped_allreduce_s": reduce_s - exposed,
                    "peak_activation_microbatches": peaks[device_index(device)],
                }
            )
    return pd.DataFrame(rows)


def pipeline_summary(trace, system) -> dict:
    """The `pipeline` section of summary.json (`system` is the run's Pipeline)."""
    table = device_table(trace.ops, system.shape)
    levels = activation_levels(trace.memory)
    spec = system.spec
    per_step = table.groupby("step").agg(makespan_s=("makespan_s", "first"), busy_s=("busy_s", "sum"), ideal_s=("busy_s", "max"))
    devices = table.device.nunique()
    bubble = 1.0 - per_step.busy_s / (devices * per_step.makespan_s)
    steps = trace.metrics[trace.metrics.metric == "step_time_s"]
    per_device = table.groupby("device").mean(numeric_only=True).drop(columns="step")
    return {
        "schedule": spec.schedule,
        "devices": system.shape.devices,
        "stages_per_device": system.shape.stages_per_device,
        "placement": system.shape.placement,
        "microbatches": system.shape.microbatches,
        "microbatch": spec.microbatch,
        "data_parallel": spec.data_parallel,
        "replicas_simulated": system.replicas,
        "network": spec.network,
        "definitions": BUBBLE_DEFINITIONS,
        "makespan_s": float(per_step.makespan_s.mean()),
        "bubble_fraction": float(bubble.mean()),
        "bubble_vs_ideal": float((per_step.makespan_s / per_step.ideal_s - 1.0).mean()),
        "bubble_s": _mean_bubble(trace.ops, system.shape.devices),
        "overhead_s": float((per_step.makespan_s - per_step.ideal_s).mean()),
        "step_time_s": float(steps.value.mean()) if len(steps) else None,
        "throughput_samples_per_s": system.samples_per_step / float(steps.value.mean()) if len(steps) else None,
        "allreduce_s": float(per_device.allreduce_s.mean()),
        "exposed_allreduce_s": float(per_device.exposed_allreduce_s.mean()),
        "overlapped_allreduce_s": float(per_device.overlapped_allreduce_s.mean()),
        "peak_activation_microbatches": float(per_device.peak_activation_microbatches.max()),
        "peak_activation_bytes": float(levels.bytes.max()) if not levels.empty else 0.0,
        "per_device": {
            name: {key: float(value) for key, value in row.items()} for name, row in per_device.to_dict("index").items()
        },
    }


def _mean_bubble(ops: pd.DataFrame, devices: int) -> float:
    """`bubble_s`: replica 0's largest per-device bubble (`policies.timing.bubbles`), mean over the steps."""
    rows = ops[ops.op.isin(list(PIPELINE_OPS))]
    rows = rows[[device_index(n)[0] == 0 for n in rows.device]]
    return float(np.mean([max(bubbles(_timed(step_rows), devices)) for _, step_rows in rows.groupby("step")]))


ACTIVATION_EVENTS = ("alloc act ", "free act ", "alloc wgt ", "free wgt ")
"""Memory events of activations, and of what a split backward's W still holds."""


def activation_levels(memory: pd.DataFrame) -> pd.DataFrame:
    """Activation bytes held per bank over time (buffers named 'act ...', and 'wgt ...': what a split
    backward's W still needs), from the memory trace."""
    out = []
    for bank, rows in memory.groupby("bank", sort=False):
        delta = rows.used_bytes.diff().fillna(0.0)
        mask = rows.event.str.startswith(ACTIVATION_EVENTS)
        if mask.any():
            out.append(pd.DataFrame({"bank": bank, "time_s": rows.time_s[mask], "bytes": delta[mask].cumsum()}))
    return pd.concat(out, ignore_index=True) if out else pd.DataFrame(columns=["bank", "time_s", "bytes"])


MAX_LINES = 16
"""The most devices the activation plot draws a line for."""


def activation_figure(memory: pd.DataFrame) -> Figure | None:
    levels = activation_levels(memory)
    if levels.empty:
        return None
    fig = Figure(figsize=(10, 3.2), layout="constrained")
    ax = fig.subplots()
    factor, unit = time_scale(levels.time_s.max())
    peak = levels.bytes.max()
    scale, size_unit = size_scale(peak)
    peaks = levels.groupby("bank", sort=False).bytes.max()
    shown = peaks.index if len(peaks) <= MAX_LINES else peaks.sort_values(ascending=False, kind="stable").index[:MAX_LINES]
    for bank, rows in levels[levels.bank.isin(shown)].groupby("bank", sort=False):
        ax.step(rows.time_s * factor, rows.bytes * scale, where="post", label=bank.split(".")[0], linewidth=1)
    ax.set_xlabel(f"simulated time ({unit})")
    ax.set_ylabel(f"activations held ({size_unit})")
    more = f" ({MAX_LINES} of {len(peaks)} with the highest peaks)" if len(peaks) > MAX_LINES else ""
    ax.set_title(f"Activation memory per device{more}")
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    return fig


def _network_spans(busy: pd.DataFrame, device: str) -> list[tuple[str, float, float]]:
    links = busy[busy.unit.str.fullmatch(rf"{re.escape(device)}\.nic\d*\.(up|down)")]
    out = []
    for row in links.itertuples():
        kind = "all-reduce" if row.label.startswith("allreduce") else ("send" if row.unit.endswith(".up") else "receive")
        out.append((kind, row.start_s, row.end_s))
    return out


def draw_gantt(ax, trace, steps: int = 1, max_devices: int = 16, t_end: float | None = None) -> list[tuple]:
    """Per device on `ax`: its compute row (forward, backward, weight, update, idle) and its network row
    below it (send, receive, all-reduce), over the first `steps` steps. Returns the micro-batch labels
    the compute boxes could carry, (start, end, y, text) in data units: `label_boxes` draws those that fit
    once the figure's layout is known."""
    labels = []
    ops = trace.ops
    shown = ops[ops.step <= steps]
    t1 = float(shown.end_s.max()) if not shown.empty else 0.0
    t_end = t_end or t1 or 1e-9
    devices = sorted(set(ops.device), key=device_index)[:max_devices]
    factor, unit = time_scale(t_end)
    for i, device in enumerate(devices):
        mine = shown[shown.device == device]
        y = 2 * i
        ax.broken_barh([(0.0, t1 * factor)], (y - 0.4, 0.8), facecolors=COLOURS["idle"])
        for kind in COMPUTE_OPS:
            rows = mine[mine.op == kind]
            spans = np.column_stack([rows.start_s * factor, (rows.end_s - rows.start_s) * factor])
            ax.broken_barh(spans, (y - 0.4, 0.8), facecolors=COLOURS[kind], edgecolor="white", linewidth=0.3)
            if not kind.endswith("update"):
                labels += [(r.start_s * factor, r.end_s * factor, y, str(r.microbatch)) for r in rows.itertuples()]
        for kind, start, end in _network_spans(trace.busy[trace.busy.end_s <= t1], device):
            ax.broken_barh([(start * factor, (end - start) * factor)], (y + 0.5, 0.4), facecolors=COLOURS[kind])
    ax.set_yticks([2 * i for i in range(len(devices))], devices)
    ax.set_ylim(-0.7, 2 * len(devices) - 0.9)
    ax.invert_yaxis()
    ax.set_xlim(0.0, t_end * factor)
    ax.set_xlabel(f"simulated time ({unit})")
    return labels


LABEL_SIZE = 6
"""Font size of the micro-batch numbers in a Gantt chart's boxes."""


def label_boxes(ax, labels: list[tuple], fontsize: float = LABEL_SIZE, pad_px: float = 2.0) -> int:
    """Draw each (start, end, y, text) label of `draw_gantt` centred in its box where it fits: the box's
    width in pixels (as the figure is laid out now) at least the text's width plus `pad_px` on each side,
    and the row tall enough; the rest are left out (a number smudged over its neighbours reads as
    nothing). Call after the layout is done (`fig.draw_without_rendering()`). Returns how many were drawn."""
    if not labels:
        return 0
    renderer = RendererAgg(1, 1, ax.figure.dpi)  # measures text as the PNG (Agg) draws it
    font = FontProperties(size=fontsize)
    sizes: dict[str, tuple[float, float]] = {}
    row_px = abs(ax.transData.transform((0, 0.8))[1] - ax.transData.transform((0, 0))[1])
    x = ax.transData.transform(np.array([(a, y) for a, _, y, _ in labels] + [(b, y) for _, b, y, _ in labels]))[:, 0]
    widths = x[len(labels) :] - x[: len(labels)]
    drawn = 0
    for (start, end, y, text), width in zip(labels, widths, strict=True):
        if text not in sizes:
            w, h, _ = renderer.get_text_width_height_descent(text, font, ismath=False)
            sizes[text] = (w, h)
        w, h = sizes[text]
        if width >= w + 2 * pad_px and row_px >= h + pad_px:
            ax.text((start + end) / 2, y, text, ha="center", va="center", fontsize=fontsize)
            drawn += 1
    return drawn


def _legend(ax, fill: bool = False) -> None:
    handles = [Patch(color=c, label=k) for k, c in COLOURS.items() if fill or not k.startswith("fill")]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)


def gantt_figure(trace, steps: int = 1, max_devices: int = 8) -> Figure | None:
    """The Gantt chart of one run's first `steps` steps (None if the run has no pipeline ops)."""
    if trace.ops.empty:
        return None
    total = trace.ops.device.nunique()
    devices = min(total, max_devices)
    fill = trace.ops.op.str.startswith("fill").any()
    entries = sum(1 for k in COLOURS if fill or not k.startswith("fill"))  # the legend beside it must fit
    fig = Figure(figsize=(12, max(1.0 + 0.55 * devices, 0.8 + 0.22 * entries)), layout="constrained")
    ax = fig.subplots()
    labels = draw_gantt(ax, trace, steps, max_devices)
    more = f"; the first {devices} of {total} devices" if total > devices else ""
    both = " (both instances)" if fill else ""
    ax.set_title(
        f"Pipeline schedule{both}, first {steps} step(s){more}: compute row (numbers: micro-batch) and network row below it",
        fontsize="medium",
    )
    _legend(ax, fill)
    fig.draw_without_rendering()  # lay the figure out, so a box's width in pixels is what the PNG shows
    label_boxes(ax, labels)
    return fig


def comparison_figure(runs: dict[str, tuple], max_devices: int = 8) -> Figure:
    """Side by side (stacked, one time axis): each run's first step as a Gantt chart, and a bar
    chart of each run's step time: the pipeline, then the exposed all-reduce and optimizer after it.
    `runs` maps a name to (trace, summary)."""
    rows = [min(t.ops.device.nunique(), max_devices) if not t.ops.empty else 1 for t, _ in runs.values()]
    fig = Figure(figsize=(12, 2.2 + sum(0.5 * r + 0.6 for r in rows)), layout="constrained")
    axes = fig.subplots(len(runs) + 1, 1, height_ratios=[*(0.5 * r + 0.6 for r in rows), 2.2], squeeze=False)[:, 0]
    first_steps = [float(t.ops[t.ops.step == 1].end_s.max()) for t, _ in runs.values() if not t.ops.empty]
    t_end = max(first_steps or [1e-9])
    labels = []
    for ax, (name, (trace, summary)) in zip(axes, runs.items(), strict=False):
        if trace.ops.empty:
            ax.set_axis_off()
            ax.set_title(f"{name}: {summary['status']} before any op ({summary['diagnosis'][:90]})", fontsize="small")
            continue
        labels.append((ax, draw_gantt(ax, trace, 1, max_devices, t_end)))
        status = "" if summary["status"] == "ok" else f" [{summary['status']}]"
        ax.set_title(f"{name}{status}", fontsize="small", loc="left")
    _legend(axes[0])
    bars = axes[-1]
    names = list(runs)
    parts = {"pipeline (first forward to last backward)": [], "after it: exposed all-reduce, optimizer": []}
    for _, summary in runs.values():
        pipe = summary.get("pipeline") or {}
        make = pipe.get("makespan_s", 0.0)
        parts["pipeline (first forward to last backward)"].append(make)
        parts["after it: exposed all-reduce, optimizer"].append(max(0.0, (pipe.get("step_time_s") or 0.0) - make))
    factor, unit = time_scale(max(sum(v) for v in zip(*parts.values(), strict=True)) or 1e-9)
    left = np.zeros(len(names))
    for (label, values), colour in zip(parts.items(), ("#4C72B0", "#C44E52"), strict=True):
        widths = np.array(values) * factor
        bars.barh(names, widths, left=left, color=colour, label=label)
        left += widths
    for i, (_, summary) in enumerate(runs.values()):
        if summary["status"] != "ok":
            bars.text(0, i, f"  {summary['status']}", va="center", fontsize="small", color="#C44E52")
    bars.invert_yaxis()
    bars.set_xlabel(f"step time ({unit})")
    bars.set_title("Step time: the pipeline, then what follows its last backward", fontsize="small")
    bars.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    fig.draw_without_rendering()
    for ax, boxes in labels:
        label_boxes(ax, boxes)
    return fig


def tradeoff_figure(runs: dict[str, tuple]) -> Figure:
    """Each run's step time against its peak activation memory on one device (activations and what a
    split backward's W still holds): the trade-off each schedule makes. `runs` maps a name to
    (trace, summary)."""
    fig = Figure(figsize=(11, 4.5), layout="constrained")
    ax = fig.subplots()
    points = [(name, s["pipeline"]) for name, (_, s) in runs.items() if s.get("pipeline") and s["pipeline"]["step_time_s"]]
    if not points:
        ax.set_axis_off()
        ax.set_title("No pipeline run finished a step")
        return fig
    memory = [p["peak_activation_bytes"] for _, p in points]
    steps = [p["step_time_s"] for _, p in points]
    scale, size_unit = size_scale(max(memory) or 1.0)
    factor, unit = time_scale(max(steps))
    markers = "osD^vP*X<>"
    for i, ((name, pipe), x, y) in enumerate(zip(points, memory, steps, strict=True)):
        label = f"{name}: {pipe['schedule']}, overhead {pipe['overhead_s'] * factor:.3g} {unit}"
        ax.scatter(x * scale, y * factor, s=60, marker=markers[i % len(markers)], color=f"C{i % 10}", label=label, zorder=3)
    ax.set_xlabel(f"peak activation memory on one device ({size_unit})")
    ax.set_ylabel(f"step time ({unit})")
    ax.set_xlim(left=0, right=max(memory) * scale * 1.1 or 1.0)
    ax.set_ylim(bottom=0, top=max(steps) * factor * 1.1)
    ax.grid(True, alpha=0.3)
    ax.legend(loc="upper left", bbox_to_anchor=(1.0, 1.0), fontsize="small", frameon=False)
    ax.set_title("Step time vs activation memory per schedule (lower left is better)")
    return fig
