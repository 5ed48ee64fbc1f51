"""Gradient quantizers per bucket: QSGD, TernGrad, scaled sign (math in `hwsim.kernels.gradq`).

Wire bytes for n elements, with B = number of buckets (ceil(n / bucket), or 1 per tensor):

| codec    | bytes                                                  |
|----------|--------------------------------------------------------|
| qsgd     | 4 + 4 B + ceil(n * (1 + ceil(log2(levels + 1))) / 8)   |
| terngrad | 4 + 4 B + ceil(n * 2 / 8)                              |
| sign     | 4 + 4 B + ceil(n / 8)                                  |
"""

from __future__ import annotations

import numpy as np

from hwsim import kernels
from hwsim.codecs.base import Codec, CodecError, block_size, blocks


def _check_bucket(name: str, bucket) -> None:
    if bucket is not None and (not isinstance(bucket, int) or bucket < 1):
        raise CodecError(
            f"codec {name}: bucket must be a positive number of elements (or null for one per tensor); got {bucket!r}"
        )


class Bucketed(Codec):
    """One float32 per bucket, then `width`-bit codes."""

    width = 1

    def __init__(self, name: str, bucket: int | None):
        _check_bucket(name, bucket)
        self.name, self.bucket = name, bucket

    def wire_bytes(self, n: int) -> int:
        return 4 + 4 * blocks(n, self.bucket) + -(-n * self.width // 8)

    def _carve(self, sections, n):
        return sections.take(np.float32, blocks(n, self.bucket)), sections.take(np.uint8, -(-n * self.width // 8))

    def encode(self, x, *, seed, stream):
        flat = self.flat_input(x)
        buf, sections = self.new_buffer(flat.size)
        floats, packed = self._carve(sections, flat.size)
        if not self._codes(flat, block_size(flat.size, self.bucket), floats, packed, seed, stream):
            self.refuse(flat)
        return buf

    def decode(self, buf):
        n, sections = self.open_buffer(buf)
        floats, packed = self._carve(sections, n)
        out = np.empty(n, dtype=np.float32)
        self._values(packed, block_size(n, self.bucket), floats, out)
        return out


class Qsgd(Bucketed):
    """QSGD with `levels` levels per sign, stochastic, unbiased; the norm is the bucket's L2 norm."""

    unbiased = True
    randomized = True
    use_max = False

    def __init__(self, name: str = "qsgd", levels: int = 4, bucket: int | None = 512):
        if not isinstance(levels, int) or not 1 <= levels <= 127:
            raise CodecError(f"codec {name}: levels must be an integer from 1 to 127; got {levels!r}")
        super().__init__(name, bucket)
        self.levels = levels
        self.width = 1 + int(levels).bit_length()

    def params(self) -> dict:
        return {"levels": self.levels, "bucket": self.bucket}

    def _codes(self, flat, bucket, floats, packed, seed, stream):
        k1, k2 = kernels.keys(seed, stream)
        return kernels.stochastic_levels(flat, bucket, self.levels, self.use_max, k1, k2, floats, self.width, packed)

    def _values(self, packed, bucket, floats, out):
        kernels.levels_decode(packed, self.width, bucket, self.levels, floats, out)


class TernGrad(Qsgd):
    """TernGrad: {-1, 0, +1} times the bucket's max |x|, stochastic, unbiased."""

    use_max = True

    def __init__(self, name: str = "terngrad", bucket: int | None = None):
        super().__init__(name, 1, bucket)

    def params(self) -> dict:
        return {"bucket": self.bucket}


class ScaledSign(Bucketed):
    """Sign of each element times the bucket's mean |x|: 1 bit per element, deterministic, biased."""

    def __init__(self, name: str = "sign", bucket: int | None = None):
        super().__init__(name, bucket)

    def params(self) -> dict:
        return {"bucket": self.bucket}

    def _codes(self, flat, bucket, floats, packed, seed, stream):
        return kernels.scaled_sign(flat, bucket, floats, packed)

    def _values(self, packed, bucket, floats, out):
        kernels.sign_decode(packed, bucket, floats, out)
