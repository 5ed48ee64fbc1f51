"""hwsim's collectives against published nccl-tests runs: the measured tables, the fit that turns one of them
into a preset's `efficiency_by_size`, and the per-collective section of `hwsim validate published`.

Each table is an `all_reduce_perf` run as published (bus bandwidth per buffer size, GB = 1e9 bytes; the
time is size x 2 (n - 1) / n / busbw). hwsim plays the same all-reduce with the 3D system's collective
model (`megatron.costs.CollectiveTimer`: ring channels on the preset's fabric at its size curve) and
compares times. Which table a preset's curve was fitted on is marked: it matches by construction, and the
other tables are the check.
"""

from __future__ import annotations

from dataclasses import dataclass

import pandas as pd

from hwsim.config.load import PROJECT_ROOT, load_scenario
from hwsim.network.cluster import build_topology, size_curves
from hwsim.systems.megatron.costs import CollectiveTimer

MIB = 2**20


@dataclass(frozen=True)
class NcclTable:
    """One published all_reduce_perf run: sizes (bytes) and bus bandwidths (GB/s)."""

    name: str
    source: str
    preset: str  # the hwsim hardware preset it stands for
    gpus: int
    sizes: tuple[int, ...]
    busbw: tuple[float, ...]
    fitted: bool = False  # the preset's curve was fitted on it

    def seconds(self) -> list[float]:
        share = 2 * (self.gpus - 1) / self.gpus
        return [size * share / (bw * 1e9) for size, bw in zip(self.sizes, self.busbw, strict=True)]


def _powers(first_mib: float, count: int) -> tuple[int, ...]:
    return tuple(int(first_mib * MIB) * 2**i for i in range(count))


AZURE_ND_A100_V4 = NcclTable(
    "8 x A100-SXM4-80GB, NVSwitch (Azure ND A100 v4)",
    "Azure/AI-benchmarking-guide, Azure_Results/ND_A100_v4_results.md (2024-09-25; NCCL 2.18.5, in-place)",
    "a100_80gb",
    8,
    _powers(1, 14),
    (36.22, 53.54, 71.43, 89.99, 109.22, 132.77, 166.63, 174.18, 213.87, 221.58, 228.10, 230.22, 230.48, 231.58),
    fitted=True,
)
ML_ENGINEERING_A100 = NcclTable(
    "8 x A100, one node (ml-engineering)",
    "stas00/ml-engineering, network/README.md (all_reduce_perf -b 32k -e 16G -f 2 -g 8 -n 50)",
    "a100_80gb",
    8,
    _powers(1, 15),
    (18.00, 36.18, 72.33, 109.93, 106.16, 138.49, 171.54, 176.92, 194.07, 222.72, 229.04, 231.41, 233.88, 234.61, 234.89),
)
GALVATRON_A100 = NcclTable(
    "8 x A100-SXM4-40GB, DGX layout (Galvatron)",
    "AFDWang/Hetu-Galvatron, tests/profiler/test_hardware_profile.py (commit 6f77a6cb, out-of-place)",
    "a100_80gb",
    8,
    _powers(1, 11),
    (23.29, 33.73, 55.97, 80.04, 99.99, 141.27, 178.69, 186.91, 200.85, 202.00, 230.84),
)
DGX_A100_TWO_NODES = NcclTable(
    "2 x DGX A100, 8 x HDR 200 Gb/s per node (NVIDIA's figure)",
    "NVIDIA/nccl issue 812, NVIDIA's comment of 2023-03-31: '8x200Gbit/s IB cards and we measure 192GB/s "
    "AllReduce BusBW' (size not given: taken as 8 GiB, the end of nccl-tests' usual sweep)",
    "a100_80gb",
    16,
    (8 * 2**30,),
    (192.0,),
)
GCP_A3_MEGA = NcclTable(
    "2 x 8 H100, GCP A3 Mega (GPUDirect-TCPXO)",
    "lessizzmore/create-a3mega-ztan-fork, ztan-NCCL-test-result (out-of-place)",
    "h100_sxm",
    16,
    _powers(1, 14),
    (9.68, 15.48, 21.57, 27.50, 32.18, 59.36, 99.74, 152.32, 213.19, 263.69, 297.86, 318.40, 330.58, 338.82),
)
AWS_P5 = NcclTable(
    "2 x 8 H100, AWS p5 (EFA, 3,200 Gb/s per node)",
    "aws-samples/awsome-distributed-training, micro-benchmarks/nccl-tests/README.md (commit fce0a9cd, out-of-place)",
    "h100_sxm",
    16,
    _powers(1, 14),
    (15.95, 26.70, 46.64, 76.80, 105.52, 143.09, 209.19, 289.16, 342.81, 393.34, 436.95, 443.72, 465.87, 479.28),
)
TABLES = (AZURE_ND_A100_V4, ML_ENGINEERING_A100, GALVATRON_A100, DGX_A100_TWO_NODES, GCP_A3_MEGA, AWS_P5)


def _timer(preset: str, gpus: int, overrides: tuple[str, ...] = ()) -> CollectiveTimer:
    """The 3D system's collective model on a preset's fabric of `gpus` NPUs."""
    scenario = load_scenario(PROJECT_ROOT / "scenarios" / "megatron_gpt3_175b.yaml", [f"hardware={preset}", *overrides])
    hardware = scenario.hardware
    return CollectiveTimer(build_topology(hardware, gpus), hardware.network.model, hardware.nic.overhead, size_curves(hardware))


def fit_efficiency(table: NcclTable, overrides: tuple[str, ...] = ()) -> dict[int, float]:
    """Per size of `table`, the efficiency at which hwsim's all-reduce over its GPUs (all in the fabric's first
    dimension) takes the measured time: (time at line rate - latency floor) / (measured - floor). `overrides`
    set the preset's first dimension (e.g. its efficiency to 1 and no curve)."""
    timer = _timer(table.preset, table.gpus, overrides)
    group = tuple(range(table.gpus))
    floor = timer.seconds("all_reduce", group, 8)
    out = {}
    for size, measured in zip(table.sizes, table.seconds(), strict=True):
        out[size] = (timer.seconds("all_reduce", group, size) - floor) / (measured - floor)
    return out


def collectives() -> pd.DataFrame:
    """Per table and size: the measured and hwsim's all-reduce time and bus bandwidth, and the error."""
    rows = []
    for table in TABLES:
        timer = _timer(table.preset, table.gpus)
        group = tuple(range(table.gpus))
        share = 2 * (table.gpus - 1) / table.gpus
        for size, measured, busbw in zip(table.sizes, table.seconds(), table.busbw, strict=True):
            predicted = timer.seconds("all_reduce", group, size)
            rows.append(
                {
                    "run": table.name,
                    "preset": table.preset,
                    "gpus": table.gpus,
                    "fitted": table.fitted,
                    "size_mib": size / MIB,
                    "published_busbw_gbs": busbw,
                    "predicted_busbw_gbs": size * share / predicted / 1e9,
                    "published_us": measured * 1e6,
                    "predicted_us": predicted * 1e6,
                    "error": predicted / measured - 1,
                }
            )
    return pd.DataFrame(rows)
