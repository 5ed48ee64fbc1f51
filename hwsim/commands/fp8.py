"""FP8 GEMMs on an H800: published per-shape measurements and the presets' `systolic.fp8_efficiency` fitted on
them.

DeepGEMM (deepseek-ai/DeepGEMM, README at a6d97a1, 2025-02-25, its first release): "We test all shapes
potentially used in DeepSeek-V3/R1 inference (including both prefilling and decoding, but without tensor
parallelism) on H800 with NVCC 12.8. All speedup metrics are calculated in comparison to our internally and
carefully optimized implementation based on CUTLASS 3.6." DeepSeek-V3 was trained before DeepGEMM's release,
so hwsim takes the rate of that internal implementation, TFLOPS / speedup, as what its training ran (an
assumption: the paper does not name its GEMM library). The fit uses the training-sized shapes (M = 4,096 dense;
the grouped GEMMs in contiguous layout, as MoE training runs them); the decoding-sized ones (M = 64, 128) and the
masked layout are listed, not fitted. hwsim times each as the 3D system does (`megatron.costs.gemm_seconds`,
the h800_sxm preset's arrays at fp8).
"""

from __future__ import annotations

import numpy as np
import pandas as pd

from hwsim.commands import gemms
from hwsim.config.load import PROJECT_ROOT, load_scenario

DEEPGEMM_H800 = (  # (kind, groups, m per group, n, k, TFLOPS, speedup over the CUTLASS 3.6 implementation)
    ("dense", 1, 64, 2112, 7168, 206, 2.7),
    ("dense", 1, 64, 24576, 1536, 289, 1.7),
    ("dense", 1, 64, 32768, 512, 219, 1.8),
    ("dense", 1, 64, 7168, 16384, 336, 1.4),
    ("dense", 1, 64, 4096, 7168, 287, 1.4),
    ("dense", 1, 64, 7168, 2048, 295, 1.7),
    ("dense", 1, 128, 2112, 7168, 352, 2.4),
    ("dense", 1, 128, 24576, 1536, 535, 1.6),
    ("dense", 1, 128, 32768, 512, 358, 1.5),
    ("dense", 1, 128, 7168, 16384, 645, 1.4),
    ("dense", 1, 128, 4096, 7168, 533, 2.0),
    ("dense", 1, 128, 7168, 2048, 510, 1.7),
    ("dense", 1, 4096, 2112, 7168, 1058, 1.1),
    ("dense", 1, 4096, 24576, 1536, 990, 1.0),
    ("dense", 1, 4096, 32768, 512, 590, 1.0),
    ("dense", 1, 4096, 7168, 16384, 1358, 1.2),
    ("dense", 1, 4096, 4096, 7168, 1304, 1.1),
    ("dense", 1, 4096, 7168, 2048, 1025, 1.1),
    ("contiguous", 4, 8192, 4096, 7168, 1297, 1.2),
    ("contiguous", 4, 8192, 7168, 2048, 1099, 1.2),
    ("contiguous", 8, 4096, 4096, 7168, 1288, 1.2),
    ("contiguous", 8, 4096, 7168, 2048, 1093, 1.1),
    ("masked", 1, 1024, 4096, 7168, 1233, 1.2),
    ("masked", 1, 1024, 7168, 2048, 925, 1.2),
    ("masked", 2, 512, 4096, 7168, 1040, 1.2),
    ("masked", 2, 512, 7168, 2048, 916, 1.2),
    ("masked", 4, 256, 4096, 7168, 932, 1.1),
    ("masked", 4, 256, 7168, 2048, 815, 1.2),
)
"""DeepGEMM's README at a6d97a1: "Normal GEMMs for dense models", "Grouped GEMMs for MoE models (contiguous
layout)" and "(masked layout)", every row."""


def measurements() -> pd.DataFrame:
    table = pd.DataFrame(DEEPGEMM_H800, columns=["kind", "groups", "m", "n", "k", "deepgemm_tflops", "speedup"])
    table["tflops"] = table.deepgemm_tflops / table.speedup  # the CUTLASS 3.6 implementation's
    table["use"] = np.where((table.kind == "contiguous") | ((table.kind == "dense") & (table.m == 4096)), "fit", "check")
    return table


def predicted_tflops(table: pd.DataFrame, fp8_efficiency: float) -> np.ndarray:
    """hwsim's fp8 rate on each shape of `table` on the h800_sxm preset, at `fp8_efficiency` of its arrays' rate."""
    hardware = load_scenario(PROJECT_ROOT / "scenarios" / "deepseek_v3_2048.yaml").hardware
    return gemms.predicted_tflops(table, hardware, fp8_efficiency, "fp8", "groups")


def fit_fp8_efficiency() -> float:
    """The efficiency at which the median, over the fit rows, of the measured rate over hwsim's is 1."""
    table = measurements()
    fit = table[table.use == "fit"]
    low, high = 0.3, 1.0
    for _ in range(30):
        mid = (low + high) / 2
        if np.median(fit.tflops.to_numpy() / predicted_tflops(fit, mid)) > 1:
            low = mid
        else:
            high = mid
    return (low + high) / 2


def fp8_gemms() -> pd.DataFrame:
    """Per measured shape: the published (CUTLASS 3.6) and hwsim's fp8 rate at the preset's fp8_efficiency, and the
    error of hwsim's time."""
    table = measurements()
    hardware = load_scenario(PROJECT_ROOT / "scenarios" / "deepseek_v3_2048.yaml").hardware
    predicted = predicted_tflops(table, hardware.systolic.fp8_efficiency)
    return table.assign(predicted_tflops=predicted, error=table.tflops.to_numpy() / predicted - 1)
