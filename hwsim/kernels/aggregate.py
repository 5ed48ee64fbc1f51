"""Weighted aggregation of decoded updates: the mean, FedAvg, or any weights."""

from __future__ import annotations

import numpy as np
from numba import float32, njit


@njit(cache=True, error_model="numpy")
def weighted_sum(updates, weights, out):
    """out = sum_k weights[k] * updates[k] for a (m, n) float32 stack, accumulated in float64.

    Works along the vector in chunks so the float64 accumulator stays in cache.
    """
    m, n = updates.shape
    chunk = 4096
    acc = np.empty(chunk, dtype=np.float64)
    for c0 in range(0, n, chunk):
        c1 = min(c0 + chunk, n)
        acc[: c1 - c0] = 0.0
        for k in range(m):
            w = weights[k]
            row = updates[k, c0:c1]
            for i in range(c1 - c0):
                acc[i] += w * row[i]
        seg = out[c0:c1]
        for i in range(c1 - c0):
            seg[i] = float32(acc[i])
