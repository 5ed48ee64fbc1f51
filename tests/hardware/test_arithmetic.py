import math

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from hwsim.config.schema import SystolicSpec, VectorSpec
from hwsim.hardware import ArithmeticUnit, VectorUnit, gemm_cycles

OS, WS, IS = "output_stationary", "weight_stationary", "input_stationary"


# Hand-computed on a 4x4 array (R = C = 4). SCALE-Sim pads every fold to the whole array:
# a fold costs R + C + T - 2 (output-stationary) or 2R + C + T - 2 (weight-, input-stationary).
@pytest.mark.parametrize(
    ("m", "n", "k", "dataflow", "macs", "expected"),
    [
        # OS: rows <- m=6 (2 folds), cols <- n=5 (2 folds), T = k = 10: 4 x (4 + 4 + 10 - 2)
        (6, 5, 10, OS, 1, 64),
        # WS: rows <- k=10 (3 folds), cols <- n=5 (2), T = m = 6: 6 x (8 + 4 + 6 - 2)
        (6, 5, 10, WS, 1, 96),
        # IS: rows <- k=10 (3 folds), cols <- m=6 (2), T = n = 5: 6 x (8 + 4 + 5 - 2)
        (6, 5, 10, IS, 1, 90),
        # one exact fold
        (4, 4, 4, OS, 1, 10),
        (4, 4, 4, WS, 1, 14),
        (4, 4, 4, IS, 1, 14),
        # four MACs per PE per cycle: T = ceil(10 / 4) = 3 -> 4 + 4 + 3 - 2
        (4, 4, 10, OS, 4, 9),
        # a single MAC still pays the whole array's fill and drain: 4 + 4 + 1 - 2
        (1, 1, 1, OS, 1, 7),
        # nothing to do
        (0, 5, 10, OS, 1, 0),
    ],
)
def test_gemm_cycles_hand_computed(m, n, k, dataflow, macs, expected):
    assert gemm_cycles(m, n, k, 4, 4, dataflow, macs) == expected


# `edge_folds: used`: a partial fold costs only the rows r and columns c it uses.
@pytest.mark.parametrize(
    ("dataflow", "expected"),
    [
        # OS folds (r, c) = (4, 4), (4, 1), (2, 4), (2, 1), T = 10: 16 + 13 + 14 + 11
        (OS, 54),
        # WS folds over k=10 (4, 4, 2) x n=5 (4, 1), T = 6: 2 x 16 + 2 x 13 + 12 + 9
        (WS, 79),
        # IS folds over k=10 (4, 4, 2) x m=6 (4, 2), T = 5: 2 x 15 + 2 x 13 + 11 + 9
        (IS, 76),
    ],
)
def test_gemm_cycles_unpadded_hand_computed(dataflow, expected):
    assert gemm_cycles(6, 5, 10, 4, 4, dataflow, 1, "used") == expected


def naive_cycles(m, n, k, rows, cols, dataflow, macs, edge_folds):
    """Walk every fold one by one."""
    spatial_r, spatial_c, temporal = {OS: (m, n, k), WS: (k, n, m), IS: (k, m, n)}[dataflow]
    total = 0
    for r0 in range(0, spatial_r, rows):
        for c0 in range(0, spatial_c, cols):
            r, c = (rows, cols) if edge_folds == "padded" else (min(rows, spatial_r - r0), min(cols, spatial_c - c0))
            total += (r if dataflow == OS else 2 * r) + c + math.ceil(temporal / macs) - 2
    return total


@given(
    st.integers(1, 300),
    st.integers(1, 300),
    st.integers(1, 300),
    st.integers(1, 64),
    st.integers(1, 64),
    st.sampled_from([OS, WS, IS]),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from(["padded", "used"]),
)
def test_gemm_cycles_equal_a_fold_by_fold_walk(m, n, k, rows, cols, dataflow, macs, edge_folds):
    expected = naive_cycles(m, n, k, rows, cols, dataflow, macs, edge_folds)
    assert gemm_cycles(m, n, k, rows, cols, dataflow, macs, edge_folds) == expected


def test_unpadded_folds_never_cost_more():
    for dataflow in (OS, WS, IS):
        assert gemm_cycles(33, 17, 50, 16, 16, dataflow, 1, "used") < gemm_cycles(33, 17, 50, 16, 16, dataflow)


def test_more_macs_per_cycle_never_costs_more():
    for macs in (1, 2, 4, 8):
        assert gemm_cycles(64, 64, 256, 16, 16, OS, macs * 2) <= gemm_cycles(64, 64, 256, 16, 16, OS, macs)


def test_gemms_queue_on_the_unit_in_request_order():
    env = simpy.Environment()
    unit = ArithmeticUnit(env, "sa", SystolicSpec(rows=4, cols=4, clock=1e9))
    log = []

    def job(name, m, n, k):
        yield from unit.gemm(m, n, k, "fp32", name)
        log.append((name, env.now))

    env.process(job("a", 6, 5, 10))  # 64 cycles
    env.process(job("b", 4, 4, 4))  # 10 cycles, waits for a
    env.run()
    assert log == [("a", pytest.approx(64e-9)), ("b", pytest.approx(74e-9))]


def test_observers_see_flops_and_interval():
    env = simpy.Environment()
    unit = ArithmeticUnit(env, "sa", SystolicSpec(rows=4, cols=4, clock=2e9))
    seen = []
    unit.observers.append(lambda u, label, start, end, work: seen.append((u.name, label, start, end, work)))
    env.process(unit.gemm(4, 4, 4, "fp32", "g", count=3))
    env.run()
    assert seen == [("sa", "g", 0.0, pytest.approx(3 * 10 / 2e9), 3 * 2 * 4 * 4 * 4)]


def test_peak_flops_and_vector_cycles():
    env = simpy.Environment()
    unit = ArithmeticUnit(env, "sa", SystolicSpec(rows=16, cols=8, clock=1e9))
    assert unit.peak_flops("fp32") == 2 * 16 * 8 * 1 * 1e9
    assert unit.peak_flops("int8") == 2 * 16 * 8 * 4 * 1e9
    vec = VectorUnit(env, "v", VectorSpec(lanes=64, clock=1e9))
    assert vec.cycles(64, 1) == 1
    assert vec.cycles(65, 1) == 2
    assert vec.cycles(100, 3) == 5
    env.process(vec.elementwise(640, 2, "x"))
    env.run()
    assert env.now == pytest.approx(20e-9)


def test_a_units_peak_is_at_the_precision_it_ran():
    """The peak a unit's work is measured against is its rate at the precision it ran; with two precisions,
    the rate at which its FLOP would take their ideal time (FLOP over the sum of FLOP / peak)."""
    env = simpy.Environment()
    unit = ArithmeticUnit(env, "a", SystolicSpec(rows=4, cols=4, clock=1e9), precision="bf16")
    assert unit.peak_per_s == unit.peak_flops("bf16") == 2 * unit.peak_flops("fp32")  # nothing run: its own
    env.process(unit.gemm(8, 8, 64, "fp32", "f"))
    env.run()
    assert unit.peak_per_s == unit.peak_flops("fp32")
    env.process(unit.gemm(8, 8, 32, "bf16", "b"))
    env.run()
    flops = {"fp32": 2 * 8 * 8 * 64, "bf16": 2 * 8 * 8 * 32}
    ideal = sum(f / unit.peak_flops(p) for p, f in flops.items())
    assert unit.peak_per_s == pytest.approx(sum(flops.values()) / ideal)
    assert sum(flops.values()) / env.now <= unit.peak_per_s  # achieved within the peak
    unit.record("timed", env.now, env.now + 1e-6, 1000.0)  # a span timed elsewhere: at the unit's precision
    assert unit.flops_at["bf16"] == flops["bf16"] + 1000.0


def test_each_gemm_and_element_wise_op_pays_its_launch():
    """A launch (a kernel launch, a framework's dispatch) adds to every call, queued calls included; the units'
    `seconds` say the same as their spans."""
    env = simpy.Environment()
    unit = ArithmeticUnit(env, "sa", SystolicSpec(rows=4, cols=4, clock=1e9, launch=1e-6))
    vec = VectorUnit(env, "v", VectorSpec(lanes=64, clock=1e9, launch=5e-7))
    ends = []

    def job():
        yield from unit.gemm(6, 5, 10, "fp32", "a")  # 64 cycles
        yield from unit.gemm(4, 4, 4, "fp32", "b", count=2)  # 20 cycles, one launch
        yield from vec.elementwise(640, 2, "x")  # 20 cycles
        ends.append(env.now)

    env.process(job())
    env.run()
    assert ends == [pytest.approx(64e-9 + 1e-6 + 20e-9 + 1e-6 + 20e-9 + 5e-7)]
    assert unit.seconds(4, 4, 4, "fp32", 2) == pytest.approx(20e-9 + 1e-6)
    assert vec.seconds(640, 2) == pytest.approx(20e-9 + 5e-7)
