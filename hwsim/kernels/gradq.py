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
"""

from __future__ import annotations

import numpy as np
from numba import float32, float64, int32, njit, uint8, uint32

from hwsim.kernels.rng import hash32, uniform_pair


@njit(cache=True, error_model="numpy")
def count_nonfinite(x):
    """How many elements of float32 `x` are NaN or infinite (bit test, vectorized)."""
    xb = x.view(np.uint32)
    bad = 0
    for i in range(xb.size):
        bad += (xb[i] & uint32(0x7F800000)) == uint32(0x7F800000)
    return bad


@njit(cache=True, error_model="numpy")
def stochastic_levels(x, bucket, s, use_max, k1, k2, norms, codes):
    """QSGD (use_max False: r = L2 norm) or TernGrad (use_max True: r = max |x|) codes into uint8 `codes`."""
    n = x.size
    for b in range((n + bucket - 1) // bucket):
        lo = b * bucket
        xs = x[lo : min(lo + bucket, n)]
        cs = codes[lo : lo + xs.size]
        r = 0.0
        if use_max:
            for i in range(xs.size):
                r = max(r, abs(float64(xs[i])))
        else:
            for i in range(xs.size):
                r += float64(xs[i]) * float64(xs[i])
            r = np.sqrt(r)
        norms[b] = float32(r)
        inv = float32(s / r) if r > 0 else float32(0.0)
        top = float32(s)
        for i in range(xs.size):
            u0, u1 = uniform_pair(hash32((lo + i) >> 1, k1, k2))
            u = u0 if (lo + i) % 2 == 0 else u1
            t = abs(xs[i]) * inv + u
            level = int32(t if t < top else top)
            cs[i] = uint8(2 * level + (1 if xs[i] < 0 else 0))


@njit(cache=True, error_model="numpy")
def levels_decode(codes, bucket, s, norms, out):
    """Float32 values of QSGD / TernGrad `codes` into `out`."""
    n = out.size
    for b in range((n + bucket - 1) // bucket):
        lo = b * bucket
        os = out[lo : min(lo + bucket, n)]
        cs = codes[lo : lo + os.size]
        unit = float32(norms[b] / s)
        for i in range(os.size):
            c = cs[i]
            v = float32(c >> 1) * unit
            os[i] = -v if c & 1 else v


@njit(cache=True, error_model="numpy")
def scaled_sign(x, bucket, scales, codes):
    """Scaled-sign scales (|x|_1 / len per bucket) and sign codes (1 = negative) into uint8 `codes`."""
    n = x.size
    for b in range((n + bucket - 1) // bucket):
        lo = b * bucket
        xs = x[lo : min(lo + bucket, n)]
        cs = codes[lo : lo + xs.size]
        total = 0.0
        for i in range(xs.size):
            total += abs(float64(xs[i]))
            cs[i] = xs[i] < 0
        scales[b] = float32(total / xs.size)


@njit(cache=True, error_model="numpy")
def sign_decode(codes, bucket, scales, out):
    """Float32 values of scaled-sign `codes` into `out`."""
    n = out.size
    for b in range((n + bucket - 1) // bucket):
        lo = b * bucket
        os = out[lo : min(lo + bucket, n)]
        cs = codes[lo : lo + os.size]
        v = scales[b]
        for i in range(os.size):
            os[i] = -v if cs[i] else v
