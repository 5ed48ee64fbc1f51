"""bf16 and fp16 storage of float32 values, rounding to nearest, ties to even.

- bf16 keeps the float32 sign and exponent and the top 7 mantissa bits: any finite
  float32 whose magnitude rounds below 2^128 fits (max 3.3895e38).
- fp16 (IEEE binary16) has 5 exponent bits: normal from 2^-14, subnormal down to
  2^-24 (smaller magnitudes round to zero), max 65504. Values that round beyond the
  max do not fit.

The kernels work on the float32 bit patterns (`x.view(np.uint32)`). The encoders
return the number of inputs that do not fit (NaN, infinity, or out of range after
rounding); the codec turns a non-zero count into an error instead of storing
infinities. fp16 decoding is two passes: bit patterns, then the few subnormals.
"""

from __future__ import annotations

from numba import float32, int64, njit, uint16, uint32

F16_OVERFLOW = 0x477FF000  # the smallest float32 magnitude that rounds to fp16 infinity
F16_MIN_NORMAL = 0x38800000  # 2^-14


@njit(cache=True, error_model="numpy")
def to_bf16(xbits, out):
    """bf16 bits (uint16) of the float32 bit patterns `xbits` into `out`; returns how many do not fit."""
    bad = int64(0)
    for i in range(xbits.size):
        b = xbits[i]
        r = (b + uint32(0x7FFF) + ((b >> uint32(16)) & uint32(1))) >> uint32(16)
        out[i] = uint16(r)
        bad += int64((r & uint32(0x7F80)) == uint32(0x7F80))
    return bad


@njit(cache=True, error_model="numpy")
def from_bf16(h, outbits):
    """Float32 bit patterns of bf16 bits `h` into `outbits` (uint32)."""
    for i in range(h.size):
        outbits[i] = uint32(h[i]) << uint32(16)


@njit(cache=True, error_model="numpy")
def to_fp16(xbits, out):
    """fp16 bits (uint16) of the float32 bit patterns `xbits` into `out`; returns how many do not fit."""
    bad = int64(0)
    for i in range(xbits.size):
        b = xbits[i]
        sign = (b >> uint32(16)) & uint32(0x8000)
        a = b & uint32(0x7FFFFFFF)
        normal = (a + uint32(0x0FFF) + ((a >> uint32(13)) & uint32(1)) - uint32(0x38000000)) >> uint32(13)
        h = normal if a >= uint32(F16_MIN_NORMAL) else _subnormal_code(a)
        out[i] = uint16(sign | h)
        bad += int64(a >= uint32(F16_OVERFLOW))
    return bad


@njit(inline="always")
def _subnormal_code(a):
    """fp16 code of a float32 magnitude below 2^-14 given as bits: round(|x| / 2^-24), ties to even."""
    e = a >> uint32(23)  # biased exponent, at most 112 here
    m = (a & uint32(0x7FFFFF)) | uint32(0x800000)
    shift = uint32(126) - e  # |x| / 2^-24 = m * 2^(e - 150 + 24) = m >> (126 - e)
    if shift > uint32(24):
        return uint32(0)
    q = m >> shift
    rem = m & ((uint32(1) << shift) - uint32(1))
    half = uint32(1) << (shift - uint32(1))
    up = rem > half or (rem == half and (q & uint32(1)) == uint32(1))
    return q + uint32(up)


@njit(cache=True, error_model="numpy")
def from_fp16(h, outbits):
    """Float32 bit patterns of fp16 bits `h` into `outbits`, subnormals as zero (see `fix_fp16_subnormals`)."""
    for i in range(h.size):
        v = uint32(h[i])
        e = (v >> uint32(10)) & uint32(0x1F)
        bits = ((v & uint32(0x8000)) << uint32(16)) | ((e + uint32(112)) << uint32(23)) | ((v & uint32(0x3FF)) << uint32(13))
        outbits[i] = bits if e != uint32(0) else (v & uint32(0x8000)) << uint32(16)


@njit(cache=True, error_model="numpy")
def fix_fp16_subnormals(h, out):
    """Second pass of fp16 decoding: the subnormal values m * 2^-24 into float32 `out`."""
    for i in range(h.size):
        v = h[i]
        if (v & 0x7C00) == 0 and (v & 0x3FF) != 0:
            magnitude = float32(v & 0x3FF) * float32(5.960464477539063e-08)
            out[i] = -magnitude if v & 0x8000 else magnitude
