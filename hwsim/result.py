"""Running a scenario from Python, and what a run gives back."""

from __future__ import annotations

import platform
from datetime import datetime
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from hwsim.build import Outcome, Progress, simulate
from hwsim.config import Scenario, resolved_dict
from hwsim.report import (
    fabric,
    federated,
    filling,
    megatron,
    memory_table,
    online,
    phase_table,
    pipeline,
    plots,
    summarize,
    unit_table,
    write_report,
)
from hwsim.systems.pipeline.fill_map import fill_map
from hwsim.trace import Trace
from hwsim.trace.chrome import chrome_window
from hwsim.trace.recorder import TABLES

MAX_UNITS_SHOWN = 32
"""The most units the timeline and utilization plots draw (the busiest); the tables keep them all."""


def package_version() -> str:
    try:
        return version("hwsim")
    except PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown"


class RunResult:
    """A finished run: its scenario, trace tables, summary and plot helpers.

    `trace` holds the raw records (busy, memory, messages, metrics, units);
    `utilization` and `banks` are the per-unit and per-bank tables; `summary` is
    what `summary.json` holds. `status` is "ok" or the simulated failure (for
    example "out_of_memory"), explained by `diagnosis`.
    """

    def __init__(self, scenario: Scenario, outcome: Outcome):
        self.scenario = scenario
        self.outcome = outcome
        self.trace: Trace = outcome.trace
        self.status = outcome.status
        self.diagnosis = outcome.diagnosis
        self.sim_time_s = outcome.sim_time_s
        self.wall_time_s = outcome.wall_time_s

    @cached_property
    def utilization(self) -> pd.DataFrame:
        return unit_table(self.trace, self.sim_time_s)

    @cached_property
    def banks(self) -> pd.DataFrame:
        return memory_table(self.trace)

    @property
    def metrics(self) -> pd.DataFrame:
        return self.trace.metrics

    @cached_property
    def phases(self) -> pd.DataFrame:
        """Mean seconds per step in each phase, per device (systems that split their steps)."""
        return phase_table(self.trace)

    @cached_property
    def summary(self) -> dict:
        out = summarize(self.scenario, self.outcome, self.utilization, self.banks)
        window = chrome_window(self.trace)
        out["trace"] = {
            "rows": {name: self.trace.rows(name) for name in TABLES},
            "parquet": [name for name in TABLES if self.trace.on_disk(name)],
            "chrome_trace_window_s": None if window is None else [0.0, window],
        }
        out["provenance"] = {
            "version": package_version(),
            "python": platform.python_version(),
            "numpy": np.__version__,
            "seed": self.scenario.seed,
            "scenario": resolved_dict(self.scenario),
            "wall_time_s": self.wall_time_s,
        }
        return out

    # --- plots (matplotlib Figures) ---------------------------------------------

    def zoom_window(self, zoom_steps: int | None = None) -> tuple[float, float, int] | None:
        """(start_s, end_s, steps) of the first steps (until every device finished its step n), or
        None if the run is that short."""
        steps = self.metrics[self.metrics.metric == "step_time_s"]
        n = zoom_steps or self.scenario.report.zoom_steps
        if steps.empty or steps.step.max() <= n:
            return None
        return 0.0, float(steps.time_s[steps.step <= n].max()), n

    def shown_units(self) -> tuple[list[str], str]:
        """The units the timeline and utilization plots draw: all of them, or (with many devices, as in a
        federated run) the MAX_UNITS_SHOWN busiest; and a note for the title saying which."""
        table = self.utilization
        if len(table) <= MAX_UNITS_SHOWN:
            return list(table.unit), ""
        keep = set(table.nlargest(MAX_UNITS_SHOWN, "busy_s").unit)
        return [u for u in table.unit if u in keep], f" ({MAX_UNITS_SHOWN} busiest of {len(table)} units)"

    def plot_timeline(self, zoom_steps: int | None = None):
        units, note = self.shown_units()
        return plots.timeline_figure(self.trace, units, self.sim_time_s, self.zoom_window(zoom_steps), note)

    def plot_utilization(self):
        units, note = self.shown_units()
        return plots.utilization_figure(self.utilization[self.utilization.unit.isin(units)], note)

    def plot_memory(self):
        return plots.memory_figure(self.trace, self.banks, self.sim_time_s, self.zoom_window())

    def plot_learning(self):
        learning = self.summary["learning"]
        target = learning["target_accuracy"]
        return plots.learning_figure(self.metrics, None if target is None else (target, learning["time_to_target_s"]))

    def plot_phases(self):
        return plots.phases_figure(self.phases)

    def plot_staleness(self):
        return plots.staleness_figure(self.metrics)

    def plot_gantt(self, steps: int | None = None):
        """Pipeline runs: per-device Gantt chart of the first steps (None for other systems)."""
        return pipeline.gantt_figure(self.trace, steps or self.scenario.report.zoom_steps)

    def plot_megatron(self):
        """Megatron runs: per-NPU step-time and memory breakdowns (None for other systems)."""
        if self.status != "ok" or "megatron" not in self.summary:
            return None
        return megatron.megatron_figure(self.summary["megatron"])

    def plot_activations(self):
        """Pipeline runs: activation bytes held per device over time (None for other systems)."""
        return pipeline.activation_figure(self.trace.memory) if not self.trace.ops.empty else None

    @cached_property
    def pipeline_devices(self) -> pd.DataFrame:
        """Pipeline runs: per device and step, busy/idle, reduction exposed/overlapped, activation peak."""
        if self.trace.ops.empty or not hasattr(self.outcome.system, "shape"):
            return pd.DataFrame()
        return pipeline.device_table(self.trace.ops, self.outcome.system.shape)

    @cached_property
    def links(self) -> pd.DataFrame:
        """One row per link of the fabric: its ends, level, bandwidth, latency, bytes, busy time, utilization
        (data-parallel runs add `mirrored`: in symmetric mode, the links given replica 0's load)."""
        cluster = self.outcome.cluster
        if cluster is None:
            return pd.DataFrame()
        table = cluster.fabric.links(self.sim_time_s)
        mirrored = getattr(self.outcome.system, "mirrored_links", None)  # symmetric data parallelism
        return mirrored(table) if mirrored is not None else table

    def plot_fabric(self):
        """The topology with every cable coloured by its utilization (None when nothing crossed it)."""
        if self.links.empty or not self.links.bytes.any():
            return None
        t, links = self.outcome.cluster.topology, self.links
        mirrored = "mirrored" in links and links.mirrored.any()
        title = f"Fabric: {t.kind}, {t.npus} NPUs (symmetric: replica 0's links, mirrored on the others)" if mirrored else ""
        return fabric.fabric_figure(t, links, title)

    @property
    def filled(self) -> bool:
        """Whether this is a pipeline run with a second instance in its idle windows that ran."""
        return self.status == "ok" and getattr(self.outcome.system, "fill", None) is not None

    @cached_property
    def fill_devices(self) -> pd.DataFrame:
        """Filled pipeline runs: per device, utilization before (first instance alone) and after."""
        return filling.fill_devices(self.trace.ops, self.outcome.system.fill.alone_ops) if self.filled else pd.DataFrame()

    @cached_property
    def fill_map(self) -> pd.DataFrame:
        """Filled pipeline runs: predicted utilization before/after over devices x micro-batches."""
        return fill_map(self.scenario) if self.filled else pd.DataFrame()

    def plot_fill(self):
        """Filled pipeline runs: utilization per device before/after, both instances' learning."""
        return filling.fill_figure(self.trace, self.outcome.system) if self.filled else None

    def plot_fill_map(self):
        """Filled pipeline runs: the heatmap of where filling pays."""
        return filling.fill_map_figure(self.fill_map, self.scenario.system.fill.policy) if self.filled else None

    @property
    def online(self) -> bool:
        """Whether this is an online-training run that finished."""
        return self.status == "ok" and hasattr(self.outcome.system, "predictions")

    @cached_property
    def predictions(self) -> pd.DataFrame:
        """Online runs: one row per answered request (worker, times, latency, staleness, correct)."""
        return self.outcome.system.predictions if self.online else pd.DataFrame()

    @cached_property
    def accuracy_over_time(self) -> pd.DataFrame:
        """Online runs: prequential accuracy per time bin and prediction worker."""
        if not self.online:
            return pd.DataFrame()
        return online.accuracy_over_time(self.predictions, self.scenario.system.duration, by_worker=True)

    def plot_online(self):
        """Online runs: accuracy over time with drift points, staleness, latency, bytes per update type."""
        return online.online_figure(self.trace, self.outcome.system) if self.online else None

    @property
    def federated(self) -> bool:
        """Whether this is a federated run that finished."""
        return self.status == "ok" and hasattr(self.outcome.system, "round_table")

    def federated_tables(self) -> dict[str, pd.DataFrame]:
        """Federated runs: rounds, participations (one row per selected client per round), clients, and
        each client's memory check (peak against the on-the-fly bound)."""
        if not self.federated:
            return {}
        system = self.outcome.system
        return {
            "rounds": system.round_table,
            "participations": system.participation_table,
            "clients": federated.client_table(system),
            "client_memory": federated.memory_check(self.trace, system),
        }

    def plot_federated(self):
        """Federated runs: accuracy per round and over time, round durations, participation, bytes per
        client, the memory trace of the client with the highest peak."""
        return federated.federated_figure(self.trace, self.outcome.system) if self.federated else None

    # --- output -------------------------------------------------------------------

    def write(self, out: str | Path | None = None) -> Path:
        """Write the report folder; by default a new `<report.out>/<scenario>/<run-id>/`."""
        folder = Path(out) if out is not None else new_run_folder(Path(self.scenario.report.out) / self.scenario.name)
        return write_report(self, folder)


def new_run_folder(parent: Path) -> Path:
    """`parent/<YYYYmmdd-HHMMSS>`, with a suffix if that name is taken."""
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    folder, n = parent / stamp, 1
    while folder.exists():
        folder, n = parent / f"{stamp}-{n}", n + 1
    return folder


def run(scenario: Scenario, progress: Progress | None = None) -> RunResult:
    """Simulate `scenario` and return its result (nothing is written; see `RunResult.write`)."""
    return RunResult(scenario, simulate(scenario, progress))
