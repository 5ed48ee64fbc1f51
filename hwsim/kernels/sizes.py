"""Sizes the kernels work in, as plain Python (no Numba: codecs' wire sizes need them without loading it)."""

from __future__ import annotations


def padded_size(n: int) -> int:
    """The power of two a vector of n elements is padded to (0 for an empty vector)."""
    return 0 if n == 0 else 1 << (n - 1).bit_length()
