"""SCALE-Sim 3.0 (`scalesim==3.0.0`, the test extra) is the oracle of the systolic cycle model.

SCALE-Sim runs here as a user runs it: a config file, a GEMM topology file (one layer
per GEMM), `scalesim.scale_sim.scalesim(...).run_scale()`, and the "Total Cycles"
column of its COMPUTE_REPORT.csv. With `InterfaceBandwidth: CALC` SCALE-Sim sizes the
DRAM bandwidth so nothing stalls (every row confirms it: 0 stall cycles), so the report
counts compute cycles only; 64 kB SRAMs keep its prefetch model quick. SCALE-Sim reports the index of the last cycle,
counted from 0; hwsim counts cycles, so hwsim = SCALE-Sim + 1, with 0 cycles
difference on every point.

The grid: square, non-square and large arrays (8x8 to 128x128), GEMMs that are square,
skinny, deep, ragged against every array size, and smaller than the array, under each
of the three dataflows. SCALE-Sim's time grows with the cycles it
simulates (`save_disk_space=True`: no traces written); the 108 points take about 10 s.
"""

from __future__ import annotations

import builtins
import contextlib
import csv
import io

import numpy as np
import pytest
import scalesim.memory.double_buffered_scratchpad_mem as scalesim_memory
from scalesim.scale_sim import scalesim

from hwsim.hardware import gemm_cycles

ARRAYS = [(8, 8), (16, 8), (8, 32), (32, 32), (64, 128), (128, 128)]
GEMMS = [  # (m, n, k)
    (64, 64, 64),  # square
    (300, 7, 48),  # skinny: many rows, few columns
    (16, 16, 500),  # deep reduction
    (33, 65, 17),  # ragged against every array
    (130, 70, 20),  # ragged, more than one fold on the large arrays
    (1, 1, 1),  # smaller than any array
]
DATAFLOWS = {"os": "output_stationary", "ws": "weight_stationary", "is": "input_stationary"}

CONFIG = """[general]
run_name = oracle

[architecture_presets]
ArrayHeight: {rows}
ArrayWidth: {cols}
IfmapSramSzkB: 64
FilterSramSzkB: 64
OfmapSramSzkB: 64
IfmapOffset: 0
FilterOffset: 10000000
OfmapOffset: 20000000
Dataflow: {dataflow}
Bandwidth: 10
ReadRequestBuffer: 32
WriteRequestBuffer: 32

[layout]
IfmapCustomLayout: False
IfmapSRAMBankBandwidth: 10
IfmapSRAMBankNum: 10
IfmapSRAMBankPort: 2
FilterCustomLayout: False
FilterSRAMBankBandwidth: 10
FilterSRAMBankNum: 10
FilterSRAMBankPort: 2

[sparsity]
SparsitySupport: false
SparseRep: ellpack_block
OptimizedMapping: false
BlockSize: 8
RandomNumberGeneratorSeed: 40

[run_presets]
InterfaceBandwidth: CALC
UseRamulatorTrace: False
"""


def _max_as_numpy_before_2_4(*args, **kwargs):
    """SCALE-Sim 3.0.0 calls int() on max() of a list of one-element arrays, which NumPy 2.4 refuses
    (the deprecation of converting an array with ndim > 0 to a scalar expired). This max()
    returns the element itself, which is what int() received from NumPy before 2.4; the
    values are unchanged."""
    found = builtins.max(*args, **kwargs)
    return found.item() if isinstance(found, np.ndarray) and found.size == 1 else found


@pytest.fixture(autouse=True)
def _scalesim_on_this_numpy(monkeypatch):
    monkeypatch.setattr(scalesim_memory, "max", _max_as_numpy_before_2_4, raising=False)


def scalesim_report(tmp_path, rows: int, cols: int, dataflow: str) -> list[dict]:
    """Run SCALE-Sim on every GEMM of the grid (one layer each); its COMPUTE_REPORT rows."""
    config, topology = tmp_path / f"{rows}x{cols}_{dataflow}.cfg", tmp_path / f"gemms_{rows}x{cols}_{dataflow}.csv"
    config.write_text(CONFIG.format(rows=rows, cols=cols, dataflow=dataflow))
    topology.write_text("Layer, M, N, K,\n" + "".join(f"g{i}, {m}, {n}, {k},\n" for i, (m, n, k) in enumerate(GEMMS)))
    sim = scalesim(
        save_disk_space=True,
        verbose=False,
        config=str(config),
        topology=str(topology),
        layout=str(topology),
        input_type_gemm=True,
    )
    out = tmp_path / f"out_{rows}x{cols}_{dataflow}"
    with contextlib.redirect_stdout(io.StringIO()):
        sim.run_scale(top_path=str(out))
    with open(out / "oracle" / "COMPUTE_REPORT.csv") as f:
        return [{k.strip(): v.strip() for k, v in row.items() if k and k.strip()} for row in csv.DictReader(f)]


@pytest.mark.parametrize("dataflow", list(DATAFLOWS))
def test_cycles_equal_scalesim_on_a_grid(tmp_path, dataflow):
    differences = []
    for rows, cols in ARRAYS:
        report = scalesim_report(tmp_path, rows, cols, dataflow)
        assert len(report) == len(GEMMS)
        for (m, n, k), row in zip(GEMMS, report, strict=True):
            assert int(row["Stall Cycles"]) == 0, "the oracle's SRAMs must never stall"
            last_cycle = int(row["Total Cycles"])
            ours = gemm_cycles(m, n, k, rows, cols, DATAFLOWS[dataflow])
            differences.append(((rows, cols, m, n, k), ours - (last_cycle + 1)))
    assert [d for d in differences if d[1] != 0] == [], "cycles differ from SCALE-Sim's (hwsim - (SCALE-Sim + 1))"
