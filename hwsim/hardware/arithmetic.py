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


@lru_cache(maxsize=65536)
def tiled_gemm_cycles(
    m: int,
    n: int,
    k: int,
    count: int,
    rows: int,
    cols: int,
    macs_per_cycle: int,
    arrays: int,
    per_tile: int,
    tile: tuple[int, int],
) -> int:
    """Cycles for `count` GEMMs C[m, n] = A[m, k] @ B[k, n] on `arrays` small systolic arrays working in groups
    of `per_tile` (a GPU: tensor cores, four per SM).

    The outputs are cut into tile[0] x tile[1] tiles (a CUTLASS threadblock tile); a group
    computes one tile at a time, its per_tile arrays each taking tile[1] / per_tile of the
    tile's columns (a warp's share), so every array runs an output-stationary GEMM
    (tile[0], tile[1] / per_tile, k) by `gemm_cycles`' fold model. The tiles go to the
    arrays // per_tile groups in waves, and every wave costs a whole tile, so a last
    partial wave and the tiles padded at the matrix's edges cost what full ones do (the
    wave quantization of a GPU's GEMM). One array per group and one tile as big as the
    array is `gemm_cycles` itself.
    """
    if min(m, n, k, count) <= 0:
        return 0
    waves = _waves(m, n, count, arrays, per_tile, tile)
    return waves * gemm_cycles(tile[0], -(-tile[1] // per_tile), k, rows, cols, "output_stationary", macs_per_cycle)


def _waves(m: int, n: int, count: int, arrays: int, per_tile: int, tile: tuple[int, int]) -> int:
    """ceil(output tiles / groups of per_tile arrays)."""
    tiles = count * -(-m // tile[0]) * -(-n // tile[1])
    return -(-tiles // max(arrays // per_tile, 1))


def tile_waves(spec: SystolicSpec, m: int, n: int, count: int = 1) -> int:
    """The waves of output tiles `count` GEMMs with (m, n) outputs take on the arrays `spec` describes (one
    array: each GEMM is one wave)."""
    return count if spec.arrays == 1 else _waves(m, n, count, spec.arrays, spec.per_tile, tuple(spec.tile))


def tile_traffic(spec: SystolicSpec, element_bytes: float) -> tuple[float, float]:
    """(L2, L1) bytes per FLOP a GEMM moves inside the chip on the arrays `spec` describes, from the tile model
    of `tiled_gemm_cycles`: for each step of k, a tile[0] x tile[1] output tile reads its tile[0] + tile[1]
    operands from L2 into shared memory (written once into L1), and each of its per_tile arrays reads its
    tile[0] rows and its tile[1] / per_tile columns from there; the step is 2 x tile[0] x tile[1] FLOPs. One
    array: (0, 0), its operands come from its banks."""
    if spec.arrays == 1:
        return 0.0, 0.0
    rows, cols = spec.tile
    flops = 2 * rows * cols
    l2 = (rows + cols) * element_bytes / flops
    l1 = ((rows + cols) + spec.per_tile * rows + cols) * element_bytes / flops
    return l2, l1


def array_cycles(spec: SystolicSpec, m: int, n: int, k: int, precision: str, count: int = 1) -> int:
    """Cycles of `count` GEMMs (m, n, k) on the arrays `spec` describes: back to back on one array
    (`gemm_cycles`), or in waves of tiles on many (`tiled_gemm_cycles`); with an `efficiency` below 1 the
    arrays issue on that fraction of their cycles, so the count grows by its inverse."""
    macs = getattr(spec.macs_per_cycle, precision)
    if spec.arrays > 1:
        cycles = tiled_gemm_cycles(m, n, k, count, spec.rows, spec.cols, macs, spec.arrays, spec.per_tile, tuple(spec.tile))
    else:
        cycles = count * gemm_cycles(m, n, k, spec.rows, spec.cols, spec.dataflow, macs, spec.edge_folds)
    return cycles if spec.efficiency == 1 else math.ceil(cycles / spec.efficiency)


def _folds(size: int, tile: int) -> list[tuple[int, int]]:
    """(width, count) of the full folds and the one partial fold of `size` cut into `tile`s."""
    full, rest = divmod(size, tile)
    return [(w, c) for w, c in ((tile, full), (rest, 1 if rest else 0)) if c]


class ArithmeticUnit(Unit):
    """A systolic array of rows x cols PEs; see `gemm_cycles` for its cycle model."""

    kind = "systolic"

    def __init__(self, env: simpy.Environment, name: str, spec: SystolicSpec, precision: str = "fp32"):
        super().__init__(env, name, spec.clock)
        self.spec = spec
        self.precision = precision
        """The precision of FLOP recorded without one (`busy`, `record`): the system's compute precision."""
        self.flops_at: dict[str, float] = {}
        """FLOP done so far at each precision (the unit's peak is taken at the precisions it ran)."""

    def macs(self, precision: str) -> int:
        return getattr(self.spec.macs_per_cycle, precision)

    def cycles(self, m: int, n: int, k: int, precision: str, count: int = 1) -> int:
        return array_cycles(self.spec, m, n, k, precision, count)

    def seconds(self, m: int, n: int, k: int, precision: str, count: int = 1) -> float:
        """The time of one call of `count` GEMMs (m, n, k): their cycles and the launch."""
        return self.cycles(m, n, k, precision, count) / self.clock_hz + self.spec.launch

    def gemm(self, m: int, n: int, k: int, precision: str, label: str, count: int = 1) -> Generator:
        """Run `count` independent GEMMs (m, n, k)."""
        seconds = self.seconds(m, n, k, precision, count)
        with self._resource.request() as request:
            yield request
            start = self.env.now
            yield self.env.timeout(seconds)
        self.record(label, start, self.env.now, 2.0 * m * n * k * count, precision)

    def record(self, label: str, start: float, end: float, work: float = 0.0, precision: str | None = None) -> None:
        """A busy span that did `work` FLOP at `precision` (default: the unit's `precision`)."""
        if work:
            at = precision or self.precision
            self.flops_at[at] = self.flops_at.get(at, 0.0) + work
        super().record(label, start, end, work)

    def peak_flops(self, precision: str = "fp32", clock: float | None = None) -> float:
        """2 FLOP per MAC x PEs x arrays x MACs per cycle x clock (default: the array's clock)."""
        s = self.spec
        return 2.0 * s.rows * s.cols * s.arrays * self.macs(precision) * (clock or self.clock_hz)

    @property
    def peak_per_s(self) -> float:
        """Peak FLOP/s at the precision the unit ran; if it ran several, the rate at which its FLOP would
        take their ideal time (sum of FLOP / sum of FLOP / peak at each precision)."""
        if len(self.flops_at) <= 1:
            return self.peak_flops(next(iter(self.flops_at), self.precision))
        ideal_s = sum(flops / self.peak_flops(p) for p, flops in self.flops_at.items())
        return sum(self.flops_at.values()) / ideal_s


class VectorUnit(Unit):
    """A SIMD unit: `lanes` element operations per cycle.

    An element-wise op over n elements at `ops` operations per element costs
    ceil(n * ops / lanes) cycles, and `launch` seconds more.
    """

    kind = "vector"

    def __init__(self, env: simpy.Environment, name: str, spec: VectorSpec):
        super().__init__(env, name, spec.clock)
        self.lanes, self.launch = spec.lanes, spec.launch

    def cycles(self, elements: int, ops: float = 1.0) -> int:
        return math.ceil(elements * ops / self.lanes)

    def seconds(self, elements: int, ops: float = 1.0) -> float:
        """The time of one element-wise op: its cycles and the launch."""
        return self.cycles(elements, ops) / self.clock_hz + self.launch

    def elementwise(self, elements: int, ops: float, label: str) -> Generator:
        return (yield from self.busy(self.seconds(elements, ops), label, float(elements * ops)))

    @property
    def peak_per_s(self) -> float:
        return float(self.lanes) * self.clock_hz
