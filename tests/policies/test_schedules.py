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
    build_schedule,
    dependencies,
    execute,
    idle_windows,
    makespan,
    peak_activations,
    problems,
    register_schedule,
    resolve_schedule,
)


def _shape_for(name: str, p: int, v: int, m: int, group: int) -> Shape | None:
    """A shape the schedule accepts, or None."""
    placement = SCHEDULES[name].placement or "contiguous"
    try:
        shape = Shape(p, v, m, placement, group)
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


@settings(max_examples=400, deadline=None)
@given(
    name=st.sampled_from(["gpipe", "1f1b", "interleaved", "breadth_first", "hybrid"]),
    p=st.integers(1, 8),
    v=st.integers(1, 4),
    m=st.integers(1, 32),
    group=st.integers(0, 32),
    tf=st.floats(0.1, 3.0),
    ratio=st.floats(1.1, 3.0),
)
def test_schedules_hold_their_invariants_and_closed_forms(name, p, v, m, group, tf, ratio):
    shape = _shape_for(name, p, v, m, group if name == "hybrid" else 0)
    assume(shape is not None)
    kind = SCHEDULES[name]
    schedule = build_schedule(name, shape)
    assert problems(shape, schedule) == []
    tb = tf * ratio  # unequal forward and backward times
    times = execute(shape, schedule, lambda s: tf / v, lambda s: tb / v)
    _check_times(shape, schedule, times)
    closed = kind.closed_form(shape, tf, tb) if kind.closed_form else None
    if closed is not None:
        assert makespan(times) == pytest.approx(closed, rel=1e-9)
    if kind.peak_activations:
        assert peak_activations(shape, times) == [kind.peak_activations(shape, d) for d in range(p)]
    if kind.breadth_first_group:
        g = kind.breadth_first_group(shape)
        for d in range(p):
            stages = shape.stages_of(d)
            for first in range(0, m, g):
                mbs = range(first, min(first + g, m))
                for later, earlier in zip(stages[1:], stages[:-1], strict=False):
                    assert max(times[Op("B", later, j)].end for j in mbs) <= min(times[Op("B", earlier, j)].start for j in mbs)


@settings(max_examples=150, deadline=None)
@given(
    name=st.sampled_from(["gpipe", "1f1b", "interleaved", "breadth_first", "hybrid"]),
    p=st.integers(1, 6),
    v=st.integers(1, 3),
    m=st.integers(1, 16),
    costs=st.lists(st.floats(0.1, 5.0), min_size=36, max_size=36),
    comm=st.floats(0.0, 1.0),
)
def test_schedules_run_with_unequal_stages_and_transfers(name, p, v, m, costs, comm):
    shape = _shape_for(name, p, v, m, 0)
    assume(shape is not None)
    schedule = build_schedule(name, shape)
    times = execute(shape, schedule, lambda s: costs[s], lambda s: costs[18 + s], lambda a, b: comm)
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
    with pytest.raises(ScheduleError, match="multiple of the devices"):
        build_schedule("interleaved", Shape(4, 2, 6, "looping"))
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
