"""The randomized Hadamard rotation and quantization onto a fixed set of levels.

`rotate` pads x (n elements) with zeros to d = the next power of two, flips signs
with a seeded random diagonal D (one bit per element from `rng.hash32`) and applies
the orthonormal Walsh-Hadamard transform: y = H D x / sqrt(d). Because H / sqrt(d) is
symmetric and orthogonal, `unrotate` is D H y / sqrt(d). After rotation each
coordinate of y is close to N(0, |x|^2 / d), which is what DRIVE and EDEN quantize.

`fwht` is the in-place transform: butterflies within 4,096-element chunks (in cache),
then the remaining stages three at a time (radix 8), so a 2^26-element vector takes
about six passes over memory instead of 26.

`quantize_levels` maps each y_i (times eta) to the nearest of 2^b sorted levels by
binary search over the midpoints, and returns the two sums the scale needs.
"""

from __future__ import annotations

import numpy as np
from numba import float32, float64, njit, uint32

from hwsim.kernels.rng import hash32

CHUNK = 4096


def padded_size(n: int) -> int:
    """The power of two a vector of n elements is padded to (0 for an empty vector)."""
    return 0 if n == 0 else 1 << (n - 1).bit_length()


@njit(cache=True, error_model="numpy")
def _stage(y, h):
    """One radix-2 stage h over the whole vector."""
    for base in range(0, y.size, 2 * h):
        part = y[base : base + 2 * h]
        for j in range(h):
            a = part[j]
            b = part[j + h]
            part[j] = a + b
            part[j + h] = a - b


@njit(cache=True, error_model="numpy")
def _butterflies(seg, h_end):
    """All stages h = 1, 2, .. h_end / 2 of the transform inside `seg`."""
    h = 1
    while h < h_end:
        _stage(seg, h)
        h *= 2


@njit(cache=True, error_model="numpy")
def _radix8(y, h):
    """Stages h, 2h and 4h over the whole vector in one pass."""
    for base in range(0, y.size, 8 * h):
        p = y[base : base + 8 * h]
        for j in range(h):
            a0 = p[j]
            a1 = p[j + h]
            a2 = p[j + 2 * h]
            a3 = p[j + 3 * h]
            a4 = p[j + 4 * h]
            a5 = p[j + 5 * h]
            a6 = p[j + 6 * h]
            a7 = p[j + 7 * h]
            b0, b1, b2, b3 = a0 + a1, a0 - a1, a2 + a3, a2 - a3
            b4, b5, b6, b7 = a4 + a5, a4 - a5, a6 + a7, a6 - a7
            c0, c1, c2, c3 = b0 + b2, b1 + b3, b0 - b2, b1 - b3
            c4, c5, c6, c7 = b4 + b6, b5 + b7, b4 - b6, b5 - b7
            p[j] = c0 + c4
            p[j + h] = c1 + c5
            p[j + 2 * h] = c2 + c6
            p[j + 3 * h] = c3 + c7
            p[j + 4 * h] = c0 - c4
            p[j + 5 * h] = c1 - c5
            p[j + 6 * h] = c2 - c6
            p[j + 7 * h] = c3 - c7


@njit(cache=True, error_model="numpy")
def fwht(y):
    """In place, the unnormalized Walsh-Hadamard transform of `y` (length a power of two)."""
    d = y.size
    chunk = min(d, CHUNK)
    for c0 in range(0, d, chunk):
        _butterflies(y[c0 : c0 + chunk], chunk)
    h = chunk
    while h < d:
        if 8 * h <= d:
            _radix8(y, h)
            h *= 8
        else:
            _stage(y, h)
            h *= 2


@njit(inline="always")
def _negative(i, k1, k2):
    """Whether the random diagonal flips element i: bit i % 32 of word i // 32."""
    return (hash32(i >> 5, k1, k2) >> uint32(i & 31)) & uint32(1)


@njit(cache=True, error_model="numpy")
def rotate(x, d, k1, k2):
    """y = H D x / sqrt(d), with x zero-padded to length d (a power of two >= len(x))."""
    y = np.zeros(d, dtype=np.float32)
    if d == 0:
        return y
    scale = float32(1.0 / np.sqrt(d))
    for i in range(x.size):
        v = x[i] * scale
        y[i] = -v if _negative(i, k1, k2) else v
    fwht(y)
    return y


@njit(cache=True, error_model="numpy")
def unrotate(y, n, k1, k2):
    """The first n elements of D H y / sqrt(d): the inverse of `rotate`. Overwrites `y`."""
    d = y.size
    out = np.empty(n, dtype=np.float32)
    if d == 0:
        return out
    fwht(y)
    scale = float32(1.0 / np.sqrt(d))
    for i in range(n):
        v = y[i] * scale
        out[i] = -v if _negative(i, k1, k2) else v
    return out


@njit(cache=True, error_model="numpy")
def quantize_levels(y, eta, levels, midpoints, codes):
    """Codes of the nearest level to eta * y_i; returns (sum y_i q_i, sum q_i^2) with q the level values.

    `levels` are 2^b sorted float64 values and `midpoints` the 2^b - 1 points between them.
    """
    nlev = levels.size
    dot = 0.0
    qq = 0.0
    for i in range(y.size):
        v = float64(y[i]) * eta
        c = 0
        step = nlev // 2
        while step > 0:
            if v > midpoints[c + step - 1]:
                c += step
            step //= 2
        codes[i] = c
        q = levels[c]
        dot += float64(y[i]) * q
        qq += q * q
    return dot, qq


@njit(cache=True, error_model="numpy")
def levels_times(codes, levels, scale):
    """Float32 vector scale * levels[codes]."""
    out = np.empty(codes.size, dtype=np.float32)
    for i in range(codes.size):
        out[i] = float32(scale * levels[codes[i]])
    return out
