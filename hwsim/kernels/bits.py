"""Bit packing: codes of `width` bits (1 to 8) into a byte stream, least significant bits first.

Code i occupies bits [i * width, (i + 1) * width) of the stream, bit j of the stream is
bit (j mod 8) of byte j // 8, so n codes take ceil(n * width / 8) bytes and the unused
high bits of the last byte are zero. Widths 1, 2, 4 and 8 never straddle a byte and
have fast paths.
"""

from __future__ import annotations

import numpy as np
from numba import njit, uint8, uint32


def packed_bytes(n: int, width: int) -> int:
    """Bytes that `n` codes of `width` bits take."""
    return -(-n * width // 8)


@njit(cache=True)
def pack(codes, width, out):
    """Pack `codes` (uint8, each < 2^width) into `out` (uint8, packed_bytes(len(codes), width) long)."""
    n = codes.size
    if width == 8:
        out[:n] = codes
        return
    if 8 % width == 0:
        per = 8 // width
        full = n // per
        for j in range(full):
            acc = uint32(0)
            for t in range(per):
                acc |= uint32(codes[j * per + t]) << uint32(t * width)
            out[j] = uint8(acc)
        if full * per < n:
            acc = uint32(0)
            for t in range(n - full * per):
                acc |= uint32(codes[full * per + t]) << uint32(t * width)
            out[full] = uint8(acc)
        return
    acc = np.uint64(0)
    filled = 0
    o = 0
    for i in range(n):
        acc |= np.uint64(codes[i]) << np.uint64(filled)
        filled += width
        while filled >= 8:
            out[o] = uint8(acc & np.uint64(0xFF))
            acc >>= np.uint64(8)
            filled -= 8
            o += 1
    if filled > 0:
        out[o] = uint8(acc & np.uint64(0xFF))


@njit(cache=True)
def unpack(buf, width, n):
    """The `n` codes of `width` bits packed in `buf` (uint8)."""
    codes = np.empty(n, dtype=np.uint8)
    unpack_into(buf, width, codes)
    return codes


@njit(cache=True)
def unpack_into(buf, width, codes):
    """Unpack len(codes) codes of `width` bits from `buf` into uint8 `codes`."""
    n = codes.size
    if width == 8:
        codes[:] = buf[:n]
        return
    mask = uint32((1 << width) - 1)
    if 8 % width == 0:
        per = 8 // width
        for i in range(n):
            codes[i] = uint8((uint32(buf[i // per]) >> uint32((i % per) * width)) & mask)
        return
    for i in range(n):
        bit = i * width
        byte = bit // 8
        word = uint32(buf[byte])
        if byte + 1 < buf.size:
            word |= uint32(buf[byte + 1]) << uint32(8)
        codes[i] = uint8((word >> uint32(bit % 8)) & mask)
