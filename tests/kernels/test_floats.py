import numpy as np
import pytest

from hwsim.kernels.floats import from_bf16, from_fp16, to_bf16, to_fp16

rng = np.random.default_rng()


def edge_values():
    special = [
        0.0,
        -0.0,
        65504.0,
        65519.99,
        -65519.99,
        2.0**-24,
        2.0**-25,
        3 * 2.0**-26,
        2.0**-14,
        2.0**-14 * (1 - 2**-11),
        1e-40,
        -1e-45,
    ]
    wide = rng.standard_normal(200_000) * 10.0 ** rng.uniform(-12, 4.8, 200_000)
    return np.concatenate([special, wide]).astype(np.float32)


def test_fp16_rounds_exactly_like_numpy_and_decodes_every_code():
    x = edge_values()
    x = x[np.abs(x) < 65520]
    h = np.empty(x.size, np.uint16)
    assert to_fp16(x.view(np.uint32), h) == 0
    np.testing.assert_array_equal(h, x.astype(np.float16).view(np.uint16))
    codes = np.arange(1 << 16).astype(np.uint16)
    finite = np.isfinite(codes.view(np.float16))
    out = np.empty(codes.size, np.float32)
    from_fp16(codes, out)
    np.testing.assert_array_equal(out[finite].view(np.uint32), codes.view(np.float16)[finite].astype(np.float32).view(np.uint32))


def bf16_reference(x):
    """Round the float32 bits to their top 16, to nearest, ties to even, in Python integers."""
    bits = x.view(np.uint32).astype(np.int64)
    low = bits & 0xFFFF
    top = bits >> 16
    up = (low > 0x8000) | ((low == 0x8000) & (top & 1 == 1))
    return (top + up).astype(np.uint16)


def test_bf16_rounds_to_nearest_even_and_decodes_exactly():
    x = edge_values()
    h = np.empty(x.size, np.uint16)
    assert to_bf16(x.view(np.uint32), h) == 0
    np.testing.assert_array_equal(h, bf16_reference(x))
    out = np.empty(x.size, np.float32)
    from_bf16(h, out.view(np.uint32))
    np.testing.assert_array_equal(out.view(np.uint32), h.astype(np.uint32) << 16)
    normal = np.abs(x) > 1e-37
    assert np.all(np.abs(out[normal] - x[normal]) <= np.abs(x[normal]) * 2.0**-8)


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 65520.0, -1e6])
def test_fp16_counts_what_does_not_fit(value):
    x = np.array([1.0, value, 2.0], np.float32)
    assert to_fp16(x.view(np.uint32), np.empty(3, np.uint16)) == 1


@pytest.mark.parametrize("value", [np.nan, np.inf, -np.inf, 3.4028235e38])
def test_bf16_counts_what_does_not_fit(value):
    x = np.array([1.0, value], np.float32)
    assert to_bf16(x.view(np.uint32), np.empty(2, np.uint16)) == 1
