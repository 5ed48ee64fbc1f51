import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.kernels.rng import keys
from hwsim.kernels.uniform import dequantize_uniform, quantize_uniform

rng = np.random.default_rng()


def reference(x, bits, block, minmax):
    """Float64 round-to-nearest codes, lo and step per element."""
    x = x.astype(np.float64)
    levels = 2**bits - 1
    codes, lo_e, step_e = (np.empty(len(x)) for _ in range(3))
    for s in range(0, len(x), block):
        seg = x[s : s + block]
        lo, hi = (seg.min(), seg.max()) if minmax else (-np.abs(seg).max(), np.abs(seg).max())
        step = (hi - lo) / levels
        codes[s : s + block] = np.clip(np.floor((seg - lo) / step + 0.5), 0, levels) if step > 0 else 0
        lo_e[s : s + block], step_e[s : s + block] = lo, step
    return codes, lo_e, step_e


def run(x, bits, block, minmax, stochastic, seed=0):
    nblocks = -(-len(x) // block)
    params = np.empty(nblocks * (2 if minmax else 1), np.float32)
    packed = np.empty(-(-len(x) * bits // 8), np.uint8)
    assert quantize_uniform(x, bits, block, minmax, stochastic, *keys(seed), params, packed) == -1
    out = np.empty(len(x), np.float32)
    dequantize_uniform(packed, bits, block, minmax, params, out)
    return out


@settings(deadline=None, max_examples=60)
@given(
    st.integers(0, 600),
    st.sampled_from([1, 2, 4, 8]),
    st.sampled_from([8, 64, 256]),
    st.booleans(),
    st.floats(1e-30, 1e30),
)
def test_nearest_matches_float64_reference_within_half_a_step(n, bits, block, minmax, magnitude):
    x = (rng.standard_normal(n) * magnitude).astype(np.float32)
    out = run(x, bits, block, minmax, False)
    codes, lo, step = reference(x, bits, block, minmax)
    want = lo + codes * step
    # float32 arithmetic may round a value lying on a half step the other way: one step at most
    assert np.all(np.abs(out - want) <= step * (1 + 1e-5) + 1e-37)
    assert np.sum(np.abs(out - want) > step / 2) <= 0.01 * n + 1
    assert np.all(np.abs(out.astype(np.float64) - x) <= step / 2 * (1 + 1e-4) + np.abs(x) * 1e-6 + 1e-37)


@settings(deadline=None, max_examples=40)
@given(st.integers(1, 300), st.sampled_from([1, 2, 4, 8]), st.booleans(), st.floats(1e-30, 1e30))
def test_stochastic_rounding_lands_on_a_neighbouring_level(n, bits, minmax, magnitude):
    x = (rng.standard_normal(n) * magnitude).astype(np.float32)
    out = run(x, bits, 64, minmax, True, seed=int(rng.integers(1 << 30)))
    _, lo, step = reference(x, bits, 64, minmax)
    assert np.all(np.abs(out.astype(np.float64) - x) <= step * (1 + 1e-4) + np.abs(x) * 1e-6 + 1e-37)


@pytest.mark.parametrize("value", [0.0, -3.5, 1e-38, 3e38, -3.4e38])
@pytest.mark.parametrize("minmax", [False, True])
def test_constant_blocks_decode_to_the_constant(value, minmax):
    x = np.full(77, value, np.float32)
    out = run(x, 4, 64, minmax, False)
    np.testing.assert_allclose(out, x, rtol=1e-6)


def test_huge_and_tiny_ranges_stay_finite_and_within_a_step():
    x = np.array([3.4e38, -3.4e38, 1e38, 0.0, 1e-44, -1e-45, 2e-44, 0.0] * 3, np.float32)
    for minmax in (False, True):
        for block in (8, 24):
            out = run(x, 8, block, minmax, False)
            assert np.all(np.isfinite(out))
            _, _, step = reference(x, 8, block, minmax)
            assert np.all(np.abs(out.astype(np.float64) - x) <= step * 0.51 + 1e-45)


def test_nan_or_inf_reports_its_block():
    x = np.zeros(100, np.float32)
    x[70] = np.nan
    params, packed = np.empty(4, np.float32), np.empty(100, np.uint8)
    assert quantize_uniform(x, 8, 32, False, False, 1, 2, params, packed) == 2
    x[70] = -np.inf
    assert quantize_uniform(x, 8, 32, True, True, 1, 2, params, packed) == 2


def test_mean_squared_error_of_rounding_to_nearest_is_step_squared_over_twelve():
    """Uniform rounding with step s has error uniform on [-s/2, s/2]: MSE s^2 / 12
    (Bennett, Bell Syst. Tech. J. 27, 1948; Widrow & Kollar, Quantization Noise, 2008, ch. 4).
    The block's extremes are coded exactly (symmetric: the max |x| only), so they are left out
    of the count. Gaussians, d = 2^16, mean of 5 draws, within 3 %."""
    d, block = 2**16, 256
    for bits in (4, 8):
        ratios = []
        for _ in range(5):
            x = rng.standard_normal(d).astype(np.float32)
            err = run(x, bits, block, False, False).astype(np.float64) - x
            _, _, step = reference(x, bits, block, False)
            expected = np.sum(step**2 / 12) * (block - 1) / block
            ratios.append(np.sum(err**2) / expected)
        assert np.mean(ratios) == pytest.approx(1.0, rel=0.03)


def test_stochastic_rounding_error_matches_its_closed_form():
    """Rounding v with fraction f = v - floor(v) up with probability f has variance
    s^2 f (1 - f) (e.g. Gupta et al., ICML 2015), summed over elements."""
    d = 2**16
    ratios = []
    for _ in range(5):
        x = rng.standard_normal(d).astype(np.float32)
        err = run(x, 4, 256, True, True, seed=int(rng.integers(1 << 30))).astype(np.float64) - x
        _, lo, step = reference(x, 4, 256, True)
        v = (x - lo) / step
        f = v - np.floor(v)
        ratios.append(np.sum(err**2) / np.sum(step**2 * f * (1 - f)))
    assert np.mean(ratios) == pytest.approx(1.0, rel=0.03)


def test_stochastic_rounding_is_unbiased():
    x = rng.standard_normal(64).astype(np.float32)
    draws = np.array([run(x, 2, 64, True, True, seed=s) for s in range(4000)], np.float64)
    _, _, step = reference(x, 2, 64, True)
    # each draw is x + noise of std <= step / 2: the mean is within 5 standard errors
    assert np.all(np.abs(draws.mean(axis=0) - x) < 5 * (step / 2) / np.sqrt(len(draws)))


def test_the_same_seed_repeats_and_another_seed_differs():
    x = rng.standard_normal(1000).astype(np.float32)
    a, b, c = (run(x, 4, 64, False, True, seed=s) for s in (7, 7, 8))
    np.testing.assert_array_equal(a, b)
    assert np.any(a != c)
