"""A counter-based random generator for use inside kernels.

Every random number is a pure function of (seed, stream, counter): no state, so a
result never depends on thread count or on the order elements are visited, and the
same call repeats bit for bit across runs and machines.

- `keys(seed, stream)` turns the pair into two 32-bit words (k1 odd, k2) with
  SplitMix64 (Steele, Lea & Flood, OOPSLA 2014). It runs once per call, in Python.
- `hash32(counter, k1, k2)` is Wellons' "lowbias32" integer hash of
  (counter * k1) xor k2: a keyed bijection of the 32-bit counter followed by a
  hash with near-ideal avalanche (bias 0.17 in Wellons' measure).
- One hash gives two 16-bit uniforms `(h >> 16 + 1/2) / 2^16` and
  `(h & 0xFFFF + 1/2) / 2^16`, so a pair of elements (counter = index // 2) costs one
  hash. The half offset centres the 2^16 values in [0, 1): stochastic rounding with
  them is unbiased to within 2^-17 of a quantization step.

The counter is 32 bits, so one stream covers 2^33 elements; codecs refuse tensors of
2^32 elements or more.
"""

from __future__ import annotations

import numpy as np
from numba import float32, njit, uint32

MASK64 = (1 << 64) - 1


def splitmix64(z: int) -> int:
    """The SplitMix64 output function of the 64-bit integer `z`."""
    z = (z + 0x9E3779B97F4A7C15) & MASK64
    z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & MASK64
    z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & MASK64
    return z ^ (z >> 31)


def keys(seed: int, stream: int = 0) -> tuple[int, int]:
    """The two 32-bit key words (k1 odd, k2) of generator (seed, stream)."""
    z = splitmix64(splitmix64(seed & MASK64) ^ (stream & MASK64))
    return (z & 0xFFFFFFFF) | 1, z >> 32


@njit(inline="always")
def mix32(x):
    """Wellons' lowbias32: a bijective 32-bit integer hash."""
    x = uint32(x)
    x ^= x >> uint32(16)
    x = uint32(x * uint32(0x7FEB352D))
    x ^= x >> uint32(15)
    x = uint32(x * uint32(0x846CA68B))
    x ^= x >> uint32(16)
    return x


@njit(inline="always")
def hash32(counter, k1, k2):
    """The random 32-bit word number `counter` of the stream keyed (k1, k2)."""
    return mix32(uint32(uint32(counter) * uint32(k1)) ^ uint32(k2))


@njit(inline="always")
def uniform_pair(h):
    """Two uniforms in (0, 1) from one 32-bit word (16 bits each, centred)."""
    scale = float32(1.0 / 65536.0)
    half = float32(0.5 / 65536.0)
    return float32(h >> uint32(16)) * scale + half, float32(h & uint32(0xFFFF)) * scale + half


@njit(cache=True)
def uniforms(n, k1, k2):
    """The first `n` uniforms of stream (k1, k2): element i uses word i // 2 (for tests and tools)."""
    out = np.empty(n, dtype=np.float32)
    for p in range((n + 1) // 2):
        u0, u1 = uniform_pair(hash32(p, k1, k2))
        out[2 * p] = u0
        if 2 * p + 1 < n:
            out[2 * p + 1] = u1
    return out
