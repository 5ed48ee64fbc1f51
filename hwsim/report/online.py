"""Online training runs: prequential accuracy over time, staleness, latency, bytes per update type."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hwsim.report.plots import time_scale
from hwsim.report.stats import spread

KINDS = ("delta", "realtime", "full")
KIND_COLOURS = {"delta": "#937860", "realtime": "#4C72B0", "full": "#DD8452"}
BINS = 60
"""Time bins of the accuracy-over-time curves (over the stream's duration)."""
RECOVERY_S = 1.0
"""accuracy_after_drift: prequential accuracy in this long after each drift point (at most the drift period)."""


def accuracy_over_time(predictions: pd.DataFrame, duration: float, by_worker: bool = False) -> pd.DataFrame:
    """Prequential accuracy per time bin (by the request's arrival): columns time_s (bin middle),
    accuracy, requests; and worker when `by_worker`."""
    width = duration / BINS
    keys = ["bin", "worker"] if by_worker else ["bin"]
    frame = predictions.assign(bin=np.minimum((predictions.arrival_s // width).astype(int), BINS - 1))
    table = frame.groupby(keys).correct.agg(accuracy="mean", requests="size").reset_index()
    table.insert(0, "time_s", (table.pop("bin") + 0.5) * width)
    return table


def update_bytes(trace, system) -> dict:
    """Per update type: messages and bytes sent, delivered and lost (sent = delivered + lost)."""
    messages = trace.messages
    out = {}
    for kind in KINDS:
        got = messages[messages.tag == kind]
        out[kind] = {
            "sent_messages": system.sent[kind][0],
            "sent_bytes": system.sent[kind][1],
            "delivered_messages": len(got),
            "delivered_bytes": int(got.bytes.sum()),
            "lost_messages": system.lost[kind][0],
            "lost_bytes": system.lost[kind][1],
        }
    return out


def online_summary(trace, system) -> dict:
    """The `online` section of summary.json."""
    spec, p = system.spec, system.predictions
    drifts = [float(t) for t in system.stream.drift_times]
    after = np.zeros(len(p), bool)
    recovery = min(RECOVERY_S, spec.stream.drift_every or RECOVERY_S)
    for t in drifts:
        after |= (p.arrival_s >= t) & (p.arrival_s < t + recovery)
    queue = trace.metrics[trace.metrics.metric == "server_queue"].value
    server_vector = trace.busy[trace.busy.unit == "server.vector"]
    sent = update_bytes(trace, system)
    return {
        "requests": len(p),
        "prequential_accuracy": float(p.correct.mean()) if len(p) else None,
        "accuracy_after_drift": float(p.correct[after].mean()) if after.any() else None,
        "accuracy_per_worker": {w: float(g.correct.mean()) for w, g in p.groupby("worker")},
        "staleness_s": {w: spread(g.staleness_s) for w, g in p.groupby("worker")},
        "latency_s": spread(p.latency_s),
        "updates": sent,
        "server_update_bytes": sent["realtime"]["sent_bytes"] + sent["full"]["sent_bytes"],
        "applied": {w.name: dict(w.applied) for w in system.predictors + system.trainers},
        "training_steps": {t.name: t.steps for t in system.trainers},
        "server": {
            "vector_util": float((server_vector.end_s - server_vector.start_s).sum() / max(trace.busy.end_s.max(), 1e-30)),
            "deltas_applied": system.deltas_applied,
            "queue_mean": float(queue.mean()) if len(queue) else 0.0,
            "queue_max": int(queue.max()) if len(queue) else 0,
        },
        "drift_times_s": drifts,
        "link_down": [_outage(p, w, system) for w in spec.link_down],
    }


def _outage(p: pd.DataFrame, window, system) -> dict:
    """A link-down window: the cut-off worker's accuracy during it and until its next full update,
    against the other prediction workers over the same requests' times; when it caught up."""
    full = system.spec.full.period
    caught = (np.floor(window.end / full) + 1) * full  # the first full update sent after the link is back
    mine, others = p[p.worker == window.worker], p[p.worker != window.worker]

    def acc(rows: pd.DataFrame, start: float, end: float) -> float | None:
        sel = rows[(rows.arrival_s >= start) & (rows.arrival_s < end)]
        return float(sel.correct.mean()) if len(sel) else None

    return {
        "worker": window.worker,
        "start_s": window.start,
        "end_s": window.end,
        "caught_up_s": float(caught) if caught <= system.spec.duration else None,
        "accuracy_cut_off": acc(mine, window.start, caught),
        "accuracy_others": acc(others, window.start, caught),
        "accuracy_after": acc(mine, caught, caught + full),
        "accuracy_others_after": acc(others, caught, caught + full),
    }


def _marks(ax, system, scale: float) -> None:
    """Drift points (dashed lines) and link-down windows (shaded) on a time axis."""
    for i, t in enumerate(system.stream.drift_times):
        ax.axvline(t * scale, color="#C44E52", ls="--", lw=1, label="drift" if i == 0 else None)
    for i, w in enumerate(system.spec.link_down):
        ax.axvspan(w.start * scale, w.end * scale, color="#999999", alpha=0.25, label=f"{w.worker} link down" if i == 0 else None)


def online_figure(trace, system) -> Figure:
    """Four panels: prequential accuracy over time (per prediction worker, and the master's test
    accuracy), staleness, latency distribution, cumulative bytes per update type."""
    spec, p = system.spec, system.predictions
    scale, unit = time_scale(spec.duration)
    fig = Figure(figsize=(12, 8), layout="constrained")
    (acc_ax, stale_ax), (lat_ax, bytes_ax) = fig.subplots(2, 2)

    curves = accuracy_over_time(p, spec.duration, by_worker=True)
    for worker, rows in curves.groupby("worker"):
        acc_ax.plot(rows.time_s * scale, rows.accuracy, lw=1.2, label=f"{worker} (served)")
    master = trace.metrics[trace.metrics.metric == "test_accuracy"]
    acc_ax.plot(master.time_s * scale, master.value, "ko", ms=4, label="master (test set)")
    _marks(acc_ax, system, scale)
    acc_ax.set(title="Prequential accuracy", xlabel=f"time ({unit})", ylabel="accuracy", ylim=(0, 1.02))
    acc_ax.legend(fontsize=8, loc="lower right")

    for worker, rows in p.groupby("worker"):
        stale_scale, stale_unit = time_scale(max(p.staleness_s.max(), 1e-9))
        stale_ax.plot(rows.served_s * scale, rows.staleness_s * stale_scale, lw=0.8, label=worker)
    _marks(stale_ax, system, scale)
    stale_ax.set(title="Staleness of the serving model", xlabel=f"time ({unit})")
    stale_ax.set_ylabel(f"since its master was built ({stale_unit if len(p) else 's'})")
    stale_ax.legend(fontsize=8)

    if len(p):
        lat_scale, lat_unit = time_scale(p.latency_s.max())
        shown = np.round(p.latency_s * lat_scale, 6)  # equal latencies stay equal (no float noise)
        lat_ax.hist(shown, bins=50 if shown.nunique() > 1 else 1, color="#55A868")
        lat_ax.ticklabel_format(axis="x", useOffset=False)
        for q, ls in ((0.5, "-"), (0.99, "--")):
            v = p.latency_s.quantile(q) * lat_scale
            lat_ax.axvline(v, color="k", ls=ls, lw=1, label=f"p{round(q * 100)} {v:.3g} {lat_unit}")
        lat_ax.set(xlabel=f"latency ({lat_unit})", yscale="log")
        lat_ax.legend(fontsize=8)
    lat_ax.set(title="Prediction latency (queueing + forward)", ylabel="requests")

    messages = trace.messages.sort_values("delivered_s")
    for kind in KINDS:
        rows = messages[messages.tag == kind]
        if len(rows):
            bytes_ax.step(rows.delivered_s * scale, rows.bytes.cumsum(), where="post", color=KIND_COLOURS[kind], label=kind)
    bytes_ax.set(title="Bytes delivered per update type", xlabel=f"time ({unit})", ylabel="bytes (cumulative)")
    bytes_ax.legend(fontsize=8)
    return fig


def comparison_figure(runs: dict[str, tuple]) -> Figure:
    """Several online runs: prequential accuracy over time on one chart (drift points marked), and
    accuracy against the bytes the server sent. `runs[name] = (system, summary)`."""
    fig = Figure(figsize=(13, 4.8), layout="constrained")
    time_ax, trade_ax = fig.subplots(1, 2, width_ratios=(3, 2))
    drawn = set()
    for name, (system, summary) in runs.items():
        curve = accuracy_over_time(system.predictions, system.spec.duration)
        time_ax.plot(curve.time_s, curve.accuracy, lw=1.2, label=name)
        for t in system.stream.drift_times:
            if t not in drawn:
                time_ax.axvline(t, color="#C44E52", ls="--", lw=1, label="drift" if not drawn else None)
                drawn.add(t)
        online = summary["online"]
        trade_ax.plot(online["server_update_bytes"], online["prequential_accuracy"], "o")
        trade_ax.annotate(
            name,
            (online["server_update_bytes"], online["prequential_accuracy"]),
            fontsize=8,
            xytext=(4, 4),
            textcoords="offset points",
        )
    time_ax.set(title="Prequential accuracy over time", xlabel="time (s)", ylabel="accuracy", ylim=(0, 1.02))
    time_ax.legend(fontsize=8, loc="lower right")
    trade_ax.set(
        title="Accuracy vs update bytes",
        xlabel="bytes the server sent (real-time + full)",
        ylabel="prequential accuracy",
        xscale="log",
    )
    return fig
