"""Bubble-filling figures and numbers: utilization before and after, the first instance's slowdown,
the second instance's throughput and learning, and where filling pays (the fill map).

The second instance's `fill_loss_start` / `fill_loss_end` are its mean training loss
over the first and the last quarter of the steps.

Utilization of a device in a step = its forward/backward busy time over the step's
pipeline span (first forward start to the last op end of either instance), as
`bubble_fraction` counts it (utilization = 1 - bubble). "Before" is the first
instance simulated alone for one step (`SecondInstance.alone_ops`), "after" the run
itself with both instances; "predicted" are the same figures from the cycle-model
plan the policy made. Slowdown = the run's mean step time / the step time alone - 1.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hwsim.report.pipeline import device_index
from hwsim.report.plots import time_scale

PRIMARY_OPS = ("forward", "backward", "weight")
FILL_OPS = ("fill forward", "fill backward", "fill update")


def _busy(rows: pd.DataFrame) -> float:
    return float((rows.end_s - rows.start_s).sum())


def fill_devices(ops: pd.DataFrame, alone: pd.DataFrame) -> pd.DataFrame:
    """Per device of replica 0: utilization alone (before) and, as a mean over the run's steps, of the
    first instance, the second, and both (after)."""
    rows = []
    first = alone[alone.op.isin(PRIMARY_OPS)]
    span_alone = float(first.end_s.max() - first.start_s.min())
    mine = ops[[device_index(d)[0] == 0 for d in ops.device]]
    steps = []
    for step, in_step in mine.groupby("step"):
        primary, fill = in_step[in_step.op.isin(PRIMARY_OPS)], in_step[in_step.op.isin(FILL_OPS)]
        begin = primary.start_s.min()
        span = max(primary.end_s.max(), fill.end_s.max() if not fill.empty else begin) - begin
        for device in sorted(set(primary.device), key=device_index):
            steps.append(
                {
                    "device": device,
                    "step": step,
                    "primary": _busy(primary[primary.device == device]) / span,
                    "fill": _busy(fill[fill.device == device]) / span,
                }
            )
    per_step = pd.DataFrame(steps).groupby("device", sort=False)[["primary", "fill"]].mean()
    for device, row in per_step.iterrows():
        rows.append(
            {
                "device": device,
                "utilization_before": _busy(first[first.device == device]) / span_alone,
                "utilization_primary": row.primary,
                "utilization_fill": row.fill,
                "utilization_after": row.primary + row.fill,
            }
        )
    return pd.DataFrame(rows)


def fill_summary(trace, system) -> dict:
    """The `fill` section of summary.json (`system` is the run's Pipeline, with a SecondInstance)."""
    fill = system.fill
    spec = fill.spec
    table = fill_devices(trace.ops, fill.alone_ops)
    steps = trace.metrics[trace.metrics.metric == "step_time_s"].value
    step_s = float(steps.mean())
    slowdown = step_s / fill.alone_step_s - 1.0
    metrics = trace.metrics

    def last(name: str) -> float | None:
        values = metrics[metrics.metric == name].value
        return float(values.iloc[-1]) if len(values) else None

    losses = metrics[metrics.metric == "fill_loss"].value.to_numpy()
    quarter = max(1, len(losses) // 4)
    predicted_busy = sum(t.end - t.start for t in fill.predicted.values())
    span = max(t.end for t in fill.predicted.values()) - min(t.start for t in fill.predicted.values())
    extra = sum(t.end - t.start for t in fill.placement.times.values())
    devices = system.shape.devices
    return {
        "policy": spec.policy,
        "model": spec.model.name,
        "stages": fill.stages,
        "mapping": list(fill.placement.mapping),
        "microbatches_asked": spec.microbatches,
        "microbatches_placed": fill.microbatches,
        "microbatch": spec.microbatch,
        "not_placed_because": fill.placement.reason,
        "definitions": {
            "utilization": "forward/backward busy / pipeline span of the step, per device, replica 0 (1 - bubble_fraction)",
            "primary_slowdown": "mean step time with filling / step time of the first instance alone - 1",
        },
        "utilization_before": float(table.utilization_before.mean()),
        "utilization_after": float(table.utilization_after.mean()),
        "utilization_gain": float((table.utilization_after - table.utilization_before).mean()),
        "predicted_utilization_before": predicted_busy / (devices * span),
        "predicted_utilization_after": (predicted_busy + extra) / (devices * span),
        "alone_step_time_s": fill.alone_step_s,
        "step_time_s": step_s,
        "primary_slowdown": slowdown,
        "slowdown_budget": spec.slowdown_budget,
        "within_budget": bool(slowdown <= spec.slowdown_budget + 1e-9),
        "fill_samples_per_step": fill.samples_per_step,
        "fill_throughput_samples_per_s": fill.samples_per_step / step_s,
        "fill_loss_start": float(losses[:quarter].mean()) if len(losses) else None,
        "fill_loss_end": float(losses[-quarter:].mean()) if len(losses) else None,
        "fill_final_test_accuracy": last("fill_test_accuracy"),
        "per_device": {row.pop("device"): row for row in table.to_dict("records")},
    }


def fill_figure(trace, system) -> Figure:
    """Utilization per device before and after filling, and both instances' learning over time."""
    table = fill_devices(trace.ops, system.fill.alone_ops)
    fig = Figure(figsize=(12, 4), layout="constrained")
    bars, learn = fig.subplots(1, 2, width_ratios=[1, 1.4])
    x = np.arange(len(table))
    bars.bar(x - 0.2, table.utilization_before, 0.4, color="#BBBBBB", label="before (first instance alone)")
    bars.bar(x + 0.2, table.utilization_primary, 0.4, color="#4C72B0", label="after: first instance")
    bars.bar(x + 0.2, table.utilization_fill, 0.4, bottom=table.utilization_primary, color="#937860", label="after: second")
    bars.set_xticks(x, table.device)
    bars.set_ylim(0, 1.05)
    bars.set_ylabel("utilization (busy / pipeline span)")
    bars.set_title("Utilization per device", fontsize="medium")
    bars.legend(fontsize="small", loc="lower right")
    metrics = trace.metrics
    factor, unit = time_scale(metrics.time_s.max())
    for prefix, name, colour in (("", "first instance", "#4C72B0"), ("fill_", "second instance", "#937860")):
        loss = metrics[metrics.metric == f"{prefix}loss"]
        if not loss.empty:
            learn.plot(loss.time_s * factor, loss.value, color=colour, label=f"{name}: training loss")
        acc = metrics[metrics.metric == f"{prefix}test_accuracy"]
        if not acc.empty:
            learn.plot(acc.time_s * factor, acc.value, "s--", color=colour, markersize=3, label=f"{name}: test accuracy")
    learn.set_xlabel(f"simulated time ({unit})")
    learn.set_ylim(bottom=0)
    learn.set_title("Both instances learn in one timeline", fontsize="medium")
    learn.legend(fontsize="small")
    return fig


def fill_map_figure(table: pd.DataFrame, policy: str) -> Figure | None:
    """Heatmap of predicted utilization gain over devices x micro-batches (numbers: before -> after)."""
    if "utilization_gain" not in table or table.utilization_gain.isna().all():
        return None
    grid = table.pivot(index="devices", columns="microbatches", values="utilization_gain")
    before = table.pivot(index="devices", columns="microbatches", values="utilization_before")
    after = table.pivot(index="devices", columns="microbatches", values="utilization_after")
    fig = Figure(figsize=(1.6 + 1.1 * grid.shape[1], 1.4 + 0.7 * grid.shape[0]), layout="constrained")
    ax = fig.subplots()
    image = ax.imshow(grid.to_numpy(dtype=float), cmap="Greens", vmin=0, aspect="auto")
    for i in range(grid.shape[0]):
        for j in range(grid.shape[1]):
            if np.isnan(grid.iat[i, j]):
                ax.text(j, i, "n/a", ha="center", va="center", fontsize=7, color="#888888")
            else:
                colour = "white" if grid.iat[i, j] > 0.6 * np.nanmax(grid.to_numpy(dtype=float)) else "black"
                text = f"{before.iat[i, j]:.2f}\n→ {after.iat[i, j]:.2f}"
                ax.text(j, i, text, ha="center", va="center", fontsize=7, color=colour)
    ax.set_xticks(range(grid.shape[1]), grid.columns)
    ax.set_yticks(range(grid.shape[0]), grid.index)
    ax.set_xlabel("micro-batches m of the first instance")
    ax.set_ylabel("pipeline devices p")
    ax.set_title(f"Where filling pays ({policy}): predicted utilization before → after", fontsize="medium")
    fig.colorbar(image, ax=ax, label="utilization gain")
    return fig
