"""hwsim's GEMMs against published per-shape measurements on an A100: the fit of a framework profile's
`gemm_efficiency` and the per-GEMM section of `hwsim validate published`.

The measurements (`data/cookbook_a100_gemms.csv`) are EleutherAI's cookbook runs, torch 1.13.1, fp16
(the file's header says which runs and how each was timed). hwsim times each shape as the 3D system does
(`megatron.costs.gemm_seconds` on the `a100_80gb` preset: tiles in waves, each wave's prologue and
epilogue exposed), its arrays' rate scaled by the framework's `gemm_efficiency`. The fit set ('fit': the
mean-timed mm sweeps) gives that efficiency; the rest ('check': batched and Megatron-shaped GEMMs, timed by
their slowest iteration, which favours a slower time) is the check.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import pandas as pd

from hwsim.config.load import PROJECT_ROOT, load_scenario
from hwsim.systems.megatron.costs import gemm_seconds
from hwsim.workloads.ops import Gemm

DATA = Path(__file__).parent / "data" / "cookbook_a100_gemms.csv"


def measurements() -> pd.DataFrame:
    return pd.read_csv(DATA, comment="#", keep_default_na=False)


def _hardware(framework: str):
    scenario = load_scenario(PROJECT_ROOT / "scenarios" / "megatron_gpt3_175b.yaml", [f"system.framework={framework}"])
    return scenario.hardware, scenario.system.framework


def predicted_tflops(
    data: pd.DataFrame, hardware, gemm_efficiency: float, precision: str = "fp16", count: str = "batch"
) -> np.ndarray:
    """hwsim's rate at `precision` on each shape (m, n, k and the `count` column) of `data` (TFLOP/s), its arrays
    at `gemm_efficiency` of the preset's."""
    array = dataclasses.replace(hardware.systolic, efficiency=hardware.systolic.efficiency * gemm_efficiency)
    bank = hardware.memory["hbm"]
    out = []
    for r in data.itertuples():
        g = Gemm(int(r.m), int(r.n), int(r.k), int(getattr(r, count)))
        out.append(g.flops / gemm_seconds(array, bank, g, precision) / 1e12)
    return np.asarray(out)


def fit_gemm_efficiency() -> float:
    """The efficiency at which the median, over the fit set, of the measured rate over hwsim's is 1 (by
    bisection: the efficiency scales the arrays' cycles, not the exposed prologue and epilogue)."""
    data = measurements()
    fit = data[data.use == "fit"]
    hardware, _ = _hardware("megatron-2022")
    low, high = 0.5, 1.0
    for _ in range(30):
        mid = (low + high) / 2
        if np.median(fit.tflops.to_numpy() / predicted_tflops(fit, hardware, mid)) > 1:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def gemms(framework: str = "megatron-2022") -> pd.DataFrame:
    """Per measured shape: the published and hwsim's rate (with `framework`'s gemm_efficiency) and the error
    of hwsim's time."""
    data = measurements()
    hardware, fw = _hardware(framework)
    predicted = predicted_tflops(data, hardware, fw.gemm_efficiency)
    return data.assign(predicted_tflops=predicted, error=data.tflops.to_numpy() / predicted - 1)


def summary(table: pd.DataFrame) -> pd.DataFrame:
    """Per set and kind of GEMM: rows, median rates, mean and worst |error|, mean error."""
    return (
        table.assign(abs_error=table.error.abs())
        .groupby(["use", "kind"], sort=False)
        .agg(
            shapes=("error", "size"),
            published_tflops=("tflops", "median"),
            predicted_tflops=("predicted_tflops", "median"),
            mean_abs_error=("abs_error", "mean"),
            worst=("abs_error", "max"),
            mean_error=("error", "mean"),
        )
        .reset_index()
    )
