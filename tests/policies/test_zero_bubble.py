"""Split-backward schedules (ZB-H1, ZB-H2, ZB-V, V-Half, V-Min): known orders, the papers' bubbles and memory, errors."""

import pytest

from hwsim.policies import SCHEDULES, Op, ScheduleError, Shape, bubbles, build_schedule, execute, makespan, peak_activations


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


def _equal_times(name: str, shape: Shape):
    return execute(shape, build_schedule(name, shape), lambda s: 1.0, lambda s: 1.0, weight=lambda s: 1.0)


def test_zb_v_warms_up_like_the_paper_and_has_no_bubble():
    """Qi et al., ZB-V (zero-bubble paper, V-shape schedule; the repository's zbv.py): device d
    runs 2(p - d) - 1 forwards of its first stage before the first forward of its second, which
    arrives just then; with equal F, B, W times no device idles between its first and last op, at
    1F1B's activation memory (p micro-batches through both of a device's stages)."""
    shape = Shape(4, 2, 8, "vshape")
    schedule = build_schedule("zb_v", shape)
    for d, ops in enumerate(schedule):
        first_of_second = next(i for i, op in enumerate(ops) if op.stage == 2 * 4 - 1 - d)
        assert [op for op in ops[:first_of_second] if op.kind == "F"] == [Op("F", d, j) for j in range(2 * (4 - d) - 1)]
        assert ops[first_of_second] == Op("F", 7 - d, 0)
    times = _equal_times("zb_v", shape)
    assert bubbles(times, 4) == [0.0] * 4
    assert peak_activations(shape, times) == [4.0] * 4


@pytest.mark.parametrize(("p", "m"), [(4, 8), (4, 16), (8, 16), (8, 32)])
def test_v_schedules_trade_memory_for_bubble_as_the_paper_says(p, m):
    """Controllable memory (Qi et al. 2024), equal times: V-Half has half of 1F1B's bubble at half its
    activations; V-Min less memory still, at about two thirds of 1F1B's bubble; ZB-V none at 1F1B's."""
    one_f_one_b = 6 * (p - 1)  # (p - 1)(t_F + t_B + t_W), a device's F, B, W being two stages' worth
    shape = Shape(p, 2, m, "vshape")
    got = {name: _equal_times(name, shape) for name in ("zb_v", "v_half", "v_min")}
    bubble = {name: max(bubbles(t, p)) / one_f_one_b for name, t in got.items()}
    memory = {name: max(peak_activations(shape, t)) / p for name, t in got.items()}
    assert bubble["zb_v"] <= 1 / one_f_one_b and memory["zb_v"] == 1.0
    assert bubble["v_half"] == 0.5 and memory["v_half"] == 0.5
    assert 0.55 <= bubble["v_min"] <= 0.7 and memory["v_min"] <= 0.5


def test_v_shape_placement_needs_two_stages_per_device():
    with pytest.raises(ScheduleError, match="vshape placement must have 2 stages per device"):
        Shape(4, 3, 8, "vshape")
    with pytest.raises(ScheduleError, match="'zb_v' needs vshape placement"):
        build_schedule("zb_v", Shape(4, 2, 8, "looping"))
    assert [Shape(3, 2, 1, "vshape").device(s) for s in range(6)] == [0, 1, 2, 2, 1, 0]


def test_dualpipe_v_steps_on_the_last_device():
    """DeepSeek's dualpipev.py, p = 4, m = 8, rank 3 (the turn of the V: stages 3 and 4): steps 1, 3, 5
    and 7 are empty there (p - rank - 1 = 0); step 2 is rank + 1 = 4 pairs F0 F1; the main step's
    m - 2p + rank + 1 = 4 rounds pair F0 with B1 and F1 with B0 (W at once); step 6's 4 rounds of B1 B0
    defer their W's from round 4 // 2 = 2 on (rank odd: from B1); step 8 runs those 4 W's, oldest first."""
    (*_, last) = build_schedule("dualpipe_v", Shape(4, 2, 8, "vshape"))
    warmup = " ".join(f"F3.{j} F4.{j}" for j in range(4))
    main = " ".join(f"F3.{j + 4} B4.{j} W4.{j} F4.{j + 4} B3.{j} W3.{j}" for j in range(4))
    cool = "B4.4 W4.4 B3.4 W3.4 B4.5 W4.5 B3.5 W3.5 B4.6 B3.6 B4.7 B3.7 W4.6 W3.6 W4.7 W3.7"
    assert " ".join(map(str, last)) == f"{warmup} {main} {cool}"


@pytest.mark.parametrize(("p", "m"), [(2, 4), (4, 8), (8, 16), (8, 32)])
def test_dualpipe_v_holds_pp_plus_one_and_beats_1f1b(p, m):
    """DeepSeek's table: DualPipe's activations PP + 1 (stages), bubble (PP/2 - 1)(F&B + B - 3W) with B the
    whole backward; with equal times and F&B run one after the other that bound is 2(p - 1) and
    1F1B's 6(p - 1) (a device's F, B, W being two stages' worth). hwsim measures p - 1."""
    shape = Shape(p, 2, m, "vshape")
    times = _equal_times("dualpipe_v", shape)
    assert peak_activations(shape, times) == [p + 0.5] * p
    assert max(bubbles(times, p)) == p - 1 <= 2 * (p - 1) < 6 * (p - 1) or p == 1
    with pytest.raises(ScheduleError, match="at least 2p = 8 micro-batches"):
        build_schedule("dualpipe_v", Shape(4, 2, 7, "vshape"))


def test_dualpipe_order_on_the_first_and_last_devices():
    """DeepSeek's dualpipe.py, p = 4, m = 8: each end device is half-rank 0 of a 2-device V with 4
    micro-batches per pipeline (down: stages 0-3, micro-batches 0-3; up: stages 4-7, micro-batches 4-7).
    Steps 1-8: 2 F0; one F0 F1 pair; B1 (W deferred) W F1; one main round F0 B1 F1 B0; B1 F1 B0; B1 B0
    (half-rank even: B0 with W deferred); W B0 (deferred); W. Device 0's phase 0 is the down pipeline's
    stage 0, phase 1 the up pipeline's stage 7; the last device swaps them (phase ^= is_in_second_half)."""
    first, *_, last = build_schedule("dualpipe", Shape(4, 2, 8, "dual"))
    assert " ".join(map(str, first)) == (
        "F0.0 F0.1 F0.2 F7.4 B7.4 W7.4 F7.5 F0.3 B7.5 W7.5 F7.6 B0.0 W0.0 B7.6 W7.6 F7.7 B0.1 W0.1 B7.7 W7.7 B0.2 W0.2 B0.3 W0.3"
    )
    assert " ".join(map(str, last)) == (
        "F4.4 F4.5 F4.6 F3.0 B3.0 W3.0 F3.1 F4.7 B3.1 W3.1 F3.2 B4.4 W4.4 B3.2 W3.2 F3.3 B4.5 W4.5 B3.3 W3.3 B4.6 W4.6 B4.7 W4.7"
    )


@pytest.mark.parametrize(("p", "m"), [(2, 4), (4, 8), (8, 16), (8, 32)])
def test_dualpipe_bubble_and_memory(p, m):
    """Equal times: (p/2 - 1) op times of bubble, within DeepSeek's (PP/2 - 1)(F&B + B - 3W) = 2(p/2 - 1)
    with F&B run one after the other, against 1F1B's 3(p - 1) (a device's F, B, W for one micro-batch being
    one stage's); activations of p + 1 stages on every device (DeepSeek's PP + 1)."""
    shape = Shape(p, 2, m, "dual")
    times = _equal_times("dualpipe", shape)
    assert max(bubbles(times, p)) == p // 2 - 1 <= 2 * (p // 2 - 1) < 3 * (p - 1)
    assert peak_activations(shape, times) == [p / 2 + 0.5] * p
    with pytest.raises(ScheduleError, match="even number of devices"):
        build_schedule("dualpipe", Shape(3, 2, 8, "dual"))
