"""A self-contained report.html: the summary, the tables and the plots embedded as PNG."""

from __future__ import annotations

import base64
import functools
import html

import pandas as pd

from hwsim.config.units import format_quantity
from hwsim.report.console import NO_FLOPS, NO_MEMORY

_STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1150px; padding: 0 1em; color: #222; }
.wide { overflow-x: auto; max-width: 100%; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; font-size: 0.9em; }
th, td { border: 1px solid #ccc; padding: 3px 8px; text-align: right; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
.fail { background: #fde2e2; border: 1px solid #c44; padding: 0.7em; }
img { max-width: 100%; }
td { white-space: nowrap; }
.toc { font-size: 0.9em; }
details summary { cursor: pointer; margin: 0.5em 0; }
"""


def render(
    summary: dict, units: pd.DataFrame, memory: pd.DataFrame, images: dict[str, bytes], phases: pd.DataFrame | None = None
) -> str:
    """The report page; `images` maps a caption to PNG bytes."""
    s = summary
    learning = s["learning"]
    flops = s["flops"]
    key_rows = [
        ("status", s["status"]),
        ("simulated time", format_quantity(s["sim_time_s"], "time")),
        ("steps", s["steps"]),
        ("mean step time", format_quantity(s["step_time_s"], "time") if s["step_time_s"] else "-"),
        ("throughput", f"{s['samples_per_s']:,.0f} samples/s"),
        (f"achieved / peak FLOP/s ({flops['compute_precision']})", _flop_rates(flops)),
        ("bytes moved (memory ports)", format_quantity(s["bytes_moved"]["memory"], "size")),
        ("bytes moved (network)", format_quantity(s["bytes_moved"]["network"], "size")),
        *_energy_rows(s.get("energy")),
        ("final batch loss", _num(learning["final_loss"])),
        ("final test accuracy", _num(learning["final_test_accuracy"])),
        *_target_rows(learning),
        *_network_rows(s.get("network")),
        *_pipeline_rows(s.get("pipeline")),
        *_fill_rows(s.get("fill")),
        *_online_rows(s.get("online")),
        *_federated_rows(s.get("federated")),
        *_trace_rows(s.get("trace")),
        ("wall time", format_quantity(s["provenance"]["wall_time_s"], "time")),
    ]
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>hwsim: {html.escape(s['scenario'])}</title>",
        f"<style>{_STYLE}</style></head><body>",
        f"<h1>{html.escape(s['scenario'])}</h1>",
        f"<p>{html.escape(s['provenance']['scenario'].get('description', ''))}</p>",
    ]
    if s["status"] != "ok":
        parts.append(f"<p class='fail'><b>{html.escape(s['status'])}</b>: {html.escape(s['diagnosis'])}</p>")
    sections = ["Summary", *images, "Units", "Memory banks"] + (
        ["Step phases"] if phases is not None and not phases.empty else []
    )
    parts.append("<p class='toc'>" + " · ".join(f"<a href='#{_anchor(x)}'>{html.escape(x)}</a>" for x in sections) + "</p>")
    parts.append(_heading("Summary") + _table(pd.DataFrame(key_rows, columns=["", "value"])))
    for caption, png in images.items():
        data = base64.b64encode(png).decode("ascii")
        parts.append(f"{_heading(caption)}<img alt='{html.escape(caption)}' src='data:image/png;base64,{data}'>")
    parts.append(
        _heading("Units") + "<p>util = busy time / simulated time; cycles = time x clock (compute units only); "
        "work = FLOP on the systolic array (at the precision it ran; n/a for time a layer was given, not a GEMM), "
        "element operations (ops) on the vector unit, bytes on memory ports, links and communication tracks; "
        "achieved = work / simulated time, against the peak (units.csv has the raw numbers).</p>"
    )
    parts.append(_grouped(unit_view(units), kind_view(units), "units", "units.csv"))
    parts.append(_heading("Memory banks"))
    parts.append(_grouped(bank_view(memory), bank_kinds(memory), "banks", "banks.csv"))
    if phases is not None and not phases.empty:
        parts.append(
            _heading("Step phases") + "<p>Mean seconds per step of each worker: decompress, compute, compress "
            "(the upload), send (until delivered), wait (for other workers or the staleness bound), aggregate "
            "(the server's work for it), receive (the reply's transfer and writing it into the bank).</p>"
        )
        parts.append(_table(phases.assign(**{c: phases[c].map(_time) for c in phases.columns if c.endswith("_s")})))
    prov = s["provenance"]
    parts.append(
        f"<h2>Provenance</h2><p>hwsim {html.escape(prov['version'])}, seed {prov['seed']}; "
        "the resolved scenario is in summary.json.</p></body></html>"
    )
    return "\n".join(parts)


MANY = 16
"""Above this many rows a table is shown as one row per kind (min / median / max), the full table below it."""
FULL_ROWS = 512
"""The most rows of a full table the page holds; beyond, the CSV has them."""


def _anchor(caption: str) -> str:
    return caption.lower().replace(" ", "-")


def _heading(caption: str) -> str:
    return f"<h2 id='{_anchor(caption)}'>{html.escape(caption)}</h2>"


def _grouped(full: pd.DataFrame, by_kind: pd.DataFrame, what: str, csv: str) -> str:
    """A table of few rows as it is; of many, its summary by kind, then the full table folded below (or, past
    FULL_ROWS, a pointer to the CSV)."""
    if len(full) <= MANY:
        return _table(full)
    out = f"<p>{len(full):,} {what}: one row per kind (min / median / max over its {what}).</p>" + _table(by_kind)
    if len(full) > FULL_ROWS:
        return out + f"<p>The {len(full):,} {what} one by one: {csv}.</p>"
    return out + f"<details><summary>all {len(full):,} {what}</summary>{_table(full)}</details>"


def _spread(values: pd.Series, show) -> str:
    """min / median / max of `values` as `show` writes each (one value when they are all equal)."""
    values = values.dropna()
    if values.empty:
        return "-"
    low, mid, high = values.min(), values.median(), values.max()
    return show(low) if low == high else " / ".join(show(v) for v in (low, mid, high))


def kind_view(units: pd.DataFrame) -> pd.DataFrame:
    """One row per kind of unit: how many, and util, achieved and share of peak as min / median / max."""
    rows = []
    for kind, group in units.groupby("kind", sort=False):
        rate = functools.partial(_si, unit=WORK.get(kind, ("", "/s"))[1])
        rows.append(
            {
                "kind": kind,
                "units": len(group),
                "util": _spread(group.util, _share),
                "busy": _spread(group.busy_s, _time),
                "achieved": _spread(group.achieved_per_s, rate),
                "peak": _spread(group.peak_per_s, rate),
                "of peak": _spread(group.achieved_fraction, _share),
            }
        )
    return pd.DataFrame(rows)


def bank_kinds(memory: pd.DataFrame) -> pd.DataFrame:
    """One row per bank name (`working` of every device, ...): how many, capacity and peak (min / median / max)."""
    rows = []
    for name, group in memory.groupby(memory.bank.str.rsplit(".", n=1).str[-1], sort=False):
        rows.append(
            {
                "bank": name,
                "banks": len(group),
                "precision": ", ".join(dict.fromkeys(group.precision.astype(str))),
                "capacity": _spread(group.capacity_bytes, _size),
                "peak": _spread(group.peak_bytes, _size),
                "peak share": _spread(group.peak_fraction, _share),
            }
        )
    return pd.DataFrame(rows)


def _energy_rows(e: dict | None) -> list[tuple[str, str]]:
    if not e:
        return [("energy", "- (no energy model: hardware.energy)")]
    j, w = (lambda x: format_quantity(x, "energy")), (lambda x: format_quantity(x, "power"))
    rows = [
        (
            "energy per step / per sample",
            f"{j(e['per_step_j']) if e['per_step_j'] is not None else '-'} / "
            f"{j(e['per_sample_j']) if e['per_sample_j'] is not None else '-'}",
        ),
        ("energy in all", f"{j(e['total_j'])} ({e['total_kwh']:.4g} kWh) over {e['npus']:,} NPUs"),
        ("power per NPU: average", w(e["average_power_per_npu_w"])),
        ("cluster power: average / peak", f"{w(e['average_power_w'])} / {w(e['peak_power_w'])}"),
    ]
    if e.get("to_target_j") is not None:
        rows.append(("energy to the target accuracy", j(e["to_target_j"])))
    if e.get("limited_j"):
        rows.append(("held back by the power limiter (GEMMs at the cap)", j(e["limited_j"])))
    if e["over_cap"]:
        rows.append(("over the power cap", ", ".join(e["over_cap"])))
    return rows


def _flop_rates(flops: dict) -> str:
    peak = format_quantity(flops["peak_flop_per_s"], "flop_rate")
    if flops["achieved_flop_per_s"] is None:
        return f"n/a ({NO_FLOPS}) / {peak}"
    return f"{format_quantity(flops['achieved_flop_per_s'], 'flop_rate')} / {peak}"


def _target_rows(learning: dict) -> list[tuple[str, str]]:
    target = learning.get("target_accuracy")
    if target is None:
        return []
    t = learning["time_to_target_s"]
    reached = format_quantity(t, "time") if t is not None else "not reached"
    return [(f"time to test accuracy {target:g}", reached)]


def _network_rows(network: dict | None) -> list[tuple[str, str]]:
    if not network:
        return []
    return [
        (
            f"bytes up ({network['uplink']}) / down ({network['downlink']})",
            f"{format_quantity(network['up_bytes'], 'size')} / {format_quantity(network['down_bytes'], 'size')}",
        ),
        ("network bytes vs fp32 messages", f"{network['fraction_of_fp32']:.1%}"),
    ]


def _pipeline_rows(pipe: dict | None) -> list[tuple[str, str]]:
    if not pipe:
        return []
    defs = pipe["definitions"]
    return [
        (
            "pipeline",
            f"{pipe['schedule']}: p={pipe['devices']}, v={pipe['stages_per_device']} ({pipe['placement']}), "
            f"m={pipe['microbatches']} x {pipe['microbatch']} samples, D={pipe['data_parallel']}",
        ),
        ("pipeline makespan per step", format_quantity(pipe["makespan_s"], "time")),
        (f"bubble fraction ({defs['bubble_fraction']})", f"{pipe['bubble_fraction']:.1%}"),
        (f"bubble vs ideal ({defs['bubble_vs_ideal']})", f"{pipe['bubble_vs_ideal']:.1%}"),
        (
            "gradient all-reduce per device and step: exposed / overlapped",
            f"{format_quantity(pipe['exposed_allreduce_s'], 'time')} / {format_quantity(pipe['overlapped_allreduce_s'], 'time')}",
        ),
    ]


def _fill_rows(fill: dict | None) -> list[tuple[str, str]]:
    if not fill:
        return []
    placed = f"{fill['microbatches_placed']} of {fill['microbatches_asked']} micro-batches of {fill['microbatch']}"
    why = f" ({fill['not_placed_because']})" if fill["not_placed_because"] else ""
    return [
        ("second instance", f"{fill['model']} in {fill['stages']} stages on devices {fill['mapping']} by {fill['policy']}"),
        ("second instance placed per step", placed + why),
        (
            "utilization before → after (predicted)",
            f"{fill['utilization_before']:.1%} → {fill['utilization_after']:.1%} "
            f"({fill['predicted_utilization_before']:.1%} → {fill['predicted_utilization_after']:.1%})",
        ),
        (
            "first instance slowdown (budget)",
            f"{fill['primary_slowdown']:.3%} ({fill['slowdown_budget']:.1%}){'' if fill['within_budget'] else ' OVER BUDGET'}",
        ),
        ("second instance throughput", f"{fill['fill_throughput_samples_per_s']:,.0f} samples/s"),
        (
            "second instance training loss: first → last quarter of the steps",
            f"{_num(fill['fill_loss_start'])} → {_num(fill['fill_loss_end'])}",
        ),
    ]


def _online_rows(on: dict | None) -> list[tuple[str, str]]:
    if not on:
        return []
    lat, ups = on["latency_s"], on["updates"]
    rows = [
        ("requests answered", f"{on['requests']:,}"),
        (
            "prequential accuracy (in the second after each drift)",
            f"{_num(on['prequential_accuracy'])} ({_num(on['accuracy_after_drift'])})",
        ),
        ("accuracy per prediction worker", ", ".join(f"{w} {a:.3f}" for w, a in on["accuracy_per_worker"].items())),
        (
            "mean staleness per prediction worker",
            ", ".join(f"{w} {format_quantity(v['mean'] or 0, 'time')}" for w, v in on["staleness_s"].items()),
        ),
        ("latency p50 / p99 / max", " / ".join(format_quantity(lat[k] or 0, "time") for k in ("p50", "p99", "max"))),
    ]
    for kind, u in ups.items():
        lost = f", lost {u['lost_messages']} ({format_quantity(u['lost_bytes'], 'size')})" if u["lost_messages"] else ""
        rows.append((f"{kind} updates sent", f"{u['sent_messages']} ({format_quantity(u['sent_bytes'], 'size')}){lost}"))
    return rows


def _federated_rows(fed: dict | None) -> list[tuple[str, str]]:
    if not fed:
        return []
    part, mem, sent, dur = fed["participation"], fed["memory"], fed["bytes"], fed["round_duration_s"]
    return [
        ("rounds (clients per round of all)", f"{fed['rounds']} ({fed['per_round']} of {fed['clients']})"),
        ("test accuracy: final (best)", f"{_num(fed['final_test_accuracy'])} ({_num(fed['best_test_accuracy'])})"),
        ("round duration p50 / p95 / max", " / ".join(format_quantity(dur[k] or 0, "time") for k in ("p50", "p95", "max"))),
        (
            "selections: aggregated, late, dropped, failed",
            f"{part['aggregated']}, {part['late']}, {part['dropped']}, {part['failed']} ({part['distinct_clients']} distinct clients)",
        ),
        ("bytes sent down / up", f"{format_quantity(sent['sent_down'], 'size')} / {format_quantity(sent['sent_up'], 'size')}"),
        (
            f"client peak memory ({mem['decompression']}): p50 / max",
            " / ".join(format_quantity(mem["client_peak_bytes"][k] or 0, "size") for k in ("p50", "max")),
        ),
        ("clients within compressed + largest layer + activations", mem["clients_within_on_the_fly_bound"]),
    ]


def _trace_rows(trace: dict | None) -> list[tuple[str, str]]:
    """Where a long run's tables and trace went: Parquet instead of CSV, and trace.json's window."""
    if not trace:
        return []
    rows = []
    if trace["parquet"]:
        names = ", ".join(f"{n}.parquet ({trace['rows'][n]:,} rows)" for n in trace["parquet"])
        rows.append(("long tables (Parquet instead of CSV)", names))
    window = trace["chrome_trace_window_s"]
    if window is not None:
        rows.append(("trace.json covers", trace["chrome_trace_window"]))
    return rows


def _num(value) -> str:
    return "-" if value is None else f"{value:.4g}"


WORK = {
    "systolic": ("FLOP", "FLOP/s"),
    "vector": ("ops", "ops/s"),
    "memory": ("B", "B/s"),
    "link": ("B", "B/s"),
    "network": ("B", "B/s"),
}
"""What a unit's work counts, and its rate, by unit kind."""


def _si(value: float, unit: str) -> str:
    """`value` with a decimal prefix: 1.638e11, "FLOP/s" -> "163.8 GFLOP/s"."""
    if value != value:  # NaN
        return "-"
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{unit}"
    return f"{value:.4g} {unit}"


def _time(value: float) -> str:
    return "-" if value != value else format_quantity(value, "time")


def _count(value: float) -> str:
    return "-" if value != value else f"{int(value):,}"


def _share(value: float) -> str:
    return "-" if value != value else f"{value:.1%}"


def _size(value: float) -> str:
    return "-" if value != value else format_quantity(value, "size")


def unit_view(units: pd.DataFrame) -> pd.DataFrame:
    """The units table as a page shows it: times, cycles, work and rates with their units, shares in %."""
    work = [WORK.get(kind, ("", "/s")) for kind in units.kind]
    return pd.DataFrame(
        {
            "unit": units.unit,
            "kind": units.kind,
            "ops": units.ops.map(_count),
            "busy": units.busy_s.map(_time),
            "idle": units.idle_s.map(_time),
            "util": units.util.map(_share),
            "busy cycles": units.busy_cycles.map(_count),
            "idle cycles": units.idle_cycles.map(_count),
            "work": [_si(v, w[0]) for v, w in zip(units.work, work, strict=True)],
            "achieved": [_si(v, w[1]) for v, w in zip(units.achieved_per_s, work, strict=True)],
            "peak": [_si(v, w[1]) for v, w in zip(units.peak_per_s, work, strict=True)],
            "of peak": units.achieved_fraction.map(_share),
        }
    )


def bank_view(memory: pd.DataFrame) -> pd.DataFrame:
    """The banks table as a page shows it: sizes with their units, the peak share in %; n/a where the
    system kept nothing in its banks."""
    if memory.peak_bytes.isna().all() and len(memory):
        return memory[["bank", "precision"]].assign(capacity=memory.capacity_bytes.map(_size), peak=f"n/a ({NO_MEMORY})")
    return memory.assign(
        capacity_bytes=memory.capacity_bytes.map(_size),
        peak_bytes=memory.peak_bytes.map(_size),
        final_bytes=memory.final_bytes.map(_size),
        peak_fraction=memory.peak_fraction.map(_share),
    ).rename(columns={"capacity_bytes": "capacity", "peak_bytes": "peak", "final_bytes": "final", "peak_fraction": "peak share"})


def _table(frame: pd.DataFrame) -> str:
    """An HTML table that scrolls sideways inside the page when it is wider than the page."""
    table = frame.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-", border=0)
    return f"<div class='wide'>{table}</div>"
