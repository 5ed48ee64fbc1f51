import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.kernels import dequantize_int8_blocks, quantize_int8_blocks
from tests.kernels import naive

rng = np.random.default_rng()


@settings(deadline=None, max_examples=40)
@given(st.integers(0, 700), st.sampled_from([1, 7, 64, 256]), st.floats(1e-6, 1e6))
def test_matches_reference_and_error_is_at_most_half_a_step(n, block, magnitude):
    x = (rng.standard_normal(n) * magnitude).astype(np.float32)
    codes, scales = quantize_int8_blocks(x, block)
    want_codes, want_scales = naive.quantize_int8_blocks(x, block) if n else (np.zeros(0), np.zeros(0))
    assert codes.dtype == np.int8 and scales.dtype == np.float32
    assert len(scales) == -(-n // block)
    np.testing.assert_allclose(scales, want_scales, rtol=1e-6)
    # float32 vs float64 division may round a value sitting on a half step the other way
    assert np.abs(codes.astype(np.int64) - want_codes).max(initial=0) <= 1
    decoded = dequantize_int8_blocks(codes, scales, block)
    step = np.repeat(scales, block)[:n].astype(np.float64)
    assert np.all(np.abs(decoded.astype(np.float64) - x) <= step / 2 * (1 + 1e-5) + 1e-30)


def test_zeros_and_constants_round_trip_exactly():
    for x in (np.zeros(100, np.float32), np.full(100, -3.5, np.float32)):
        codes, scales = quantize_int8_blocks(x, 64)
        np.testing.assert_array_equal(dequantize_int8_blocks(codes, scales, 64), x)


def test_mean_squared_error_is_step_squared_over_twelve():
    """Uniform round-to-nearest quantization with step s has error uniform on [-s/2, s/2],
    so its mean squared error is s^2 / 12 (Bennett, Bell Syst. Tech. J. 27, 1948;
    Widrow & Kollar, Quantization Noise, 2008, ch. 4). The block maximum is coded
    exactly, so the expectation counts (block - 1) / block of the elements per block.
    Gaussian inputs, d = 2^16, mean of 5 draws, within 3 %."""
    d, block = 2**16, 256
    ratios = []
    for _ in range(5):
        x = rng.standard_normal(d).astype(np.float32)
        codes, scales = quantize_int8_blocks(x, block)
        err = dequantize_int8_blocks(codes, scales, block).astype(np.float64) - x
        expected = np.sum(scales.astype(np.float64) ** 2 / 12 * (block - 1))
        ratios.append(np.sum(err**2) / expected)
    assert np.mean(ratios) == pytest.approx(1.0, rel=0.03)
