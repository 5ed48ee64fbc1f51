"""A sweep's plots and page: a metric against one parameter (a line per value of a second), a
heatmap over two, the Pareto front of two metrics; `report.html` with the table.

Only points whose status is "ok" are plotted. With more parameters than a plot has room
for, a grid sweep's figure shows the mean over the others (the title says so); a sampled
(Latin hypercube) sweep is drawn as points, not lines or cells.
"""

from __future__ import annotations

import base64
import html
import json

import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from matplotlib.ticker import FuncFormatter, MaxNLocator

from hwsim.config.units import format_quantity
from hwsim.errors import NOTHING, ConfigError
from hwsim.report.html import _STYLE, _table
from hwsim.report.plots import size_scale, time_scale

TIME_METRICS = ("learning.time_to_target_s", "step_time_s", "sim_time_s")
"""The default metric: the first of these with a value at every point that is ok."""
UNIT_KINDS = ("time", "size", "rate", "frequency", "flop_rate", "event_rate")
SECOND_METRICS = ("bytes_moved.network", "max:learning.final_test_accuracy", "max:samples_per_s", "bytes_moved.memory")
"""The default second metric of the Pareto plot: the first of these that varies."""
MAXIMIZED = ("accuracy", "samples_per_s", "util", "fraction_of_peak", "achieved_flop_per_s", "utilization_after", "mfu", "hfu")
"""A metric whose name ends with one of these is better higher (prefix min: or max: to say otherwise)."""
HEADLINE = ("sim_time_s", "step_time_s", "samples_per_s", "learning.final_test_accuracy", "learning.time_to_target_s",
            "bytes_moved.network", "flops.fraction_of_peak")  # fmt: skip
"""Columns the page's table shows besides the parameters and the plotted metrics (the files have all)."""


def choose(table: pd.DataFrame, keys: list[str], plots: dict) -> dict:
    """The plots' metric, x, by and Pareto pair: as asked (checked against the table), else defaults."""
    ok = table[table.status == "ok"]

    def has(name: str) -> bool:
        column = name.split(":", 1)[-1]
        return column in ok.columns and pd.api.types.is_numeric_dtype(ok[column]) and ok[column].notna().any()

    def varies(name: str) -> bool:
        return has(name) and ok[name.split(":", 1)[-1]].nunique() > 1

    everywhere = [m for m in TIME_METRICS if m in ok.columns and len(ok) and ok[m].notna().all()]
    metric = plots.get("metric") or next(iter(everywhere), "sim_time_s")
    x = plots.get("x") or keys[0]
    by = plots.get("by") if "by" in plots else next((k for k in keys if k != x), None)
    pareto = plots.get("pareto") or [metric, next((m for m in SECOND_METRICS if varies(m) and m != metric), "max:samples_per_s")]
    if isinstance(pareto, str):
        pareto = pareto.split(",")
    for name, what in ((x, "--x"), (by, "--by")):
        if name is not None and name not in keys:
            raise ConfigError("command line", what, name, "one of the swept keys: " + ", ".join(keys))
    if len(pareto) != 2:
        raise ConfigError(
            "command line", "--pareto", ",".join(pareto), "two metrics A,B (prefix max: or min: to say which way is better)"
        )
    if len(ok):
        for name, what in ((metric, "--metric"), *((p, "--pareto") for p in pareto)):
            if not has(name):
                raise unknown_metric(ok, name, what)
    return {"metric": metric, "x": x, "by": by if by != x else None, "pareto": list(pareto)}


def unknown_metric(table: pd.DataFrame, name: str, what: str) -> ConfigError:
    numbers = [c for c in table.columns if pd.api.types.is_numeric_dtype(table[c]) and table[c].notna().any() and c != "point"]
    return ConfigError("sweep table", what, name or NOTHING, "a numeric column with values, such as " + ", ".join(numbers[:15]))


def maximized(name: str) -> tuple[str, bool]:
    """(column, whether higher is better) of a metric name with an optional min:/max: prefix."""
    if name.startswith(("min:", "max:")):
        return name[4:], name.startswith("max:")
    return name, name.endswith(MAXIMIZED)


def pareto_front(a: np.ndarray, b: np.ndarray, max_a: bool = False, max_b: bool = False) -> np.ndarray:
    """Mask of the points no other point beats on both (better or equal on both, better on one)."""
    sa, sb = (-a if max_a else a), (-b if max_b else b)
    front = np.zeros(len(a), dtype=bool)
    best = np.inf
    for i in np.lexsort((sb, sa)):  # by a, ties by b
        if sb[i] < best:
            front[i], best = True, sb[i]
    return front


# --- figures -------------------------------------------------------------------------------


def _metric_kind(name: str) -> str:
    if name.endswith("_s") and not name.endswith("per_s"):
        return "time"
    return "size" if "bytes" in name.rsplit(".", 1)[-1] or name.startswith(("bytes_moved", "federated.bytes")) else ""


def _numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def _ticks(ax, values: list, kind: str, numeric: bool) -> None:
    """x ticks at the swept values, labelled with their unit (names at 0, 1, 2, ... when not numbers)."""
    if numeric and (not kind or len(values) > 12):
        if all(float(v).is_integer() for v in values):
            ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        return  # matplotlib's own ticks
    ax.minorticks_off()
    ax.set_xticks(list(values) if numeric else list(range(len(values))), [show(v, kind) for v in values], fontsize=8)


def _mean_note(dims: list[list[str]], shown: list[str]) -> str:
    """Which swept keys a figure averages over: those not drawn and not zipped with one drawn."""
    rest = [k for dim in dims if not set(dim) & set(shown) for k in dim]
    return f"\n(mean over {', '.join(rest)})" if rest else ""


def _format_axis(axis, kind: str) -> None:
    axis.set_major_locator(MaxNLocator(nbins=6))  # few enough that labels with units never overlap
    if kind in UNIT_KINDS:
        axis.set_major_formatter(FuncFormatter(lambda v, _: format_quantity(v, kind)))


def metric_figure(
    table: pd.DataFrame, dims: list[list[str]], units: dict, metric: str, x: str, by: str | None, sampled: bool
) -> Figure:
    """The metric against parameter x, a line (or, sampled, a colour of points) per value of `by`."""
    ok = table[table.status == "ok"]
    fig = Figure(figsize=(8, 5), layout="constrained")
    ax = fig.add_subplot()
    groups = [(None, ok)] if by is None else list(ok.groupby(by, sort=True))
    numeric_x = _numeric(table[x])
    order = sorted(table[x].dropna().unique()) if numeric_x else list(dict.fromkeys(table[x].dropna()))
    for value, rows in groups:
        label = None if by is None else f"{by} = {show(value, units.get(by, ''))}"
        if sampled:
            pos = rows[x] if numeric_x else rows[x].map(order.index)
            ax.scatter(pos, rows[metric], s=18, label=label)
            continue
        mean = rows.groupby(x)[metric].mean()
        mean = mean.reindex([v for v in order if v in mean.index])
        pos = list(mean.index) if numeric_x else [order.index(v) for v in mean.index]
        ax.plot(pos, mean.values, marker="o", label=label)
    if numeric_x and len(order) > 1 and min(order) > 0 and max(order) / min(order) >= 30:
        ax.set_xscale("log")
    _ticks(ax, order, units.get(x, ""), numeric_x)
    ax.set_xlabel(x)
    ax.set_ylabel(metric)
    ax.grid(alpha=0.3)
    if by is not None:
        ax.legend(fontsize=8)
    shown = [x] + ([by] if by else [])
    _format_axis(ax.yaxis, _metric_kind(metric))
    ax.set_title(f"{metric} against {x}" + ("" if sampled else _mean_note(dims, shown)), fontsize=10)
    return fig


def heatmap_figure(table: pd.DataFrame, dims: list[list[str]], units: dict, metric: str, x: str, y: str, sampled: bool) -> Figure:
    """The metric over parameters x and y: cells (a grid sweep) or coloured points (a sampled one)."""
    ok = table[table.status == "ok"]
    fig = Figure(figsize=(8, 5.5), layout="constrained")
    ax = fig.add_subplot()
    if sampled:
        art = ax.scatter(ok[x].astype(float), ok[y].astype(float), c=ok[metric], cmap="viridis", s=30)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    else:
        grid = ok.pivot_table(index=y, columns=x, values=metric, aggfunc="mean")
        grid = grid.reindex(index=_ordered(table[y]), columns=_ordered(table[x]))
        art = ax.imshow(grid.values, cmap="viridis", aspect="auto", origin="lower")
        for (i, j), value in np.ndenumerate(grid.values):
            if not np.isnan(value):
                colour = text_colour(art.cmap(art.norm(value)))
                ax.text(j, i, f"{value:.3g}", ha="center", va="center", fontsize=7, color=colour)
        ax.set_xticks(range(len(grid.columns)), [show(v, units.get(x, "")) for v in grid.columns], fontsize=8)
        ax.set_yticks(range(len(grid.index)), [show(v, units.get(y, "")) for v in grid.index], fontsize=8)
        ax.set_xlabel(x)
        ax.set_ylabel(y)
    fig.colorbar(art, ax=ax, label=metric)
    ax.set_title(f"{metric} over {x} and {y}" + ("" if sampled else _mean_note(dims, [x, y])), fontsize=10)
    return fig


def text_colour(rgba) -> str:
    """Black or white, whichever reads better on a cell of colour `rgba`: black where the cell's relative
    luminance (WCAG, linear sRGB) is above 0.179, where black and white give it the same contrast."""
    linear = [c / 12.92 if c <= 0.04045 else ((c + 0.055) / 1.055) ** 2.4 for c in rgba[:3]]
    luminance = 0.2126 * linear[0] + 0.7152 * linear[1] + 0.0722 * linear[2]
    return "black" if luminance > 0.179 else "white"


def pareto_figure(table: pd.DataFrame, dims: list[list[str]], units: dict, pair: list[str]) -> Figure:
    """Every ok point on two metrics, the Pareto front joined and labelled with its parameters."""
    (a, max_a), (b, max_b) = maximized(pair[0]), maximized(pair[1])
    ok = table[(table.status == "ok") & table[a].notna() & table[b].notna()]
    fig = Figure(figsize=(11, 5.5), layout="constrained")
    ax = fig.add_subplot()
    (fa, ua), (fb, ub) = _scale(ok[a], _metric_kind(a)), _scale(ok[b], _metric_kind(b))
    front = pareto_front(ok[a].to_numpy(float), ok[b].to_numpy(float), max_a, max_b)
    ax.scatter(ok[a] * fa, ok[b] * fb, s=18, color="#999999", label="point")
    oom = table[(table.status == "out_of_memory") & table[a].notna() & table[b].notna()]
    if len(oom):  # a system that counts on past its capacity (megatron) still has both metrics
        ax.scatter(oom[a] * fa, oom[b] * fb, s=30, marker="x", color="#C44E52", label=f"out of memory ({len(oom)})")
    best = ok[front].sort_values(a)
    ax.plot(best[a] * fa, best[b] * fb, marker="o", color="#C44E52", label=f"Pareto front ({len(best)} points)")
    keys = [k for dim in dims for k in dim]
    lines = []
    for i, row in enumerate(best.to_dict("records"), start=1):
        ax.annotate(str(i), (row[a] * fa, row[b] * fb), fontsize=8, fontweight="bold", xytext=(5, 3), textcoords="offset points")
        lines.append(f"{i}: " + ", ".join(f"{short_key(k)}={show(row[k], units.get(k, ''))}" for k in keys))
    shown = lines[:MAX_FRONT_LABELS] + (
        [f"... and {len(lines) - MAX_FRONT_LABELS} more"] if len(lines) > MAX_FRONT_LABELS else []
    )
    if shown:  # the parameters of the numbered points, beside the plot (labels at the points would overlap)
        ax.text(
            1.02,
            1.0,
            "Pareto points\n" + "\n".join(shown),
            fontsize=7,
            va="top",
            ha="left",
            family="monospace",
            transform=ax.transAxes,
        )
    ax.set_xlabel(a + ua + (" (higher is better)" if max_a else " (lower is better)"))
    ax.set_ylabel(b + ub + (" (higher is better)" if max_b else " (lower is better)"))
    ax.xaxis.set_major_locator(MaxNLocator(nbins=7))
    ax.yaxis.set_major_locator(MaxNLocator(nbins=7))
    missing = int((table.status == "ok").sum() - len(ok))
    ax.set_title(
        f"Pareto front of {a} and {b}" + (f"\n({missing} ok points without a value left out)" if missing else ""), fontsize=10
    )
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    return fig


def _scale(values: pd.Series, kind: str) -> tuple[float, str]:
    """(factor, " (unit)") that shows `values` of unit kind `kind` in a readable unit (1 and "" without one)."""
    top = float(values.abs().max()) if len(values) else 0.0
    if kind == "size":
        factor, unit = size_scale(top)
    elif kind == "time":
        factor, unit = time_scale(top)
    else:
        return 1.0, ""
    return factor, f" ({unit})"


MAX_FRONT_LABELS = 20
"""The most Pareto points whose parameters the plot lists (all are in the table)."""


def short_key(key: str) -> str:
    """The last part of a dotted key (`system.uplink` -> `uplink`)."""
    return key.rsplit(".", 1)[-1]


def _ordered(series: pd.Series) -> list:
    values = series.dropna()
    return sorted(values.unique()) if _numeric(values) else list(dict.fromkeys(values))


def show(value, kind: str) -> str:
    """A parameter value as a person reads it: with its unit, and a mapping (the table keeps JSON)
    as its name and settings (`{"name": "eden", "bits": 2}` -> `eden bits=2`)."""
    if kind and isinstance(value, (int, float)) and not isinstance(value, bool):
        return format_quantity(float(value), kind)
    if isinstance(value, str) and value[:1] in "{[":
        try:
            value = json.loads(value)
        except ValueError:
            return value
    if isinstance(value, dict):
        named = [str(value["name"])] if "name" in value else []
        return " ".join(named + [f"{k}={show(v, '')}" for k, v in value.items() if k != "name"]) or "{}"
    if isinstance(value, list):
        return "[" + ", ".join(show(v, "") for v in value) + "]"
    return f"{value:.4g}" if isinstance(value, float) else str(value)


def figures(table: pd.DataFrame, dims: list[list[str]], units: dict, chosen: dict, sampled: bool) -> dict[str, Figure]:
    """The sweep's figures by file stem (none if no point is ok)."""
    if not (table.status == "ok").any():
        return {}
    metric, x, by = chosen["metric"], chosen["x"], chosen["by"]
    out = {"sweep_metric": metric_figure(table, dims, units, metric, x, by, sampled)}
    if by is not None and (sampled or table[x].nunique() > 1 and table[by].nunique() > 1):
        if not sampled or (_numeric(table[x]) and _numeric(table[by])):
            out["sweep_heatmap"] = heatmap_figure(table, dims, units, metric, x, by, sampled)
    out["sweep_pareto"] = pareto_figure(table, dims, units, chosen["pareto"])
    return out


CAPTIONS = {
    "sweep_metric": "The metric against a parameter",
    "sweep_heatmap": "The metric over two parameters",
    "sweep_pareto": "Pareto front",
}


def page(about: dict, table: pd.DataFrame, chosen: dict, images: dict[str, bytes], counts: dict) -> str:
    """The sweep's report.html: what was swept, the counts, the plots, and the table (headline columns)."""
    keys = [a["key"] for a in about["axes"]]
    metrics = [maximized(m)[0] for m in (chosen["metric"], *chosen["pareto"])]
    shown = list(dict.fromkeys(["point", *keys, "status", *metrics, *HEADLINE, "error", "report"]))
    view = table[[c for c in shown if c in table.columns]].copy()
    if "report" in view:  # a link where the point has a report folder, else nothing
        view["report"] = view["report"].map(
            lambda r: f"<a href='{html.escape(r)}'>report</a>" if isinstance(r, str) and r else None
        )
    if "error" in view:
        view["error"] = view["error"].map(lambda e: html.escape(e) if isinstance(e, str) else e)
    view = view.astype(object).where(view.notna(), "-")
    axes = pd.DataFrame(
        [(a["key"], a["unit"] or "-", ", ".join(map(str, a["values"])) if a["values"] else f"{a['range'][0]:g}..{a['range'][1]:g} "
          f"{a['range'][2]} ({a['range'][3]})") for a in about["axes"]],
        columns=["key", "unit", "values"],
    )  # fmt: skip
    how = f"a Latin hypercube of {about['samples']} points (seed {about['seed']})" if about["samples"] else "the full grid"
    parts = [
        f"<!doctype html><html><head><meta charset='utf-8'><title>hwsim sweep: {html.escape(about['name'])}</title>",
        f"<style>{_STYLE}</style></head><body><h1>Sweep {html.escape(about['name'])}</h1>",
        f"<p>{html.escape(about['description'])}</p>",
        f"<p>Scenario <code>{html.escape(about['scenario'])}</code>"
        + (f" with {html.escape(', '.join(about['overrides']))}" if about["overrides"] else "")
        + f"; {how}; zipped together: {html.escape('; '.join(' + '.join(z) for z in about['zips']) or 'none')}.</p>",
        _table(axes),
        *(f"<p><b>Warning:</b> {html.escape(n['note'])}.</p>" for n in about.get("no_effect", [])),
        "<p>" + ", ".join(f"{n} {html.escape(s)}" for s, n in counts.items()) + f" of {len(table)} points. "
        "Every column of every point is in sweep.parquet and sweep.csv; each point's record in points/.</p>",
    ]
    for name, png in images.items():
        data = base64.b64encode(png).decode("ascii")
        caption = html.escape(CAPTIONS.get(name, name))
        parts.append(f"<h2>{caption}</h2><img alt='{caption}' src='data:image/png;base64,{data}'>")
    table_html = view.to_html(index=False, float_format=lambda v: f"{v:.4g}", na_rep="-", border=0, escape=False)
    parts.append(f"<h2>Points</h2><div class='wide'>{table_html}</div>")
    parts.append("</body></html>")
    return "\n".join(parts)
