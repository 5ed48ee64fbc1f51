"""`hwsim validate published`: hwsim against published training figures, predicted vs published.

Iteration times, each row a shipped scenario with the row's layout as overrides, run timing-only; nothing
in hwsim's hardware model is fitted to them:
- Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer Models" (arXiv
  2205.05198): Table 5 (A100-80GB, sequence 2048, fp16, full recompute vs sequence parallelism +
  selective recompute; `scenarios/megatron_gpt3_175b.yaml`) and Figure 1 (memory per GPU: weights +
  gradients + optimizer state; activations without recompute; with sequence parallelism + selective
  recompute);
- MegaScale (Jiang et al., NSDI 2024, arXiv 2402.15627), Table 2, the Megatron-LM column: a 175B model,
  t8 p8 v6, from 256 to 12,288 GPUs (`scenarios/megatron_megascale_175b.yaml`);
- BLOOM-176B (BigScience, bigscience-workshop/bigscience, train/tr11-176B-ml/chronicles.md): 384 A100s,
  t4 p12 d8 (`scenarios/megatron_bloom_176b.yaml`).
Then the per-collective table (`nccl`): hwsim's all-reduce against published nccl-tests runs.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import pandas as pd

from hwsim.build import check, simulate
from hwsim.commands.compare import markdown
from hwsim.commands.gemms import summary
from hwsim.config.load import PROJECT_ROOT, load_scenario

GIB = 2**30
BASE = PROJECT_ROOT / "scenarios" / "megatron_gpt3_175b.yaml"
TIME_GOAL, MEAN_GOAL, MEMORY_GOAL = 0.05, 0.025, 0.05
"""Every row's |error| at most 5 %, their mean at most 2.5 %, every memory figure within 5 %."""
SCENARIOS = PROJECT_ROOT / "scenarios"


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


@dataclass(frozen=True)
class Measured:
    """A published iteration time and the scenario (with overrides) that stands for its run."""

    table: str
    label: str
    scenario: Path
    overrides: tuple[str, ...]
    published_s: float | None = None
    published_tflops: float | None = None  # or model TFLOP/s per GPU: a time at hwsim's count of the model's FLOPs

    def seconds(self, out: dict) -> float:
        """The published time, or the time at which hwsim's model FLOPs run at the published rate per GPU."""
        if self.published_s is not None:
            return self.published_s
        return out["model_flops"] / (self.published_tflops * 1e12 * out["gpus"])


MEGASCALE_2024 = tuple(
    Measured(
        "MegaScale 2024, Table 2 (Megatron-LM)",
        f"{gpus:,} GPUs, batch {batch}",
        SCENARIOS / "megatron_megascale_175b.yaml",
        (f"system.parallel.data={gpus // 64}", f"system.batch={batch}"),
        seconds,
    )
    for gpus, batch, seconds in (
        (256, 768, 40.0),
        (512, 768, 21.2),
        (768, 768, 15.2),
        (1024, 768, 11.9),
        (3072, 6144, 29.02),
        (6144, 6144, 14.78),
        (8192, 6144, 12.24),
        (12288, 6144, 8.57),
    )
)
"""Jiang et al. 2024 (arXiv 2402.15627), Table 2, Megatron-LM: GPUs, global batch, seconds per iteration."""
BLOOM_2022 = (
    Measured("BLOOM-176B (BigScience 2022)", "384 GPUs, batch 2048", SCENARIOS / "megatron_bloom_176b.yaml", (), 105.22),
)
"""bigscience-workshop/bigscience, train/tr11-176B-ml/chronicles.md: iteration 12695 at the full batch, 105.22 s
(104.70 s at the end of epoch 1)."""
LLAMA3_2024 = tuple(
    Measured(
        "Llama 3 2024, Table 4 (405B)",
        f"{gpus:,} GPUs, {label}",
        SCENARIOS / "llama3_405b_16k.yaml",
        (*overrides, "hardware.memory.hbm.capacity=1 TiB"),
        published_tflops=tflops,
    )
    for gpus, label, overrides, tflops in (
        (8192, "DP 64, seq 8K", ("system.parallel.data=64",), 430.0),
        (16384, "DP 128, seq 8K", (), 400.0),
        (
            16384,
            "CP 16, DP 8, seq 128K",
            ("model.seq_len=131072", "system.parallel.context=16", "system.parallel.data=8", "system.batch=128"),
            380.0,
        ),
    )
)
"""Llama Team 2024 (arXiv 2407.21783), Table 4: GPUs, layout, TFLOP/s per GPU (16M tokens a step; the 128K row's
DP is 8, as its 16,384 GPUs and 16M tokens require: some copies of the table print 4). Measured at a
1 TiB bank: the paper's FSDP shards the fp32 gradients over the data ranks; hwsim's distributed optimizer keeps
them whole (11.9 GiB more per GPU), which alone takes its stage 1 past 80 GiB. The published TFLOP/s become a
time through hwsim's model FLOPs (PaLM's count, which the paper cites: attention's s x s in full)."""
MEGATRON_CORE_H100 = tuple(
    Measured(
        "Megatron-Core r0.8.0 on H100 (NVIDIA)",
        f"{size}, {t * p * 48:,} GPUs",
        SCENARIOS / "megatron_core_h100.yaml",
        (
            f"model.layers={layers}",
            f"model.d_model={hidden}",
            f"model.heads={heads}",
            f"model.d_ff={4 * hidden}",
            f"system.parallel.tensor={t}",
            f"system.parallel.pipeline={p}",
            f"system.parallel.sequence={'true' if t > 1 else 'false'}",
            f"system.batch={batch}",
            "hardware.memory.hbm.capacity=1 TiB",
        ),
        published_tflops=tflops,
    )
    for size, heads, hidden, layers, t, p, batch, tflops in (
        ("1.7B", 16, 2048, 24, 1, 1, 192, 408.8),
        ("7.1B", 32, 4096, 30, 2, 1, 192, 465.9),
        ("16B", 48, 6144, 32, 4, 1, 192, 489.1),
        ("32B", 56, 7168, 48, 8, 1, 192, 459.6),
        ("70B", 64, 8192, 84, 8, 2, 384, 419.7),
        ("119B", 80, 10240, 92, 8, 4, 768, 420.5),
        ("177B", 96, 12288, 96, 8, 6, 1152, 432.8),
        ("314B", 128, 16384, 96, 8, 8, 1536, 474.4),
        ("462B", 144, 18432, 112, 8, 16, 3072, 459.9),
    )
)
"""NVIDIA/Megatron-LM README, weak scaling with Megatron-Core r0.8.0 (images/model_table.png, f2e5db4, 2024-07-15):
model, heads, hidden, layers, TP, PP (DP 48), batch, TFLOP/s per GPU; vocabulary 131,072, sequence 4,096. hwsim
assumes what the table does not say (`scenarios/megatron_core_h100.yaml`) and measures at a 1 TiB bank (no
recompute on the larger rows is past 80 GiB in hwsim's count)."""
DEEPSEEK_GPU_HOURS_PER_T, DEEPSEEK_TOKENS = 180e3, 15360 * 4096
DEEPSEEK_V3_2024 = (
    Measured(
        "DeepSeek-V3 2024 (GPU-hours per trillion tokens)",
        "2,048 H800s, batch 15,360 x 4K",
        SCENARIOS / "deepseek_v3_2048.yaml",
        ("hardware.memory.hbm.capacity=1 TiB",),
        DEEPSEEK_GPU_HOURS_PER_T * 3600 / 2048 * DEEPSEEK_TOKENS / 1e12,
    ),
)
"""DeepSeek-AI 2024 (arXiv 2412.19437), section 1: "training DeepSeek-V3 on each trillion tokens requires only 180K
H800 GPU hours, i.e., 3.7 days on our cluster with 2048 H800 GPUs", at the batch of section 4.2 (15,360 sequences
of 4,096 tokens): a step of 19.9 s. The GPU-hours include what the steps do not (the batch ramp-up, restarts).
Measured at a 1 TiB bank: hwsim keeps fp32 gradients whole, 16-bit activations and no recompute, and DualPipe's
in-flight micro-batches take its middle stages past 80 GiB (DeepSeek recomputes norms and up-projections and
caches activations in fp8, section 3.2.3)."""
MIXTRAL_2024 = (
    Measured(
        "Mixtral 8x7B, Megatron-Core v0.8 (NVIDIA)",
        "64 H100s, batch 256 x 4K",
        SCENARIOS / "mixtral_8x7b_64.yaml",
        (),
        published_tflops=438.0,
    ),
)
"""NVIDIA/Megatron-LM megatron/core/transformer/moe/README.md at 0b981f9 (2024-08-02): "This boosts Mixtral 8X7B
bf16 training to achieve 438 TFLOPS as of MCore v0.8", and its reference mapping for the model (TP 1, EP 8, PP 4,
VP 8, micro-batch 1, batch 256, 64 GPUs, sequences of 4,096, 8 x H100 with 8 x 400 Gb/s InfiniBand per node).
The headline is not tied to the mapping's row in the text; the same README at c230e0d (2024-11-21) gives 468 with
MCore v0.9. The TFLOP/s become a time through hwsim's model FLOPs."""
MEASURED = MEGASCALE_2024 + BLOOM_2022 + LLAMA3_2024 + DEEPSEEK_V3_2024 + MEGATRON_CORE_H100 + MIXTRAL_2024


def _simulate(path: Path, overrides: list[str] | tuple[str, ...], what: str) -> dict:
    scenario = load_scenario(path, list(overrides))
    check(scenario, str(path))
    outcome = simulate(scenario)
    if outcome.status != "ok":
        raise RuntimeError(f"{what}: {outcome.diagnosis}")
    out = outcome.system.summary(outcome.trace)["megatron"]
    par = scenario.system.parallel
    out.update(
        wall_s=outcome.wall_time_s,
        gpus=par.tensor * par.pipeline * par.context * par.data,
        pipeline=par.pipeline,
        layout=f"t{par.tensor} p{par.pipeline} v{par.virtual}"
        + (f" c{par.context}" if par.context > 1 else "")
        + f" d{par.data}",
    )
    return out


def _run(row: Row, recompute: str, sequence: bool) -> dict:
    return _simulate(BASE, row.overrides(recompute, sequence), f"{row.model} ({recompute})")


def _time_row(table: str, label: str, published_s: float, out: dict) -> dict:
    return {
        "table": table,
        "row": label,
        "layout": out["layout"],
        "gpus": out["gpus"],
        "pipeline": out["pipeline"],
        "published_s": published_s,
        "predicted_s": out["step_s"],
        "error": out["step_s"] / published_s - 1,
        "mfu": out["mfu"],
        "hfu": out["hfu"],
        **dict(out["breakdown"]),
        "wall_s": out["wall_s"],
    }


def states_gib(memory: list[dict]) -> float:
    """Weights, gradients and optimizer state of a device without the embedding or the head (what Figure 1
    counts), or of the only device."""
    mem = memory[len(memory) // 2] if len(memory) > 2 else memory[0]
    return (mem["weights_bytes"] + mem["gradients_bytes"] + mem["optimizer_bytes"]) / GIB


def activations_gib(memory: list[dict]) -> float:
    """The most activations any device holds (the first pipeline device's, p micro-batches in flight)."""
    return max(mem["activations_bytes"] for mem in memory) / GIB


def published(
    progress: Callable[[int, int], None] | None = None,
    rows: tuple[Row, ...] = KORTHIKANTI_2022,
    measured: tuple[Measured, ...] = MEASURED,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """(times, memory): one row per published iteration time (Korthikanti's per model and case, then
    `measured`), predicted vs published with the relative error; Korthikanti's memory figures."""
    times, memory = [], []
    total = len(rows) * (len(CASES) + 1) + len(measured)
    done = 0
    for row in rows:
        for recompute, sequence, column in CASES:
            out = _run(row, recompute, sequence)
            case = "full recompute" if recompute == "full" else "sequence + selective"
            times.append(_time_row("Korthikanti 2022, Table 5", f"{row.model}, {case}", getattr(row, column), out))
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
    for m in measured:
        out = _simulate(m.scenario, m.overrides, f"{m.table}: {m.label}")
        times.append(_time_row(m.table, m.label, m.seconds(out), out))
        done += 1
        if progress:
            progress(done, total)
    return pd.DataFrame(times), pd.DataFrame(memory)


def trends(times: pd.DataFrame) -> dict[str, float]:
    """Whether the error follows the scale: its Pearson correlation with log2 GPUs and with pipeline depth
    (0 when either does not vary)."""
    out = {}
    for name, x in (("gpus", np.log2(times.gpus.astype(float))), ("pipeline", times.pipeline.astype(float))):
        out[name] = float(np.corrcoef(x, times.error)[0, 1]) if x.nunique() > 1 and times.error.nunique() > 1 else 0.0
    return out


def goals_met(times: pd.DataFrame, memory: pd.DataFrame) -> bool:
    errors = times.error.abs()
    return errors.max() <= TIME_GOAL and errors.mean() <= MEAN_GOAL and memory.error.abs().max() <= MEMORY_GOAL


def _percent(frame: pd.DataFrame, columns: tuple[str, ...], signed: bool = True) -> pd.DataFrame:
    out = frame.copy()
    for col in columns:
        out[col] = out[col].map(lambda e: f"{100 * e:+.1f} %" if signed else f"{100 * e:.1f} %")
    return out


def report(
    times: pd.DataFrame,
    memory: pd.DataFrame,
    out: Path,
    collectives: pd.DataFrame | None = None,
    gemm_table: pd.DataFrame | None = None,
    all_to_all: pd.DataFrame | None = None,
    fp8_table: pd.DataFrame | None = None,
) -> str:
    """The tables as Markdown, each table's and the overall mean and worst error, the error's trend with
    scale, the goals and whether each is met; also written to `out`."""
    out.mkdir(parents=True, exist_ok=True)
    times.to_csv(out / "published_times.csv", index=False)
    memory.to_csv(out / "published_memory.csv", index=False)
    t = _percent(_percent(times, ("error",)), ("mfu", "hfu"), signed=False)
    shown = ["table", "row", "layout", "gpus", "published_s", "predicted_s", "error", "mfu", "hfu", "wall_s"]
    per_table = (
        times.assign(abs_error=times.error.abs())
        .groupby("table", sort=False)
        .agg(
            rows=("error", "size"), mean_abs_error=("abs_error", "mean"), worst=("abs_error", "max"), mean_error=("error", "mean")
        )
        .reset_index()
    )
    per_table = _percent(_percent(per_table, ("mean_abs_error", "worst"), signed=False), ("mean_error",))
    m = _percent(memory, ("error",))
    worst, mean = times.error.abs().max(), times.error.abs().mean()
    mem_worst = memory.error.abs().max()
    trend = trends(times)
    verdict = [
        f"time: worst |error| {100 * worst:.1f} % (goal {100 * TIME_GOAL:.0f} %: {'met' if worst <= TIME_GOAL else 'NOT met'}), "
        f"mean {100 * mean:.1f} % (goal {100 * MEAN_GOAL:.1f} %: {'met' if mean <= MEAN_GOAL else 'NOT met'}), "
        f"{(times.error < 0).sum()} of {len(times)} rows fast",
        f"trend with scale: correlation of the error with log2 GPUs {trend['gpus']:+.2f}, with pipeline depth "
        f"{trend['pipeline']:+.2f}",
        f"memory: worst |error| {100 * mem_worst:.1f} % (goal {100 * MEMORY_GOAL:.0f} %: "
        f"{'met' if mem_worst <= MEMORY_GOAL else 'NOT met'})",
    ]
    parts = [
        "Iteration times: Korthikanti et al. 2022 (arXiv 2205.05198) Table 5; MegaScale (arXiv 2402.15627) Table 2, "
        "Megatron-LM; BLOOM-176B (BigScience 2022, training chronicles); Llama 3 (arXiv 2407.21783) Table 4; "
        "DeepSeek-V3 (arXiv 2412.19437) GPU-hours per trillion tokens; NVIDIA's Megatron-Core r0.8.0 H100 table "
        "(Megatron-LM README, f2e5db4); Mixtral 8x7B with Megatron-Core v0.8 (Megatron-LM MoE README, 0b981f9)",
        markdown(t[shown]),
        "Per table",
        markdown(per_table),
        "Korthikanti et al. 2022, Figure 1: memory per GPU (GiB; a device holding neither embedding nor head)",
        markdown(m),
    ]
    if collectives is not None:
        collectives.to_csv(out / "published_collectives.csv", index=False)
        c = _percent(collectives, ("error",))
        c["fitted"] = c.fitted.map({True: "fitted", False: "check"})
        per_run = (
            collectives.assign(abs_error=collectives.error.abs())
            .groupby("run", sort=False)
            .agg(sizes=("error", "size"), mean_abs_error=("abs_error", "mean"), worst=("abs_error", "max"))
            .reset_index()
        )
        parts += [
            "Collectives: hwsim's all-reduce against published nccl-tests runs (error on the time; 'fitted': the "
            "preset's curve comes from that run)",
            markdown(c[["run", "preset", "gpus", "fitted", "size_mib", "published_busbw_gbs", "predicted_busbw_gbs", "error"]]),
            markdown(_percent(per_run, ("mean_abs_error", "worst"), signed=False)),
        ]
    if gemm_table is not None:
        gemm_table.to_csv(out / "published_gemms.csv", index=False)
        kinds = summary(gemm_table)
        check = gemm_table[gemm_table.use == "check"].error.abs()
        parts += [
            "GEMMs: hwsim's fp16 GEMM time against EleutherAI's cookbook A100 measurements (torch 1.13.1; 'fit': the "
            "framework's gemm_efficiency comes from these; every shape in published_gemms.csv)",
            markdown(_percent(_percent(kinds, ("mean_abs_error", "worst"), signed=False), ("mean_error",))),
            f"GEMM check set: mean |error| {100 * check.mean():.1f} %, worst {100 * check.max():.1f} % over {len(check)} shapes",
        ]
    if all_to_all is not None:
        all_to_all.to_csv(out / "published_all_to_all.csv", index=False)
        parts += [
            "All-to-all: hwsim's MoE dispatch and combine against DeepEP's normal kernels on H800 (deepseek-ai/DeepEP "
            "README at 567632d; GB/s over the bottleneck link; error on the time)",
            markdown(_percent(all_to_all, ("error",))),
        ]
    if fp8_table is not None:
        fp8_table.to_csv(out / "published_fp8_gemms.csv", index=False)
        by_use = (
            fp8_table.assign(abs_error=fp8_table.error.abs())
            .groupby(["use", "kind"], sort=False)
            .agg(shapes=("error", "size"), mean_abs_error=("abs_error", "mean"), worst=("abs_error", "max"))
            .reset_index()
        )
        parts += [
            "FP8 GEMMs: hwsim's H800 fp8 GEMM time against DeepGEMM's README (a6d97a1; the CUTLASS 3.6 rates it compares "
            "with; 'fit': the preset's fp8_efficiency comes from these; every shape in published_fp8_gemms.csv)",
            markdown(_percent(by_use, ("mean_abs_error", "worst"), signed=False)),
        ]
    text = "\n\n".join([*parts, "\n".join(verdict)])
    (out / "published.md").write_text(text + "\n")
    return text


# --- energy ---------------------------------------------------------------------------------------------

ENERGY_GOAL = 0.15
"""hwsim's energy for BLOOM's training within 15 % of the published figure."""
BLOOM_KWH, BLOOM_GPU_HOURS, BLOOM_TOKENS = 433_196.0, 1_082_990.0, 366e9
"""Luccioni, Viguier and Ligozat 2022 (arXiv 2211.02001), Table 1 and section 4: 1,082,990 GPU-hours of
training, 433,196 kWh: the GPU-hours at the A100's 400 W TDP (an estimate of the GPUs' draw, not a
measurement; no PUE, no host). Tokens: 366B (the BLOOM paper, section 3.5)."""
H100_NODE_W, H100_NODE_FRACTION = 10_200.0, 0.76
"""Newkirk et al. 2025 (arXiv 2506.14551, abstract): 8 x H100 nodes under compute-heavy load at 76 % of their
10.2 kW rating (the whole node: GPUs, CPUs, NICs, fans)."""


def energy() -> pd.DataFrame:
    """hwsim's energy and power against the published figures: BLOOM's training energy (by its tokens and by its
    GPU-hours) and an H100 node's power under training load (GPT-3 175B as Korthikanti ran it, on H100s)."""
    from hwsim.result import run

    bloom = run(load_scenario(SCENARIOS / "megatron_bloom_176b.yaml", ["report.plots=false"])).summary["energy"]
    steps = BLOOM_TOKENS / (2048 * 2048)
    h100 = run(load_scenario(BASE, ["report.plots=false", "hardware=h100_sxm", "system.framework=megatron-core"])).summary[
        "energy"
    ]
    node = 8 * h100["average_power_per_npu_w"] / H100_NODE_W
    rows = [
        (
            "BLOOM-176B training, 366B tokens (MWh)",
            BLOOM_KWH / 1e3,
            bloom["per_step_j"] * steps / 3.6e9,
            "hwsim's energy per step x 87,261 steps",
            True,
        ),
        (
            "BLOOM-176B training, 1,082,990 GPU-hours (MWh)",
            BLOOM_KWH / 1e3,
            bloom["average_power_per_npu_w"] * BLOOM_GPU_HOURS / 1e6,
            "hwsim's average power per GPU x the published GPU-hours",
            True,
        ),
        (
            "BLOOM-176B, average power per A100 (W)",
            400.0,
            bloom["average_power_per_npu_w"],
            "published: the TDP it assumed",
            False,
        ),
        (
            "8 x H100 node under training load (fraction of 10.2 kW)",
            H100_NODE_FRACTION,
            node,
            "hwsim: GPT-3 175B t8 p8 v3 on H100s, 8 GPUs' boards only (no CPUs, NICs, fans)",
            False,
        ),
    ]
    return pd.DataFrame(
        [
            {"check": what, "published": pub, "predicted": pred, "error": pred / pub - 1, "how": how, "goal": goal}
            for what, pub, pred, how, goal in rows
        ]
    )


def energy_report(table: pd.DataFrame, out: Path) -> str:
    """The energy table as Markdown, with the goal (the rows marked `goal`) and whether it is met."""
    table.to_csv(out / "published_energy.csv", index=False)
    shown = _percent(table, ("error",))
    worst = table[table.goal].error.abs().max()
    verdict = f"energy: worst |error| {100 * worst:.1f} % (goal {100 * ENERGY_GOAL:.0f} %: {'met' if worst <= ENERGY_GOAL else 'NOT met'})"
    text = "\n\n".join(
        [
            "Energy: BLOOM-176B (Luccioni et al. 2022: GPU-hours x the 400 W TDP) and an H100 node (Newkirk et al. 2025)",
            markdown(shown[["check", "published", "predicted", "error", "how"]]),
            verdict,
        ]
    )
    with (out / "published.md").open("a") as f:
        f.write("\n" + text + "\n")
    return text
