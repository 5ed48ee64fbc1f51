"""Codecs that store every element: fp32 as is, bf16 and fp16 rounded to nearest even.

| codec | wire bytes for n elements |
|-------|---------------------------|
| fp32  | 4 + 4 n                   |
| bf16  | 4 + 2 n                   |
| fp16  | 4 + 2 n                   |
"""

from __future__ import annotations

import numpy as np

from hwsim import kernels
from hwsim.codecs.base import Codec

FP16_LIMIT = 65520.0  # magnitudes from here round to fp16 infinity
BF16_LIMIT = float(np.float32(3.3961775e38))  # likewise for bf16 (2^128 - 2^119)


class Fp32(Codec):
    """The float32 values themselves."""

    name = "fp32"
    unbiased = True

    def wire_bytes(self, n: int) -> int:
        return 4 + 4 * n

    def encode(self, x, *, seed, stream):
        flat = self.flat_input(x)
        if kernels.count_nonfinite(flat):
            self.refuse(flat)
        buf, sections = self.new_buffer(flat.size)
        sections.take(np.float32, flat.size)[:] = flat
        return buf

    def decode(self, buf):
        n, sections = self.open_buffer(buf)
        return sections.take(np.float32, n).copy()


class Half(Codec):
    """bf16 or fp16 storage, round to nearest, ties to even. Values beyond the format's range are refused."""

    def __init__(self, kind: str):
        self.name = kind
        self.unbiased = False

    def wire_bytes(self, n: int) -> int:
        return 4 + 2 * n

    def encode(self, x, *, seed, stream):
        flat = self.flat_input(x)
        buf, sections = self.new_buffer(flat.size)
        halves = sections.take(np.uint16, flat.size)
        convert = kernels.to_bf16 if self.name == "bf16" else kernels.to_fp16
        if convert(flat.view(np.uint32), halves):
            limit = FP16_LIMIT if self.name == "fp16" else BF16_LIMIT
            self.refuse(
                flat, ~(np.abs(flat) < limit), f"NaN, infinite or too large for {self.name} (|x| must round below {limit:.6g})"
            )
        return buf

    def decode(self, buf):
        n, sections = self.open_buffer(buf)
        halves = sections.take(np.uint16, n)
        out = np.empty(n, dtype=np.float32)
        if self.name == "bf16":
            kernels.from_bf16(halves, out.view(np.uint32))
        else:
            kernels.from_fp16(halves, out)
        return out
