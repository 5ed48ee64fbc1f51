"""Uniform quantization to b = 1, 2, 4 or 8 bits per element, packed.

The tensor is cut into blocks of `block` elements (a multiple of 8; the last block may
be shorter; per-tensor quantization is one block of n). Each block has a range
[lo, hi] and 2^b evenly spaced levels lo + c * step, c = 0 .. L, L = 2^b - 1,
step = (hi - lo) / L:

- symmetric: lo = -m, hi = m with m = max |x| over the block (one float32 per block);
- minmax:    lo = min x, hi = max x over the block (two float32 per block).

The code of x is floor((x - lo) / step + u), clipped to [0, L], with u = 1/2 for
round-to-nearest (ties up) and u uniform in (0, 1) for stochastic rounding, which is
unbiased: E[level] = x. Stochastic rounding draws u from the counter-based generator
of `rng` keyed by (k1, k2) at element index i. Codes are packed with `bits.pack`'s bit
order; blocks start on byte boundaries because blocks are multiples of 8 elements.

A block of equal values has step 0 and decodes exactly to them. Blocks whose range
or inverse step does not fit comfortably in float32 (very large or very small
magnitudes) are computed in float64, so they lose nothing to overflow.
"""

from __future__ import annotations

import numpy as np
from numba import float32, float64, int32, njit, prange, uint8, uint32

from hwsim.kernels.rng import hash32, uniform_pair
from hwsim.kernels.threads import by_size

INT32_MAX = 2147483647
INT32_MIN = -2147483648
FINITE_MIN_ORDERED = -2139095040  # ordered integer of -3.4028235e38 (-inf is one below)
TASK_ELEMENTS = 16384


@njit(inline="always")
def _ordered(v):
    """A float32's bits (as int32) mapped to an int32 that sorts like the float."""
    return v ^ ((v >> int32(31)) & int32(0x7FFFFFFF))


@njit(inline="always")
def _fast_path(lo, hi, levels):
    """Whether float32 arithmetic on this block's range is safe from overflow and underflow."""
    span = hi - lo
    return span == 0.0 or (1e-30 < span < 1e37 and abs(lo) < 1e37 and abs(hi) < 1e37 and levels / span < 1e37)


@njit(inline="always")
def _code(x, lo, inv, u, levels):
    """floor((x - lo) * inv + u) clipped to levels; x >= lo, so float32 x - lo >= 0 already."""
    t = (x - lo) * inv + u
    return uint32(int32(t if t < levels else levels))


@njit(inline="always")
def _pair_u(p, k1, k2):
    return uniform_pair(hash32(p, k1, k2))


@njit(cache=True, error_model="numpy")
def block_range(xs, minmax, cast):
    """(lo, hi, finite) of the block `xs`; `cast` is a scratch int32 array of 2 viewed as float32.

    Loops index from 0 over slices: Numba then knows indices are not negative and vectorizes.
    """
    xi = xs.view(np.int32)
    castf = cast.view(np.float32)
    if minmax:
        omin = int32(INT32_MAX)
        omax = int32(INT32_MIN)
        for i in range(xi.size):
            o = _ordered(xi[i])
            omin = min(omin, o)
            omax = max(omax, o)
        finite = omax < int32(0x7F800000) and omin >= int32(FINITE_MIN_ORDERED)
        cast[0] = _ordered(omin)
        cast[1] = _ordered(omax)
        return float64(castf[0]), float64(castf[1]), finite
    amax = int32(0)
    for i in range(xi.size):
        amax = max(amax, xi[i] & int32(0x7FFFFFFF))
    cast[0] = amax
    m = float64(castf[0])
    return -m, m, amax < int32(0x7F800000)


@njit(cache=True, error_model="numpy")
def _emit_nearest(xs, lo, inv, levels, bits, ob):
    """Round-to-nearest codes of block `xs` packed into `ob` from its first byte, float32 math."""
    m = xs.size
    half = float32(0.5)
    levels = float32(levels)
    if bits == 8:
        for i in range(m):
            ob[i] = uint8(_code(xs[i], lo, inv, half, levels))
        return
    per = 8 // bits
    full = m // per
    if bits == 4:
        for j in range(full):
            ob[j] = uint8(_code(xs[2 * j], lo, inv, half, levels) | (_code(xs[2 * j + 1], lo, inv, half, levels) << uint32(4)))
    elif bits == 2:
        for j in range(full):
            c = _code(xs[4 * j], lo, inv, half, levels) | (_code(xs[4 * j + 1], lo, inv, half, levels) << uint32(2))
            c |= (_code(xs[4 * j + 2], lo, inv, half, levels) << uint32(4)) | (
                _code(xs[4 * j + 3], lo, inv, half, levels) << uint32(6)
            )
            ob[j] = uint8(c)
    else:
        for j in range(full):
            c = uint32(0)
            for t in range(8):
                c |= _code(xs[8 * j + t], lo, inv, half, levels) << uint32(t)
            ob[j] = uint8(c)
    if full * per < m:
        c = uint32(0)
        for i in range(full * per, m):
            c |= _code(xs[i], lo, inv, half, levels) << uint32((i - full * per) * bits)
        ob[full] = uint8(c)


@njit(cache=True, error_model="numpy")
def _emit_stochastic(xs, p0, lo, inv, levels, bits, k1, k2, ob):
    """Stochastically rounded codes of block `xs` packed into `ob`; element i of the tensor
    uses pair counter i // 2, and p0 is the pair counter of the block's first element."""
    m = xs.size
    levels = float32(levels)
    if bits == 8:
        for p in range(m // 2):
            u0, u1 = _pair_u(p0 + p, k1, k2)
            ob[2 * p] = uint8(_code(xs[2 * p], lo, inv, u0, levels))
            ob[2 * p + 1] = uint8(_code(xs[2 * p + 1], lo, inv, u1, levels))
        full = (m // 2) * 2
    elif bits == 4:
        for p in range(m // 2):
            u0, u1 = _pair_u(p0 + p, k1, k2)
            ob[p] = uint8(_code(xs[2 * p], lo, inv, u0, levels) | (_code(xs[2 * p + 1], lo, inv, u1, levels) << uint32(4)))
        full = (m // 2) * 2
    elif bits == 2:
        for j in range(m // 4):
            u0, u1 = _pair_u(p0 + 2 * j, k1, k2)
            u2, u3 = _pair_u(p0 + 2 * j + 1, k1, k2)
            c = _code(xs[4 * j], lo, inv, u0, levels) | (_code(xs[4 * j + 1], lo, inv, u1, levels) << uint32(2))
            c |= (_code(xs[4 * j + 2], lo, inv, u2, levels) << uint32(4)) | (
                _code(xs[4 * j + 3], lo, inv, u3, levels) << uint32(6)
            )
            ob[j] = uint8(c)
        full = (m // 4) * 4
    else:
        for j in range(m // 8):
            c = uint32(0)
            for t in range(4):
                ua, ub = _pair_u(p0 + 4 * j + t, k1, k2)
                c |= _code(xs[8 * j + 2 * t], lo, inv, ua, levels) << uint32(2 * t)
                c |= _code(xs[8 * j + 2 * t + 1], lo, inv, ub, levels) << uint32(2 * t + 1)
            ob[j] = uint8(c)
        full = (m // 8) * 8
    if full < m:
        ob[(full * bits) // 8] = 0
        for i in range(full, m):
            ua, ub = _pair_u(p0 + i // 2, k1, k2)
            c = _code(xs[i], lo, inv, ua if i % 2 == 0 else ub, levels)
            ob[(i * bits) // 8] |= uint8(c << uint32((i * bits) % 8))


@njit(cache=True, error_model="numpy")
def _emit_wide(xs, p0, lo, hi, levels, bits, stochastic, k1, k2, ob):
    """As `_emit_fast`, in float64, for blocks whose range float32 cannot handle safely."""
    ob[: (xs.size * bits + 7) // 8] = 0
    span = hi - lo
    for i in range(xs.size):
        u = 0.5
        if stochastic:
            ua, ub = _pair_u(p0 + i // 2, k1, k2)
            u = float64(ua if i % 2 == 0 else ub)
        t = (float64(xs[i]) - lo) / span * levels if span > 0 else 0.0
        c = uint32(min(max(int(t + u), 0), levels))
        ob[(i * bits) // 8] |= uint8(c << uint32((i * bits) % 8))


@njit(inline="always")
def _blocks_per_task(block):
    """Blocks handed to one thread at a time: about 16 Ki elements."""
    return max(1, TASK_ELEMENTS // block)


@njit(cache=True, error_model="numpy", parallel=True)
def _quantize_uniform(x, bits, block, minmax, stochastic, k1, k2, params, out):
    """Quantize float32 `x` into `params` (float32 per block: m, or lo and hi) and packed codes `out`.

    Returns -1, or the first block holding a NaN or an infinity (what was written is then
    meaningless). Blocks are independent, so threads split them without changing a bit.
    """
    n = x.size
    levels = (1 << bits) - 1
    nblocks = (n + block - 1) // block
    per = _blocks_per_task(block)
    ntasks = (nblocks + per - 1) // per
    bad = np.full(ntasks, -1, dtype=np.int64)
    for task in prange(ntasks):
        cast = np.empty(2, dtype=np.int32)
        for b in range(task * per, min(task * per + per, nblocks)):
            s = b * block
            e = min(s + block, n)
            xs = x[s:e]
            lo, hi, finite = block_range(xs, minmax, cast)
            if not finite:
                bad[task] = b
                break
            if minmax:
                params[2 * b] = float32(lo)
                params[2 * b + 1] = float32(hi)
            else:
                params[b] = float32(hi)
            ob = out[(s * bits) // 8 : (e * bits + 7) // 8]
            if _fast_path(lo, hi, levels):
                span = hi - lo
                inv = float32(levels / span) if span > 0 else float32(0.0)
                if stochastic:
                    _emit_stochastic(xs, s // 2, float32(lo), inv, levels, bits, k1, k2, ob)
                else:
                    _emit_nearest(xs, float32(lo), inv, levels, bits, ob)
            else:
                _emit_wide(xs, s // 2, lo, hi, levels, bits, stochastic, k1, k2, ob)
    for task in range(ntasks):
        if bad[task] >= 0:
            return bad[task]
    return -1


@njit(cache=True, error_model="numpy", parallel=True)
def _dequantize_uniform(packed, bits, block, minmax, params, out):
    """Write into float32 `out` the values of its len(out) packed codes (see `quantize_uniform`)."""
    n = out.size
    nblocks = (n + block - 1) // block
    bpt = _blocks_per_task(block)
    for task in prange((nblocks + bpt - 1) // bpt):
        for b in range(task * bpt, min(task * bpt + bpt, nblocks)):
            _dequantize_block(packed, bits, block, minmax, params, out, b)


@njit(cache=True, error_model="numpy")
def _dequantize_block(packed, bits, block, minmax, params, out, b):
    """Decode block `b` of `out`."""
    n = out.size
    levels = (1 << bits) - 1
    mask = uint32(levels)
    per = 8 // bits
    s = b * block
    e = min(s + block, n)
    if minmax:
        lo = float64(params[2 * b])
        hi = float64(params[2 * b + 1])
    else:
        hi = float64(params[b])
        lo = -hi
    os = out[s:e]
    pb = packed[(s * bits) // 8 : (e * bits + 7) // 8]
    m = e - s
    if _fast_path(lo, hi, levels):
        lo32 = float32(lo)
        step = float32((hi - lo) / levels)
        if bits == 8:
            for i in range(m):
                os[i] = lo32 + float32(pb[i]) * step
        elif bits == 4:
            for j in range(m // 2):
                os[2 * j] = lo32 + float32(pb[j] & 15) * step
                os[2 * j + 1] = lo32 + float32(pb[j] >> 4) * step
        elif bits == 2:
            for j in range(m // 4):
                byte = uint32(pb[j])
                os[4 * j] = lo32 + float32(byte & uint32(3)) * step
                os[4 * j + 1] = lo32 + float32((byte >> uint32(2)) & uint32(3)) * step
                os[4 * j + 2] = lo32 + float32((byte >> uint32(4)) & uint32(3)) * step
                os[4 * j + 3] = lo32 + float32(byte >> uint32(6)) * step
        else:
            for j in range(m // 8):
                byte = uint32(pb[j])
                for t in range(8):
                    os[8 * j + t] = lo32 + float32((byte >> uint32(t)) & uint32(1)) * step
        for i in range((m // per) * per, m):
            os[i] = lo32 + float32((uint32(pb[i // per]) >> uint32((i % per) * bits)) & mask) * step
    else:
        for i in range(m):
            c = (uint32(pb[i // per]) >> uint32((i % per) * bits)) & mask
            os[i] = float32(lo + (hi - lo) * (float64(c) / levels))


quantize_uniform = by_size(_quantize_uniform)
dequantize_uniform = by_size(_dequantize_uniform, lambda codes, bits, block, minmax, params, out: out.size)
