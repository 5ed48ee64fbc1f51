"""Federated runs: accuracy per round and over time, round durations, participation, bytes per
client, and client memory from the memory trace (compressed model, decompressed layers, the rest)."""

from __future__ import annotations

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from hwsim.report.stats import spread

OUTCOME_COLOURS = {"aggregated": "#55A868", "late": "#DD8452", "dropped": "#8172B2", "failed": "#C44E52"}
PART_COLOURS = {"compressed": "#4C72B0", "decompressed": "#DD8452", "activations": "#55A868"}


def client_memory(trace, system) -> pd.DataFrame:
    """Client memory over time, replayed from the memory trace: one row per allocation or free in a
    client's parameter or working bank, with the bytes then held as the compressed model (parameter
    bank), as decompressed layers (`<layer>.weights`) and as everything else (activations, the batch,
    gradients). Columns: client, time_s, compressed, decompressed, activations, total."""
    mem = trace.memory
    spec = system.spec
    suffix = mem.bank.str.rsplit(".", n=1).str[-1]
    rows = mem[mem.bank.str.match(r"c\d+\.") & suffix.isin([spec.param_bank, spec.work_bank])].copy()
    if rows.empty:
        return pd.DataFrame(columns=["client", "time_s", *PART_COLOURS, "total"])
    rows["client"] = rows.bank.str.extract(r"^c(\d+)\.", expand=False).astype(int)
    delta = rows.groupby("bank").used_bytes.diff().fillna(rows.used_bytes)
    buffer = rows.event.str.split(" ", n=1).str[-1]
    in_params = rows.bank.str.endswith("." + spec.param_bank)
    part = np.where(in_params, "compressed", np.where(buffer.str.endswith(".weights"), "decompressed", "activations"))
    out = rows[["client", "time_s"]].copy()
    for name in PART_COLOURS:
        out[name] = np.where(part == name, delta, 0)
        out[name] = out.groupby("client")[name].cumsum()
    out["total"] = out[list(PART_COLOURS)].sum(axis=1)
    return out.reset_index(drop=True)


def memory_check(trace, system) -> pd.DataFrame:
    """Per client: peak memory (both banks together), the compressed model, the largest decompressed
    layer, the peak of everything else, and whether peak <= compressed + largest layer + activations
    (the on-the-fly bound)."""
    levels = client_memory(trace, system)
    largest = 4 * max(op.params for op in system.model.layer_ops(system.spec.batch))
    per = levels.groupby("client").agg(
        peak_bytes=("total", "max"), compressed_bytes=("compressed", "max"), activation_peak_bytes=("activations", "max")
    )
    per["largest_layer_bytes"] = largest
    per["bound_bytes"] = per.compressed_bytes + largest + per.activation_peak_bytes
    per["within_bound"] = per.peak_bytes <= per.bound_bytes
    return per.reset_index()


def client_table(system) -> pd.DataFrame:
    """Per client that was ever selected: rounds per outcome, bytes down and up, peak memory, factors."""
    parts = system.participation_table
    counts = pd.crosstab(parts.client, parts.outcome).reindex(columns=list(OUTCOME_COLOURS), fill_value=0)
    sums = parts.groupby("client").agg(
        selected=("round", "size"),
        bytes_down=("bytes_down", "sum"),
        bytes_up=("bytes_up", "sum"),
        peak_param_bytes=("peak_param_bytes", "max"),
        peak_work_bytes=("peak_work_bytes", "max"),
        speed=("speed", "first"),
        memory=("memory", "first"),
        bandwidth=("bandwidth", "first"),
        samples=("samples", "sum"),
    )
    return sums.join(counts).reset_index()


def rounds_to_target(rounds: pd.DataFrame, target: float | None) -> int | None:
    """The first round (counted from 1) after which the test accuracy reached `target`; None if never
    (or no target)."""
    if target is None:
        return None
    hit = np.flatnonzero(rounds.test_accuracy.to_numpy() >= target)
    return int(hit[0]) + 1 if len(hit) else None


def federated_summary(trace, system, target: float | None = None) -> dict:
    """The `federated` section of summary.json; `target` is the run's target accuracy."""
    rounds, parts, spec = system.round_table, system.participation_table, system.spec
    outcomes = parts.outcome.value_counts()
    delivered = {tag: int(trace.messages.bytes[trace.messages.tag == tag].sum()) for tag in ("down", "up")}
    per_client = client_table(system)
    mem = memory_check(trace, system)
    trained = parts[parts.steps > 0]
    return {
        "rounds": len(rounds),
        "clients": spec.clients,
        "per_round": spec.per_round,
        "final_test_accuracy": float(rounds.test_accuracy.iloc[-1]),
        "best_test_accuracy": float(rounds.test_accuracy.max()),
        "rounds_to_target": rounds_to_target(rounds, target),
        "accuracy_per_round": [float(a) for a in rounds.test_accuracy],
        "round_duration_s": spread(rounds.duration_s),
        "participation": {
            "selections": len(parts),
            **{name: int(outcomes.get(name, 0)) for name in OUTCOME_COLOURS},
            "distinct_clients": int(parts.client.nunique()),
            "rounds_short_of_quorum": int((rounds.aggregated < np.minimum(spec.per_round, rounds.selected)).sum()),
        },
        "bytes": {
            "sent_down": system.bytes_sent["down"],
            "delivered_down": delivered["down"],
            "sent_up": system.bytes_sent["up"],
            "delivered_up": delivered["up"],
            "down_per_client": spread(per_client.bytes_down),
            "up_per_client": spread(per_client.bytes_up),
        },
        "memory": {
            "decompression": spec.decompression,
            "client_peak_bytes": spread(mem.peak_bytes),
            "compressed_model_bytes": int(mem.compressed_bytes.max()) if len(mem) else None,
            "largest_layer_bytes": int(mem.largest_layer_bytes.max()) if len(mem) else None,
            "activation_peak_bytes": int(mem.activation_peak_bytes.max()) if len(mem) else None,
            "clients_within_on_the_fly_bound": f"{int(mem.within_bound.sum())}/{len(mem)}",
            "out_of_memory": int(parts.detail.str.startswith("out of memory").sum()),
            "trained_participations": len(trained),
        },
    }


def federated_figure(trace, system) -> Figure:
    """Accuracy per round and over time; round durations; outcomes per round; bytes per client; the
    memory trace of the client with the highest peak."""
    rounds, parts = system.round_table, system.participation_table
    fig = Figure(figsize=(15, 8.5), layout="constrained")
    axes = fig.subplots(2, 3)
    ax = axes[0, 0]
    ax.plot(rounds["round"] + 1, rounds.test_accuracy, "o-", ms=3)
    ax.set(xlabel="round", ylabel="test accuracy", title="Global model, per round", ylim=(0, 1))
    ax = axes[0, 1]
    ax.plot(rounds.end_s, rounds.test_accuracy, "o-", ms=3)
    ax.set(xlabel="simulated time (s)", ylabel="test accuracy", title="Global model, over time", ylim=(0, 1))
    ax = axes[0, 2]
    durations = rounds.duration_s
    alike = durations.max() - durations.min() <= 1e-9 * durations.max()  # rounds that take the same time, to rounding
    ax.hist(durations, bins=1 if alike else min(30, max(5, len(rounds) // 2)), color="#4C72B0")
    ax.set(xlabel="round duration (s)", ylabel="rounds", title="Round durations")
    ax = axes[1, 0]
    table = pd.crosstab(parts["round"], parts.outcome).reindex(columns=list(OUTCOME_COLOURS), fill_value=0)
    bottom = np.zeros(len(table))
    for name, colour in OUTCOME_COLOURS.items():
        ax.bar(table.index + 1, table[name], bottom=bottom, color=colour, label=name, width=0.9)
        bottom += table[name].to_numpy()
    ax.set(xlabel="round", ylabel="selected clients", title="Participation: aggregated, late, dropped, failed")
    ax.legend(fontsize=8)
    ax = axes[1, 1]
    per_client = client_table(system).sort_values("bytes_down", ascending=False)
    x = np.arange(len(per_client))
    ax.bar(x, per_client.bytes_down / 1e3, color="#4C72B0", label="down", width=1.0)
    ax.bar(x, -per_client.bytes_up / 1e3, color="#DD8452", label="up", width=1.0)
    ax.set(xlabel="clients (by bytes down)", ylabel="kB (up below zero)", title="Bytes per client")
    ax.legend(fontsize=8)
    _memory_panel(axes[1, 2], trace, system)
    return fig


def _memory_panel(ax, trace, system) -> None:
    levels = client_memory(trace, system)
    if levels.empty:
        ax.set_axis_off()
        return
    check = memory_check(trace, system)
    top = check.sort_values("peak_bytes").iloc[-1]
    parts = system.participation_table
    mine = parts[(parts.client == top.client) & (parts.steps > 0)]
    mine = mine if len(mine) else parts[parts.client == top.client]
    when = mine.iloc[0]  # the client's first round that trained: its memory from receiving to upload
    one = levels[(levels.client == top.client) & levels.time_s.between(when.start_s, when.end_s)]
    # by event, not time: the steps take microseconds and the transfers around them milliseconds
    ax.stackplot(
        np.arange(len(one)), *(one[name] / 1e3 for name in PART_COLOURS), labels=list(PART_COLOURS),
        colors=list(PART_COLOURS.values()), step="post",
    )  # fmt: skip
    ax.axhline(top.bound_bytes / 1e3, color="k", ls="--", lw=1, label="compressed + largest layer + activations")
    ax.set(
        xlabel="allocations and frees, in order", ylabel="kB", ylim=(0, 1.25 * max(top.peak_bytes, top.bound_bytes) / 1e3),
        title=f"c{int(top.client)}, round {int(when['round'])}, {system.spec.decompression}: peak {top.peak_bytes / 1e3:.1f} kB",
    )  # fmt: skip
    ax.legend(fontsize=7, loc="upper left")


def comparison_figure(runs: dict) -> Figure:
    """Several federated runs: test accuracy per round and over time, on one chart each."""
    fig = Figure(figsize=(12, 4.5), layout="constrained")
    by_round, by_time = fig.subplots(1, 2)
    for name, system in runs.items():
        rounds = system.round_table
        by_round.plot(rounds["round"] + 1, rounds.test_accuracy, "o-", ms=3, label=name)
        by_time.plot(rounds.end_s, rounds.test_accuracy, "o-", ms=3, label=name)
    by_round.set(xlabel="round", ylabel="test accuracy", title="Accuracy per round", ylim=(0, 1))
    by_time.set(xlabel="simulated time (s)", ylabel="test accuracy", title="Accuracy over time", ylim=(0, 1))
    by_round.legend(fontsize=8)
    return fig
