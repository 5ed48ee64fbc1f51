"""The fabric picture: the topology drawn with every cable coloured by its utilization.

Switch levels are rows (NPUs at the bottom, then each level of switches above them: a
leaf row and a spine row, or a row per dimension of a multi-dimensional fabric); a torus
is a grid (3-D: its layers side by side), with wrap-around cables as stubs at the edges;
a ring or an all-to-all fabric is a circle. Each row is labelled with its level, its
switches and their cables' bandwidth. A cable's colour (and width) is the higher
utilization of its two directions, bytes / (bandwidth x simulated time), on an absolute
0-100 % scale (a cable 8 % busy looks cool whatever the hottest one does); a cable that
carried nothing is light grey. Links that NPU-to-NPU dimensions of a multi-dimensional
fabric add are arcs under the NPU row.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib import colormaps
from matplotlib.collections import LineCollection
from matplotlib.colors import LinearSegmentedColormap
from matplotlib.figure import Figure
from matplotlib.lines import Line2D
from matplotlib.ticker import PercentFormatter

from hwsim.config.units import format_quantity
from hwsim.network.topology import Topology

UTIL_COLOURS = LinearSegmentedColormap.from_list(
    "utilization", ["#d9d9d9", *(colormaps["inferno_r"](x) for x in (0.2, 0.45, 0.7, 0.95))]
)
"""Cable colour against utilization 0..1: light grey when idle, through yellow and orange to near black when full."""


def layout(t: Topology) -> np.ndarray:
    """(x, y) of every node."""
    xy = np.zeros((len(t.nodes), 2))
    n = t.npus
    if t.kind in ("ring", "fully_connected"):
        angle = 2 * np.pi * np.arange(n) / max(n, 1)
        xy[:n] = np.column_stack([np.cos(angle), np.sin(angle)]) * max(1.0, n / (2 * np.pi))
        return xy
    if t.kind == "torus":
        k0, k1 = t.shape[0], t.shape[1]
        for i, c in enumerate(t.coords):
            layer = c[2] if len(c) > 2 else 0
            xy[i] = (c[0] + layer * (k0 + 1), c[1])
        return xy * np.array([1.0, max(1.0, k0 / max(k1, 1))])
    xy[:n, 0] = np.arange(n)
    members: dict[int, list[int]] = {}
    for u, v in zip(t.src, t.dst, strict=True):
        if u < n <= v:
            members.setdefault(v, []).append(u)
    rows = {name: row for row, name in enumerate(dict.fromkeys(_row(t, s) for s in range(n, len(t.nodes))), start=1)}
    spread = max(1.0, n / 8)
    for name, row in rows.items():
        same = [s for s in range(n, len(t.nodes)) if _row(t, s) == name]
        x = np.array([np.mean(members[s]) if s in members else np.nan for s in same])
        even = (np.arange(len(same)) + 0.5) * n / len(same) - 0.5
        if np.isnan(x).any() or (len(same) > 1 and np.diff(np.sort(x)).min() < 0.5 * n / len(same)):
            # spines, or switches whose NPUs interleave (a rank's switch in a multi-dimensional fabric):
            # spread over the width, in the order of their NPUs
            x = even[np.argsort(np.argsort(np.nan_to_num(x, nan=0.0), kind="stable"))] if not np.isnan(x).all() else even
        xy[same] = np.column_stack([x, np.full(len(same), row * spread)])
    return xy


def _row(t: Topology, node: int) -> str:
    """The row of a switch: its level ("leaf", "spine", "dim1", "sw")."""
    name = t.nodes[node]
    return name.split(".")[0] if "." in name else name.rstrip("0123456789")


def fabric_figure(t: Topology, links: pd.DataFrame, title: str = "", jobs: dict[str, list[int]] | None = None) -> Figure:
    """The topology with each cable coloured by its utilization (max of its two directions); with `jobs` (a
    shared cluster's: name -> NPUs), each NPU coloured by the first job that ran on it."""
    util = links.util.fillna(0.0).to_numpy()
    cables: dict[tuple[int, int], float] = {}
    for i, (u, v) in enumerate(zip(t.src, t.dst, strict=True)):
        key = (min(u, v), max(u, v))
        cables[key] = max(cables.get(key, 0.0), util[i])
    xy = layout(t)
    segments, values, arcs = [], [], []
    for (u, v), value in cables.items():
        a, b = xy[u], xy[v]
        if t.kind == "torus" and np.abs(a - b).max() > 1.5 * max(1.0, xy[:, 1].max() / max(t.shape[1] - 1, 1)):
            for p, q in ((a, b), (b, a)):  # a wrap-around cable: a stub out of each edge
                step = np.sign(q - p) * np.array([0.35, 0.35])
                segments.append([p, p - step])
                values.append(value)
            continue
        if u < t.npus and v < t.npus and t.kind in ("switch", "fat_tree", "dims"):
            arcs.append((a, b, value))  # NPU to NPU along a ring or all-to-all dimension
            continue
        segments.append([a, b])
        values.append(value)
    for a, b, value in arcs:
        x = np.linspace(a[0], b[0], 16)
        y = -0.15 - 0.1 * np.sqrt(np.abs(b[0] - a[0])) * np.sin(np.linspace(0, np.pi, 16))
        segments += [[(x[j], y[j]), (x[j + 1], y[j + 1])] for j in range(15)]
        values += [value] * 15
    fig = Figure(figsize=(12, 5.5), layout="constrained")
    ax = fig.subplots()
    values = np.asarray(values)
    order = np.argsort(values, kind="stable")  # the busiest cables drawn last, on top
    segments, values = [segments[i] for i in order], values[order]
    widest = 3.0 if len(cables) <= 64 else 1.2  # thin lines where there are many
    shown = np.clip(values, 0.0, 1.0)
    lines = LineCollection(segments, array=shown, cmap=UTIL_COLOURS, linewidths=0.4 + widest * shown)
    lines.set_clim(0.0, 1.0)  # an absolute scale: 0 to 100 % busy, whatever the hottest cable is
    ax.add_collection(lines)
    n = t.npus
    size = max(4, 60 - n / 10)
    if jobs:
        from hwsim.report.jobs import job_colours

        first: dict[int, str] = {}
        for name, npus in jobs.items():
            for npu in npus:
                first.setdefault(npu, name)
        colours = job_colours(list(jobs))
        idle = [i for i in range(n) if i not in first]
        if idle:
            ax.scatter(xy[idle, 0], xy[idle, 1], s=size, color="#BBBBBB", zorder=3, label="NPU no job ran on")
        for k, name in enumerate(jobs):
            mine = [i for i in range(n) if first.get(i) == name]
            label = f"job {name}" if k < 12 else None
            ax.scatter(xy[mine, 0], xy[mine, 1], s=size, color=colours[name], zorder=3, label=label)
    else:
        ax.scatter(xy[:n, 0], xy[:n, 1], s=size, color="#4C72B0", zorder=3, label="NPU")
    if len(t.nodes) > n:
        ax.scatter(xy[n:, 0], xy[n:, 1], s=50, marker="s", color="#555555", zorder=3, label="switch")
    hot = links.loc[links.util.idxmax()] if len(links) and links.util.notna().any() else None
    note = f"; hottest: {hot.link} at {hot.util:.1%}" if hot is not None and hot.util > 0 else ""
    ax.set_title((title or f"Fabric: {t.kind}, {n} NPUs") + f" - cable colour and width: utilization{note}", fontsize=10)
    ax.autoscale()
    ax.margins(0.05)
    ax.set_aspect("auto")
    ax.set_xticks([])
    ax.set_yticks([])
    _label_levels(ax, t, xy, bool(arcs))
    handles, _ = ax.get_legend_handles_labels()
    handles.append(Line2D([], [], color=UTIL_COLOURS(0.0), linewidth=1.5, label="cable that carried nothing"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 8), fontsize="small", frameon=False)
    over = " (above 100 %: capped)" if len(values) and values.max() > 1.0 + 1e-9 else ""
    bar = fig.colorbar(
        lines,
        ax=ax,
        label=f"utilization of the busier direction, 0-100 %{over}\n(bytes / (bandwidth x simulated time))",
        fraction=0.03,
        extend="max" if over else "neither",
    )
    bar.ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    return fig


def _label_levels(ax, t: Topology, xy: np.ndarray, arcs: bool) -> None:
    """Name what each row (or axis) of the drawing is: the NPUs, each level of switches with how many
    there are, what each joins and its cables' bandwidth; the arcs of NPU-to-NPU dimensions."""
    n = t.npus
    if t.kind == "torus":
        layers = "; dim2 layers side by side" if len(t.shape) > 2 else ""
        ax.set_xlabel(f"dim0 ({t.shape[0]} NPUs a ring, wrap-around cables as stubs at the edges{layers})", fontsize=9)
        ax.set_ylabel(f"dim1 ({t.shape[1]} NPUs a ring)", fontsize=9)
        return
    if t.kind in ("ring", "fully_connected"):
        what = "a ring" if t.kind == "ring" else "all-to-all: a cable between every pair"
        ax.set_xlabel(f"{n} NPUs, {what} ({_bandwidths(t, range(t.links))} per cable)", fontsize=9)
        return
    ticks = {0.0: f"NPUs ({n})"}
    switches = np.arange(n, len(t.nodes))
    rows: dict[str, list[int]] = {}
    for s in switches:
        rows.setdefault(_row(t, s), []).append(int(s))
    src, dst = np.asarray(t.src), np.asarray(t.dst)
    for name, members in rows.items():
        mine = np.isin(src, members)
        npus = int((dst[mine] < n).sum())
        peers = int(mine.sum()) - npus
        joins = f"{npus // len(members)} NPUs each" if npus else f"{peers // len(members)} switches each"
        level = {"sw": "switch", "leaf": "leaf switches", "spine": "spine switches"}.get(name, f"{name} switches")
        if name == "dim0" and len(rows) > 1:
            level += " (innermost)"
        count = f"{len(members)} x " if len(members) > 1 else ""
        y = float(xy[members, 1].mean())
        ticks[y] = f"{level}\n{count}{joins}\n{_bandwidths(t, np.flatnonzero(mine))} per cable"
    if arcs:
        levels = sorted({t.level[i] for i in range(t.links) if t.src[i] < n and t.dst[i] < n})
        ticks[-0.3] = f"{', '.join(levels)}\nNPU-to-NPU links (arcs)"
    ax.set_yticks(list(ticks), list(ticks.values()), fontsize=8)
    ax.tick_params(axis="y", length=0)


def _bandwidths(t: Topology, links) -> str:
    """The bandwidth of these links ("400 Gb/s"), or their range if they differ."""
    values = sorted({t.bandwidth[i] for i in links})
    if not values:
        return "-"
    shown = [format_quantity(v, "rate") for v in (values[0], values[-1])]
    return shown[0] if len(values) == 1 else f"{shown[0]} to {shown[1]}"
