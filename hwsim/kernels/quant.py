"""Symmetric per-block int8 quantization: what an int8 memory bank stores.

A flat float32 array of n elements is cut into blocks of `block` elements (the last
may be shorter). Each block keeps one float32 scale s = max|x| / 127 and int8 codes
q = round_half_even(x / s), so x is stored in n + 4 * ceil(n / block) bytes. A block
of zeros has s = 0 and decodes to zeros. The round-trip error per element is at
most s / 2.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def quantize_int8_blocks(x: np.ndarray, block: int) -> tuple[np.ndarray, np.ndarray]:
    """Codes (n,) int8 and scales (ceil(n / block),) float32 of the flat float32 array `x`."""
    n = x.size
    nblocks = (n + block - 1) // block
    codes = np.empty(n, dtype=np.int8)
    scales = np.empty(nblocks, dtype=np.float32)
    for b in range(nblocks):
        lo = b * block
        hi = min(lo + block, n)
        top = np.float32(0.0)
        for i in range(lo, hi):
            top = max(top, abs(x[i]))
        scale = top / np.float32(127.0)
        scales[b] = scale
        inv = np.float32(1.0) / scale if scale > 0 else np.float32(0.0)
        for i in range(lo, hi):
            codes[i] = np.int8(np.rint(x[i] * inv))
    return codes, scales


@njit(cache=True)
def dequantize_int8_blocks(codes: np.ndarray, scales: np.ndarray, block: int) -> np.ndarray:
    """Float32 values of int8 `codes` with one scale per `block` elements."""
    n = codes.size
    out = np.empty(n, dtype=np.float32)
    for i in range(n):
        out[i] = np.float32(codes[i]) * scales[i // block]
    return out
