"""Indexed updates: some of a tensor's elements, by index, their values encoded with any codec.

Wire layout (bytes):

| field   | size                         |                                   |
|---------|------------------------------|-----------------------------------|
| n       | 4 (uint32)                   | elements of the whole tensor      |
| k       | 4 (uint32)                   | elements carried                  |
| indices | 4 k (uint32), none if k = n  | ascending; k = n means all, in order |
| values  | codec.wire_bytes(k)          | the k values, encoded             |
"""

from __future__ import annotations

import numpy as np

from hwsim.codecs.base import Codec, CodecError

HEADER = 8


def indexed_bytes(n: int, k: int, codec: Codec) -> int:
    """Wire bytes of an indexed update carrying k of n elements."""
    return HEADER + (0 if k == n else 4 * k) + codec.wire_bytes(k)


def pack(idx: np.ndarray, values: np.ndarray, n: int, codec: Codec, *, seed: int, stream: int) -> np.ndarray:
    """The buffer of `values` at indices `idx` (ascending uint32) of an n-element tensor; (seed, stream)
    key the codec's randomness."""
    k = idx.size
    payload = codec.encode(values, seed=seed, stream=stream)
    buf = np.empty(indexed_bytes(n, k, codec), np.uint8)
    buf[:HEADER].view(np.uint32)[:] = (n, k)
    pos = HEADER
    if k != n:
        buf[pos : pos + 4 * k].view(np.uint32)[:] = idx
        pos += 4 * k
    buf[pos:] = payload
    return buf


def unpack(buf: np.ndarray, codec: Codec) -> tuple[int, np.ndarray, np.ndarray]:
    """(n, indices, decoded values) of an indexed update."""
    if buf.dtype != np.uint8 or buf.ndim != 1 or buf.size < HEADER:
        raise CodecError(f"an indexed update is a flat uint8 buffer of at least {HEADER} bytes; got {buf.dtype} {buf.shape}")
    n, k = (int(v) for v in buf[:HEADER].view(np.uint32))
    if buf.size != indexed_bytes(n, k, codec):
        raise CodecError(
            f"an indexed update of {k} of {n} elements with {codec!r} takes {indexed_bytes(n, k, codec)} bytes; got {buf.size}"
        )
    if k == n:
        return n, np.arange(n, dtype=np.uint32), codec.decode(buf[HEADER:])
    idx = buf[HEADER : HEADER + 4 * k].view(np.uint32)
    return n, idx, codec.decode(buf[HEADER + 4 * k :])
