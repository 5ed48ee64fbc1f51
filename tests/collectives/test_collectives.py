"""Collectives: real math against float64 on every algorithm, closed-form times on the fabric, errors."""

import math

import numpy as np
import pytest
import simpy

from hwsim.codecs import make_codec
from hwsim.collectives import BUILDERS, CollectiveError, Send, plan, run
from hwsim.network import Fabric
from hwsim.network import topology as topo

CASES = [
    (op, algorithm, n) for op, algorithm in BUILDERS for n in (2, 3, 4, 5, 8) if algorithm != "halving_doubling" or n in (2, 4, 8)
]
"""Every (operation, algorithm), on 2 to 8 NPUs (halving-doubling: powers of two; 6 is an error, below)."""


def play(t, p, nbytes, data=None, model="ideal"):
    env = simpy.Environment()
    fabric = Fabric(env, t, model, [f"n{i}" for i in range(t.npus)])
    out = env.process(run(env, fabric, p, list(range(p.n)), nbytes, data=data))
    env.run()
    return out.value


@pytest.mark.parametrize("op, algorithm, n", CASES)
def test_every_algorithm_computes_its_collective(op, algorithm, n):
    """Fresh random float32 buffers; sums against float64 within float32 rounding, copies exact."""
    rng = np.random.default_rng(n)
    size = n * 37 if op == "all_to_all" else 101  # all-to-all swaps equal blocks; others take uneven ones
    before = [rng.standard_normal(size).astype(np.float32) for _ in range(n)]
    data = [a.copy() for a in before]
    p = plan(op, algorithm, n)
    play(topo.star(n, [1e9] * n, [1e-6] * n), p, data[0].nbytes, data)
    total = np.sum(np.array(before, np.float64), axis=0)
    tol = dict(rtol=0, atol=n * np.finfo(np.float32).eps * np.abs(np.array(before)).sum(axis=0).max())
    edge = [(b * size) // n for b in range(n + 1)]
    block = [slice(edge[b], edge[b + 1]) for b in range(n)]
    if op == "all_reduce":
        for a in data:
            np.testing.assert_allclose(a, total, **tol)
            np.testing.assert_array_equal(a, data[0])  # the same on every rank, to the bit
    elif op == "reduce_scatter":
        for i, a in enumerate(data):
            np.testing.assert_allclose(a[block[i]], total[block[i]], **tol)
    elif op == "all_gather":
        for a in data:
            for j in range(n):
                np.testing.assert_array_equal(a[block[j]], before[j][block[j]])
    elif op == "all_to_all":
        for i, a in enumerate(data):
            for j in range(n):
                np.testing.assert_array_equal(a[block[j]], before[j][block[i]])
    elif op == "broadcast":
        for a in data:
            np.testing.assert_array_equal(a, before[0])
    elif op == "reduce":
        np.testing.assert_allclose(data[0], total, **tol)


def test_the_same_collective_gives_the_same_bits_every_run():
    rng = np.random.default_rng(0)
    before = [rng.standard_normal(1000).astype(np.float32) for _ in range(6)]
    runs = []
    for _ in range(2):
        data = [a.copy() for a in before]
        play(topo.star(6, [1e9] * 6, [1e-6] * 6), plan("all_reduce", "direct", 6), 4000, data, model="flow")
        runs.append(np.array(data))
    np.testing.assert_array_equal(runs[0], runs[1])


ALPHA, BETA = 1e-6, 1e9  # per-hop latency (s), link bandwidth (bytes/s)


@pytest.mark.parametrize("model", ["ideal", "flow"])
@pytest.mark.parametrize("n", [2, 4, 8])
def test_ring_and_halving_doubling_take_their_closed_forms(model, n):
    """M bytes, h hops per step (2 through a switch, 1 on a ring):
    ring all-reduce 2(n-1)(h a + M/(n b)); reduce-scatter and all-gather half of it;
    halving-doubling all-reduce 2 log2(n) h a + 2 (n-1)/n M / b."""
    M = n * 1000
    star = topo.star(n, [BETA] * n, [ALPHA] * n)
    ring = topo.ring(n, BETA, ALPHA)
    for t, h in ((star, 2), (ring, 1)):
        step = h * ALPHA + M / (n * BETA)
        assert play(t, plan("all_reduce", "ring", n), M, model=model).duration_s == pytest.approx(2 * (n - 1) * step, rel=1e-12)
        assert play(t, plan("reduce_scatter", "ring", n), M, model=model).duration_s == pytest.approx((n - 1) * step, rel=1e-12)
        assert play(t, plan("all_gather", "ring", n), M, model=model).duration_s == pytest.approx((n - 1) * step, rel=1e-12)
    want = 2 * math.log2(n) * 2 * ALPHA + 2 * (n - 1) / n * M / BETA
    assert play(star, plan("all_reduce", "halving_doubling", n), M, model=model).duration_s == pytest.approx(want, rel=1e-12)


@pytest.mark.parametrize("n", [3, 5, 8])
def test_direct_all_reduce_takes_its_closed_form(n):
    """Direct on a switch: each rank sends n - 1 blocks of M/n at once, twice (reduce-scatter, all-gather).
    ideal (no contention): 2 (2a + M/(n b)); flow: the n - 1 flows share each uplink and each downlink
    fairly, so each phase takes 2a + (n-1) M/(n b)."""
    M = n * 1000
    star = topo.star(n, [BETA] * n, [ALPHA] * n)
    p = plan("all_reduce", "direct", n)
    assert play(star, p, M, model="ideal").duration_s == pytest.approx(2 * (2 * ALPHA + M / (n * BETA)), rel=1e-12)
    assert play(star, p, M, model="flow").duration_s == pytest.approx(2 * (2 * ALPHA + (n - 1) * M / (n * BETA)), rel=1e-12)


@pytest.mark.parametrize("n", [2, 3, 4, 5, 8, 13])
def test_the_double_binary_tree_takes_its_closed_form(n):
    """Two heap trees (ranks 0..n-1 and n-1..0), half the buffer each, side by side: with no contention
    (ideal) up and down the tree take 2 D (h a + M / (2 b)), D = floor(log2 n), h = 2 on a switch."""
    M = 2000
    star = topo.star(n, [BETA] * n, [ALPHA] * n)
    want = 2 * math.floor(math.log2(n)) * (2 * ALPHA + M / (2 * BETA))
    assert play(star, plan("all_reduce", "double_binary_tree", n), M).duration_s == pytest.approx(want, rel=1e-12)


def test_every_rank_sends_what_the_algorithm_says():
    """Ring and halving-doubling all-reduce send 2 (n-1)/n M bytes per rank; direct the same."""
    n, M = 8, 8000
    for algorithm in ("ring", "halving_doubling", "direct"):
        out = play(topo.star(n, [BETA] * n, [ALPHA] * n), plan("all_reduce", algorithm, n), M)
        assert out.bytes_sent == [2 * (n - 1) * M // n] * n, algorithm


@pytest.mark.parametrize(
    "args, words",
    [
        (("all_reduce", "halving_doubling", 6), "power-of-two number of NPUs; got 6"),
        (
            ("all_reduce", "tree", 4),
            "unknown algorithm 'tree' for all_reduce; one of ring, direct, double_binary_tree, halving_doubling",
        ),
        (("allreduce", "ring", 4), "unknown collective 'allreduce'"),
        (("all_to_all", "ring", 4), "one of direct"),
        (("all_reduce", "ring", 0), "at least one NPU"),
    ],
)
def test_bad_collectives_get_a_clear_error(args, words):
    with pytest.raises(CollectiveError, match=words.replace("(", r"\(").replace(")", r"\)")):
        plan(*args)


ALL_REDUCE = ["ring", "direct", "halving_doubling", "double_binary_tree"]


@pytest.mark.parametrize("algorithm", ALL_REDUCE)
@pytest.mark.parametrize("name", ["int8", "qsgd", "eden"])
def test_a_compressed_all_reduce_ends_the_same_on_every_rank(algorithm, name):
    """Messages are encoded buffers: every rank ends with the same bits, the run repeats bit for bit, the
    bytes sent are the buffers' (timing-only counts the same), and int8 (round to nearest, a scale per
    256-element block) stays within its bound: each of the at most n encodings an element passes through
    errs by at most half a step, max |partial sum| / 254, and a partial sum is at most sum_i |x_i|."""
    n, size = 8, 1000
    rng = np.random.default_rng(7)
    before = [rng.standard_normal(size).astype(np.float32) for _ in range(n)]
    codec = make_codec(name)
    runs = []
    for _ in range(2):
        data = [a.copy() for a in before]
        env = simpy.Environment()
        fabric = Fabric(env, topo.star(n, [1e9] * n, [1e-6] * n), "ideal", [f"n{i}" for i in range(n)])
        out = env.process(
            run(env, fabric, plan("all_reduce", algorithm, n), list(range(n)), size * 4, data=data, codec=codec, seed=5)
        )
        env.run()
        runs.append((data, out.value))
    (data, outcome), (again, _) = runs
    for a, b in zip(data, again, strict=True):
        np.testing.assert_array_equal(a, data[0])
        np.testing.assert_array_equal(a, b)
    env = simpy.Environment()
    fabric = Fabric(env, topo.star(n, [1e9] * n, [1e-6] * n), "ideal", [f"n{i}" for i in range(n)])
    timed = env.process(run(env, fabric, plan("all_reduce", algorithm, n), list(range(n)), size * 4, codec=codec))
    env.run()
    assert timed.value.bytes_sent == outcome.bytes_sent
    p = plan("all_reduce", algorithm, n)
    edge = [(b * size) // p.blocks for b in range(p.blocks + 1)]
    for i in range(n):
        sends = [sum(edge[b + 1] - edge[b] for b in s.blocks) for s in p.steps[i] if isinstance(s, Send)]
        assert outcome.bytes_sent[i] == sum(codec.wire_bytes(k) for k in sends)
    if name == "int8":
        total = np.sum(np.array(before, np.float64), axis=0)
        bound = n * np.abs(np.array(before, np.float64)).sum(axis=0).max() / 254
        assert np.abs(data[0] - total).max() <= bound * 1.001
