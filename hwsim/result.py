"""Running a scenario from Python, and what a run gives back."""

from __future__ import annotations

import importlib
import platform
from datetime import datetime
from functools import cached_property
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

import numpy as np
import pandas as pd

from hwsim.build import Outcome, Progress, simulate
from hwsim.config import Scenario, resolved_dict
from hwsim.report.downsample import busy_fractions
from hwsim.report.summary import memory_table, phase_table, summarize, unit_table
from hwsim.report.write import write_report
from hwsim.systems.pipeline.fill_map import fill_map
from hwsim.trace import Trace
from hwsim.trace.chrome import chrome_window, window_text
from hwsim.trace.recorder import TABLES


class _Later:
    """A report module imported when first used: matplotlib loads only for runs that draw (or tables that
    need a figure module's helpers), so a run with plots off starts faster."""

    def __init__(self, name: str):
        self._name = name

    def __getattr__(self, attr: str):
        return getattr(importlib.import_module(self._name), attr)


fabric, federated, filling, megatron, online, pipeline, plots = (
    _Later(f"hwsim.report.{name}") for name in ("fabric", "federated", "filling", "megatron", "online", "pipeline", "plots")
)

MAX_UNITS_SHOWN = 32
"""The most units the timeline and utilization plots draw (the busiest); the tables keep them all."""


def package_version() -> str:
    try:
        return version("hwsim")
    except PackageNotFoundError:  # running from a checkout that is not installed
        return "unknown"


class PlotNotApplicable(ValueError):
    """A `RunResult.plot_*` helper asked of a run it has no picture for (a Gantt chart of a run without a
    pipeline). The message names the helper and the runs that have it; `RunResult.figures()` lists the
    plots that apply to a run."""


HOT_LINKS = 5
"""The links a jobs run's figure follows over time: the busiest by utilization."""
FIGURES = {
    "Unit timeline": ("plot_timeline", "every run"),
    "Utilization": ("plot_utilization", "every run"),
    "Memory over time": ("plot_memory", "every run"),
    "Power": ("plot_power", "runs whose hardware has an energy model (hardware.energy)"),
    "Learning": ("plot_learning", "runs that record a training loss or test accuracy"),
    "Fabric": ("plot_fabric", "runs whose fabric carried bytes"),
    "Step phases": ("plot_phases", "parameter-server runs (their steps split into phases)"),
    "Staleness": ("plot_staleness", "runs with an asynchronous parameter server"),
    "Megatron breakdown": ("plot_megatron", "megatron runs of a transformer that finished"),
    "Pipeline Gantt": ("plot_gantt", "pipeline runs and megatron runs of a transformer"),
    "Activation memory": ("plot_activations", "pipeline runs and megatron runs of a transformer"),
    "Bubble filling": ("plot_fill", "filled pipeline runs (system.fill) that finished"),
    "Fill map": ("plot_fill_map", "filled pipeline runs (system.fill) that finished"),
    "Online training": ("plot_online", "online runs that finished"),
    "Federated learning": ("plot_federated", "federated runs that finished"),
    "Jobs": ("plot_jobs", "runs of several jobs (system.kind: jobs) that finished"),
}
"""Every plot of a run, in the report's order: caption (its PNG is the caption in lower case with
underscores, `Pipeline Gantt` -> `pipeline_gantt.png`): the RunResult helper, and the runs it applies to."""


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
        """One row per bank: capacity, peak and final occupancy (n/a, NaN, when the system keeps nothing in
        its banks: a layers model given as times)."""
        table = memory_table(self.trace)
        if not getattr(self.outcome.system, "holds_memory", True):
            table[["peak_bytes", "final_bytes", "peak_fraction"]] = np.nan
        return table

    @property
    def metrics(self) -> pd.DataFrame:
        return self.trace.metrics

    @cached_property
    def phases(self) -> pd.DataFrame:
        """Mean seconds per step in each phase, per device (systems that split their steps)."""
        return phase_table(self.trace)

    @cached_property
    def energy(self):
        """The run's energy and power (`report.energy.EnergyModel`)."""
        from hwsim.report.energy import EnergyModel

        return EnergyModel(self.scenario, self.outcome, self.utilization)

    @cached_property
    def power(self) -> pd.DataFrame:
        """Power per device and for the cluster over time (empty without an energy model)."""
        return self.energy.power if self.energy.modelled else pd.DataFrame(columns=["start_s", "end_s", "device", "power_w"])

    @cached_property
    def summary(self) -> dict:
        out = summarize(self.scenario, self.outcome, self.utilization, self.banks, self.energy)
        window = chrome_window(self.trace)
        out["trace"] = {
            "rows": {name: self.trace.rows(name) for name in TABLES},
            "parquet": [name for name in TABLES if self.trace.on_disk(name)],
            "chrome_trace_window_s": None if window is None else [0.0, window],
            "chrome_trace_window": None if window is None else window_text(self.trace, window),
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

    def figures(self) -> dict:
        """The plots that apply to this run, in the report's order: {caption: helper} (call a helper for its
        Figure). The report writes each as `<caption in lower case, spaces as underscores>.png`; a helper
        left out raises PlotNotApplicable."""
        return {caption: getattr(self, name) for caption, (name, _) in FIGURES.items() if self.plot_applies(name)}

    def plot_applies(self, name: str) -> bool:
        """Whether the plot helper `name` ("plot_gantt") has a picture of this run."""
        ops = self.trace.ops
        match name:
            case "plot_timeline" | "plot_utilization" | "plot_memory":
                return True
            case "plot_power":
                return not self.power.empty
            case "plot_learning":
                return bool(self.metrics.metric.isin(("loss", "test_accuracy")).any())
            case "plot_fabric":
                return not self.links.empty and bool(self.links.bytes.any())
            case "plot_phases":
                return not self.phases.empty
            case "plot_staleness":
                return bool((self.metrics.metric == "staleness").any())
            case "plot_megatron":
                return self.status == "ok" and "megatron" in self.summary
            case "plot_gantt":  # one pipeline's (a jobs run's pipelines have their job's names)
                return not ops.empty and self.scenario.system.kind != "jobs"
            case "plot_activations":
                return (
                    not ops.empty
                    and self.scenario.system.kind != "jobs"
                    and bool(self.trace.memory.event.str.startswith(pipeline.ACTIVATION_EVENTS).any())
                )
            case "plot_fill":
                return self.filled
            case "plot_fill_map":
                return self.filled and "utilization_gain" in self.fill_map and self.fill_map.utilization_gain.notna().any()
            case "plot_online":
                return self.online
            case "plot_federated":
                return self.federated
            case "plot_jobs":
                return self.status == "ok" and "jobs" in self.summary
        raise ValueError(f"no plot helper {name!r}; the plots are " + ", ".join(n for n, _ in FIGURES.values()))

    def _require(self, name: str) -> None:
        """PlotNotApplicable, saying which runs have the plot, if `name` does not apply to this run."""
        if self.plot_applies(name):
            return
        who = next(who for n, who in FIGURES.values() if n == name)
        system = self.scenario.system
        what = f"this run is {system.kind}"
        if system.kind == "pipeline" and getattr(system, "fill", None) is None:
            what += " without fill"
        if self.status != "ok":
            what += f" and ended {self.status}"
        raise PlotNotApplicable(f"{name}: only {who} have this plot ({what})")

    @staticmethod
    def _drawn(name: str, fig):
        """`fig`, or PlotNotApplicable if the figure function found nothing to draw."""
        if fig is None:
            raise PlotNotApplicable(f"{name}: nothing to draw for this run")
        return fig

    def zoom_window(self, zoom_steps: int | None = None) -> tuple[float, float, int] | None:
        """(start_s, end_s, steps) of the first steps (until every device finished its step n), or
        None if the run is that short."""
        steps = self.metrics[self.metrics.metric == "step_time_s"]
        n = zoom_steps or self.scenario.report.zoom_steps
        if steps.empty or steps.step.max() <= n:
            return None
        return 0.0, float(steps.time_s[steps.step <= n].max()), n

    def shown_units(self) -> tuple[list[str], str]:
        """The units the timeline and utilization plots draw: all of them, or (with many devices) of each kind
        the busiest, the median and the least busy (many identical units would draw identical rows); and a
        note for the title saying which."""
        table = self.utilization
        if len(table) <= MAX_UNITS_SHOWN:
            return list(table.unit), ""
        keep = set()
        for _, units in table.groupby("kind", sort=False):
            ranked = units.sort_values("busy_s", kind="stable").unit.tolist()
            keep.update(ranked[i] for i in {len(ranked) - 1, len(ranked) // 2, 0})
        if len(keep) > MAX_UNITS_SHOWN:
            keep = set(table[table.unit.isin(keep)].nlargest(MAX_UNITS_SHOWN, "busy_s").unit)
        note = f" (of each kind, the busiest, median and least busy unit: {len(keep)} of {len(table)} units)"
        return [u for u in table.unit if u in keep], note

    def plot_timeline(self, zoom_steps: int | None = None):
        units, note = self.shown_units()
        return plots.timeline_figure(self.trace, units, self.sim_time_s, self.zoom_window(zoom_steps), note)

    def plot_utilization(self):
        units, note = self.shown_units()
        return plots.utilization_figure(self.utilization[self.utilization.unit.isin(units)], note)

    def plot_memory(self):
        return plots.memory_figure(self.trace, self.banks, self.sim_time_s, self.zoom_window())

    def plot_power(self):
        self._require("plot_power")
        from hwsim.report.plots import power

        return power(self.power, self.energy.devices)

    def plot_learning(self):
        """Runs that learn: batch loss, test loss and accuracy against simulated time (PlotNotApplicable for a
        timing-only run)."""
        self._require("plot_learning")
        learning = self.summary["learning"]
        target = learning["target_accuracy"]
        figure = plots.learning_figure(self.metrics, None if target is None else (target, learning["time_to_target_s"]))
        return self._drawn("plot_learning", figure)

    def plot_phases(self):
        """Parameter-server runs: where each worker's step goes (PlotNotApplicable for other systems)."""
        self._require("plot_phases")
        return self._drawn("plot_phases", plots.phases_figure(self.phases))

    def plot_staleness(self):
        """Asynchronous parameter-server runs: how stale each applied update was (PlotNotApplicable otherwise)."""
        self._require("plot_staleness")
        return self._drawn("plot_staleness", plots.staleness_figure(self.metrics))

    def plot_gantt(self, steps: int | None = None):
        """Pipeline and megatron runs: per-device Gantt chart of the first steps (PlotNotApplicable for other
        systems)."""
        self._require("plot_gantt")
        return self._drawn("plot_gantt", pipeline.gantt_figure(self.trace, steps or self.scenario.report.zoom_steps))

    def plot_megatron(self):
        """Megatron runs that finished: per-NPU step-time and memory breakdowns (PlotNotApplicable otherwise)."""
        self._require("plot_megatron")
        return megatron.megatron_figure(self.summary["megatron"])

    def plot_jobs(self):
        """Runs of several jobs that finished: the jobs per node over time, the NPUs they held, and their step
        times alone and in the mix (PlotNotApplicable otherwise)."""
        from hwsim.report.jobs import jobs_figure

        self._require("plot_jobs")
        end = max((job["end_s"] or 0.0) for job in self.summary["jobs"]["jobs"].values())
        hottest = (
            self.links.sort_values("util", kind="stable").link.tail(HOT_LINKS).tolist()[::-1] if not self.links.empty else []
        )
        shares = busy_fractions(
            self.trace.chunks("busy"), hottest, ["busy"], lambda labels: labels.map(lambda _: "busy"), end, 200
        )
        links = {name: shares[0, i] for i, name in enumerate(hottest) if shares[0, i].any()}
        return jobs_figure(self.summary["jobs"], self.outcome.cluster.topology.npus, links)

    def plot_activations(self):
        """Pipeline and megatron runs: activation bytes held per device over time (PlotNotApplicable otherwise)."""
        self._require("plot_activations")
        return self._drawn("plot_activations", pipeline.activation_figure(self.trace.memory))

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
        """The topology with every cable coloured by its utilization (PlotNotApplicable when no fabric, or
        nothing crossed it)."""
        self._require("plot_fabric")
        t, links = self.outcome.cluster.topology, self.links
        mirrored = "mirrored" in links and links.mirrored.any()
        title = f"Fabric: {t.kind}, {t.npus} NPUs (symmetric: replica 0's links, mirrored on the others)" if mirrored else ""
        jobs = self.summary.get("jobs")
        placed = {name: job["npus"] for name, job in jobs["jobs"].items()} if jobs else None
        if placed:
            title = f"Fabric: {t.kind}, {t.npus} NPUs coloured by the first job on each"
        return fabric.fabric_figure(t, links, title, placed)

    @property
    def filled(self) -> bool:
        """Whether this is a pipeline run with a second instance in its idle windows that ran (a megatron run's
        fill job reports in its own section, `megatron.fill`)."""
        return self.status == "ok" and self.scenario.system.kind == "pipeline" and self.outcome.system.fill is not None

    @cached_property
    def fill_devices(self) -> pd.DataFrame:
        """Filled pipeline runs: per device, utilization before (first instance alone) and after."""
        return filling.fill_devices(self.trace.ops, self.outcome.system.fill.alone_ops) if self.filled else pd.DataFrame()

    @cached_property
    def fill_map(self) -> pd.DataFrame:
        """Filled pipeline runs: predicted utilization before/after over devices x micro-batches."""
        return fill_map(self.scenario) if self.filled else pd.DataFrame()

    def plot_fill(self):
        """Filled pipeline runs that finished: utilization per device before/after, both instances' learning
        (PlotNotApplicable otherwise)."""
        self._require("plot_fill")
        return filling.fill_figure(self.trace, self.outcome.system)

    def plot_fill_map(self):
        """Filled pipeline runs that finished: the heatmap of where filling pays (PlotNotApplicable otherwise)."""
        self._require("plot_fill_map")
        return self._drawn("plot_fill_map", filling.fill_map_figure(self.fill_map, self.scenario.system.fill.policy))

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
        """Online runs that finished: accuracy over time with drift points, staleness, latency, bytes per
        update type (PlotNotApplicable otherwise)."""
        self._require("plot_online")
        return online.online_figure(self.trace, self.outcome.system)

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
        client, the memory trace of the client with the highest peak (PlotNotApplicable for other runs)."""
        self._require("plot_federated")
        return federated.federated_figure(self.trace, self.outcome.system)

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
