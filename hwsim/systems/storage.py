"""How a memory bank of a given precision stores a float32 tensor, and how many bytes that takes.

| precision | stored as                                   | bytes for n elements          |
|-----------|---------------------------------------------|-------------------------------|
| fp32      | the float32 values                          | 4 n                           |
| bf16/fp16 | 16-bit floats                               | 2 n                           |
| int8      | int8 codes + one float32 scale per block    | n + 4 ceil(n / block)         |
| int4      | packed 4-bit codes + one scale per block    | ceil(n / 2) + 4 ceil(n / block) |

Real math (full mode) supports fp32 and int8 storage here; the other precisions are
costed by size in timing-only mode until the codec library provides them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from hwsim.kernels import dequantize_int8_blocks, quantize_int8_blocks

MATH_PRECISIONS = ("fp32", "int8")


def stored_bytes(n: int, precision: str, block: int) -> int:
    """Bytes a bank of `precision` needs for `n` elements (see the table above)."""
    blocks = -(-n // block)
    return {
        "fp32": 4 * n,
        "bf16": 2 * n,
        "fp16": 2 * n,
        "int8": n + 4 * blocks,
        "int4": -(-n // 2) + 4 * blocks,
    }[precision]


def element_bytes(precision: str) -> float:
    return {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "int8": 1.0, "int4": 0.5}[precision]


@dataclass(frozen=True)
class Stored:
    """A tensor as a bank holds it: the buffers, the shape and the precision."""

    precision: str
    shape: tuple[int, ...]
    codes: np.ndarray
    scales: np.ndarray | None
    block: int

    @property
    def nbytes(self) -> int:
        return int(self.codes.nbytes + (self.scales.nbytes if self.scales is not None else 0))


def encode(x: np.ndarray, precision: str, block: int) -> Stored:
    """Store float32 `x` at `precision` (fp32 copies; int8 quantizes per block)."""
    flat = np.ascontiguousarray(x, dtype=np.float32).ravel()
    if precision == "fp32":
        return Stored(precision, x.shape, flat.copy(), None, block)
    if precision == "int8":
        codes, scales = quantize_int8_blocks(flat, block)
        return Stored(precision, x.shape, codes, scales, block)
    raise ValueError(f"storage precision {precision!r} has no real math yet (supported: {', '.join(MATH_PRECISIONS)})")


def decode(stored: Stored) -> np.ndarray:
    """The float32 tensor that `stored` represents."""
    if stored.precision == "fp32":
        return stored.codes.reshape(stored.shape).copy()
    return dequantize_int8_blocks(stored.codes, stored.scales, stored.block).reshape(stored.shape)
