"""Running a sweep: check every point before any runs, run the unfinished ones on an executor,
write each result atomically as it lands, and assemble the table.

A point's result is keyed by a hash of its resolved scenario and kept in
`<out>/points/<key>.json`; a re-run skips every key that has a result (errors are
retried), so an interrupted sweep resumes where it stopped. The table (`sweep.parquet`,
`sweep.csv`) is rebuilt from those files: one row per point, its parameters, status and
every number of its summary (dotted names such as `learning.final_test_accuracy`).

The engine takes any `concurrent.futures.Executor`; `local_executor` (a process pool,
threads pinned) and `dask_executor` (a `dask.distributed` scheduler) are the two the
command line offers.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
import time
import traceback
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Executor, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_context
from pathlib import Path
from typing import Any

import pandas as pd

from hwsim.build import check
from hwsim.config import Scenario, load_scenario
from hwsim.config.fields import to_plain
from hwsim.config.sweep import Point, Sweep, override_text, points
from hwsim.errors import ConfigError
from hwsim.report import sweep as report_sweep
from hwsim.report.write import png, write_atomic

PINNED_THREADS = ("NUMBA_NUM_THREADS", "OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")
"""Thread variables a local worker gets set to 1 (unless already set): one busy core per worker."""

WORKER_DIED = "the worker process died while this point was in flight (killed, or out of host memory); re-run to retry"


@dataclass
class Planned:
    """A point, resolved: its scenario and result key, or why the combination is invalid."""

    point: Point
    key: str = ""
    scenario: Scenario | None = None
    invalid: str = ""


@dataclass
class SweepRun:
    """What a sweep did: the table, and counts of points run now, finished before, and left unrun."""

    table: pd.DataFrame
    ran: int = 0
    skipped: int = 0
    pending: int = 0
    interrupted: bool = False


# --- planning ------------------------------------------------------------------------------


def plan(sweep: Sweep) -> tuple[list[Planned], dict, dict]:
    """Check the scenario, then every axis value alone (a bad key or value is an error before any
    point runs), then every point. A point whose combination fails the cross-field checks is kept,
    marked invalid with the reason. Returns the points, each axis value's resolved value (for the
    table: SI numbers, names), and each axis's unit kind."""
    path = sweep.scenario
    base = load_scenario(path, sweep.overrides)
    check(base, str(path))
    resolved, units = {}, {}
    for axis in sweep.axes:
        values = axis.endpoints() if axis.is_range else axis.values
        for value in values:
            try:
                scenario = load_scenario(path, (*sweep.overrides, override_text(axis.key, value)))
            except ConfigError as err:
                raise ConfigError(axis.source, err.key, err.got, err.expected) from None
            resolved[(axis.key, _hashable(value))] = _leaf(scenario, axis.key, value)
        units[axis.key] = _unit(base, axis.key)
    out = []
    for point in points(sweep):
        planned = Planned(point)
        try:
            planned.scenario = load_scenario(path, point.overrides)
            check(planned.scenario, str(path))
            planned.key = scenario_key(planned.scenario)
        except ConfigError as err:
            planned.scenario, planned.invalid = None, str(err)
        out.append(planned)
        for key, value in point.params.items():
            if (key, _hashable(value)) not in resolved:  # a drawn value (ranges): resolve it here
                resolved[(key, _hashable(value))] = _leaf(planned.scenario, key, value) if planned.scenario else _plain(value)
    return out, resolved, units


def scenario_key(scenario: Scenario) -> str:
    """The hash a point's result is kept under: the resolved scenario, every field."""
    text = json.dumps(to_plain(scenario), sort_keys=True, default=repr)
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:16]


def _hashable(value: Any) -> str:
    return json.dumps(value, sort_keys=True, default=str)


def _walk(scenario: Scenario, key: str) -> tuple[Any, Any, str]:
    """(parent, value, last part) at a dotted key of the resolved scenario."""
    parent, node, part = None, scenario, ""
    for part in key.split("."):
        parent = node
        node = getattr(node, part, None) if not hasattr(node, "get") else node.get(part)
    return parent, node, part


def _leaf(scenario: Scenario, key: str, written: Any) -> Any:
    """The resolved value at `key` (a number in SI units, a name); the written value if it is not a scalar."""
    value = _walk(scenario, key)[1]
    return value if isinstance(value, (bool, int, float, str)) else _plain(written)


def _plain(value: Any) -> Any:
    return value if isinstance(value, (bool, int, float, str)) or value is None else json.dumps(value)


def _unit(scenario: Scenario, key: str) -> str:
    parent, _, part = _walk(scenario, key)
    fields = getattr(parent, "__dataclass_fields__", {})
    return (fields[part].metadata.get("unit") or "") if part in fields else ""


# --- one point, on a worker ----------------------------------------------------------------


def run_point(scenario: Scenario, reports: bool = False) -> tuple[dict, dict | None]:
    """Run one scenario; return its record (status, error, metrics, wall time) and, if asked,
    its report folder's files as {relative path: bytes}. Never raises: an exception is a record."""
    from hwsim.result import run  # imported where the point runs (a worker)

    start = time.perf_counter()
    files = None
    try:
        result = run(scenario)
        summary = json.loads(json.dumps(result.summary, default=float))
        summary.pop("provenance")
        record = {"status": summary["status"], "error": summary["diagnosis"] or None, "metrics": flatten(summary)}
        if reports:
            with tempfile.TemporaryDirectory() as tmp:
                result.write(tmp)
                files = {p.relative_to(tmp).as_posix(): p.read_bytes() for p in sorted(Path(tmp).rglob("*")) if p.is_file()}
    except Exception as err:  # a bug or an unexpected input: recorded, and the sweep goes on
        record = {"status": "error", "error": f"{type(err).__name__}: {err}", "traceback": traceback.format_exc(), "metrics": {}}
    record["wall_s"] = time.perf_counter() - start
    return record, files


SKIPPED = ("scenario", "status", "diagnosis")


def flatten(summary: dict, prefix: str = "") -> dict:
    """A summary's numbers and names as one level: {"learning.final_test_accuracy": 0.93, ...}."""
    out = {}
    for key, value in summary.items():
        name = f"{prefix}{key}"
        if not prefix and key in SKIPPED:
            continue
        if isinstance(value, dict):
            out |= flatten(value, name + ".")
        elif isinstance(value, list):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


# --- executors -----------------------------------------------------------------------------


def _ignore_interrupts() -> None:
    import signal

    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the driver's to handle


def local_executor(workers: int | None = None) -> ProcessPoolExecutor:
    """A pool of `workers` processes (default: one per core), each with its thread variables pinned
    to 1 and Ctrl-C left to the driver. Workers start fresh (spawn), so they share no state."""
    for var in PINNED_THREADS:
        os.environ.setdefault(var, "1")  # inherited by the spawned workers
    return ProcessPoolExecutor(workers or os.cpu_count() or 1, mp_context=get_context("spawn"), initializer=_ignore_interrupts)


def dask_executor(address: str) -> tuple[Executor, int]:
    """An executor on a `dask.distributed` scheduler at `address` (tcp://HOST:PORT), and its thread count."""
    try:
        from distributed import Client
    except ImportError:
        raise ConfigError("command line", "--executor", address, 'the Dask extra installed: pip install -e ".[dist]"') from None
    try:
        client = Client(address, timeout=10)
    except OSError as err:
        raise ConfigError("command line", "--executor", address, f"a reachable Dask scheduler ({err})") from None
    return client.get_executor(pure=False), max(1, sum(client.nthreads().values()))


def shutdown(executor: Executor) -> None:
    """Shut an executor down without waiting for queued points (they are cancelled); close a Dask client."""
    try:
        executor.shutdown(wait=False, cancel_futures=True)
    except TypeError:  # Dask's ClientExecutor takes no cancel_futures
        executor.shutdown(wait=False)
    client = getattr(executor, "_client", None)
    if client is not None:
        client.close()


def stop(executor: Executor) -> None:
    """Stop an executor without waiting for the points in flight (they are lost, not recorded)."""
    terminate = getattr(executor, "terminate_workers", None)  # Python 3.14+
    if terminate is not None:
        terminate()
        return
    if isinstance(executor, ProcessPoolExecutor):
        for process in list((getattr(executor, "_processes", None) or {}).values()):
            process.terminate()
    shutdown(executor)


# --- the sweep -----------------------------------------------------------------------------


def run_sweep(
    sweep: Sweep,
    planned: list[Planned],
    resolved: dict,
    folder: Path,
    executor: Executor,
    *,
    in_flight: int = 4,
    reports: bool = False,
    renew: Callable[[], Executor] | None = None,
    progress: Callable[[int, int], None] | None = None,
    log: Callable[[str], None] = lambda message: None,
) -> SweepRun:
    """Run every planned point without a result in `folder/points/` (at most `in_flight` submitted
    at once), write each result as it lands, then the table. If the executor breaks (a worker
    died), the points in flight are recorded as errors and, given `renew`, a new executor goes on.
    Ctrl-C stops at once: the points in flight are lost, everything finished is kept."""
    (folder / "points").mkdir(parents=True, exist_ok=True)
    records = {key: rec for key in {p.key for p in planned if p.key} if (rec := load_record(folder, key, reports))}
    todo = list({p.key: p.scenario for p in planned if p.key and p.key not in records}.items())
    run = SweepRun(pd.DataFrame(), skipped=len(records), pending=len(todo))
    queue, running, given = list(reversed(todo)), {}, executor
    try:
        while queue or running:
            while queue and len(running) < in_flight:
                key, scenario = queue.pop()
                running[executor.submit(run_point, scenario, reports)] = key
            finished, _ = wait(running, return_when=FIRST_COMPLETED)
            for future in finished:
                key = running.pop(future)
                record, files = _outcome(future)
                save_record(folder, key, record, files)
                records[key] = record
                run.ran, run.pending = run.ran + 1, run.pending - 1
                if record["status"] != "ok":
                    log(f"point {key}: {record['status']}: {record['error']}")
                if progress:
                    progress(run.ran, len(todo))
            if any(_broken(f) for f in finished) and renew is not None:
                shutdown(executor)
                executor = renew()
    except KeyboardInterrupt:
        run.interrupted = True
        for future in running:
            future.cancel()
        stop(executor)
    finally:
        run.table = write_table(sweep, planned, resolved, records, folder, reports)
        if executor is not given:  # one this call made after the given one broke
            shutdown(executor)
    return run


def _outcome(future: Future) -> tuple[dict, dict | None]:
    try:
        return future.result()
    except BrokenProcessPool:
        return {"status": "error", "error": WORKER_DIED, "metrics": {}}, None
    except Exception as err:  # the executor could not run it (a worker lost, a pickling failure)
        return {
            "status": "error",
            "error": f"{type(err).__name__}: {err} (the executor could not run this point)",
            "metrics": {},
        }, None


def _broken(future: Future) -> bool:
    return not future.cancelled() and isinstance(future.exception(), BrokenProcessPool)


def load_record(folder: Path, key: str, reports: bool = False) -> dict | None:
    """A finished point's record, or None: no file, an error (retried), or its report missing when asked."""
    path = folder / "points" / f"{key}.json"
    try:
        record = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    if record.get("status") == "error" or (reports and not (folder / "reports" / key / "summary.json").is_file()):
        return None
    return record


def save_record(folder: Path, key: str, record: dict, files: dict | None) -> None:
    """The report files first, then the record (so a record on disk means the point is complete)."""
    if files:
        for name, data in files.items():
            path = folder / "reports" / key / name
            path.parent.mkdir(parents=True, exist_ok=True)
            write_atomic(path, data)
    write_atomic(folder / "points" / f"{key}.json", json.dumps(record, indent=1))


def write_table(sweep: Sweep, planned: list[Planned], resolved: dict, records: dict, folder: Path, reports: bool) -> pd.DataFrame:
    """`sweep.parquet` and `sweep.csv`: one row per point in point order (the same table however
    the points were scheduled, interrupted or resumed)."""
    keys = [a.key for a in sweep.axes]
    rows = []
    for p in planned:
        record = records.get(p.key) if p.key else None
        row = {"point": p.point.index}
        row |= {k: resolved[(k, _hashable(p.point.params[k]))] for k in keys}
        if p.invalid:
            row |= {"status": "invalid", "error": p.invalid}
        elif record is None:
            row |= {"status": "pending", "error": None}
        else:
            row |= {"status": record["status"], "error": record["error"], **record["metrics"]}
        row["key"] = p.key or None
        has_report = reports and record is not None and (folder / "reports" / p.key / "report.html").is_file()
        row["report"] = f"reports/{p.key}/report.html" if has_report else None
        rows.append(row)
    table = pd.DataFrame(rows)
    table = table[[c for c in table.columns if c not in ("key", "report")] + ["key", "report"]]
    for column in [c for c in table.columns if pd.api.types.is_object_dtype(table[c])]:
        values = table[column].dropna()
        if not values.map(lambda v: isinstance(v, str)).all():  # mixed names and numbers: all as text
            table[column] = table[column].map(lambda v: v if v is None or isinstance(v, str) else str(v))
    write_atomic(folder / "sweep.parquet", table.to_parquet(index=False))
    write_atomic(folder / "sweep.csv", table.to_csv(index=False))
    return table


def write_report(folder: Path, sweep: Sweep, planned: list[Planned], units: dict, table: pd.DataFrame, plots: dict) -> dict:
    """`sweep.json`, the plots (PNG) and `report.html` of a sweep's table; returns the plots' choices
    (metric, x, by, Pareto pair), checked against the table."""
    about = describe(sweep, planned, units)
    keys = [a.key for a in sweep.axes]
    chosen = report_sweep.choose(table, keys, {**sweep.plots, **plots})
    about["plots"] = chosen
    about["no_effect"] = [
        {"keys": dim, "note": NO_EFFECT.format(keys=" + ".join(dim), metric=report_sweep.maximized(chosen["metric"])[0])}
        for dim in no_effect(sweep, table)
    ]
    write_atomic(folder / "sweep.json", json.dumps(about, indent=1, default=str))
    dims = [[a.key] for a in sweep.grid] + [[a.key for a in group] for group in sweep.zips]
    figures = report_sweep.figures(table, dims, units, chosen, sampled=sweep.samples is not None)
    images = {name: png(fig) for name, fig in figures.items()}
    for name, data in images.items():
        write_atomic(folder / f"{name}.png", data)
    counts = table.status.value_counts().to_dict()
    write_atomic(folder / "report.html", report_sweep.page(about, table, chosen, images, counts))
    return chosen


NO_EFFECT = (
    "{keys} had no effect: {metric} and every other result are identical across its values (is it a setting "
    "this system uses?); no point is better than another along it"
)
"""The warning of an axis that changed nothing (stderr, sweep.json's `no_effect`, the report)."""
NOT_COMPARED = ("pending", "error")
"""Statuses of points whose results are unknown: left out when looking for an axis without effect."""


def no_effect(sweep: Sweep, table: pd.DataFrame) -> list[list[str]]:
    """The sweep's dimensions (an axis, or the keys zipped together) that changed nothing: wherever the
    other swept keys are equal, every point that ran, whatever this dimension's value, has the same
    status and the same results (every column of the table but the point, the parameters and the key). A
    dimension never seen with two values at equal other keys (a sampled sweep) is not judged."""
    dims = [[a.key] for a in sweep.grid] + [[a.key for a in group] for group in sweep.zips]
    keys = [k for dim in dims for k in dim]
    ran = table[~table.status.isin(NOT_COMPARED)]
    results = [c for c in ran.columns if c not in {"point", "key", "report", *keys}]
    out = []
    for dim in dims:
        others = [k for k in keys if k not in dim]
        groups = [rows for _, rows in ran.groupby(others, dropna=False, sort=False)] if others else [ran]
        compared = [rows for rows in groups if len(rows[dim].drop_duplicates()) > 1]
        if compared and all((rows[results].nunique(dropna=False) <= 1).all() for rows in compared):
            out.append(dim)
    return out


def describe(sweep: Sweep, planned: list[Planned], units: dict) -> dict:
    """`sweep.json`: what was swept, so the table can be read (and plotted) without the command line."""
    return {
        "name": sweep.name,
        "description": sweep.description,
        "scenario": str(sweep.scenario),
        "overrides": list(sweep.overrides),
        "axes": [
            {
                "key": a.key,
                "unit": units.get(a.key, ""),
                "values": list(a.values) if not a.is_range else None,
                "range": [a.low, a.high, a.unit, "log" if a.log else "linear"] if a.is_range else None,
            }
            for a in sweep.axes
        ],
        "zips": [[a.key for a in group] for group in sweep.zips],
        "samples": sweep.samples,
        "seed": sweep.seed,
        "points": len(planned),
        "invalid": sum(bool(p.invalid) for p in planned),
        "plots": sweep.plots,
    }
