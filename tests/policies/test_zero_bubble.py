"""Split-backward schedules (ZB-H1, ZB-H2): known orders, the paper's bubbles and memory, errors."""

import pytest

from hwsim.policies import SCHEDULES, ScheduleError, Shape, bubbles, build_schedule, execute, makespan, peak_activations


def _orders(name: str, shape: Shape) -> list[str]:
    return [" ".join(f"{op.kind}{op.mb}" for op in ops) for ops in build_schedule(name, shape)]


def test_zb_h1_order_for_four_devices_and_eight_micro_batches():
    """Qi et al., "Zero Bubble Pipeline Parallelism", ICLR 2024, Figure 3 (top, ZB-H1): 1F1B's
    warm-up and steady state; device d runs the W of micro-batch j right after its B of j + d, so the
    last device's W's trail into the cool-down where 1F1B idles."""
    assert _orders("zb_h1", Shape(4, 1, 8)) == [
        "F0 F1 F2 F3 B0 W0 F4 B1 W1 F5 B2 W2 F6 B3 W3 F7 B4 W4 B5 W5 B6 W6 B7 W7",
        "F0 F1 F2 B0 F3 B1 W0 F4 B2 W1 F5 B3 W2 F6 B4 W3 F7 B5 W4 B6 W5 B7 W6 W7",
        "F0 F1 B0 F2 B1 F3 B2 W0 F4 B3 W1 F5 B4 W2 F6 B5 W3 F7 B6 W4 B7 W5 W6 W7",
        "F0 B0 F1 B1 F2 B2 F3 B3 W0 F4 B4 W1 F5 B5 W2 F6 B6 W3 F7 B7 W4 W5 W6 W7",
    ]


def test_zb_h2_order_for_four_devices_and_eight_micro_batches():
    """The same paper, Figure 3 (bottom, ZB-H2): 2(p - d) - 1 warm-up forwards, then after each B
    the next F while any remain, else the oldest W."""
    assert _orders("zb_h2", Shape(4, 1, 8)) == [
        "F0 F1 F2 F3 F4 F5 F6 B0 F7 B1 W0 B2 W1 B3 W2 B4 W3 B5 W4 B6 W5 B7 W6 W7",
        "F0 F1 F2 F3 F4 B0 F5 B1 F6 B2 F7 B3 W0 B4 W1 B5 W2 B6 W3 B7 W4 W5 W6 W7",
        "F0 F1 F2 B0 F3 B1 F4 B2 F5 B3 F6 B4 F7 B5 W0 B6 W1 B7 W2 W3 W4 W5 W6 W7",
        "F0 B0 F1 B1 F2 B2 F3 B3 F4 B4 F5 B5 F6 B6 F7 B7 W0 W1 W2 W3 W4 W5 W6 W7",
    ]


@pytest.mark.parametrize(("p", "m"), [(2, 4), (4, 8), (4, 13), (8, 16), (8, 32)])
@pytest.mark.parametrize(("tf", "tb", "tw"), [(1.0, 1.0, 1.0), (1.0, 1.5, 0.5), (2.0, 1.0, 1.0), (1.0, 2.0, 0.25)])
def test_the_papers_bubbles_against_1f1b(p, m, tf, tb, tw):
    """Section 3.1: 1F1B's bubble (p - 1)(t_F + t_B + t_W) (B and W fused), ZB-H1's (p - 1)(t_F + t_B - t_W)
    at 1F1B's activation memory, ZB-H2's (p - 1)(t_F + t_B - 2 t_W) at up to 2p - 1 micro-batches
    (all with t_W <= t_F, as the paper assumes); measured by playing the schedules."""
    shape = Shape(p, 1, m)
    plain = execute(shape, build_schedule("1f1b", shape), lambda s: tf, lambda s: tb + tw)
    h1 = execute(shape, build_schedule("zb_h1", shape), lambda s: tf, lambda s: tb, weight=lambda s: tw)
    assert max(bubbles(plain, p)) == pytest.approx((p - 1) * (tf + tb + tw))
    assert max(bubbles(h1, p)) == pytest.approx((p - 1) * (tf + tb - tw))
    assert peak_activations(shape, h1) == peak_activations(shape, plain)
    if m >= 2 * p:
        h2 = execute(shape, build_schedule("zb_h2", shape), lambda s: tf, lambda s: tb, weight=lambda s: tw)
        assert max(bubbles(h2, p)) == pytest.approx((p - 1) * max(0.0, tf + tb - 2 * tw), abs=1e-9)
        assert max(peak_activations(shape, h2)) == 2 * p - 1
        assert makespan(h2) <= makespan(h1) <= makespan(plain)


def test_zb_h2_has_no_bubble_with_equal_times():
    shape = Shape(4, 1, 8)
    times = execute(shape, build_schedule("zb_h2", shape), lambda s: 1.0, lambda s: 1.0, weight=lambda s: 1.0)
    assert bubbles(times, 4) == [0.0, 0.0, 0.0, 0.0]
    assert makespan(times) == 3 * 1.0 + 8 * 3.0  # (p - 1) t_F + m (t_F + t_B + t_W): the start's slant


def test_beyond_the_papers_assumption_a_long_w_hides_no_more_than_an_f():
    """With t_W > t_F the deferred W's outlast the gaps; the closed forms say what is left."""
    shape = Shape(4, 1, 8)
    times = execute(shape, build_schedule("zb_h1", shape), lambda s: 1.0, lambda s: 1.0, weight=lambda s: 3.0)
    assert max(bubbles(times, 4)) == 3 * 1.0  # (p - 1) max(t_F + t_B - t_W, t_B)
    assert makespan(times) == SCHEDULES["zb_h1"].closed_form(shape, 1.0, 1.0, 3.0) == 8 * 5.0 + 3 * 1.0


def test_split_schedules_need_contiguous_placement_and_w_times():
    with pytest.raises(ScheduleError, match="'zb_h1' needs contiguous placement"):
        build_schedule("zb_h1", Shape(2, 2, 4, "looping"))
    shape = Shape(2, 1, 4)
    with pytest.raises(ScheduleError, match="needs their durations"):
        execute(shape, build_schedule("zb_h2", shape), lambda s: 1.0, lambda s: 1.0)
    assert SCHEDULES["zb_h1"].closed_form(Shape(4, 1, 3), 1.0, 1.0, 1.0) is None  # m < p: no closed form
