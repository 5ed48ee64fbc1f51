"""FP8 codecs: the two 8-bit floating-point formats of the OCP 8-bit Floating Point Specification
(OFP8, revision 1.0, 2023), each tensor or block scaled so its largest magnitude maps to the format's
largest finite value, then rounded to the nearest representable value, ties to even.

| format | exponent, mantissa bits | bias | largest finite | smallest subnormal | special values |
|--------|-------------------------|------|----------------|--------------------|----------------|
| e4m3   | 4, 3                    | 7    | 448            | 2^-9               | S.1111.111 is NaN; no infinities |
| e5m2   | 5, 2                    | 15   | 57344          | 2^-16              | S.11111.00 infinity, S.11111.xx NaN |

Scaling to the largest finite value means the scaled values never overflow, so no code for NaN or
infinity is ever written. Rounding to nearest keeps a normal value's relative error within
2^-(mantissa bits + 1): 1/16 for e4m3, 1/8 for e5m2.

Wire bytes for n elements, B blocks (ceil(n / block), or 1 per tensor): 4 + 4 B (fp32 scales) + n.
"""

from __future__ import annotations

import numpy as np

from hwsim.codecs.base import Codec, CodecError, blocks

FORMATS = {"e4m3": (4, 3, 7), "e5m2": (5, 2, 15)}
"""exponent bits, mantissa bits, bias (OFP8 1.0, table 1)."""


def positive_values(fmt: str) -> np.ndarray:
    """The finite non-negative values of `fmt`, indexed by their 7-bit code (increasing)."""
    e_bits, m_bits, bias = FORMATS[fmt]
    out = []
    for code in range(128):
        e, f = code >> m_bits, code & ((1 << m_bits) - 1)
        if fmt == "e4m3" and code == 127:  # S.1111.111: NaN
            break
        if fmt == "e5m2" and e == (1 << e_bits) - 1:  # infinity and NaNs
            break
        if e == 0:
            out.append(f / (1 << m_bits) * 2.0 ** (1 - bias))
        else:
            out.append((1 + f / (1 << m_bits)) * 2.0 ** (e - bias))
    return np.array(out, dtype=np.float64)


class Fp8(Codec):
    """FP8 e4m3 or e5m2 with one fp32 scale per block (or per tensor)."""

    def __init__(self, name: str, fmt: str, block: int | None = None):
        if block is not None and (not isinstance(block, int) or block < 1):
            raise CodecError(
                f"codec {name}: block must be a positive number of elements, or null for one per tensor; got {block!r}"
            )
        self.name, self.fmt, self.block = name, fmt, block
        self.unbiased = False
        self.values = positive_values(fmt)
        self.largest = float(self.values[-1])

    def params(self) -> dict:
        return {"block": self.block}

    def wire_bytes(self, n: int) -> int:
        return 4 + 4 * blocks(n, self.block) + n

    def _bounds(self, n: int) -> list[tuple[int, int]]:
        size = self.block or max(n, 1)
        return [(a, min(a + size, n)) for a in range(0, n, size)]

    def encode(self, x, *, seed, stream):
        flat = self.flat_input(x)
        if not np.isfinite(flat).all():
            self.refuse(flat)
        n = flat.size
        buf, sections = self.new_buffer(n)
        scales = sections.take(np.float32, blocks(n, self.block))
        codes = sections.take(np.uint8, n)
        for k, (a, b) in enumerate(self._bounds(n)):
            part = flat[a:b].astype(np.float64)
            top = float(np.max(np.abs(part))) if b > a else 0.0
            scale = np.float32(top / self.largest)
            scales[k] = scale
            if scale == 0:
                codes[a:b] = 0
                continue
            codes[a:b] = self._round(part / float(scale))
        return buf

    def _round(self, y: np.ndarray) -> np.ndarray:
        """Codes of the values nearest `y` (|y| at most the largest finite value, up to the scale's rounding),
        ties to the even code."""
        mag = np.minimum(np.abs(y), self.largest)
        vals = self.values
        hi = np.minimum(np.searchsorted(vals, mag, side="left"), len(vals) - 1)
        lo = np.maximum(hi - 1, 0)
        up = (vals[hi] - mag < mag - vals[lo]) | ((vals[hi] - mag == mag - vals[lo]) & (hi % 2 == 0))
        code = np.where(up, hi, lo).astype(np.uint8)
        return code | (np.signbit(y).astype(np.uint8) << 7)

    def decode(self, buf):
        n, sections = self.open_buffer(buf)
        scales = sections.take(np.float32, blocks(n, self.block))
        codes = sections.take(np.uint8, n)
        mag = self.values[codes & 0x7F]
        out = np.where(codes & 0x80, -mag, mag)
        for k, (a, b) in enumerate(self._bounds(n)):
            out[a:b] *= float(scales[k])
        return out.astype(np.float32)
