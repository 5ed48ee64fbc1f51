"""QSGD, TernGrad and scaled sign against float64 NumPy references, across task and bucket edges."""

import numpy as np
import pytest

from hwsim.kernels.bits import packed_bytes, unpack
from hwsim.kernels.gradq import TASK_ELEMENTS, bucket_stats, levels_decode, scaled_sign, sign_decode, stochastic_levels
from hwsim.kernels.rng import keys, uniforms

rng = np.random.default_rng()
SIZES = [1, 13, 2 * TASK_ELEMENTS + 11]  # the last spans three tasks
BUCKETS = [1, 333, 512, TASK_ELEMENTS + 5, None]  # None: one bucket for the tensor


def bucket_slices(n, bucket):
    bucket = bucket or n
    return [slice(lo, min(lo + bucket, n)) for lo in range(0, n, bucket)]


@pytest.mark.parametrize("kind", ["l1", "squares", "max"])
@pytest.mark.parametrize("bucket", BUCKETS)
def test_bucket_statistics(kind, bucket):
    x = rng.standard_normal(SIZES[-1]).astype(np.float32)
    ref = {"l1": np.abs, "squares": np.square, "max": np.abs}[kind]
    want = [
        (ref(x[s].astype(np.float64)).max() if kind == "max" else ref(x[s].astype(np.float64)).sum())
        for s in bucket_slices(x.size, bucket)
    ]
    got = bucket_stats(x, bucket or x.size, ["l1", "squares", "max"].index(kind))
    np.testing.assert_allclose(got, want, rtol=1e-12)


@pytest.mark.parametrize("levels,use_max", [(4, False), (2, False), (7, False), (1, True)])
@pytest.mark.parametrize("bucket", BUCKETS)
@pytest.mark.parametrize("n", SIZES)
def test_stochastic_levels_codes_and_values(levels, use_max, bucket, n):
    x = (rng.standard_normal(n) * rng.uniform(0.1, 10)).astype(np.float32)
    width = 1 + levels.bit_length()
    k1, k2 = keys(int(rng.integers(1 << 30)), 3)
    u = uniforms(n, k1, k2).astype(np.float64)
    slices = bucket_slices(n, bucket)
    norms = np.empty(len(slices), np.float32)
    packed = np.empty(packed_bytes(n, width), np.uint8)
    stochastic_levels(x, bucket or max(8, n), levels, use_max, k1, k2, norms, width, packed)
    want_codes = np.empty(n, np.int64)
    for b, s in enumerate(slices):
        xs = x[s].astype(np.float64)
        r = np.abs(xs).max() if use_max else np.sqrt((xs * xs).sum())
        assert norms[b] == pytest.approx(r, rel=1e-6)
        level = np.minimum(np.floor(np.abs(xs) * (levels / np.float64(norms[b])) + u[s]), levels)
        want_codes[s] = 2 * level + (xs < 0)
    codes = unpack(packed, width, n).astype(np.int64)
    assert np.all(codes & 1 == want_codes & 1) and np.all(np.abs((codes >> 1) - (want_codes >> 1)) <= 1)
    assert np.mean(codes != want_codes) < 1e-3  # float32 vs float64 at a level boundary, rarely
    out = np.empty(n, np.float32)
    levels_decode(packed, width, bucket or max(8, n), levels, norms, out)
    unit = np.concatenate([np.full(s.stop - s.start, norms[b] / levels) for b, s in enumerate(slices)])
    np.testing.assert_allclose(out, np.where(codes & 1, -1, 1) * (codes >> 1) * unit, rtol=1e-6)


@pytest.mark.parametrize("bucket", BUCKETS)
@pytest.mark.parametrize("n", SIZES)
def test_scaled_sign_bits_and_values(bucket, n):
    x = rng.standard_normal(n).astype(np.float32)
    x[: min(n, 3)] = [0.0, -0.0, 1.0][: min(n, 3)]  # zero counts as positive, either sign
    slices = bucket_slices(n, bucket)
    scales = np.empty(len(slices), np.float32)
    packed = np.empty(packed_bytes(n, 1), np.uint8)
    scaled_sign(x, bucket or max(8, n), scales, packed)
    np.testing.assert_array_equal(unpack(packed, 1, n), x < 0)
    np.testing.assert_allclose(scales, [np.abs(x[s].astype(np.float64)).mean() for s in slices], rtol=1e-6)
    out = np.empty(n, np.float32)
    sign_decode(packed, bucket or max(8, n), scales, out)
    scale_of = np.concatenate([np.full(s.stop - s.start, scales[b]) for b, s in enumerate(slices)])
    np.testing.assert_array_equal(out, np.where(x < 0, -scale_of, scale_of))
