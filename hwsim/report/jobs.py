"""A shared cluster's jobs: when each ran on which nodes, how busy the cluster was, and what the mix cost each."""

from __future__ import annotations

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from hwsim.config.units import format_quantity
from hwsim.report.plots import time_scale

MOST_NODES = 48
"""The most node rows the Gantt draws (the rest are summed up in the title)."""


def job_colours(names: list[str]) -> dict[str, tuple]:
    """A colour per job, in order (tab10, then tab20's)."""
    palette = matplotlib.colormaps["tab10" if len(names) <= 10 else "tab20"]
    return {name: palette(i % palette.N) for i, name in enumerate(names)}


def jobs_figure(section: dict, npus: int, links: dict[str, np.ndarray] | None = None) -> Figure:
    """Top left: a Gantt of jobs per node (rows: the fabric's nodes; a job's bar in each node it ran on, from
    its start to its end; its queueing before it as a thin line). Middle left: the NPUs each job held over time,
    stacked, against the cluster's. Bottom left: the hottest links' busy share over time (`links`: per link,
    the share of each equal bin of the run it carried something). Right: each job's step time alone and in the
    mix, with its slowdown."""
    jobs = section["jobs"]
    names = list(jobs)
    colours = job_colours(names)
    end = max((j["end_s"] or 0.0) for j in jobs.values()) or 1.0
    scale, unit = time_scale(end)
    fig = Figure(figsize=(13, 9 if links else 7))
    rows = 3 if links else 2
    grid = fig.add_gridspec(rows, 2, width_ratios=(2.2, 1), height_ratios=(2, 1, 1)[:rows])
    gantt, held, steps = fig.add_subplot(grid[0, 0]), fig.add_subplot(grid[1, 0]), fig.add_subplot(grid[:, 1])
    nodes = sorted({node for j in jobs.values() for node in j["node_ids"]})[:MOST_NODES]
    row = {node: i for i, node in enumerate(nodes)}
    for node in nodes:
        here = [name for name in names if node in jobs[name]["node_ids"]]
        for lane, name in enumerate(here):
            j = jobs[name]
            if j["start_s"] is None:
                continue
            height = 0.8 / len(here)
            y = row[node] - 0.4 + lane * height
            gantt.barh(
                y, (j["end_s"] - j["start_s"]) * scale, height, left=j["start_s"] * scale, align="edge", color=colours[name]
            )
            if j["queued_s"]:
                gantt.hlines(y + height / 2, j["arrival_s"] * scale, j["start_s"] * scale, color=colours[name], lw=1, ls=":")
    gantt.set_yticks(range(len(nodes)), [f"node {n}" for n in nodes], fontsize=7 if len(nodes) > 16 else 9)
    gantt.invert_yaxis()
    gantt.set_xlim(0, end * scale)
    gantt.set_title("jobs per node (dotted: queued)", fontsize=10)
    times = sorted({t for j in jobs.values() for t in (j["start_s"], j["end_s"]) if t is not None} | {0.0})
    base = [0.0] * len(times)
    for name in names:
        j = jobs[name]
        counts = [len(j["npus"]) if j["start_s"] is not None and j["start_s"] <= t < j["end_s"] else 0 for t in times]
        tops = [b + c for b, c in zip(base, counts, strict=True)]
        held.fill_between([t * scale for t in times], base, tops, step="post", color=colours[name], label=name)
        base = tops
    held.axhline(npus, color="black", ls="--", lw=1, label=f"the cluster's {npus}")
    held.set_xlim(0, end * scale)
    held.set_ylim(0, npus * 1.1)
    held.set_xlabel(f"simulated time ({unit})")
    held.set_ylabel("NPUs held")
    held.legend(fontsize=7, ncol=min(len(names) + 1, 5), loc="upper right")
    if links:
        busy = fig.add_subplot(grid[2, 0])
        grid_ = np.vstack(list(links.values()))
        busy.imshow(
            grid_,
            aspect="auto",
            cmap="Greys",
            vmin=0,
            vmax=1,
            extent=(0, end * scale, len(links) - 0.5, -0.5),
            interpolation="nearest",
        )
        busy.set_yticks(range(len(links)), list(links), fontsize=7)
        busy.set_xlim(0, end * scale)
        busy.set_xlabel(f"simulated time ({unit})")
        busy.set_title("the hottest links over time (black: carrying something the whole moment)", fontsize=9)
    y = range(len(names))
    step_scale, step_unit = time_scale(max((jobs[n]["step_time_s"] or 0.0) for n in names) or 1.0)
    mix = [(jobs[n]["step_time_s"] or 0.0) * step_scale for n in names]
    alone = [(jobs[n]["alone_step_time_s"] or 0.0) * step_scale for n in names]
    steps.barh([i + 0.2 for i in y], alone, 0.4, color="#BBBBBB", label="alone (grey)")
    steps.barh([i - 0.2 for i in y], mix, 0.4, color=[colours[n] for n in names], label="in the mix (the job's colour)")
    for i, n in enumerate(names):
        slow = jobs[n]["slowdown"]
        if slow is not None:
            steps.text(mix[i], i - 0.2, f" x{slow:.2f}", va="center", fontsize=8)
    steps.set_yticks(list(y), names)
    steps.invert_yaxis()
    steps.set_xlabel(f"mean step time ({step_unit})")
    steps.set_title("step time alone and in the mix", fontsize=10)
    steps.legend(fontsize=7, loc="lower right")
    longest = max(names, key=lambda n: jobs[n]["slowdown"] or 0.0)
    worst = jobs[longest]["slowdown"]
    slowed = (
        "" if worst is None else f"; most slowed: {longest} x{worst:.2f}" if worst > 1.005 else "; no job slowed by the others"
    )
    fig.suptitle(
        f"{len(names)} jobs, placement {section['placement']}, scheduler {section['scheduler']}; all done at "
        f"{format_quantity(end, 'time')}{slowed}",
        fontsize=11,
    )
    fig.tight_layout()
    return fig
