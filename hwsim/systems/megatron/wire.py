"""What the 3D system puts on the wire under `system.compression`, and what encoding and decoding cost.

A collective over g ranks on a tensor of n elements moves each rank's share encoded on its own: the
buffer is g shares of ceil(n / g) elements at the codec's exact wire size (`Codec.wire_bytes`), or
n elements at the uncompressed width. Encoding reads the source and writes the codec's bytes, decoding
reads them and writes the source width back: both memory-bound passes over the tensor at the bank's
achieved rate (a quantizer's few operations per element are far below an accelerator's vector rate),
counted once for a gather (the rank's share encoded, the whole decoded) and once for a reduction
(each partial sum encoded and decoded as it passes, the shares adding up to the tensor).
"""

from __future__ import annotations

import math

from hwsim.codecs import Codec, codec_from_setting


class Wire:
    """The run's codecs (None where a setting is null) and the bank rate their passes run at."""

    def __init__(self, compression, bank_rate: float):
        self.weights = _codec(compression.weights)
        self.gradients = _codec(compression.gradients)
        self.pipeline = _codec(compression.pipeline)
        self.storage = _codec(compression.storage)
        self.rate = bank_rate

    @staticmethod
    def total(codec: Codec | None, elements: float, width: float, ranks: int = 1) -> float:
        """Bytes of `elements` across `ranks` shares: encoded by `codec`, else `width` bytes each."""
        if codec is None:
            return elements * width
        share = math.ceil(elements / ranks)
        return float(ranks * codec.wire_bytes(share))

    def decompress_s(self, elements: float) -> float:
        """Seconds to decompress `elements` stored weights into 16-bit ones: read the stored bytes, write 2 per
        element (0 without a storage codec)."""
        if self.storage is None:
            return 0.0
        return (self.total(self.storage, elements, 2) + 2 * elements) / self.rate

    def codec_s(self, codec: Codec | None, elements: float, width: float, ranks: int = 1) -> float:
        """Seconds to encode and decode `elements` of `width` bytes (0 without a codec)."""
        if codec is None:
            return 0.0
        encoded = self.total(codec, elements, width, ranks)
        return 2 * (elements * width + encoded) / self.rate


def _codec(setting) -> Codec | None:
    return None if setting is None else codec_from_setting(setting)
