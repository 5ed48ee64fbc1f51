"""Gradient quantizers per bucket: QSGD, TernGrad and scaled sign.

- QSGD (Alistarh et al., NeurIPS 2017) with s levels: each bucket keeps its L2 norm
  r; element x becomes sign(x) * r * l / s with l = floor(s |x| / r + u), u uniform:
  unbiased. Code = 2 l + (1 if x < 0), so a code takes 1 + ceil(log2(s + 1)) bits.
- TernGrad (Wen et al., NeurIPS 2017) is the same with s = 1 and r = max |x| of the
  bucket: x becomes r * sign(x) * Bernoulli(|x| / r), a ternary code of 2 bits.
- Scaled sign (Bernstein et al. 2018; Karimireddy et al., ICML 2019): each bucket
  becomes (|x|_1 / len) * sign(x), one bit per element (1 = negative, zero counts as
  positive): biased, deterministic.

Stochastic rounding draws from `rng` at element index i (pair counter i // 2).

The kernels write packed codes (`bits` order) directly. Threads split the tensor into
tasks of TASK_ELEMENTS elements (a multiple of 8, so every task starts on a byte);
bucket statistics are float64 sums per piece of one task in one bucket (reassociated
so they vectorize), then per bucket in tensor order, so no result depends on thread
count. Small inputs run serially (`threads`).
"""

from __future__ import annotations

import numpy as np
from numba import float32, float64, int32, njit, prange, uint8, uint32

from hwsim.kernels.bits import pack, unpack_into
from hwsim.kernels.rng import hash32, uniform_pair
from hwsim.kernels.threads import by_size

TASK_ELEMENTS = 16384
L1, SQUARES, MAX_ABS = 0, 1, 2


@njit(cache=True, error_model="numpy", parallel=True)
def _count_nonfinite(x):
    """How many elements of float32 `x` are NaN or infinite (bit test, vectorized)."""
    xb = x.view(np.uint32)
    ntasks = (xb.size + TASK_ELEMENTS - 1) // TASK_ELEMENTS
    counts = np.zeros(ntasks, dtype=np.int64)
    for t in prange(ntasks):
        xs = xb[t * TASK_ELEMENTS : min(t * TASK_ELEMENTS + TASK_ELEMENTS, xb.size)]
        bad = 0
        for i in range(xs.size):
            bad += (xs[i] & uint32(0x7F800000)) == uint32(0x7F800000)
        counts[t] = bad
    return counts.sum()


@njit(cache=True, error_model="numpy", fastmath={"reassoc", "nsz"})
def _segment_stat(xs, kind):
    """Sum of |x| (L1), sum of x^2 (SQUARES) or max |x| (MAX_ABS) of `xs`, in float64.

    The sums may be reassociated so that they vectorize: the same input gives the same
    bits on one machine; another CPU may differ in the last bits.
    """
    if kind == MAX_ABS:
        xi = xs.view(np.int32)
        top = int32(0)
        for i in range(xi.size):
            top = max(top, xi[i] & int32(0x7FFFFFFF))
        return float64(np.array([top], dtype=np.int32).view(np.float32)[0])
    acc = 0.0
    if kind == SQUARES:
        for i in range(xs.size):
            acc += float64(xs[i]) * float64(xs[i])
    else:
        for i in range(xs.size):
            acc += abs(float64(xs[i]))
    return acc


@njit(inline="always")
def _task(t, n):
    """First and end element of task `t` of a tensor of `n` elements."""
    return t * TASK_ELEMENTS, min(t * TASK_ELEMENTS + TASK_ELEMENTS, n)


@njit(cache=True, error_model="numpy")
def _task_partials(x, t, bucket, kind, part):
    """`_segment_stat` of each piece of task `t` that lies in one bucket b, into part[b + t].

    Pieces in tensor order step task, bucket or both, so b + t numbers them uniquely.
    """
    s0, e0 = _task(t, x.size)
    for b in range(s0 // bucket, (e0 - 1) // bucket + 1):
        part[b + t] = _segment_stat(x[max(s0, b * bucket) : min(e0, b * bucket + bucket)], kind)


@njit(cache=True, error_model="numpy")
def _combine(part, n, bucket, kind):
    """Per-bucket statistics from the task pieces of `_task_partials`, in tensor order."""
    out = np.empty((n + bucket - 1) // bucket)
    for b in range(out.size):
        first = (b * bucket) // TASK_ELEMENTS
        last = (min(n, b * bucket + bucket) - 1) // TASK_ELEMENTS
        acc = part[b + first]
        for t in range(first + 1, last + 1):
            acc = max(acc, part[b + t]) if kind == MAX_ABS else acc + part[b + t]
        out[b] = acc
    return out


@njit(cache=True, error_model="numpy", parallel=True)
def _bucket_stats(x, bucket, kind):
    """`_segment_stat` of each bucket of `bucket` elements of `x` (float64 array).

    Not finite exactly when the bucket holds a NaN or an infinity: float64 sums of
    float32 magnitudes and squares cannot overflow below 2^32 elements.
    """
    n = x.size
    ntasks = (n + TASK_ELEMENTS - 1) // TASK_ELEMENTS
    part = np.zeros((n + bucket - 1) // bucket + ntasks)
    for t in prange(ntasks):
        _task_partials(x, t, bucket, kind, part)
    return _combine(part, n, bucket, kind)


@njit(cache=True, error_model="numpy", parallel=True)
def _stochastic_levels(x, bucket, s, use_max, k1, k2, norms, width, out):
    """QSGD (use_max False: r = L2 norm) or TernGrad (use_max True: r = max |x|): the
    float32 r per bucket into `norms` and codes of `width` bits packed into `out`.

    Returns False (and meaningless output) when `x` holds a NaN or an infinity.
    """
    n = x.size
    stats = _bucket_stats(x, bucket, MAX_ABS if use_max else SQUARES)
    if not np.isfinite(stats).all():
        return False
    for b in range(stats.size):
        norms[b] = float32(stats[b] if use_max else np.sqrt(stats[b]))
    top = float32(s)
    for t in prange((n + TASK_ELEMENTS - 1) // TASK_ELEMENTS):
        s0, e0 = _task(t, n)
        us = np.empty(TASK_ELEMENTS, dtype=np.float32)
        codes = np.empty(TASK_ELEMENTS, dtype=np.uint8)
        for p in range((e0 - s0 + 1) // 2):
            us[2 * p], us[2 * p + 1] = uniform_pair(hash32((s0 >> 1) + p, k1, k2))
        for b in range(s0 // bucket, (e0 - 1) // bucket + 1):
            lo = max(s0, b * bucket)
            hi = min(e0, b * bucket + bucket)
            xs = x[lo:hi]
            ub = us[lo - s0 : hi - s0]
            cs = codes[lo - s0 : hi - s0]
            inv = float32(top / norms[b]) if norms[b] > 0 else float32(0.0)
            for i in range(xs.size):
                v = abs(xs[i]) * inv + ub[i]
                cs[i] = uint8(2 * int32(v if v < top else top) + (1 if xs[i] < 0 else 0))
        pack(codes[: e0 - s0], width, out[(s0 * width) // 8 : ((e0 * width) + 7) // 8])
    return True


@njit(cache=True, error_model="numpy", parallel=True)
def _levels_decode(packed, width, bucket, s, norms, out):
    """Float32 values of QSGD / TernGrad codes of `width` bits packed in `packed` into `out`."""
    n = out.size
    for t in prange((n + TASK_ELEMENTS - 1) // TASK_ELEMENTS):
        s0, e0 = _task(t, n)
        codes = np.empty(e0 - s0, dtype=np.uint8)
        unpack_into(packed[(s0 * width) // 8 : ((e0 * width) + 7) // 8], width, codes)
        for b in range(s0 // bucket, (e0 - 1) // bucket + 1):
            lo = max(s0, b * bucket)
            hi = min(e0, b * bucket + bucket)
            os = out[lo:hi]
            cs = codes[lo - s0 : hi - s0]
            unit = float32(norms[b] / s)
            for i in range(os.size):
                v = float32(cs[i] >> 1) * unit
                os[i] = -v if cs[i] & 1 else v


@njit(cache=True, error_model="numpy", parallel=True)
def _scaled_sign(x, bucket, scales, out):
    """Scaled-sign scales (|x|_1 / len per bucket) into `scales` and sign bits (1 = negative,
    zero counts as positive) packed into `out`, in one pass over `x`.

    Returns False (and meaningless output) when `x` holds a NaN or an infinity.
    """
    n = x.size
    ntasks = (n + TASK_ELEMENTS - 1) // TASK_ELEMENTS
    part = np.zeros((n + bucket - 1) // bucket + ntasks)
    zero = float32(0.0)
    for t in prange(ntasks):
        _task_partials(x, t, bucket, L1, part)
        s0, e0 = _task(t, n)
        xs = x[s0:e0]
        ob = out[s0 // 8 : (e0 + 7) // 8]
        full = xs.size // 8
        for j in range(full):
            acc = uint32(0)
            for k in range(8):
                acc |= uint32(xs[8 * j + k] < zero) << uint32(k)
            ob[j] = uint8(acc)
        if 8 * full < xs.size:
            acc = uint32(0)
            for i in range(8 * full, xs.size):
                acc |= uint32(xs[i] < zero) << uint32(i - 8 * full)
            ob[full] = uint8(acc)
    stats = _combine(part, n, bucket, L1)
    for b in range(stats.size):
        scales[b] = float32(stats[b] / (min(n, b * bucket + bucket) - b * bucket))
    return np.isfinite(stats).all()


@njit(cache=True, error_model="numpy", parallel=True)
def _sign_decode(packed, bucket, scales, out):
    """Float32 values of scaled-sign bits `packed` into `out`."""
    n = out.size
    for t in prange((n + TASK_ELEMENTS - 1) // TASK_ELEMENTS):
        s0, e0 = _task(t, n)
        for b in range(s0 // bucket, (e0 - 1) // bucket + 1):
            lo = max(s0, b * bucket)
            hi = min(e0, b * bucket + bucket)
            os = out[lo:hi]
            v = scales[b]
            for i in range(os.size):
                g = lo + i
                os[i] = -v if (packed[g >> 3] >> (g & 7)) & 1 else v


count_nonfinite = by_size(_count_nonfinite)
bucket_stats = by_size(_bucket_stats)
stochastic_levels = by_size(_stochastic_levels, _bucket_stats=bucket_stats.serial)
levels_decode = by_size(_levels_decode, lambda packed, width, bucket, s, norms, out: out.size)
scaled_sign = by_size(_scaled_sign)
sign_decode = by_size(_sign_decode, lambda packed, bucket, scales, out: out.size)
