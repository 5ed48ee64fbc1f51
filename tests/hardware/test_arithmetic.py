import math

import pytest
import simpy
from hypothesis import given
from hypothesis import strategies as st

from hwsim.config.schema import SystolicSpec, VectorSpec
from hwsim.hardware import ArithmeticUnit, VectorUnit, gemm_cycles

OS, WS, IS = "output_stationary", "weight_stationary", "input_stationary"


# Hand-computed on a 4x4 array. A fold using r rows and c columns costs 2r + c + T - 2.
@pytest.mark.parametrize(
    ("m", "n", "k", "dataflow", "macs", "expected"),
    [
        # OS: rows <- m=6 (folds 4, 2), cols <- n=5 (4, 1), T = k = 10
        # (8+4+10-2) + (8+1+10-2) + (4+4+10-2) + (4+1+10-2) = 20 + 17 + 16 + 13
        (6, 5, 10, OS, 1, 66),
        # WS: rows <- k=10 (4, 4, 2), cols <- n=5 (4, 1), T = m = 6
        # 2*(8+4+6-2) + 2*(8+1+6-2) + (4+4+6-2) + (4+1+6-2) = 32 + 26 + 12 + 9
        (6, 5, 10, WS, 1, 79),
        # IS: rows <- k=10 (4, 4, 2), cols <- m=6 (4, 2), T = n = 5
        # 2*(8+4+5-2) + 2*(8+2+5-2) + (4+4+5-2) + (4+2+5-2) = 30 + 26 + 11 + 9
        (6, 5, 10, IS, 1, 76),
        # one exact fold: 2*4 + 4 + 4 - 2
        (4, 4, 4, OS, 1, 14),
        (4, 4, 4, WS, 1, 14),
        (4, 4, 4, IS, 1, 14),
        # four MACs per PE per cycle: T = ceil(10 / 4) = 3 -> 8 + 4 + 3 - 2
        (4, 4, 10, OS, 4, 13),
        # a single MAC: 2 + 1 + 1 - 2
        (1, 1, 1, OS, 1, 2),
        # nothing to do
        (0, 5, 10, OS, 1, 0),
    ],
)
def test_gemm_cycles_hand_computed(m, n, k, dataflow, macs, expected):
    assert gemm_cycles(m, n, k, 4, 4, dataflow, macs) == expected


def naive_cycles(m, n, k, rows, cols, dataflow, macs):
    """Walk every fold one by one."""
    spatial_r, spatial_c, temporal = {OS: (m, n, k), WS: (k, n, m), IS: (k, m, n)}[dataflow]
    total = 0
    for r0 in range(0, spatial_r, rows):
        for c0 in range(0, spatial_c, cols):
            r = min(rows, spatial_r - r0)
            c = min(cols, spatial_c - c0)
            total += 2 * r + c + math.ceil(temporal / macs) - 2
    return total


@given(
    st.integers(1, 300),
    st.integers(1, 300),
    st.integers(1, 300),
    st.integers(1, 64),
    st.integers(1, 64),
    st.sampled_from([OS, WS, IS]),
    st.sampled_from([1, 2, 4, 8]),
)
def test_gemm_cycles_equal_a_fold_by_fold_walk(m, n, k, rows, cols, dataflow, macs):
    assert gemm_cycles(m, n, k, rows, cols, dataflow, macs) == naive_cycles(m, n, k, rows, cols, dataflow, macs)


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

    env.process(job("a", 6, 5, 10))  # 66 cycles
    env.process(job("b", 4, 4, 4))  # 14 cycles, waits for a
    env.run()
    assert log == [("a", pytest.approx(66e-9)), ("b", pytest.approx(80e-9))]


def test_observers_see_flops_and_interval():
    env = simpy.Environment()
    unit = ArithmeticUnit(env, "sa", SystolicSpec(rows=4, cols=4, clock=2e9))
    seen = []
    unit.observers.append(lambda u, label, start, end, work: seen.append((u.name, label, start, end, work)))
    env.process(unit.gemm(4, 4, 4, "fp32", "g", count=3))
    env.run()
    assert seen == [("sa", "g", 0.0, pytest.approx(3 * 14 / 2e9), 3 * 2 * 4 * 4 * 4)]


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
