"""Quantization after a seeded randomized Hadamard rotation: DRIVE (1 bit) and EDEN (b bits).

Both pad x (n elements) to d = the next power of two, rotate (y = H D x / sqrt(d)),
map each coordinate to a level q_i and send one float32 scale S; the receiver
computes x_hat = S * unrotate(q). The rotation is regenerated from the 64-bit key
sent in the buffer.

- DRIVE (Vargaftik et al., NeurIPS 2021): q_i = sign(y_i).
- EDEN (Vargaftik et al., ICML 2022): q_i = the nearest Lloyd-Max level of N(0, 1)
  with 2^b levels to y_i * sqrt(d) / |x|.

Scale: "biased" is the least-squares S = <y, q> / |q|^2 (lowest error); "unbiased" is
S = |x|^2 / <y, q>, which makes <x_hat, x> = |x|^2 always and E[x_hat] = x for a
uniformly random rotation. The randomized Hadamard is a small family of rotations
(2^d sign patterns), so per coordinate a bias remains for small d: with 3000 draws it
is visible at d = 64 and not at d = 1024 (see tests/codecs/test_codecs.py).

Wire bytes for n elements: 4 (n) + 8 (key) + 4 (S) + ceil(d * bits / 8), bits = 1 for DRIVE.
"""

from __future__ import annotations

from functools import cache

import numpy as np

from hwsim import kernels
from hwsim.codecs.base import Codec, CodecError

SCALES = ("biased", "unbiased")


@cache
def lloyd_max(bits: int) -> tuple[np.ndarray, np.ndarray]:
    """Levels (2^bits, sorted) and midpoints of the MSE-optimal quantizer of N(0, 1) (Lloyd 1982; Max 1960).

    Lloyd's iteration: each level is the mean of N(0, 1) between its midpoints, each
    midpoint halfway between its levels, until nothing moves by 1e-13.
    """
    from scipy.special import ndtr  # imported here: scipy costs import time that most runs never need

    count = 1 << bits
    levels = np.linspace(-2.5, 2.5, count) if count > 2 else np.array([-1.0, 1.0])
    for _ in range(200_000):
        mids = (levels[1:] + levels[:-1]) / 2
        edges = np.concatenate([[-np.inf], mids, [np.inf]])
        pdf = np.exp(-(edges**2) / 2) / np.sqrt(2 * np.pi)
        mass = ndtr(edges[1:]) - ndtr(edges[:-1])
        new = (pdf[:-1] - pdf[1:]) / mass
        if np.max(np.abs(new - levels)) < 1e-13:
            levels = new
            break
        levels = new
    return levels, (levels[1:] + levels[:-1]) / 2


class Rotated(Codec):
    """Shared by DRIVE and EDEN: rotate, quantize onto `levels`, one scale."""

    bits = 1
    randomized = True  # the rotation

    def __init__(self, name: str, scale: str):
        if scale not in SCALES:
            raise CodecError(f"codec {name}: scale must be one of {', '.join(SCALES)}; got {scale!r}")
        self.name, self.scale = name, scale
        self.unbiased = scale == "unbiased"

    def levels(self) -> tuple[np.ndarray, np.ndarray, bool]:
        """(levels, midpoints, whether y is normalized to unit variance first)."""
        raise NotImplementedError

    def params(self) -> dict:
        return {"scale": self.scale}

    def wire_bytes(self, n: int) -> int:
        return 4 + 8 + 4 + -(-kernels.padded_size(n) * self.bits // 8)

    def encode(self, x, *, seed, stream):
        flat = self.flat_input(x)
        if kernels.count_nonfinite(flat):
            self.refuse(flat)
        n, d = flat.size, kernels.padded_size(flat.size)
        buf, sections = self.new_buffer(n)
        key = sections.take(np.uint32, 2)
        scale = sections.take(np.float32, 1)
        packed = sections.take(np.uint8, -(-d * self.bits // 8))
        k1, k2 = kernels.keys(seed, stream)
        key[:] = (k1, k2)
        y = kernels.rotate(flat, d, k1, k2)
        norm2 = float(kernels.bucket_stats(y, max(d, 1), kernels.SQUARES)[0]) if d else 0.0
        levels, mids, normalize = self.levels()
        eta = np.sqrt(d / norm2) if normalize and norm2 > 0 else 1.0
        codes = np.empty(d, dtype=np.uint8)
        dot, qq = kernels.quantize_levels(y, eta, levels, mids, codes)
        if dot <= 0:
            s = 0.0
        elif self.scale == "biased":
            s = dot / qq
        else:
            s = norm2 / dot
        scale[0] = s
        kernels.pack(codes, self.bits, packed)
        return buf

    def decode(self, buf):
        n, sections = self.open_buffer(buf)
        d = kernels.padded_size(n)
        k1, k2 = (int(k) for k in sections.take(np.uint32, 2))
        s = float(sections.take(np.float32, 1)[0])
        codes = kernels.unpack(sections.take(np.uint8, -(-d * self.bits // 8)), self.bits, d)
        levels, _, _ = self.levels()
        return kernels.unrotate(kernels.levels_times(codes, levels, s), n, k1, k2)


class Drive(Rotated):
    """DRIVE: one sign bit per rotated coordinate and one scale."""

    def __init__(self, name: str = "drive", scale: str = "unbiased"):
        super().__init__(name, scale)

    def levels(self):
        return np.array([-1.0, 1.0]), np.array([0.0]), False


class Eden(Rotated):
    """EDEN: b bits per rotated coordinate on the Lloyd-Max levels of N(0, 1), and one scale."""

    def __init__(self, name: str = "eden", bits: int = 2, scale: str = "unbiased"):
        if bits not in range(1, 9):
            raise CodecError(f"codec {name}: bits must be 1 to 8; got {bits!r}")
        super().__init__(name, scale)
        self.bits = bits

    def params(self) -> dict:
        return {"bits": self.bits, "scale": self.scale}

    def levels(self):
        levels, mids = lloyd_max(self.bits)
        return levels, mids, True
