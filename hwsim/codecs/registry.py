"""Codecs by name, as scenario files write them: `codec: int4` or `codec: {name: qsgd, levels: 8}`.

Each name is a codec family with default parameters; `make_codec(name, **params)`
overrides any of them. `describe()` is the table `hwsim list codecs` prints.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable

from hwsim.codecs.base import Codec, CodecError
from hwsim.codecs.floats import Fp32, Half
from hwsim.codecs.fp8 import Fp8
from hwsim.codecs.gradient import Qsgd, ScaledSign, TernGrad
from hwsim.codecs.rotated import Drive, Eden
from hwsim.codecs.sparse import RandK, TopK
from hwsim.codecs.uniform import Uniform


def _uniform(bits: int) -> Callable[..., Codec]:
    def make(name: str, bits: int = bits, rounding: str = "nearest", block: int | None = 256, scheme: str = "symmetric") -> Codec:
        return Uniform(name, bits, rounding, block, scheme)

    return make


CODECS: dict[str, tuple[Callable[..., Codec], str]] = {
    "fp32": (lambda name: Fp32(), "float32 as is"),
    "bf16": (lambda name: Half("bf16"), "bfloat16, round to nearest even"),
    "fp16": (lambda name: Half("fp16"), "IEEE half, round to nearest even; |x| < 65520"),
    "fp8_e4m3": (lambda name, block=None: Fp8(name, "e4m3", block), "OCP FP8 e4m3, scaled per tensor (or block)"),
    "fp8_e5m2": (lambda name, block=None: Fp8(name, "e5m2", block), "OCP FP8 e5m2, scaled per tensor (or block)"),
    "int8": (_uniform(8), "uniform 8-bit, per block"),
    "int4": (_uniform(4), "uniform 4-bit, per block"),
    "int2": (_uniform(2), "uniform 2-bit, per block"),
    "int1": (_uniform(1), "uniform 1-bit, per block"),
    "uniform": (_uniform(8), "uniform b-bit (choose bits)"),
    "drive": (Drive, "randomized Hadamard + 1 sign bit + scale (DRIVE)"),
    "eden": (Eden, "randomized Hadamard + b-bit Lloyd-Max levels + scale (EDEN)"),
    "qsgd": (Qsgd, "QSGD, stochastic, per bucket L2 norm"),
    "terngrad": (TernGrad, "TernGrad, stochastic ternary, per bucket max"),
    "sign": (ScaledSign, "scaled sign, per bucket mean |x|"),
    "topk": (TopK, "top-k magnitudes + indices"),
    "randk": (RandK, "random-k values + seed"),
}


def parameters(name: str) -> dict[str, object]:
    """The parameters of codec `name` with their defaults."""
    factory, _ = CODECS[name]
    sig = inspect.signature(factory)
    return {p: v.default for p, v in sig.parameters.items() if p != "name"}


def make_codec(name: str, **params) -> Codec:
    """The codec `name` with `params` overriding its defaults; a CodecError names any mistake."""
    if not isinstance(name, str):
        shown = dict(name) if hasattr(name, "items") else name
        raise CodecError(f"a codec name is a string such as int8; got {shown!r}")
    if name not in CODECS:
        raise CodecError(f"unknown codec {name!r}; known codecs: {', '.join(CODECS)}")
    accepted = parameters(name)
    unknown = sorted(set(params) - set(accepted))
    if unknown:
        allowed = ", ".join(f"{p} (default {d!r})" for p, d in accepted.items()) or "none"
        raise CodecError(f"codec {name}: unknown parameter {', '.join(unknown)}; it takes: {allowed}")
    factory, _ = CODECS[name]
    return factory(name=name, **params)


def codec_from_setting(setting) -> Codec:
    """The codec a scenario setting names: null (fp32), a name, or a mapping {name: ..., params...}."""
    if setting is None:
        return make_codec("fp32")
    if isinstance(setting, str):
        return make_codec(setting)
    if hasattr(setting, "items") and "name" in setting:
        return make_codec(setting["name"], **{k: v for k, v in setting.items() if k != "name"})
    raise CodecError(f"a codec name, or a mapping with a 'name' key and its parameters; got {setting!r}")


def describe(n: int = 1 << 20) -> list[dict]:
    """One row per codec: name, defaults, wire bits per element at n elements, unbiased or not."""
    rows = []
    for name, (_, summary) in CODECS.items():
        codec = make_codec(name)
        rows.append(
            {
                "codec": name,
                "parameters": ", ".join(f"{k}={v}" for k, v in parameters(name).items()) or "-",
                "bits_per_element": round(codec.bits_per_element(n), 4),
                "unbiased": codec.unbiased,
                "what": summary,
            }
        )
    return rows
