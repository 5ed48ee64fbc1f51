"""Pipeline schedules as data: invariants over many shapes, closed forms, activation peaks, errors."""

import pytest
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from hwsim.policies import (
    SCHEDULES,
    Deadlock,
    Op,
    ScheduleError,
    Shape,
    bubbles,
    build_schedule,
    dependencies,
    execute,
    idle_windows,
    is_split,
    makespan,
    peak_activations,
    problems,
    register_schedule,
    resolve_schedule,
)

NAMES = [
    "gpipe",
    "1f1b",
    "interleaved",
    "breadth_first",
    "hybrid",
    "zb_h1",
    "zb_h2",
    "zb_v",
    "v_half",
    "v_min",
    "dualpipe_v",
    "dualpipe",
]


def _shape_for(name: str, p: int, v: int, m: int, group: int = 0, reverse: bool = False) -> Shape | None:
    """A shape the schedule accepts, or None."""
    kind = SCHEDULES[name]
    placement = kind.placement or "contiguous"
    try:
        shape = Shape(p, v, m, placement, group if name in ("hybrid", "interleaved") else 0, reverse and kind.reverse)
        build_schedule(name, shape)
    except ScheduleError:
        return None
    return shape


def _check_times(shape, schedule, times):
    for op, t in times.items():
        assert t.device == shape.device(op.stage)
        for dep in dependencies(shape, op):
            assert times[dep].end <= t.start + 1e-12, f"{op} before {dep}"
    for ops in schedule:
        spans = [times[op] for op in ops]
        for before, after in zip(spans, spans[1:], strict=False):
            assert before.end <= after.start + 1e-12  # in order, no overlap on the device


def _play(shape, schedule, forward, backward, weight, transfer=None):
    """Play a schedule with F, B (input gradient) and W times; a fused schedule's B takes B + W."""
    if is_split(schedule):
        return execute(shape, schedule, forward, backward, transfer, weight)
    return execute(shape, schedule, forward, lambda s: backward(s) + weight(s), transfer)


@settings(max_examples=600, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    p=st.integers(1, 8),
    v=st.integers(1, 4),
    m=st.integers(1, 32),
    group=st.integers(0, 32),
    reverse=st.booleans(),
    tf=st.floats(0.1, 3.0),
    tb=st.floats(0.1, 3.0),
    tw=st.floats(0.1, 3.0),
)
def test_schedules_hold_their_invariants_and_closed_forms(name, p, v, m, group, reverse, tf, tb, tw):
    shape = _shape_for(name, p, v, m, group, reverse)
    assume(shape is not None)
    kind = SCHEDULES[name]
    schedule = build_schedule(name, shape)
    assert problems(shape, schedule) == []
    times = _play(shape, schedule, lambda s: tf / v, lambda s: tb / v, lambda s: tw / v)  # unequal F, B, W
    _check_times(shape, schedule, times)
    closed = kind.closed_form(shape, tf, tb, tw) if kind.closed_form else None
    if closed is not None:
        assert makespan(times) == pytest.approx(closed, rel=1e-9)
    bubble = kind.bubble(shape, tf, tb, tw) if kind.bubble else None
    if bubble is not None:
        assert max(bubbles(times, p)) == pytest.approx(bubble, rel=1e-9, abs=1e-9 * makespan(times))
    if kind.peak_activations:
        assert peak_activations(shape, times) == [kind.peak_activations(shape, d) for d in range(p)]
    if kind.breadth_first_groups:
        for d in range(p):
            stages = shape.stages_of(d)
            for mbs in kind.breadth_first_groups(shape):
                for later, earlier in zip(stages[1:], stages[:-1], strict=False):
                    assert max(times[Op("B", later, j)].end for j in mbs) <= min(times[Op("B", earlier, j)].start for j in mbs)


@settings(max_examples=200, deadline=None)
@given(
    name=st.sampled_from(NAMES),
    p=st.integers(1, 6),
    v=st.integers(1, 3),
    m=st.integers(1, 16),
    costs=st.lists(st.floats(0.1, 5.0), min_size=54, max_size=54),
    comm=st.floats(0.0, 1.0),
)
def test_schedules_run_with_unequal_stages_and_transfers(name, p, v, m, costs, comm):
    shape = _shape_for(name, p, v, m)
    assume(shape is not None)
    schedule = build_schedule(name, shape)
    times = _play(shape, schedule, lambda s: costs[s], lambda s: costs[18 + s], lambda s: costs[36 + s], lambda a, b: comm)
    _check_times(shape, schedule, times)
    gaps = idle_windows(times, p)
    for d in range(p):  # busy + idle = the makespan on every device
        busy = sum(t.end - t.start for t in times.values() if t.device == d)
        assert busy + sum(b - a for a, b in gaps[d]) == pytest.approx(makespan(times), rel=1e-9)


def test_breadth_first_puts_every_micro_batch_through_a_stage_first():
    shape = Shape(2, 2, 3, "looping")
    (d0, _) = build_schedule("breadth_first", shape)
    assert [str(op) for op in d0] == [
        "F0.0",
        "F0.1",
        "F0.2",
        "F2.0",
        "F2.1",
        "F2.2",
        "B2.0",
        "B2.1",
        "B2.2",
        "B0.0",
        "B0.1",
        "B0.2",
    ]


def test_1f1b_order_on_the_first_device():
    (d0, *_rest) = build_schedule("1f1b", Shape(3, 1, 4))
    assert [str(op) for op in d0] == ["F0.0", "F0.1", "F0.2", "B0.0", "F0.3", "B0.1", "B0.2", "B0.3"]


def _orders(name: str, shape: Shape) -> list[str]:
    return [" ".join(map(str, ops)) for ops in build_schedule(name, shape)]


def test_megatron_interleaved_order_with_as_many_micro_batches_as_devices():
    """m = p = 4, v = 2, from Megatron-core's `forward_backward_pipelining_with_interleaving`
    (megatron/core/pipeline_parallel/schedules.py): the forward table is group by group, chunk by
    chunk (stages d, d + 4 on device d); backward k takes table entry k with the chunk reversed;
    device d warms up with min(2 (p - d - 1) + (v - 1) p, v m) = 8, 8, 6, 4 forwards, then one
    forward one backward, then the rest of the backwards."""
    assert _orders("interleaved", Shape(4, 2, 4, "looping")) == [
        "F0.0 F0.1 F0.2 F0.3 F4.0 F4.1 F4.2 F4.3 B4.0 B4.1 B4.2 B4.3 B0.0 B0.1 B0.2 B0.3",
        "F1.0 F1.1 F1.2 F1.3 F5.0 F5.1 F5.2 F5.3 B5.0 B5.1 B5.2 B5.3 B1.0 B1.1 B1.2 B1.3",
        "F2.0 F2.1 F2.2 F2.3 F6.0 F6.1 F6.2 B6.0 F6.3 B6.1 B6.2 B6.3 B2.0 B2.1 B2.2 B2.3",
        "F3.0 F3.1 F3.2 F3.3 F7.0 B7.0 F7.1 B7.1 F7.2 B7.2 F7.3 B7.3 B3.0 B3.1 B3.2 B3.3",
    ]


def test_megatron_interleaved_order_with_a_last_smaller_group():
    """Megatron-core's own example in its comments, "PP2 N3M5 with VP2": micro-batch table
    0 1 2 0 1 2 3 4 3 4, chunk table 0 0 0 1 1 1 0 0 1 1; warm-ups 2 (p - d - 1) + (v - 1) N = 5, 3."""
    assert _orders("interleaved", Shape(2, 2, 5, "looping", group=3)) == [
        "F0.0 F0.1 F0.2 F2.0 F2.1 F2.2 B2.0 F0.3 B2.1 F0.4 B2.2 F2.3 B0.0 F2.4 B0.1 B0.2 B2.3 B2.4 B0.3 B0.4",
        "F1.0 F1.1 F1.2 F3.0 B3.0 F3.1 B3.1 F3.2 B3.2 F1.3 B1.0 F1.4 B1.1 F3.3 B1.2 F3.4 B3.3 B3.4 B1.3 B1.4",
    ]


def test_fast_llm_hybrid_order():
    """Fast-LLM's `Schedule._create_steps` with 2 breadth-first micro-batches per group and m = 4: depth-first
    group k holds micro-batches b D + k (D = 2 groups): {0, 2}, then {1, 3}; each group's forwards through
    every stage, then its backwards from the last stage down, before the next group starts."""
    assert _orders("hybrid", Shape(2, 2, 4, "looping", group=2)) == [
        "F0.0 F0.2 F2.0 F2.2 B2.0 B2.2 B0.0 B0.2 F0.1 F0.3 F2.1 F2.3 B2.1 B2.3 B0.1 B0.3",
        "F1.0 F1.2 F3.0 F3.2 B3.0 B3.2 B1.0 B1.2 F1.1 F1.3 F3.1 F3.3 B3.1 B3.3 B1.1 B1.3",
    ]


def test_gpipe_known_case():
    """p = 2, m = 2, t_f = 1, t_b = 2: makespan 9, utilization 2/3 (the bubble-filling issue's case)."""
    shape = Shape(2, 1, 2)
    times = execute(shape, build_schedule("gpipe", shape), lambda s: 1.0, lambda s: 2.0)
    assert makespan(times) == 9.0
    busy = sum(t.end - t.start for t in times.values())
    assert busy / (2 * 9.0) == pytest.approx(2 / 3)
    assert idle_windows(times, 2) == [[(2.0, 5.0)], [(0.0, 1.0), (7.0, 9.0)]]


def test_bad_shapes_and_names_are_refused():
    with pytest.raises(ScheduleError, match="microbatches must be at least 1"):
        Shape(2, 1, 0)
    with pytest.raises(ScheduleError, match="no schedule named 'zigzag'"):
        build_schedule("zigzag", Shape(2, 1, 2))
    with pytest.raises(ScheduleError, match="needs looping placement"):
        build_schedule("breadth_first", Shape(2, 2, 2, "contiguous"))
    with pytest.raises(ScheduleError, match="last group of at least the devices"):
        build_schedule("interleaved", Shape(4, 2, 6, "looping"))  # Megatron-core's RuntimeError
    with pytest.raises(ScheduleError, match="from the devices .4. to the micro-batches .8., got 2"):
        build_schedule("interleaved", Shape(4, 2, 8, "looping", group=2))  # Megatron-core's ValueError
    with pytest.raises(ScheduleError, match="divides the micro-batches"):
        build_schedule("hybrid", Shape(2, 2, 6, "looping", group=4))


def test_a_broken_or_deadlocking_schedule_is_diagnosed():
    shape = Shape(2, 1, 2)
    good = build_schedule("gpipe", shape)
    missing = [good[0][:-1], good[1]]
    assert any("never run" in p for p in problems(shape, missing))
    swapped = [[*good[0]], [*good[1]]]
    swapped[1] = [op for op in good[1] if op.kind == "B"] + [op for op in good[1] if op.kind == "F"]
    with pytest.raises(Deadlock, match="device 1 waits at B1.0"):
        execute(shape, swapped, lambda s: 1.0, lambda s: 1.0)


def test_users_register_or_load_their_own_schedule(tmp_path, monkeypatch):
    @register_schedule("test_reverse_gpipe")
    def reverse(shape):
        """GPipe with backwards in reverse micro-batch order."""
        out = build_schedule("gpipe", shape)
        return [
            [op for op in ops if op.kind == "F"] + sorted((op for op in ops if op.kind == "B"), key=lambda o: -o.mb)
            for ops in out
        ]

    shape = Shape(3, 1, 4)
    times = execute(shape, build_schedule("test_reverse_gpipe", shape), lambda s: 1.0, lambda s: 2.0)
    assert makespan(times) > 0
    (tmp_path / "mine.py").write_text(
        "from hwsim.policies import build_schedule\n\ndef plain(shape):\n    return build_schedule('gpipe', shape)\n"
    )
    monkeypatch.chdir(tmp_path)
    kind = resolve_schedule("mine.py:plain")
    assert kind.name == "mine.py:plain" and build_schedule("mine.py:plain", shape) == build_schedule("gpipe", shape)
    with pytest.raises(ScheduleError, match="has no function 'nope'"):
        resolve_schedule("mine.py:nope")
    with pytest.raises(ScheduleError, match="cannot load"):
        resolve_schedule("absent.py:plain")
    SCHEDULES.pop("test_reverse_gpipe")
    SCHEDULES.pop("mine.py:plain")
