"""How a memory bank of a given precision stores a float32 tensor, and how many bytes that takes.

A bank holds the codec buffer of each tensor (`hwsim.codecs`), so its bytes are the
codec's exact wire size:

| precision | codec                                               | bytes for n elements            |
|-----------|-----------------------------------------------------|---------------------------------|
| fp32      | fp32                                                | 4 + 4 n                         |
| bf16/fp16 | bf16 / fp16, round to nearest even                  | 4 + 2 n                         |
| int8      | int8: symmetric per block, round to nearest         | 4 + 4 ceil(n / block) + n       |
| int4      | int4: symmetric per block, round to nearest, packed | 4 + 4 ceil(n / block) + ceil(n / 2) |
| int2      | int2: symmetric per block, round to nearest, packed | 4 + 4 ceil(n / block) + ceil(n / 4) |

(the leading 4 bytes count the elements). Every precision runs real math.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cache

import numpy as np

from hwsim.codecs import Codec, make_codec

QUANTIZED = ("int8", "int4", "int2")


@cache
def bank_codec(precision: str, block: int) -> Codec:
    """The codec a bank of `precision` stores tensors with (`block` is for the integer precisions).

    Cached: a codec holds only its parameters, and the step loop asks for it per layer. Banks round
    to nearest: their codecs draw no random numbers."""
    codec = make_codec(precision, block=block) if precision in QUANTIZED else make_codec(precision)
    assert not codec.randomized, codec
    return codec


def stored_bytes(n: int, precision: str, block: int) -> int:
    """Bytes a bank of `precision` needs for `n` elements (see the table above)."""
    return bank_codec(precision, block).wire_bytes(n)


def element_bytes(precision: str) -> float:
    return {"fp32": 4.0, "bf16": 2.0, "fp16": 2.0, "fp8": 1.0, "int8": 1.0, "int4": 0.5, "int2": 0.25}[precision]


@dataclass(frozen=True)
class Stored:
    """A tensor as a bank holds it: the codec buffer and the shape."""

    codec: Codec
    shape: tuple[int, ...]
    buffer: np.ndarray

    @property
    def nbytes(self) -> int:
        return int(self.buffer.nbytes)


def encode(x: np.ndarray, precision: str, block: int) -> Stored:
    """Store float32 `x` at `precision`. Bank codecs round to nearest, so no stream is needed: the one
    they are given (0) draws nothing."""
    codec = bank_codec(precision, block)
    return Stored(codec, x.shape, codec.encode(x, seed=0, stream=0))


def decode(stored: Stored) -> np.ndarray:
    """The float32 tensor that `stored` represents."""
    return stored.codec.decode(stored.buffer).reshape(stored.shape)
