"""The randomized Hadamard rotation and quantization onto a fixed set of levels.

`rotate` pads x (n elements) with zeros to d = the next power of two, flips signs
with a seeded random diagonal D (one bit per element from `rng.hash32`) and applies
the orthonormal Walsh-Hadamard transform: y = H D x / sqrt(d). Because H / sqrt(d) is
symmetric and orthogonal, `unrotate` is D H y / sqrt(d). After rotation each
coordinate of y is close to N(0, |x|^2 / d), which is what DRIVE and EDEN quantize.

`fwht` is the in-place transform: butterflies within 4,096-element chunks (in cache),
then the remaining stages three at a time (radix 8), so a 2^26-element vector takes
about six passes over memory instead of 26. Threads share chunks and columns; each
butterfly is computed the same way whichever thread runs it, so thread count changes
no bit.

`quantize_levels` maps each y_i (times eta) to the nearest of 2^b sorted levels by
binary search over the midpoints, and returns the two sums the scale needs.
"""

from __future__ import annotations

import numpy as np
from numba import float32, float64, njit, prange, uint32

from hwsim.kernels.rng import hash32
from hwsim.kernels.sizes import padded_size  # noqa: F401 (part of this module's interface)
from hwsim.kernels.threads import by_size, serial_twin

CHUNK = 4096


@njit(cache=True, error_model="numpy")
def _stage(y, h):
    """One radix-2 stage h over the whole of `y` (a piece in cache)."""
    for base in range(0, y.size, 2 * h):
        part = y[base : base + 2 * h]
        for j in range(h):
            a = part[j]
            b = part[j + h]
            part[j] = a + b
            part[j + h] = a - b


@njit(cache=True, error_model="numpy")
def _butterflies(seg, h_end):
    """All stages h = 1, 2, .. h_end / 2 of the transform inside `seg`, three at a time
    where they fit (the same additions in the same order as one stage at a time)."""
    h = 1
    if h_end >= 8:
        _radix8_consecutive(seg.reshape(-1, 8))
        h = 8
    while h < h_end:
        if 8 * h <= h_end:
            for base in range(0, seg.size, 8 * h):
                _radix8_columns(seg[base : base + 8 * h], h, 0, h)
            h *= 8
        else:
            _stage(seg, h)
            h *= 2


@njit(inline="always")
def _radix8_kernel(a0, a1, a2, a3, a4, a5, a6, a7):
    """Stages 1, 2 and 4 of an 8-point transform (what `_radix8_columns` does per column)."""
    b0, b1, b2, b3 = a0 + a1, a0 - a1, a2 + a3, a2 - a3
    b4, b5, b6, b7 = a4 + a5, a4 - a5, a6 + a7, a6 - a7
    c0, c1, c2, c3 = b0 + b2, b1 + b3, b0 - b2, b1 - b3
    c4, c5, c6, c7 = b4 + b6, b5 + b7, b4 - b6, b5 - b7
    return c0 + c4, c1 + c5, c2 + c6, c3 + c7, c0 - c4, c1 - c5, c2 - c6, c3 - c7


@njit(cache=True, error_model="numpy")
def _radix8_consecutive(m):
    """Stages 1, 2 and 4 on each row of the (k, 8) array `m`."""
    for g in range(m.shape[0]):
        r = m[g]
        r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7] = _radix8_kernel(r[0], r[1], r[2], r[3], r[4], r[5], r[6], r[7])


@njit(cache=True, error_model="numpy")
def _radix2_columns(p, h, j0, j1):
    """Stage h on columns j0 .. j1 - 1 of the 2h-element block `p`."""
    a = p[j0:j1]
    b = p[h + j0 : h + j1]
    for j in range(a.size):
        u = a[j]
        v = b[j]
        a[j] = u + v
        b[j] = u - v


@njit(cache=True, error_model="numpy")
def _radix8_columns(p, h, j0, j1):
    """Stages h, 2h and 4h on columns j0 .. j1 - 1 of the 8h-element block `p`, in one pass."""
    r0 = p[j0:j1]
    r1 = p[h + j0 : h + j1]
    r2 = p[2 * h + j0 : 2 * h + j1]
    r3 = p[3 * h + j0 : 3 * h + j1]
    r4 = p[4 * h + j0 : 4 * h + j1]
    r5 = p[5 * h + j0 : 5 * h + j1]
    r6 = p[6 * h + j0 : 6 * h + j1]
    r7 = p[7 * h + j0 : 7 * h + j1]
    for j in range(r0.size):
        r0[j], r1[j], r2[j], r3[j], r4[j], r5[j], r6[j], r7[j] = _radix8_kernel(
            r0[j], r1[j], r2[j], r3[j], r4[j], r5[j], r6[j], r7[j]
        )


@njit(cache=True, error_model="numpy", parallel=True)
def _wide_stage(y, h, radix):
    """Stage h (radix 2) or stages h, 2h, 4h (radix 8), h >= CHUNK, split into tasks of
    CHUNK columns; every butterfly is the same whichever thread runs it."""
    block = radix * h
    per_block = h // CHUNK
    for task in prange((y.size // block) * per_block):
        p = y[(task // per_block) * block : (task // per_block + 1) * block]
        j0 = (task % per_block) * CHUNK
        if radix == 8:
            _radix8_columns(p, h, j0, j0 + CHUNK)
        else:
            _radix2_columns(p, h, j0, j0 + CHUNK)


@njit(cache=True, error_model="numpy", parallel=True)
def _fwht(y):
    """In place, the unnormalized Walsh-Hadamard transform of `y` (length a power of two)."""
    d = y.size
    chunk = min(d, CHUNK)
    for c in prange(d // chunk):
        _butterflies(y[c * chunk : c * chunk + chunk], chunk)
    h = chunk
    while h < d:
        if 8 * h <= d:
            _wide_stage(y, h, 8)
            h *= 8
        else:
            _wide_stage(y, h, 2)
            h *= 2


@njit(cache=True, error_model="numpy", parallel=True)
def _scale_and_flip(src, dst, scale, k1, k2):
    """dst[i] = +-scale * src[i] for i < len(src), the sign from the random diagonal:
    negative where bit i % 32 of word hash32(i // 32) is set."""
    n = src.size
    for w in prange((n + 31) // 32):
        bits = hash32(w, k1, k2)
        s = src[32 * w : min(32 * w + 32, n)]
        o = dst[32 * w : 32 * w + s.size]
        for i in range(s.size):
            v = s[i] * scale
            o[i] = -v if (bits >> uint32(i)) & uint32(1) else v


@njit(cache=True, error_model="numpy")
def _rotate(x, d, k1, k2):
    """y = H D x / sqrt(d), with x zero-padded to length d (a power of two >= len(x))."""
    y = np.zeros(d, dtype=np.float32)
    if d == 0:
        return y
    _scale_and_flip(x, y, float32(1.0 / np.sqrt(d)), k1, k2)
    _fwht(y)
    return y


@njit(cache=True, error_model="numpy")
def _unrotate(y, n, k1, k2):
    """The first n elements of D H y / sqrt(d): the inverse of `rotate`. Overwrites `y`."""
    d = y.size
    out = np.empty(n, dtype=np.float32)
    if d == 0:
        return out
    _fwht(y)
    _scale_and_flip(y[:n], out, float32(1.0 / np.sqrt(d)), k1, k2)
    return out


@njit(cache=True, error_model="numpy", parallel=True, fastmath={"reassoc", "nsz"})
def _quantize_levels(y, eta, levels, midpoints, codes):
    """Codes of the nearest level to eta * y_i; returns (sum y_i q_i, sum q_i^2) with q the level values.

    `levels` are 2^b sorted float64 values and `midpoints` the 2^b - 1 points between
    them. The sums are float64, per task of CHUNK elements (reassociated so they
    vectorize), then over tasks in order.
    """
    nlev = levels.size
    ntasks = (y.size + CHUNK - 1) // CHUNK
    dots = np.zeros(ntasks)
    squares = np.zeros(ntasks)
    for t in prange(ntasks):
        ys = y[t * CHUNK : min(t * CHUNK + CHUNK, y.size)]
        cs = codes[t * CHUNK : t * CHUNK + ys.size]
        if nlev <= 16:  # count the midpoints below: a few vectorized passes over the task
            cs[:] = 0
            for k in range(nlev - 1):
                m = midpoints[k]
                for i in range(ys.size):
                    cs[i] += float64(ys[i]) * eta > m
        else:  # binary search
            for i in range(ys.size):
                v = float64(ys[i]) * eta
                c = 0
                step = nlev // 2
                while step > 0:
                    if v > midpoints[c + step - 1]:
                        c += step
                    step //= 2
                cs[i] = c
        dot = 0.0
        qq = 0.0
        for i in range(ys.size):
            q = levels[cs[i]]
            dot += float64(ys[i]) * q
            qq += q * q
        dots[t] = dot
        squares[t] = qq
    dot = 0.0
    qq = 0.0
    for t in range(ntasks):
        dot += dots[t]
        qq += squares[t]
    return dot, qq


@njit(cache=True, error_model="numpy", parallel=True)
def _levels_times(codes, levels, scale):
    """Float32 vector scale * levels[codes]."""
    table = (scale * levels).astype(np.float32)
    out = np.empty(codes.size, dtype=np.float32)
    for t in prange((codes.size + CHUNK - 1) // CHUNK):
        cs = codes[t * CHUNK : min(t * CHUNK + CHUNK, codes.size)]
        os = out[t * CHUNK : t * CHUNK + cs.size]
        for i in range(cs.size):
            os[i] = table[cs[i]]
    return out


_wide_stage_serial = serial_twin(_wide_stage)
_scale_and_flip_serial = serial_twin(_scale_and_flip)
fwht = by_size(_fwht, _wide_stage=_wide_stage_serial)
rotate = by_size(_rotate, lambda x, d, k1, k2: d, _scale_and_flip=_scale_and_flip_serial, _fwht=fwht.serial)
unrotate = by_size(_unrotate, lambda y, n, k1, k2: y.size, _scale_and_flip=_scale_and_flip_serial, _fwht=fwht.serial)
quantize_levels = by_size(_quantize_levels)
levels_times = by_size(_levels_times)
