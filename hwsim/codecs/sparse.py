"""Sparsification: top-k and random-k (math in `hwsim.kernels.sparse`).

k = round(ratio * n), at least 1 when n > 0 (or a fixed `k`, capped at n).

| codec | wire bytes for n elements                          |
|-------|----------------------------------------------------|
| topk  | 4 (n) + 4 (k) + 4 k (uint32 indices) + 4 k (values) |
| randk | 4 (n) + 4 (k) + 8 (key) + 4 k (values)              |

Random-k sends the key of its index permutation instead of the indices. With
scale "unbiased" the receiver multiplies the values by n / k, so E[x_hat] = x; with
"none" it keeps them as they are (lower error, biased).
"""

from __future__ import annotations

import numpy as np

from hwsim import kernels
from hwsim.codecs.base import Codec, CodecError


class Sparse(Codec):
    """Shared by top-k and random-k: how many to keep."""

    def __init__(self, name: str, ratio: float | None, k: int | None):
        if (ratio is None) == (k is None):
            raise CodecError(f"codec {name}: give exactly one of ratio (a fraction in (0, 1]) and k (a count)")
        if ratio is not None and not (isinstance(ratio, int | float) and 0 < ratio <= 1):
            raise CodecError(f"codec {name}: ratio must be a fraction in (0, 1]; got {ratio!r}")
        if k is not None and (not isinstance(k, int) or k < 1):
            raise CodecError(f"codec {name}: k must be a positive integer; got {k!r}")
        self.name, self.ratio, self.k = name, ratio, k

    def kept(self, n: int) -> int:
        """How many of n elements are sent."""
        if n == 0:
            return 0
        return min(n, self.k) if self.k is not None else max(1, min(n, round(self.ratio * n)))

    def _check(self, x):
        flat = self.flat_input(x)
        if kernels.count_nonfinite(flat):
            self.refuse(flat)
        return flat


class TopK(Sparse):
    """The k largest magnitudes, with their indices. Biased, deterministic."""

    def __init__(self, name: str = "topk", ratio: float | None = 0.01, k: int | None = None):
        super().__init__(name, None if k is not None else ratio, k)

    def params(self) -> dict:
        return {"ratio": self.ratio} if self.k is None else {"k": self.k}

    def wire_bytes(self, n: int) -> int:
        return 8 + 8 * self.kept(n)

    def encode(self, x, *, seed, stream):
        flat = self._check(x)
        k = self.kept(flat.size)
        buf, sections = self.new_buffer(flat.size)
        sections.take(np.uint32, 1)[0] = k
        idx = sections.take(np.uint32, k)
        vals = sections.take(np.float32, k)
        kernels.top_k(flat, k, idx, vals)
        return buf

    def decode(self, buf):
        n, sections = self.open_buffer(buf)
        k = int(sections.take(np.uint32, 1)[0])
        idx, vals = sections.take(np.uint32, k), sections.take(np.float32, k)
        out = np.zeros(n, dtype=np.float32)
        kernels.scatter(idx, vals, np.float32(1.0), out)
        return out


class RandK(Sparse):
    """k elements chosen uniformly at random without replacement, from a seeded permutation."""

    def __init__(self, name: str = "randk", ratio: float | None = 0.01, k: int | None = None, scale: str = "unbiased"):
        if scale not in ("unbiased", "none"):
            raise CodecError(f"codec {name}: scale must be unbiased or none; got {scale!r}")
        super().__init__(name, None if k is not None else ratio, k)
        self.scale = scale
        self.unbiased = scale == "unbiased"
        self.randomized = True

    def params(self) -> dict:
        return {**({"ratio": self.ratio} if self.k is None else {"k": self.k}), "scale": self.scale}

    def wire_bytes(self, n: int) -> int:
        return 16 + 4 * self.kept(n)

    def encode(self, x, *, seed, stream):
        flat = self._check(x)
        n, k = flat.size, self.kept(flat.size)
        buf, sections = self.new_buffer(n)
        sections.take(np.uint32, 1)[0] = k
        key = sections.take(np.uint32, 2)
        k1, k2 = kernels.keys(seed, stream)
        key[:] = (k1, k2)
        kernels.gather(flat, kernels.random_k_indices(n, k, k1, k2), sections.take(np.float32, k))
        return buf

    def decode(self, buf):
        n, sections = self.open_buffer(buf)
        k = int(sections.take(np.uint32, 1)[0])
        k1, k2 = (int(v) for v in sections.take(np.uint32, 2))
        vals = sections.take(np.float32, k)
        out = np.zeros(n, dtype=np.float32)
        scale = np.float32(n / k if self.scale == "unbiased" and k else 1.0)
        kernels.scatter(kernels.random_k_indices(n, k, k1, k2), vals, scale, out)
        return out
