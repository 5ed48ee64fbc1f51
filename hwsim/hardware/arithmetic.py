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
def gemm_cycles(m: int, n: int, k: int, rows: int, cols: int, dataflow: str, macs_per_cycle: int = 1) -> int:
    """Cycles for C[m, n] = A[m, k] @ B[k, n] on a rows x cols systolic array.

    The dataflow maps the GEMM onto the array (SCALE-Sim, Samajdar et al., ISPASS 2020):

    | dataflow           | spatial rows S_R | spatial cols S_C | temporal T |
    |--------------------|------------------|------------------|------------|
    | output_stationary  | m                | n                | k          |
    | weight_stationary  | k                | n                | m          |
    | input_stationary   | k                | m                | n          |

    The spatial dimensions are cut into folds of at most rows x cols. A fold that
    uses r rows and c columns costs

        2 r + c + ceil(T / macs_per_cycle) - 2   cycles

    (fill: the skewed operands reach the last PE after r + c - 2 cycles; steady
    state: T / macs_per_cycle; drain: r cycles to shift results or partial sums
    out). The total is the sum over all folds, partial folds at the edges included.
    `macs_per_cycle` > 1 (low precision) packs that many temporal steps per cycle.
    """
    if min(m, n, k) <= 0:
        return 0
    dims = {"m": m, "n": n, "k": k}
    spatial_r, spatial_c, temporal = (dims[d] for d in _MAPPING[dataflow])
    steady = -(-temporal // macs_per_cycle)
    total = 0
    for r, r_count in _folds(spatial_r, rows):
        for c, c_count in _folds(spatial_c, cols):
            total += r_count * c_count * (2 * r + c + steady - 2)
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
        return gemm_cycles(m, n, k, s.rows, s.cols, s.dataflow, self.macs(precision))

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
