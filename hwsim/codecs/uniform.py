"""Uniform quantization at 1, 2, 4 or 8 bits, packed (see `hwsim.kernels.uniform` for the math).

Wire bytes for n elements, with B = number of blocks (ceil(n / block), or 1 per tensor):

    4 + 4 B (symmetric: m per block) or 4 + 8 B (minmax: lo, hi per block) + ceil(n * bits / 8)
"""

from __future__ import annotations

import numpy as np

from hwsim import kernels
from hwsim.codecs.base import Codec, CodecError, block_size, blocks

BITS = (1, 2, 4, 8)
ROUNDINGS = ("nearest", "stochastic")
SCHEMES = ("symmetric", "minmax")


class Uniform(Codec):
    """2^bits evenly spaced levels over each block's range; nearest or stochastic rounding."""

    def __init__(
        self, name: str = "uniform", bits: int = 8, rounding: str = "nearest", block: int | None = 256, scheme: str = "symmetric"
    ):
        if bits not in BITS:
            raise CodecError(f"codec {name}: bits must be one of {', '.join(map(str, BITS))}; got {bits!r}")
        if rounding not in ROUNDINGS:
            raise CodecError(f"codec {name}: rounding must be one of {', '.join(ROUNDINGS)}; got {rounding!r}")
        if scheme not in SCHEMES:
            raise CodecError(f"codec {name}: scheme must be one of {', '.join(SCHEMES)}; got {scheme!r}")
        if block is not None and (not isinstance(block, int) or block < 8 or block % 8):
            raise CodecError(
                f"codec {name}: block must be a positive multiple of 8 elements (or null for one block per tensor); got {block!r}"
            )
        self.name, self.bits, self.rounding, self.block, self.scheme = name, bits, rounding, block, scheme
        self.unbiased = self.randomized = rounding == "stochastic"

    def params(self) -> dict:
        return {"bits": self.bits, "rounding": self.rounding, "block": self.block, "scheme": self.scheme}

    def _floats_per_block(self) -> int:
        return 2 if self.scheme == "minmax" else 1

    def wire_bytes(self, n: int) -> int:
        return 4 + 4 * self._floats_per_block() * blocks(n, self.block) + -(-n * self.bits // 8)

    def encode(self, x, *, seed, stream):
        flat = self.flat_input(x)
        n = flat.size
        buf, sections = self.new_buffer(n)
        params = sections.take(np.float32, self._floats_per_block() * blocks(n, self.block))
        codes = sections.take(np.uint8, -(-n * self.bits // 8))
        k1, k2 = kernels.keys(seed, stream)
        minmax = self.scheme == "minmax"
        bad = kernels.quantize_uniform(
            flat, self.bits, block_size(n, self.block), minmax, self.rounding == "stochastic", k1, k2, params, codes
        )
        if bad >= 0:
            self.refuse(flat)
        return buf

    def decode(self, buf):
        n, sections = self.open_buffer(buf)
        params = sections.take(np.float32, self._floats_per_block() * blocks(n, self.block))
        codes = sections.take(np.uint8, -(-n * self.bits // 8))
        out = np.empty(n, dtype=np.float32)
        kernels.dequantize_uniform(codes, self.bits, block_size(n, self.block), self.scheme == "minmax", params, out)
        return out
