"""The arithmetic circuits: a systolic array for GEMMs and a vector unit for element-wise work."""

from __future__ import annotations

import math
from collections.abc import Generator
from functools import lru_cache

import simpy

from hwsim.config.schema import SystolicSpec, VectorSpec
from hwsim.hardware.unit import Unit

# Where the three GEMM dimensions go for each dataflow: (spatial rows, spatial cols, temporal).
_MAPPING = {
    "output_stationary": ("m", "n", "k"),
    "weight_stationary": ("k", "n", "m"),
    "input_stationary": ("k", "m", "n"),
}


@lru_cache(maxsize=65536)
def gemm_cycles(
    m: int, n: int, k: int, rows: int, cols: int, dataflow: str, macs_per_cycle: int = 1, edge_folds: str = "padded"
) -> int:
    """Cycles for C[m, n] = A[m, k] @ B[k, n] on a rows x cols systolic array, as SCALE-Sim 3.0 counts them.

    The dataflow maps the GEMM onto the array (Samajdar et al., "A Systematic Methodology
    for Characterizing Scalability of DNN Accelerators using SCALE-Sim", ISPASS 2020):

    | dataflow           | spatial rows S_R | spatial cols S_C | temporal T |
    |--------------------|------------------|------------------|------------|
    | output_stationary  | m                | n                | k          |
    | weight_stationary  | k                | n                | m          |
    | input_stationary   | k                | m                | n          |

    The spatial dimensions are cut into ceil(S_R / R) x ceil(S_C / C) folds (R = rows,
    C = cols), run one after the other. SCALE-Sim pads a partial fold at an edge to the
    whole array (its operand matrices get null requests for the unused rows and
    columns), so every fold costs the same (`edge_folds: padded`, the default):

    - output-stationary: R + C + T - 2 cycles. The operands stream in for T cycles,
      skewed by R - 1 rows, and the outputs drain over C - 1 more;
    - weight- and input-stationary: 2R + C + T - 2 cycles. The stationary operand
      first loads for R cycles, then the same R + C + T - 2 as above.

    The total is folds x that, with no stalls (SCALE-Sim's compute cycles when its
    SRAMs never stall: `InterfaceBandwidth: CALC`). SCALE-Sim reports the index of the
    last cycle, counted from 0: its "Total Cycles" is this count minus one
    (`tests/hardware/test_scalesim_oracle.py` checks this on a grid of arrays, GEMMs
    and dataflows with 0 cycles difference).

    `edge_folds: used` is hwsim's variant, not SCALE-Sim's: a partial fold costs only
    the r rows and c columns it uses (an array that skips idle edges), R and C above
    replaced by r and c. `macs_per_cycle` > 1 (a low precision) packs that many
    temporal steps into one cycle: T becomes ceil(T / macs_per_cycle); SCALE-Sim has
    one MAC per PE per cycle, which is macs_per_cycle = 1.
    """
    if min(m, n, k) <= 0:
        return 0
    dims = {"m": m, "n": n, "k": k}
    spatial_r, spatial_c, temporal = (dims[d] for d in _MAPPING[dataflow])
    steady = -(-temporal // macs_per_cycle)
    load = 0 if dataflow == "output_stationary" else 1  # extra R cycles to load the stationary operand
    if edge_folds == "padded":
        folds = -(-spatial_r // rows) * -(-spatial_c // cols)
        return folds * ((1 + load) * rows + cols + steady - 2)
    total = 0
    for r, r_count in _folds(spatial_r, rows):
        for c, c_count in _folds(spatial_c, cols):
            total += r_count * c_count * ((1 + load) * r + c + steady - 2)
    return total


def _folds(size: int, tile: int) -> list[tuple[int, int]]:
    """(width, count) of the full folds and the one partial fold of `size` cut into `tile`s."""
    full, rest = divmod(size, tile)
    return [(w, c) for w, c in ((tile, full), (rest, 1 if rest else 0)) if c]


class ArithmeticUnit(Unit):
    """A systolic array of rows x cols PEs; see `gemm_cycles` for its cycle model."""

    kind = "systolic"

    def __init__(self, env: simpy.Environment, name: str, spec: SystolicSpec):
        super().__init__(env, name, spec.clock)
        self.spec = spec

    def macs(self, precision: str) -> int:
        return getattr(self.spec.macs_per_cycle, precision)

    def cycles(self, m: int, n: int, k: int, precision: str) -> int:
        s = self.spec
        return gemm_cycles(m, n, k, s.rows, s.cols, s.dataflow, self.macs(precision), s.edge_folds)

    def gemm(self, m: int, n: int, k: int, precision: str, label: str, count: int = 1) -> Generator:
        """Run `count` independent GEMMs (m, n, k) back to back."""
        cycles = count * self.cycles(m, n, k, precision)
        yield from self.busy(cycles / self.clock_hz, label, 2.0 * m * n * k * count)

    def peak_flops(self, precision: str = "fp32") -> float:
        """2 FLOP per MAC x PEs x MACs per cycle x clock."""
        return 2.0 * self.spec.rows * self.spec.cols * self.macs(precision) * self.clock_hz

    @property
    def peak_per_s(self) -> float:
        return self.peak_flops("fp32")


class VectorUnit(Unit):
    """A SIMD unit: `lanes` element operations per cycle.

    An element-wise op over n elements at `ops` operations per element costs
    ceil(n * ops / lanes) cycles.
    """

    kind = "vector"

    def __init__(self, env: simpy.Environment, name: str, spec: VectorSpec):
        super().__init__(env, name, spec.clock)
        self.lanes = spec.lanes

    def cycles(self, elements: int, ops: float = 1.0) -> int:
        return math.ceil(elements * ops / self.lanes)

    def elementwise(self, elements: int, ops: float, label: str) -> Generator:
        return (yield from self.busy(self.cycles(elements, ops) / self.clock_hz, label, float(elements * ops)))

    @property
    def peak_per_s(self) -> float:
        return float(self.lanes) * self.clock_hz
