"""`hwsim bench` rows for Megatron 3D runs: the wall time of each `validate published` row, of a 1T
model on 3,072 GPUs, of GPT-3 175B on 1,024 GPUs with each pipeline schedule of the library and with a
straggler (the simulation alone, no report), of Llama 3 405B on 16,384 GPUs and DeepSeek-V3 on 2,048, of the 52B layout sweep (`sweep_megatron_52b`: its points on a pool of
two processes, as `hwsim sweep` runs them, the table and plots included), and of `hwsim validate
published` whole (every table, as a user runs it)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from hwsim.build import simulate
from hwsim.commands.published import BASE, KORTHIKANTI_2022
from hwsim.config.load import PROJECT_ROOT, load_scenario
from hwsim.policies import SCHEDULES

SCHEDULE_RUN = ["system.batch=1536", "system.parallel.data=16", "system.optimizer=distributed", "report.trace=false"]
"""GPT-3 175B on 1,024 A100s: t8 p8 d16, the global batch of `sweep_megatron_175b` (96 micro-batches of 1 per replica)."""


def megatron_rows(quick: bool = False) -> list[dict]:
    runs = [
        (
            f"megatron {row.model} t{row.tensor} p{row.pipeline} v{row.virtual}, {recompute}",
            BASE,
            row.overrides(recompute, sequence),
        )
        for row in KORTHIKANTI_2022[: 1 if quick else None]
        for recompute, sequence in (("full", False), ("selective", True))
    ]
    if not quick:
        runs.append(
            ("megatron 1T on 3,072 GPUs (t8 p64 d6, symmetric)", PROJECT_ROOT / "scenarios" / "megatron_1t_3072.yaml", [])
        )
    gpt3 = PROJECT_ROOT / "scenarios" / "megatron_gpt3_175b.yaml"
    for name, kind in SCHEDULES.items() if not quick else ():
        v = 2 if kind.placement in ("looping", "vshape", "dual") else 1
        runs.append(
            (
                f"megatron 175B on 1,024 GPUs (t8 p8 d16 v{v}), schedule {name}",
                gpt3,
                [*SCHEDULE_RUN, f"system.schedule={name}", f"system.parallel.virtual={v}"],
            )
        )
    runs.append(
        (
            "megatron 175B on 1,024 GPUs (t8 p8 d16 v3) with one GPU 20 % slower (and its healthy twin; goal 10 s)",
            gpt3,
            ["system.batch=1024", "system.parallel.data=16", "report.trace=false", "system.straggler={npu: 300, slowdown: 1.2}"],
        )
    )
    if not quick:
        big = ["report.trace=false", "hardware.memory.hbm.capacity=1 TiB"]
        runs += [
            (
                "megatron 175B on 8,192 GPUs (t8 p16 d64) with a fill job (GPT-2 small inference)",
                PROJECT_ROOT / "scenarios" / "megatron_175b_fill.yaml",
                ["report.trace=false"],
            ),
            (
                "Llama 3 405B on 16,384 H100s (t8 p16 v8 d128, 8K; goal 10 s)",
                PROJECT_ROOT / "scenarios" / "llama3_405b_16k.yaml",
                big,
            ),
            (
                "Llama 3 405B on 16,384 H100s (t8 p16 v8 c16 d8, 128K)",
                PROJECT_ROOT / "scenarios" / "llama3_405b_16k.yaml",
                [*big, "model.seq_len=131072", "system.parallel.context=16", "system.parallel.data=8", "system.batch=128"],
            ),
            (
                "DeepSeek-V3 on 2,048 H800s (p16 e64 d128, DualPipe, fp8; goal 10 s)",
                PROJECT_ROOT / "scenarios" / "deepseek_v3_2048.yaml",
                big,
            ),
        ]
    rows = []
    for name, path, overrides in runs:
        outcome = simulate(load_scenario(path, overrides))
        ops = len(outcome.trace.ops)
        rows.append(
            {
                "benchmark": name,
                "ops": ops,
                "wall_s": outcome.wall_time_s,
                "ops_per_wall_s": ops / outcome.wall_time_s,
                "ratio": float("nan"),
                "note": f"simulation only ({outcome.status}); simulated step {outcome.sim_time_s:.4g} s",
            }
        )
    return rows


def sweep_row() -> dict:
    """`sweep_megatron_52b` run whole into a scratch folder on two local processes."""
    from hwsim.commands import sweep as engine
    from hwsim.config.sweep import sweep_from

    sweep = sweep_from(str(PROJECT_ROOT / "scenarios" / "sweep_megatron_52b.yaml"), [], [], [], None, None)
    start = time.perf_counter()
    planned, resolved, units = engine.plan(sweep)
    executor = engine.local_executor(2)
    with tempfile.TemporaryDirectory() as folder:
        try:
            done = engine.run_sweep(sweep, planned, resolved, Path(folder), executor, in_flight=4)
        finally:
            engine.shutdown(executor)
        engine.write_report(Path(folder), sweep, planned, units, done.table, {})
    wall = time.perf_counter() - start
    counts = ", ".join(f"{n} {s}" for s, n in done.table.status.value_counts().items())
    return {
        "benchmark": f"sweep: 52B layouts on 64 GPUs ({len(planned)} points, 2 processes)",
        "ops": len(planned),
        "wall_s": wall,
        "ops_per_wall_s": len(planned) / wall,
        "ratio": float("nan"),
        "note": f"points per wall second; {done.ran} runs: {counts} (goal: >= 200 points in <= 300 s)",
    }


def published_row() -> dict:
    """`hwsim validate published` run whole in a fresh process, every table (goal: at most 60 s on 2 cores)."""
    import subprocess
    import sys

    with tempfile.TemporaryDirectory() as folder:
        start = time.perf_counter()
        done = subprocess.run(
            [sys.executable, "-m", "hwsim.cli", "validate", "published", "--progress", "off"],
            cwd=folder,
            capture_output=True,
            text=True,
            check=False,
        )
        wall = time.perf_counter() - start
    tables = done.stdout.count("\n| ---") + done.stdout.count("\n|---")
    return {
        "benchmark": "hwsim validate published (every table, a fresh process)",
        "ops": tables,
        "wall_s": wall,
        "ops_per_wall_s": tables / wall,
        "ratio": float("nan"),
        "note": f"tables per wall second; exit {done.returncode} (1: a goal missed); goal: at most 60 s",
    }
