"""Sparsification and sparse updates: top-k, random-k, selection by threshold, gather and scatter.

Top-k keeps the k elements of largest magnitude. The k-th largest magnitude is found
by a two-pass radix select on the float32 bit patterns (|x| as an integer sorts like
|x|): a histogram of the top 16 bits, then of the low 15 bits inside the chosen bin.
Ties at the threshold are taken in index order, so the result is deterministic.
Indices come out ascending.

Random-k takes the first k outputs of a seeded pseudo-random permutation of [0, n):
a 4-round Feistel network on the smallest even-bit domain >= n with cycle walking,
so the indices are distinct, uniformly chosen, and regenerated from the seed alone.
"""

from __future__ import annotations

import numpy as np
from numba import njit, prange, uint32

from hwsim.kernels.rng import mix32
from hwsim.kernels.threads import by_size


@njit(cache=True, error_model="numpy")
def kth_largest_key(x, k):
    """The |x| bit pattern (uint32) of the k-th largest magnitude in `x` (1 <= k <= len(x))."""
    xb = x.view(np.uint32)
    hist = np.zeros(1 << 16, dtype=np.int64)
    for i in range(xb.size):
        hist[(xb[i] & uint32(0x7FFFFFFF)) >> uint32(15)] += 1
    above = 0
    top = (1 << 16) - 1
    while above + hist[top] < k:
        above += hist[top]
        top -= 1
    low = np.zeros(1 << 15, dtype=np.int64)
    for i in range(xb.size):
        key = xb[i] & uint32(0x7FFFFFFF)
        if key >> uint32(15) == uint32(top):
            low[key & uint32(0x7FFF)] += 1
    bit = (1 << 15) - 1
    while above + low[bit] < k:
        above += low[bit]
        bit -= 1
    return uint32((top << 15) | bit)


@njit(cache=True, error_model="numpy")
def top_k(x, k, idx, vals):
    """The k largest-magnitude elements of `x`: ascending indices into `idx` (uint32), values into `vals`."""
    if k == 0:
        return
    t = kth_largest_key(x, k)
    xb = x.view(np.uint32)
    above = 0
    for i in range(xb.size):
        above += (xb[i] & uint32(0x7FFFFFFF)) > t
    ties = k - above
    o = 0
    for i in range(xb.size):
        key = xb[i] & uint32(0x7FFFFFFF)
        if key > t or (key == t and ties > 0):
            if key == t:
                ties -= 1
            idx[o] = i
            vals[o] = x[i]
            o += 1


@njit(cache=True, error_model="numpy")
def above_threshold(x, threshold):
    """Ascending indices (uint32) and values of the elements with |x| > threshold."""
    count = 0
    for i in range(x.size):
        count += abs(x[i]) > threshold
    idx = np.empty(count, dtype=np.uint32)
    vals = np.empty(count, dtype=np.float32)
    o = 0
    for i in range(x.size):
        if abs(x[i]) > threshold:
            idx[o] = i
            vals[o] = x[i]
            o += 1
    return idx, vals


@njit(inline="always")
def _feistel(v, half, mask, k1, k2):
    left = v >> uint32(half)
    right = v & mask
    for r in range(4):
        f = mix32(right ^ (k1 + uint32(r) * uint32(0x9E3779B9))) ^ k2
        left, right = right, (left ^ f) & mask
    return (left << uint32(half)) | right


@njit(cache=True, error_model="numpy", parallel=True)
def _random_k_indices(n, k, k1, k2):
    """The first k outputs (uint32) of the seeded permutation of [0, n): k distinct indices."""
    idx = np.empty(k, dtype=np.uint32)
    half = 1
    while (1 << (2 * half)) < n:
        half += 1
    mask = uint32((1 << half) - 1)
    for j in prange(k):
        v = uint32(j)
        v = _feistel(v, half, mask, uint32(k1), uint32(k2))
        while v >= n:
            v = _feistel(v, half, mask, uint32(k1), uint32(k2))
        idx[j] = v
    return idx


@njit(cache=True, error_model="numpy", parallel=True)
def _gather(x, idx, out):
    """out[j] = x[idx[j]]."""
    for j in prange(idx.size):
        out[j] = x[idx[j]]


@njit(cache=True, error_model="numpy", parallel=True)
def _scatter(idx, vals, scale, out):
    """out[idx[j]] = scale * vals[j] (out is otherwise left as it is; indices are distinct)."""
    for j in prange(idx.size):
        out[idx[j]] = vals[j] * scale


@njit(cache=True, error_model="numpy")
def scatter_add(idx, vals, out):
    """out[idx[j]] += vals[j]."""
    for j in range(idx.size):
        out[idx[j]] += vals[j]


@njit(cache=True, error_model="numpy")
def subtract(a, b, out):
    """out = a - b: the delta between a new and an old copy of the weights."""
    for i in range(a.size):
        out[i] = a[i] - b[i]


random_k_indices = by_size(_random_k_indices, lambda n, k, k1, k2: k)
gather = by_size(_gather, lambda x, idx, out: idx.size)
scatter = by_size(_scatter, lambda idx, vals, scale, out: idx.size)
