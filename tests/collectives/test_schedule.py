"""Chunked and hierarchical collectives: the math on multi-dimensional fabrics, the chunk pipeline's
closed form, and errors."""

import numpy as np
import pytest
import simpy

from hwsim.collectives import CollectiveError, plan
from hwsim.collectives.executor import lockstep_rounds
from hwsim.collectives.schedule import Slots, collective
from hwsim.network import Fabric
from hwsim.network import topology as topo


def play(t, op, algorithm, nbytes, model="ideal", **kw):
    env = simpy.Environment()
    fabric = Fabric(env, t, model, [f"n{i}" for i in range(t.npus)])
    out = env.process(collective(env, fabric, op, algorithm, nbytes, **kw))
    env.run()
    return out.value


@pytest.mark.parametrize(
    "shape, algorithms, chunks",
    [((2, 3), "ring", 1), ((4, 2), ["ring", "direct"], 3), ((2, 2, 2), ["halving_doubling", "ring", "direct"], 2)],
)
def test_a_hierarchical_all_reduce_sums_over_every_npu(shape, algorithms, chunks):
    t = topo.dims([("switch", s, 1e9, 1e-6) for s in shape])
    rng = np.random.default_rng(len(shape))
    before = [rng.standard_normal(97).astype(np.float32) for _ in range(t.npus)]
    data = [a.copy() for a in before]
    play(t, "all_reduce", algorithms, data[0].nbytes, hierarchical=True, chunks=chunks, data=data)
    total = np.sum(np.array(before, np.float64), axis=0)
    for a in data:
        np.testing.assert_allclose(a, total, rtol=0, atol=t.npus * np.finfo(np.float32).eps * np.abs(before).sum(axis=0).max())
        np.testing.assert_array_equal(a, data[0])


def test_a_hierarchical_reduce_scatter_leaves_each_npu_its_nested_block():
    """NPU (c0, c1) keeps block c1 of block c0 of the buffer, summed over every NPU."""
    t = topo.dims([("switch", 3, 1e9, 1e-6), ("ring", 2, 1e9, 1e-6)])
    rng = np.random.default_rng(0)
    before = [rng.standard_normal(60).astype(np.float32) for _ in range(6)]
    data = [a.copy() for a in before]
    play(t, "reduce_scatter", "ring", 240, hierarchical=True, data=data)
    total = np.sum(np.array(before, np.float64), axis=0)
    for npu, (c0, c1) in enumerate(t.coords):
        lo = c0 * 20 + c1 * 10
        np.testing.assert_allclose(data[npu][lo : lo + 10], total[lo : lo + 10], rtol=1e-5, atol=1e-5)


A0, B0, A1, B1 = 1e-6, 400e9, 2e-6, 50e9  # dimension 1: a fast switch; dimension 2: a slower one


@pytest.mark.parametrize("model", ["ideal", "flow"])
@pytest.mark.parametrize("chunks", [1, 2, 4])
def test_chunks_pipeline_through_the_dimensions_as_the_closed_form_says(model, chunks):
    """Reduce-scatter of M bytes, c chunks, one in flight per dimension, ring in each:
    d = 1 (n NPUs on a switch): c chunks one after another, c (n - 1)(2a + M / (c n b));
    d = 2 (s0 x s1): T_0 + T_1 + (c - 1) max(T_0, T_1), with T_0 = (s0 - 1)(2 a0 + M / (c s0 b0)) and
    T_1 = (s1 - 1)(2 a1 + M / (c s0 s1 b1)) (dimension 2 works on the piece dimension 1 left)."""
    M, s0, s1 = 4 * 2 * 4 * 1000, 4, 2
    star = topo.star(8, [B0] * 8, [A0] * 8)
    want = chunks * 7 * (2 * A0 + M / (chunks * 8 * B0))
    assert play(star, "reduce_scatter", "ring", M, model=model, chunks=chunks).duration_s == pytest.approx(want, rel=1e-12)
    t = topo.dims([("switch", s0, B0, A0), ("switch", s1, B1, A1)])
    t0 = (s0 - 1) * (2 * A0 + M / (chunks * s0 * B0))
    t1 = (s1 - 1) * (2 * A1 + M / (chunks * s0 * s1 * B1))
    got = play(t, "reduce_scatter", "ring", M, model=model, chunks=chunks, hierarchical=True).duration_s
    assert got == pytest.approx(t0 + t1 + (chunks - 1) * max(t0, t1), rel=1e-12)


def test_a_hierarchical_all_reduce_is_twice_the_reduce_scatter_unchunked():
    t = topo.dims([("switch", 4, B0, A0), ("switch", 2, B1, A1)])
    rs = play(t, "reduce_scatter", "ring", 8000, hierarchical=True).duration_s
    assert play(t, "all_reduce", "ring", 8000, hierarchical=True).duration_s == pytest.approx(2 * rs, rel=1e-12)


@pytest.mark.parametrize(
    "t, kw, words",
    [
        (topo.star(4, [1e9] * 4, [0.0] * 4), dict(hierarchical=True), "needs a fabric of 2 or more dimensions"),
        (topo.dims([("switch", 2, 1e9, 0.0)] * 2), dict(chunks=0), "chunks: at least 1; got 0"),
        (topo.dims([("switch", 2, 1e9, 0.0)] * 2), dict(in_flight=0), "in_flight: at least 1; got 0"),
        (
            topo.dims([("switch", 2, 1e9, 0.0)] * 2),
            dict(hierarchical=True, algorithm=["ring"]),
            "one algorithm per dimension: 2; got 1",
        ),
        (
            topo.dims([("switch", 3, 1e9, 0.0)] * 2),
            dict(hierarchical=True, algorithm="halving_doubling"),
            "power-of-two number of NPUs; got 3",
        ),
    ],
)
def test_bad_collectives_get_one_clear_error(t, kw, words):
    algorithm = kw.pop("algorithm", "ring")
    with pytest.raises(CollectiveError, match=words):
        play(t, "all_reduce", algorithm, 800, **kw)


def test_a_hierarchical_all_to_all_is_refused():
    with pytest.raises(CollectiveError, match="a hierarchical all_to_all is not defined"):
        play(topo.dims([("switch", 2, 1e9, 0.0)] * 2), "all_to_all", "direct", 800, hierarchical=True)


@pytest.mark.parametrize("order", ["fifo", "lifo"])
def test_concurrent_collectives_share_the_chunk_slots_oldest_or_newest_first(order):
    """A issued at 0 and B just after, 4 chunks each, one chunk at a time on the switch: a chunk's
    all-reduce takes T. fifo runs A's four chunks, then B's (A ends at 4T, B at 8T); lifo lets B's
    chunks in as soon as A's first is done (B ends at 5T, A at 8T)."""
    n, nbytes = 4, 4 << 20
    t = topo.star(n, [1e9] * n, [1e-6] * n)
    env = simpy.Environment()
    fabric = Fabric(env, t, "ideal", [f"n{i}" for i in range(n)])
    slots = Slots(env, 1, order)
    ends = {}

    def issue(name, at):
        yield env.timeout(at)
        yield from collective(env, fabric, "all_reduce", "ring", nbytes, chunks=4, slots=slots)
        ends[name] = env.now

    env.process(issue("A", 0.0))
    env.process(issue("B", 1e-9))
    env.run()
    T = 2 * (n - 1) * (2e-6 + nbytes / 4 / n / 1e9)
    want = {"A": 4 * T, "B": 8 * T} if order == "fifo" else {"A": 8 * T, "B": 5 * T}
    assert ends == pytest.approx(want, rel=1e-9)


@pytest.mark.parametrize("model", ["ideal", "flow", "store_and_forward"])
@pytest.mark.parametrize(
    "shape, algorithm, op",
    [
        ((8,), "ring", "all_reduce"),
        ((8,), "direct", "all_reduce"),
        ((8,), "halving_doubling", "reduce_scatter"),
        ((8,), "ring", "all_gather"),
        ((4, 4), ["direct", "ring"], "all_reduce"),
    ],
)
def test_lockstep_rounds_equal_the_rank_by_rank_run(model, shape, algorithm, op):
    """Every rank's sends of a round leave together, the round ends when the last lands: on a symmetric
    fabric every message of a round lands at once, so the times and bytes are the rank-by-rank run's."""
    t = topo.star(8, [1e9] * 8, [1e-6] * 8) if len(shape) == 1 else topo.dims([("switch", s, 1e9, 1e-6) for s in shape])
    kw = dict(model=model, chunks=3, hierarchical=len(shape) > 1)
    each, together = (play(t, op, algorithm, 3 << 20, lockstep=ls, **kw) for ls in (False, True))
    assert together.end_s == pytest.approx(each.end_s, abs=1e-12) and together.bytes_sent == each.bytes_sent


def test_lockstep_takes_plans_whose_ranks_step_in_rounds():
    for algorithm, op in [("ring", "all_reduce"), ("direct", "all_to_all"), ("halving_doubling", "all_reduce")]:
        assert lockstep_rounds(plan(op, algorithm, 8)) is not None
    for algorithm, op in [("double_binary_tree", "all_reduce"), ("ring", "broadcast"), ("direct", "reduce")]:
        assert lockstep_rounds(plan(op, algorithm, 8)) is None
    t = topo.star(4, [1e9] * 4, [1e-6] * 4)
    with pytest.raises(CollectiveError, match="lockstep: timing only"):
        play(t, "all_reduce", "double_binary_tree", 1 << 10, lockstep=True)
    with pytest.raises(CollectiveError, match="lockstep: timing only"):
        play(t, "all_reduce", "ring", 64, lockstep=True, data=[np.zeros(16, np.float32) for _ in range(4)])
