"""Writing a run's report folder: summary.json, CSV tables, PNG plots, trace.json, report.html.

Every file is written to a temporary name and renamed into place, so a folder never
holds a half-written file.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path

from matplotlib.figure import Figure

from hwsim.report.html import render
from hwsim.trace.chrome import write_chrome
from hwsim.trace.recorder import TABLES


def write_atomic(path: Path, data: bytes | str) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data.encode("utf-8") if isinstance(data, str) else data)
    os.replace(tmp, path)


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_report(result, folder: Path) -> Path:
    """Write everything `result` (a RunResult) holds into `folder`; return the folder."""
    folder.mkdir(parents=True, exist_ok=True)
    spec = result.scenario.report
    trace = result.trace
    write_atomic(folder / "summary.json", json.dumps(result.summary, indent=2, default=float))
    tables = {}
    for name in TABLES:
        if trace.on_disk(name):  # a long run: the table stays in Parquet
            tmp = folder / f"{name}.parquet.tmp"
            trace.stores[name].copy_to(tmp)
            os.replace(tmp, folder / f"{name}.parquet")
        elif name in ("busy", "memory", "messages", "metrics") or trace.rows(name):
            tables[name] = getattr(trace, name)
    tables |= {"units": result.utilization, "banks": result.banks}
    if not result.links.empty:
        tables |= {"links": result.links}
    if hasattr(result.outcome.system, "collectives"):
        tables |= {"collectives": result.outcome.system.collectives}
    if trace.rows("phases"):
        tables |= {"step_phases": result.phases}
    if trace.rows("ops"):
        tables |= {"pipeline_devices": result.pipeline_devices}
    if result.filled:
        tables |= {"fill_devices": result.fill_devices, "fill_map": result.fill_map}
    if result.online:
        tables |= {"predictions": result.predictions, "accuracy_over_time": result.accuracy_over_time}
    tables |= result.federated_tables()
    for name, frame in tables.items():
        write_atomic(folder / f"{name}.csv", frame.to_csv(index=False))
    images = {}
    if spec.plots:
        figures = {
            "Unit timeline": result.plot_timeline(),
            "Utilization": result.plot_utilization(),
            "Memory over time": result.plot_memory(),
            "Learning": result.plot_learning(),
            "Fabric": result.plot_fabric(),
            "Step phases": result.plot_phases(),
            "Staleness": result.plot_staleness(),
            "Megatron breakdown": result.plot_megatron(),
            "Pipeline Gantt": result.plot_gantt(),
            "Activation memory": result.plot_activations(),
            "Bubble filling": result.plot_fill(),
            "Fill map": result.plot_fill_map(),
            "Online training": result.plot_online(),
            "Federated learning": result.plot_federated(),
        }
        for caption, fig in figures.items():
            if fig is None:
                continue
            images[caption] = png(fig)
            write_atomic(folder / (caption.lower().replace(" ", "_") + ".png"), images[caption])
    if spec.trace:
        tmp = folder / "trace.json.tmp"
        write_chrome(trace, tmp)
        os.replace(tmp, folder / "trace.json")
    if spec.html:
        write_atomic(folder / "report.html", render(result.summary, result.utilization, result.banks, images, result.phases))
    return folder
