"""Writing a run's report folder: summary.json, CSV tables, PNG plots, trace.json, report.html.

Every file is written to a temporary name and renamed into place, so a folder never
holds a half-written file. A write that fails (a full disk) removes its temporary file and
ends in `ReportWriteError`, naming the files already written whole.
"""

from __future__ import annotations

import contextlib
import io
import json
import os
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from hwsim.errors import ReportWriteError
from hwsim.report.html import render
from hwsim.trace.chrome import write_chrome
from hwsim.trace.recorder import TABLES

if TYPE_CHECKING:
    from matplotlib.figure import Figure


def write_atomic(path: Path, data: bytes | str) -> None:
    """Write `data` to `path` through `path`.tmp; if that fails, the .tmp file is removed and the error raised."""
    data = data.encode("utf-8") if isinstance(data, str) else data
    write_through_tmp(path, lambda tmp: tmp.write_bytes(data))


def write_through_tmp(path: Path, write: Callable[[Path], object]) -> None:
    """`write(tmp)` to `path`.tmp, then rename it to `path`; if either fails, the .tmp file is removed."""
    tmp = path.with_name(path.name + ".tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink(missing_ok=True)
        raise


def png(fig: Figure) -> bytes:
    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=110)
    return buffer.getvalue()


def write_report(result, folder: Path) -> Path:
    """Write everything `result` (a RunResult) holds into `folder`; return the folder. A file that cannot be
    written (OSError: a full disk) raises `ReportWriteError` naming the files written before it."""
    written: list[str] = []
    try:
        _write_report(result, folder, written)
    except OSError as err:
        raise ReportWriteError(folder, err.strerror or str(err), written) from err
    return folder


def _write_report(result, folder: Path, written: list[str]) -> None:
    def put(path: Path, data: bytes | str) -> None:
        write_atomic(path, data)
        written.append(path.name)

    folder.mkdir(parents=True, exist_ok=True)
    spec = result.scenario.report
    trace = result.trace
    put(folder / "summary.json", json.dumps(result.summary, indent=2, default=float))
    tables = {}
    for name in TABLES:
        if trace.on_disk(name):  # a long run: the table stays in Parquet
            write_through_tmp(folder / f"{name}.parquet", trace.stores[name].copy_to)
            written.append(f"{name}.parquet")
        elif name in ("busy", "memory", "messages", "metrics") or trace.rows(name):
            tables[name] = getattr(trace, name)
    tables |= {"units": result.utilization, "banks": result.banks}
    if not result.links.empty:
        tables |= {"links": result.links}
    if hasattr(result.outcome.system, "collectives"):
        tables |= {"collectives": result.outcome.system.collectives}
    if not result.power.empty:
        tables |= {"power": result.power, "energy_devices": result.energy.devices}
    if trace.rows("phases"):
        tables |= {"step_phases": result.phases}
    if trace.rows("ops") and not result.pipeline_devices.empty:
        tables |= {"pipeline_devices": result.pipeline_devices}
    if hasattr(result.outcome.system, "link_shares"):  # a shared cluster: what each job sent over each link
        tables |= {"job_links": result.outcome.system.link_shares(trace)}
    if result.filled:
        tables |= {"fill_devices": result.fill_devices, "fill_map": result.fill_map}
    if result.online:
        tables |= {"predictions": result.predictions, "accuracy_over_time": result.accuracy_over_time}
    tables |= result.federated_tables()
    for name, frame in tables.items():
        put(folder / f"{name}.csv", frame.to_csv(index=False))
    images = {}
    if spec.plots:
        for caption, plot in result.figures().items():  # only the plots that apply to this run
            images[caption] = png(plot())
            put(folder / (caption.lower().replace(" ", "_") + ".png"), images[caption])
    if spec.trace:
        write_through_tmp(folder / "trace.json", lambda tmp: write_chrome(trace, tmp))
        written.append("trace.json")
    if spec.html:
        put(folder / "report.html", render(result.summary, result.utilization, result.banks, images, result.phases))
