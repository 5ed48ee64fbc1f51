"""Filling policies as data: the issue's known case, placements that obey the rules on random
pipelines, memory headroom, and user-supplied fillers."""

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.policies import FILLERS, Op, Shape, build_schedule, execute, idle_windows, makespan
from hwsim.policies.filling import (
    FillError,
    Job,
    Placement,
    check_placement,
    clip_windows,
    place,
    resolve_filler,
)


def gpipe_p2_m2():
    shape = Shape(2, 1, 2, "contiguous", 0)
    times = execute(shape, build_schedule("gpipe", shape), lambda s: 1.0, lambda s: 2.0)
    return times, idle_windows(times, 2)


def test_known_case_reverse_mapping_fills_gpipe_to_full_utilization():
    times, windows = gpipe_p2_m2()
    assert makespan(times) == 9.0
    busy = sum(t.end - t.start for t in times.values())
    assert busy / (2 * 9.0) == pytest.approx(2 / 3)
    assert windows == [[(2.0, 5.0)], [(0.0, 1.0), (7.0, 9.0)]]
    job = Job(forward=(1.0, 1.0), backward=(2.0, 2.0), update=(0.0, 0.0), microbatches=1)
    filled = FILLERS["reverse"](windows, job, [1e9, 1e9])
    assert filled.mapping == (1, 0)
    assert filled.microbatches == 1
    assert check_placement(windows, job, filled, [1e9, 1e9]) == []
    assert filled.end() <= 9.0  # makespan stays 9
    assert (busy + filled.busy(0) + filled.busy(1)) / (2 * 9.0) == 1.0
    assert filled.times[Op("B", 0, 0)].start == 7.0


def test_known_case_first_fit_baseline_places_nothing_and_says_why():
    _, windows = gpipe_p2_m2()
    job = Job(forward=(1.0, 1.0), backward=(2.0, 2.0), update=(0.0, 0.0), microbatches=1)
    got = FILLERS["first_fit"](windows, job, [1e9, 1e9])
    assert got.microbatches == 0 and got.times == {}
    assert "B1.0" in got.reason and "device 1" in got.reason
    assert FILLERS["best_mapping"](windows, job, [1e9, 1e9]).microbatches == 1


def test_memory_headroom_limits_the_placement():
    _, windows = gpipe_p2_m2()
    job = Job(
        forward=(0.5, 0.5),
        backward=(0.5, 0.5),
        update=(0.0, 0.0),
        microbatches=3,
        static_bytes=(100, 100),
        held_bytes=(10, 10),
    )
    roomy = FILLERS["reverse"](windows, job, [1e6, 1e6])
    assert roomy.microbatches >= 2
    static_only = FILLERS["reverse"](windows, job, [99, 1e6])
    assert static_only.microbatches == 0 and "device 0" in static_only.reason
    one = FILLERS["reverse"](windows, job, [110, 110])  # the weights and one micro-batch's buffers
    assert one.microbatches == 1
    assert check_placement(windows, job, one, [110, 110]) == []
    assert check_placement(windows, job, roomy, [110, 110]) != []  # the checker sees the overflow


def test_clip_windows_cuts_at_a_time_per_device():
    assert clip_windows([[(0.0, 2.0), (3.0, 5.0)], [(1.0, 4.0)]], [4.0, 1.0]) == [[(0.0, 2.0), (3.0, 4.0)], []]


@st.composite
def pipelines(draw):
    p = draw(st.integers(1, 5))
    m = draw(st.integers(1, 8))
    name = draw(st.sampled_from(["gpipe", "1f1b"]))
    shape = Shape(p, 1, m, "contiguous", 0)
    fwd = draw(st.lists(st.floats(0.1, 3.0), min_size=p, max_size=p))
    bwd = draw(st.lists(st.floats(0.1, 3.0), min_size=p, max_size=p))
    send = draw(st.floats(0.0, 0.5))
    times = execute(shape, build_schedule(name, shape), lambda s: fwd[s], lambda s: bwd[s], lambda a, b: send)
    stages = draw(st.integers(1, 2 * p))
    job = Job(
        forward=tuple(draw(st.lists(st.floats(0.05, 2.0), min_size=stages, max_size=stages))),
        backward=tuple(draw(st.lists(st.floats(0.05, 2.0), min_size=stages, max_size=stages))),
        update=tuple(draw(st.lists(st.floats(0.0, 0.5), min_size=stages, max_size=stages))),
        microbatches=draw(st.integers(1, 6)),
        send_forward=(send,) * (stages - 1),
        send_backward=(send,) * (stages - 1),
        static_bytes=(50,) * stages,
        held_bytes=(10,) * stages,
    )
    headroom = draw(st.lists(st.integers(0, 400), min_size=p, max_size=p))
    return times, idle_windows(times, p), job, headroom


@settings(max_examples=150, deadline=None)
@given(pipelines())
def test_every_filler_obeys_the_rules_and_best_mapping_places_the_most(case):
    times, windows, job, headroom = case
    placed = {}
    for name, filler in FILLERS.items():
        got = filler(windows, job, headroom)
        assert check_placement(windows, job, got, headroom) == [], name
        assert 0 <= got.microbatches <= job.microbatches
        assert bool(got.reason) == (got.microbatches < job.microbatches)
        # nothing of the second instance overlaps an op of the first
        for t in got.times.values():
            for first in times.values():
                if first.device == t.device and t.end > t.start:
                    assert t.end <= first.start + 1e-9 or t.start >= first.end - 1e-9
        placed[name] = got.microbatches
    assert placed["best_mapping"] >= max(placed["first_fit"], placed["reverse"])


def test_place_rejects_a_bad_mapping_and_jobs_check_their_lengths():
    _, windows = gpipe_p2_m2()
    job = Job(forward=(1.0, 1.0), backward=(2.0, 2.0), update=(0.0, 0.0), microbatches=1)
    with pytest.raises(FillError, match="mapping"):
        place(windows, job, [1e9, 1e9], (0, 5))
    with pytest.raises(FillError, match="backward"):
        Job(forward=(1.0, 1.0), backward=(2.0,), update=(), microbatches=1)


def test_checker_catches_a_filler_that_breaks_the_rules():
    _, windows = gpipe_p2_m2()
    job = Job(forward=(1.0, 1.0), backward=(2.0, 2.0), update=(0.0, 0.0), microbatches=1)
    good = FILLERS["reverse"](windows, job, [1e9, 1e9])
    moved = dict(good.times)
    moved[Op("B", 0, 0)] = type(moved[Op("B", 0, 0)])(1, 5.0, 7.0)  # over the first instance's op
    found = check_placement(windows, job, Placement(good.mapping, moved, 1), [1e9, 1e9])
    assert any("not inside an idle window" in f for f in found)
    early = dict(good.times)
    early[Op("F", 1, 0)] = type(early[Op("F", 1, 0)])(0, 2.0, 3.0)
    early[Op("F", 0, 0)] = type(early[Op("F", 0, 0)])(1, 0.0, 1.0)
    early[Op("B", 1, 0)] = type(early[Op("B", 1, 0)])(0, 2.5, 4.5)
    found = check_placement(windows, job, Placement(good.mapping, early, 1), [1e9, 1e9])
    assert any("before its inputs" in f for f in found) and any("overlap" in f for f in found)


def test_user_filler_from_a_file(tmp_path, monkeypatch):
    (tmp_path / "my_fill.py").write_text(
        "from hwsim.policies.filling import place\n"
        "def backwards(windows, job, headroom):\n"
        "    return place(windows, job, headroom, tuple(reversed(range(job.stages))), best=True)\n"
    )
    monkeypatch.chdir(tmp_path)
    filler = resolve_filler("my_fill.py:backwards")
    _, windows = gpipe_p2_m2()
    job = Job(forward=(1.0, 1.0), backward=(2.0, 2.0), update=(0.0, 0.0), microbatches=1)
    assert filler(windows, job, [1e9, 1e9]).microbatches == 1
    with pytest.raises(FillError, match="no function"):
        resolve_filler("my_fill.py:nothing")
    with pytest.raises(FillError, match="no filling policy named"):
        resolve_filler("nothing")
