"""Codecs: what goes on the wire or into a bank when a tensor is compressed.

Every codec has `encode(x, seed=..., stream=...) -> uint8 buffer` (the exact bytes:
payload plus scales, norms, indices, keys), `decode(buffer) -> float32`, and an exact
`wire_bytes(n)`. `seed` and `stream` are required: `stream_of(...)` makes a stream id
from what identifies one encoding, so randomized codecs stay independent across calls.
`make_codec(name, **params)` builds one by its scenario-file name.
Codecs are plain Python over the Numba kernels of `hwsim.kernels`.
"""

from hwsim.codecs.base import Codec, CodecError, ErrorFeedback, NonFiniteInput, stream_of
from hwsim.codecs.registry import CODECS, codec_from_setting, describe, make_codec, parameters

__all__ = [
    "CODECS",
    "Codec",
    "CodecError",
    "ErrorFeedback",
    "NonFiniteInput",
    "codec_from_setting",
    "describe",
    "make_codec",
    "parameters",
    "stream_of",
]
