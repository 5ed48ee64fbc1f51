"""What every codec shares: the buffer layout, input checks and the error type.

A buffer is a flat uint8 array: the exact bytes that would go on the wire. It starts
with the element count n as a little-endian uint32, then the codec's sections in a
fixed order: 4-byte fields (keys, scales, norms, indices, values) first, then 2-byte
fields, then packed codes, so every section is aligned for its type.
"""

from __future__ import annotations

import numpy as np

from hwsim import kernels

MAX_ELEMENTS = (1 << 32) - 1
HEADER = 4


class CodecError(ValueError):
    """A codec was given something it cannot encode or decode; the message says what and why."""


class NonFiniteInput(CodecError):
    """A codec was given NaN or infinity (or a magnitude its format cannot hold): in training, the
    sign that the run diverged."""


def stream_of(*fields: int) -> int:
    """One 64-bit counter-RNG stream id for an encoding keyed by small integers, for example
    (round, client, layer, direction, step): SplitMix64 chained over the fields, so distinct
    keys get unrelated streams whatever the fields' ranges (no packing into bit fields)."""
    z = 0
    for f in fields:
        z = kernels.splitmix64(z ^ (int(f) & kernels.MASK64))
    return z


class Sections:
    """Carve a buffer into consecutive typed views, in the order they are asked for."""

    def __init__(self, buf: np.ndarray):
        self.buf = buf
        self.offset = 0

    def take(self, dtype, count: int) -> np.ndarray:
        size = np.dtype(dtype).itemsize * count
        view = self.buf[self.offset : self.offset + size].view(dtype)
        self.offset += size
        return view


class Codec:
    """Base of all codecs: subclasses set `name`, `unbiased`, and implement the three methods."""

    name = "codec"
    unbiased = False  # whether E[decode(encode(x))] = x over the random seed
    randomized = False  # whether encode draws random numbers (keyed by seed and stream)

    def params(self) -> dict:
        """The parameters this codec was made with (as a scenario file would write them)."""
        return {}

    def wire_bytes(self, n: int) -> int:
        """Exact length of the buffer for n elements."""
        raise NotImplementedError

    def encode(self, x: np.ndarray, *, seed: int, stream: int) -> np.ndarray:
        """The buffer (uint8) that carries float32 `x`; (seed, stream) key any randomness.

        Both are required: a randomized codec (stochastic rounding, a random rotation,
        random-k) is independent across calls and unbiased on average only if every
        encoding gets its own stream (see `stream_of`). Deterministic codecs ignore them.
        """
        raise NotImplementedError

    def decode(self, buf: np.ndarray) -> np.ndarray:
        """The flat float32 array that `buf` carries."""
        raise NotImplementedError

    def bits_per_element(self, n: int = 1 << 20) -> float:
        """Wire bits per element for a tensor of n elements, everything included."""
        return 8 * self.wire_bytes(n) / n

    def __repr__(self) -> str:
        args = ", ".join(f"{k}={v!r}" for k, v in self.params().items())
        return f"{self.name}({args})"

    # helpers for subclasses

    def flat_input(self, x) -> np.ndarray:
        """`x` as a contiguous flat float32 array, refusing what cannot be encoded."""
        flat = np.ascontiguousarray(np.asarray(x, dtype=np.float32).reshape(-1))
        if flat.size > MAX_ELEMENTS:
            raise CodecError(
                f"codec {self!r}: {flat.size} elements is more than {MAX_ELEMENTS} (2^32 - 1), the most a buffer header can count"
            )
        return flat

    def refuse(self, x: np.ndarray, bad: np.ndarray | None = None, what: str = "NaN or infinity") -> None:
        """Raise a CodecError naming the first element of `x` that is not finite (or where `bad` is set)."""
        bad = ~np.isfinite(x) if bad is None else bad
        i = int(np.flatnonzero(bad)[0])
        raise NonFiniteInput(
            f"codec {self!r}: element {i} of the input is {float(x[i])!r}; codecs need finite values, and this is {what}"
        )

    def new_buffer(self, n: int) -> tuple[np.ndarray, Sections]:
        buf = np.empty(self.wire_bytes(n), dtype=np.uint8)
        sections = Sections(buf)
        sections.take(np.uint32, 1)[0] = n
        return buf, sections

    def open_buffer(self, buf) -> tuple[int, Sections]:
        """The element count of `buf` and its sections after the header, checking its length."""
        buf = np.asarray(buf)
        if buf.dtype != np.uint8 or buf.ndim != 1 or buf.size < HEADER:
            raise CodecError(
                f"codec {self!r}: a buffer is a flat uint8 array of at least {HEADER} bytes; got {buf.dtype} of shape {buf.shape}"
            )
        sections = Sections(buf)
        n = int(sections.take(np.uint32, 1)[0])
        if buf.size != self.wire_bytes(n):
            raise CodecError(
                f"codec {self!r}: the buffer is {buf.size} bytes but {n} elements take {self.wire_bytes(n)}; it was cut short or made by another codec"
            )
        return n, sections


def blocks(n: int, block: int | None) -> int:
    """Number of blocks (or buckets) of `block` elements in n; None means one for the whole tensor."""
    if n == 0:
        return 0
    return 1 if block is None else -(-n // block)


def block_size(n: int, block: int | None) -> int:
    """The block length the kernels use: `block`, or n (at least 8) for the whole tensor."""
    return block if block is not None else max(8, -(-n // 8) * 8)


class ErrorFeedback:
    """Error feedback around any codec (Seide et al. 2014; Karimireddy et al., ICML 2019).

    Each call encodes x + e, where e is what earlier calls lost, and keeps the new loss:
    over T calls the decoded outputs add up to the inputs' sum minus the final residual.
    One instance per tensor stream.
    """

    def __init__(self, codec: Codec):
        self.codec = codec
        self.residual: np.ndarray | None = None

    def encode(self, x: np.ndarray, *, seed: int, stream: int) -> np.ndarray:
        flat = self.codec.flat_input(x)
        target = flat if self.residual is None else flat + self.residual
        buf = self.codec.encode(target, seed=seed, stream=stream)
        self.residual = target - self.codec.decode(buf)
        return buf

    def decode(self, buf: np.ndarray) -> np.ndarray:
        return self.codec.decode(buf)
