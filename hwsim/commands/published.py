"""`hwsim validate published`: hwsim against published training figures, predicted vs published.

Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models" (arXiv 2205.05198): Table 5 (iteration time on A100-80GB, sequence 2048, fp16,
full recompute vs sequence parallelism + selective recompute) and Figure 1 (memory per
GPU: weights + gradients + optimizer state; activations without recompute; with sequence
parallelism + selective recompute). Every row is `scenarios/megatron_gpt3_175b.yaml`
with the row's model and layout as overrides, run timing-only; nothing in hwsim's
hardware model is fitted to these figures.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd

from hwsim.build import check, simulate
from hwsim.commands.compare import markdown
from hwsim.config.load import PROJECT_ROOT, load_scenario

GIB = 2**30
BASE = PROJECT_ROOT / "scenarios" / "megatron_gpt3_175b.yaml"
TIME_GOAL, MEAN_GOAL, MEMORY_GOAL = 0.10, 0.05, 0.05


@dataclass(frozen=True)
class Row:
    """One model of Korthikanti et al.'s Table 5 with its published times (s) and Figure 1 memory (GiB)."""

    model: str
    tensor: int
    pipeline: int
    virtual: int
    batch: int
    microbatch: int
    full_s: float
    selective_s: float
    states_gib: float  # weights + gradients + optimizer
    activations_gib: float  # no recompute, tensor parallel only
    selective_gib: float  # sequence parallel + selective recompute

    def overrides(self, recompute: str, sequence: bool) -> list[str]:
        return [
            f"model={self.model}",
            f"system.parallel.tensor={self.tensor}",
            f"system.parallel.pipeline={self.pipeline}",
            f"system.parallel.virtual={self.virtual}",
            "system.parallel.data=1",
            f"system.parallel.sequence={str(sequence).lower()}",
            f"system.batch={self.batch}",
            f"system.microbatch={self.microbatch}",
            f"system.recompute={recompute}",
            "hardware.memory.hbm.capacity=1 TiB",  # Figure 1's no-recompute activations exceed 80 GB: measure, do not stop
            "report.plots=false",
        ]


KORTHIKANTI_2022 = (
    Row("megatron_22b", 8, 1, 1, 4, 4, 1.42, 1.10, 45.56, 59.25, 9.56),
    Row("megatron_175b", 8, 8, 3, 64, 1, 18.13, 13.75, 45.56, 66.84, 12.35),
    Row("megatron_530b", 8, 35, 3, 280, 1, 49.05, 37.83, 31.64, 114.02, 23.08),
    Row("megatron_1t", 8, 64, 1, 512, 1, 94.42, 71.49, 32.96, 131.25, 26.56),
)
"""Korthikanti et al. 2022, Table 5 and Figure 1."""

CASES = (("full", False, "full_s"), ("selective", True, "selective_s"))
"""The time columns: full recompute (tensor parallel only), and sequence parallel + selective recompute."""


def _run(row: Row, recompute: str, sequence: bool) -> dict:
    scenario = load_scenario(BASE, row.overrides(recompute, sequence))
    check(scenario, str(BASE))
    outcome = simulate(scenario)
    if outcome.status != "ok":
        raise RuntimeError(f"{row.model} ({recompute}): {outcome.diagnosis}")
    out = outcome.system.summary(outcome.trace)["megatron"]
    out["wall_s"] = outcome.wall_time_s
    return out


def states_gib(memory: list[dict]) -> float:
    """Weights, gradients and optimizer state of a device without the embedding or the head (what Figure 1
    counts), or of the only device."""
    mem = memory[len(memory) // 2] if len(memory) > 2 else memory[0]
    return (mem["weights_bytes"] + mem["gradients_bytes"] + mem["optimizer_bytes"]) / GIB


def activations_gib(memory: list[dict]) -> float:
    """The most activations any device holds (the first pipeline device's, p micro-batches in flight)."""
    return max(mem["activations_bytes"] for mem in memory) / GIB


def published(
    progress: Callable[[int, int], None] | None = None, rows: tuple[Row, ...] = KORTHIKANTI_2022
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(times, memory): one row per model and case, predicted vs published with the relative error."""
    times, memory = [], []
    total = len(rows) * (len(CASES) + 1)
    done = 0
    for row in rows:
        for recompute, sequence, column in CASES:
            out = _run(row, recompute, sequence)
            published_s = getattr(row, column)
            times.append(
                {
                    "model": row.model,
                    "case": "full recompute" if recompute == "full" else "sequence + selective",
                    "layout": f"t{row.tensor} p{row.pipeline} v{row.virtual}",
                    "published_s": published_s,
                    "predicted_s": out["step_s"],
                    "error": out["step_s"] / published_s - 1,
                    "mfu": out["mfu"],
                    "hfu": out["hfu"],
                    **{k: v for k, v in out["breakdown"].items()},
                    "wall_s": out["wall_s"],
                }
            )
            if recompute == "selective":
                selective, states = activations_gib(out["memory"]), states_gib(out["memory"])
            done += 1
            if progress:
                progress(done, total)
        none = activations_gib(_run(row, "none", False)["memory"])
        done += 1
        if progress:
            progress(done, total)
        for what, predicted, value in (
            ("weights + gradients + optimizer", states, row.states_gib),
            ("activations, no recompute", none, row.activations_gib),
            ("activations, sequence + selective", selective, row.selective_gib),
        ):
            memory.append(
                {
                    "model": row.model,
                    "memory": what,
                    "published_gib": value,
                    "predicted_gib": predicted,
                    "error": predicted / value - 1,
                }
            )
    return pd.DataFrame(times), pd.DataFrame(memory)


def report(times: pd.DataFrame, memory: pd.DataFrame, out: Path) -> str:
    """The tables as Markdown, with the goals and whether each is met; also written to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    times.to_csv(out / "published_times.csv", index=False)
    memory.to_csv(out / "published_memory.csv", index=False)
    t = times.copy()
    t["error"] = t.error.map(lambda e: f"{100 * e:+.1f} %")
    for col in ("mfu", "hfu"):
        t[col] = t[col].map(lambda x: f"{100 * x:.1f} %")
    shown = ["model", "case", "layout", "published_s", "predicted_s", "error", "mfu", "hfu", "wall_s"]
    m = memory.copy()
    m["error"] = m.error.map(lambda e: f"{100 * e:+.1f} %")
    worst, mean = times.error.abs().max(), times.error.abs().mean()
    mem_worst = memory.error.abs().max()
    verdict = [
        f"time: worst |error| {100 * worst:.1f} % (goal {100 * TIME_GOAL:.0f} %: {'met' if worst <= TIME_GOAL else 'NOT met'}), "
        f"mean {100 * mean:.1f} % (goal {100 * MEAN_GOAL:.0f} %: {'met' if mean <= MEAN_GOAL else 'NOT met'})",
        f"memory: worst |error| {100 * mem_worst:.1f} % (goal {100 * MEMORY_GOAL:.0f} %: "
        f"{'met' if mem_worst <= MEMORY_GOAL else 'NOT met'})",
    ]
    text = "\n\n".join(
        [
            "Korthikanti et al. 2022 (arXiv 2205.05198), Table 5: iteration time, A100-80GB",
            markdown(t[shown]),
            "Figure 1: memory per GPU (GiB; a device holding neither embedding nor head)",
            markdown(m),
            "\n".join(verdict),
        ]
    )
    (out / "published.md").write_text(text + "\n")
    return text
