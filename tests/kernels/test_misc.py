import os
import subprocess
import sys

import numpy as np
import pytest

from hwsim.kernels import adam, sgd
from hwsim.kernels.aggregate import weighted_sum
from hwsim.kernels.bits import pack, packed_bytes, unpack
from hwsim.kernels.rng import keys, uniforms
from hwsim.kernels.sparse import above_threshold, random_k_indices, scatter_add, subtract, top_k

rng = np.random.default_rng()


@pytest.mark.parametrize("width", range(1, 9))
@pytest.mark.parametrize("n", [0, 1, 7, 8, 9, 1001])
def test_pack_and_unpack_round_trip_in_the_documented_bit_order(width, n):
    codes = rng.integers(0, 1 << width, n).astype(np.uint8)
    out = np.empty(packed_bytes(n, width), np.uint8)
    pack(codes, width, out)
    np.testing.assert_array_equal(unpack(out, width, n), codes)
    stream = "".join(format(int(c), f"0{width}b")[::-1] for c in codes)  # least significant bit first
    stream += "0" * (8 * len(out) - len(stream))
    want = [int(stream[8 * j : 8 * j + 8][::-1], 2) for j in range(len(out))]
    np.testing.assert_array_equal(out, want)


def test_counter_generator_is_uniform_and_streams_are_independent():
    u = uniforms(1 << 20, *keys(1, 2))
    assert 0 < u.min() and u.max() < 1
    assert u.mean() == pytest.approx(0.5, abs=2e-3) and u.var() == pytest.approx(1 / 12, rel=1e-2)
    assert abs(np.corrcoef(u, uniforms(1 << 20, *keys(1, 3)))[0, 1]) < 5e-3
    assert abs(np.corrcoef(u[:-1], u[1:])[0, 1]) < 5e-3
    np.testing.assert_array_equal(u, uniforms(1 << 20, *keys(1, 2)))


def test_codec_results_do_not_depend_on_the_thread_count(tmp_path):
    """The tests run single-threaded; a fresh process with two threads must encode the same bytes."""
    script = (
        "import numpy as np, sys\n"
        "from hwsim.codecs import make_codec\n"
        "x = np.random.default_rng(5).standard_normal(300_001).astype(np.float32)\n"
        "for name in ('int8', 'int4', 'bf16', 'qsgd', 'eden', 'randk'):\n"
        "    kw = {'rounding': 'stochastic'} if name == 'int4' else {}\n"
        "    sys.stdout.buffer.write(make_codec(name, **kw).encode(x, seed=3, stream=9).tobytes())\n"
    )
    runs = []
    for threads in ("1", "2"):
        env = {**os.environ, "NUMBA_NUM_THREADS": threads}
        runs.append(subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, check=True).stdout)
    assert runs[0] == runs[1] and len(runs[0]) > 300_000


@pytest.mark.parametrize("n", [1, 10, 1000, 100_003])
def test_top_k_keeps_the_largest_magnitudes_in_index_order(n):
    x = rng.standard_normal(n).astype(np.float32)
    x[:: max(1, n // 7)] = 0.5  # ties
    for k in {1, n // 3 or 1, n}:
        idx, vals = np.empty(k, np.uint32), np.empty(k, np.float32)
        top_k(x, k, idx, vals)
        assert np.all(np.diff(idx.astype(np.int64)) > 0)
        np.testing.assert_array_equal(vals, x[idx])
        kept = np.sort(np.abs(x[idx]))
        np.testing.assert_array_equal(kept, np.sort(np.abs(x))[n - k :])


@pytest.mark.parametrize("n,k", [(1, 1), (10, 10), (1000, 37), (100_003, 5000)])
def test_random_k_indices_are_distinct_and_uniform(n, k):
    idx = random_k_indices(n, k, *keys(4))
    assert len(np.unique(idx)) == k and idx.max() < n
    np.testing.assert_array_equal(idx, random_k_indices(n, k, *keys(4)))
    if n == 1000:
        hits = np.zeros(n)
        for s in range(2000):
            hits[random_k_indices(n, k, *keys(s))] += 1
        p = k / n  # each index is chosen with probability k / n
        assert np.abs(hits / 2000 - p).max() < 5 * np.sqrt(p * (1 - p) / 2000)


def test_threshold_selection_and_sparse_updates():
    old = rng.standard_normal(5000).astype(np.float32)
    new = old + rng.standard_normal(5000).astype(np.float32) * 0.1
    delta = np.empty_like(old)
    subtract(new, old, delta)
    np.testing.assert_array_equal(delta, new - old)
    idx, vals = above_threshold(delta, 0.15)
    np.testing.assert_array_equal(idx, np.flatnonzero(np.abs(delta) > 0.15))
    w = old.copy()
    scatter_add(idx, vals, w)
    changed = np.zeros(5000, bool)
    changed[idx] = True
    np.testing.assert_array_equal(w[changed], (old + delta)[changed])
    np.testing.assert_array_equal(w[~changed], old[~changed])


@pytest.mark.parametrize("m,n", [(1, 5), (3, 10_000), (8, 4097)])
def test_weighted_sum_matches_float64(m, n):
    updates = rng.standard_normal((m, n)).astype(np.float32)
    counts = rng.integers(1, 100, m)
    weights = counts / counts.sum()  # FedAvg
    out = np.empty(n, np.float32)
    weighted_sum(updates, weights, out)
    np.testing.assert_allclose(out, weights @ updates.astype(np.float64), rtol=1e-6, atol=1e-7)


def test_sgd_and_adam_match_float64_references():
    w0, g1, g2 = (rng.standard_normal((30, 7)).astype(np.float32) for _ in range(3))
    w = w0.copy()
    sgd(w, g1, 0.1)
    np.testing.assert_allclose(w, w0 - 0.1 * g1.astype(np.float64), rtol=1e-6)
    w, m, v = w0.copy(), np.zeros_like(w0), np.zeros_like(w0)
    wr, mr, vr = w0.astype(np.float64), np.zeros(w0.shape), np.zeros(w0.shape)
    for step, g in enumerate([g1, g2, g1], start=1):
        adam(w, g, m, v, step, 1e-2, 0.9, 0.999, 1e-8)
        mr = 0.9 * mr + 0.1 * g
        vr = 0.999 * vr + 0.001 * g.astype(np.float64) ** 2
        wr = wr - 1e-2 * (mr / (1 - 0.9**step)) / (np.sqrt(vr / (1 - 0.999**step)) + 1e-8)
    np.testing.assert_allclose(w, wr, rtol=1e-5, atol=1e-6)
