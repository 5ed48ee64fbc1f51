"""Run several scenarios and compare them: one table, accuracy over time, time-to-accuracy vs bytes,
for pipelines their Gantt charts on one time axis with step time split into its parts and step time
against peak activation memory (the trade-off each schedule makes), and for online
training prequential accuracy over time on one chart and accuracy against update bytes, for
federated runs accuracy per round and over time with participation, round time and client memory."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pandas as pd

from hwsim.build import check
from hwsim.config import load_scenario
from hwsim.report import federated, online, pipeline, plots
from hwsim.report.write import png, write_atomic
from hwsim.result import run

PIPELINE = [
    "schedule",
    "bubble_fraction",
    "bubble_s",
    "overhead_s",
    "exposed_allreduce_s",
    "peak_activation_microbatches",
    "peak_activation_bytes",
]
ONLINE = ["prequential_accuracy", "accuracy_after_drift", "server_update_bytes", "mean_staleness_s"]
FEDERATED = ["rounds", "median_round_s", "aggregated", "late", "dropped", "failed", "client_peak_bytes"]
COLUMNS = [
    "scenario",
    "status",
    "step_time_s",
    "sim_time_s",
    "final_test_accuracy",
    "target_accuracy",
    "time_to_target_s",
    "network_bytes",
    "network_bytes_to_target",
    "fraction_of_fp32",
    *PIPELINE,
    *ONLINE,
    *FEDERATED,
    "report",
]


def compare(
    paths: list[str | Path],
    overrides: list[str],
    out: Path,
    progress: Callable[[str], Callable[[int, int], None] | None] = lambda name: None,
) -> pd.DataFrame:
    """Run each scenario (with the same `overrides`), write its report under `out/<name>/`,
    then `out/comparison.csv`, `comparison.md` and `comparison.png`; returns the table."""
    scenarios = [load_scenario(path, overrides) for path in paths]  # every file checked before any runs
    for path, scenario in zip(paths, scenarios, strict=True):
        check(scenario, str(path))
    names = [s.name for s in scenarios]
    if len(set(names)) < len(names):
        raise ValueError(f"scenario names must differ to be compared: {', '.join(names)}")
    rows, curves, pipelines, onlines, feds = [], {}, {}, {}, {}
    for scenario in scenarios:
        result = run(scenario, progress(scenario.name))
        folder = result.write(out / scenario.name)
        if result.status == "interrupted":  # Ctrl-C: the run's report is written; stop the comparison
            raise KeyboardInterrupt
        s = result.summary
        learning = s["learning"]
        rows.append(
            {
                "scenario": scenario.name,
                "status": s["status"],
                "step_time_s": s["step_time_s"],
                "sim_time_s": s["sim_time_s"],
                "final_test_accuracy": learning["final_test_accuracy"],
                "target_accuracy": learning["target_accuracy"],
                "time_to_target_s": learning["time_to_target_s"],
                "network_bytes": s["bytes_moved"]["network"],
                "network_bytes_to_target": learning["network_bytes_to_target"],
                "fraction_of_fp32": s.get("network", {}).get("fraction_of_fp32"),
                **_pipeline_columns(s.get("pipeline")),
                **_online_columns(s.get("online")),
                **_federated_columns(s.get("federated")),
                "report": str(folder / "report.html"),
            }
        )
        if scenario.system.kind == "pipeline":
            pipelines[scenario.name] = (result.trace, s)
        if result.online:
            onlines[scenario.name] = (result.outcome.system, s)
        if result.federated:
            feds[scenario.name] = result.outcome.system
        curves[scenario.name] = result.metrics[result.metrics.metric == "test_accuracy"][["time_s", "value"]]
    table = pd.DataFrame(rows, columns=COLUMNS)
    if not pipelines:
        table = table.drop(columns=PIPELINE)
    if not onlines:
        table = table.drop(columns=ONLINE)
    if not feds:
        table = table.drop(columns=FEDERATED)
    out.mkdir(parents=True, exist_ok=True)
    write_atomic(out / "comparison.csv", table.to_csv(index=False))
    write_atomic(out / "comparison.md", markdown(table))
    write_atomic(out / "comparison.png", png(plots.comparison_figure(table, curves)))
    if pipelines:
        write_atomic(out / "pipelines.png", png(pipeline.comparison_figure(pipelines)))
        write_atomic(out / "schedules.png", png(pipeline.tradeoff_figure(pipelines)))
    if onlines:
        write_atomic(out / "online.png", png(online.comparison_figure(onlines)))
    if feds:
        write_atomic(out / "federated.png", png(federated.comparison_figure(feds)))
    return table


def _pipeline_columns(pipe: dict | None) -> dict:
    if not pipe:
        return dict.fromkeys(PIPELINE)
    return {key: pipe[key] for key in PIPELINE}


def _online_columns(on: dict | None) -> dict:
    if not on:
        return dict.fromkeys(ONLINE)
    stale = [v["mean"] for v in on["staleness_s"].values() if v["mean"] is not None]
    return {
        "prequential_accuracy": on["prequential_accuracy"],
        "accuracy_after_drift": on["accuracy_after_drift"],
        "server_update_bytes": on["server_update_bytes"],
        "mean_staleness_s": sum(stale) / len(stale) if stale else None,
    }


def _federated_columns(fed: dict | None) -> dict:
    if not fed:
        return dict.fromkeys(FEDERATED)
    part = fed["participation"]
    return {
        "rounds": fed["rounds"],
        "median_round_s": fed["round_duration_s"]["p50"],
        **{k: part[k] for k in ("aggregated", "late", "dropped", "failed")},
        "client_peak_bytes": fed["memory"]["client_peak_bytes"]["max"],
    }


def markdown(table: pd.DataFrame) -> str:
    shown = table.drop(columns=["report"], errors="ignore")
    head = "| " + " | ".join(shown.columns) + " |\n|" + "---|" * len(shown.columns) + "\n"
    body = "".join("| " + " | ".join(_cell(v) for v in row) + " |\n" for row in shown.itertuples(index=False))
    return head + body


def _cell(value) -> str:
    if value is None or (isinstance(value, float) and value != value):
        return "-"
    return f"{value:.4g}" if isinstance(value, float) else str(value)
