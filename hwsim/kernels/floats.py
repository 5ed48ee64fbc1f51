"""bf16 and fp16 storage of float32 values, rounding to nearest, ties to even.

- bf16 keeps the float32 sign and exponent and the top 7 mantissa bits: any finite
  float32 whose magnitude rounds below 2^128 fits (max 3.3895e38).
- fp16 (IEEE binary16) has 5 exponent bits: normal from 2^-14, subnormal down to
  2^-24 (smaller magnitudes round to zero), max 65504. Values that round beyond the
  max do not fit.

The kernels work on the float32 bit patterns (`x.view(np.uint32)`). The encoders
return the number of inputs that do not fit (NaN, infinity, or out of range after
rounding); the codec turns a non-zero count into an error instead of storing
infinities. fp16 decoding makes two passes over each task: bit patterns, then the
few subnormals.
Threads share the work in tasks of TASK_ELEMENTS elements; every element is computed
on its own, so thread count changes no bit. Small inputs run serially (`threads`).
"""

from __future__ import annotations

import numpy as np
from numba import float32, int64, njit, prange, uint16, uint32

from hwsim.kernels.threads import by_size

F16_OVERFLOW = 0x477FF000  # the smallest float32 magnitude that rounds to fp16 infinity
F16_MIN_NORMAL = 0x38800000  # 2^-14
TASK_ELEMENTS = 1 << 16


@njit(inline="always")
def _tasks(n):
    return (n + TASK_ELEMENTS - 1) // TASK_ELEMENTS


@njit(inline="always")
def _span(t, n):
    return t * TASK_ELEMENTS, min(t * TASK_ELEMENTS + TASK_ELEMENTS, n)


@njit(cache=True, error_model="numpy", parallel=True)
def _to_bf16(xbits, out):
    """bf16 bits (uint16) of the float32 bit patterns `xbits` into `out`; returns how many do not fit."""
    n = xbits.size
    bad = np.zeros(_tasks(n), dtype=np.int64)
    for t in prange(_tasks(n)):
        s, e = _span(t, n)
        xs = xbits[s:e]
        hs = out[s:e]
        count = int64(0)
        for i in range(xs.size):
            b = xs[i]
            r = (b + uint32(0x7FFF) + ((b >> uint32(16)) & uint32(1))) >> uint32(16)
            hs[i] = uint16(r)
            count += int64((r & uint32(0x7F80)) == uint32(0x7F80))
        bad[t] = count
    return bad.sum()


@njit(cache=True, error_model="numpy", parallel=True)
def _from_bf16(h, outbits):
    """Float32 bit patterns of bf16 bits `h` into `outbits` (uint32)."""
    n = h.size
    for t in prange(_tasks(n)):
        s, e = _span(t, n)
        hs = h[s:e]
        os = outbits[s:e]
        for i in range(hs.size):
            os[i] = uint32(hs[i]) << uint32(16)


@njit(cache=True, error_model="numpy", parallel=True)
def _to_fp16(xbits, out):
    """fp16 bits (uint16) of the float32 bit patterns `xbits` into `out`; returns how many do not fit."""
    n = xbits.size
    bad = np.zeros(_tasks(n), dtype=np.int64)
    for t in prange(_tasks(n)):
        s, e = _span(t, n)
        xs = xbits[s:e]
        hs = out[s:e]
        count = int64(0)
        for i in range(xs.size):
            b = xs[i]
            sign = (b >> uint32(16)) & uint32(0x8000)
            a = b & uint32(0x7FFFFFFF)
            normal = (a + uint32(0x0FFF) + ((a >> uint32(13)) & uint32(1)) - uint32(0x38000000)) >> uint32(13)
            code = normal if a >= uint32(F16_MIN_NORMAL) else _subnormal_code(a)
            hs[i] = uint16(sign | code)
            count += int64(a >= uint32(F16_OVERFLOW))
        bad[t] = count
    return bad.sum()


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


@njit(cache=True, error_model="numpy", parallel=True)
def _from_fp16(h, out):
    """Float32 values of fp16 bits `h` into `out`: per task, the bit patterns of normal
    values (subnormals as zero), then a second pass over the cached task for subnormals."""
    n = h.size
    outbits = out.view(np.uint32)
    for t in prange(_tasks(n)):
        s, e = _span(t, n)
        hs = h[s:e]
        ob = outbits[s:e]
        for i in range(hs.size):
            v = uint32(hs[i])
            ex = (v >> uint32(10)) & uint32(0x1F)
            bits = ((v & uint32(0x8000)) << uint32(16)) | ((ex + uint32(112)) << uint32(23)) | ((v & uint32(0x3FF)) << uint32(13))
            ob[i] = bits if ex != uint32(0) else (v & uint32(0x8000)) << uint32(16)
        of = out[s:e]
        for i in range(hs.size):
            v = hs[i]
            if (v & 0x7C00) == 0 and (v & 0x3FF) != 0:
                magnitude = float32(v & 0x3FF) * float32(5.960464477539063e-08)
                of[i] = -magnitude if v & 0x8000 else magnitude


to_bf16 = by_size(_to_bf16)
from_bf16 = by_size(_from_bf16)
to_fp16 = by_size(_to_fp16)
from_fp16 = by_size(_from_fp16)
