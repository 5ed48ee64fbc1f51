"""Numba kernels: arrays and scalars in and out, no simulator, no config objects.

| module    | what                                                                    |
|-----------|-------------------------------------------------------------------------|
| dense     | dense layer forward/backward (and fused with SGD), ReLU                 |
| loss      | softmax cross-entropy                                                   |
| optim     | SGD, SGD with momentum, Adam                                            |
| rng       | the counter-based generator keyed by (seed, stream, index)              |
| bits      | packing codes of 1 to 8 bits                                            |
| uniform   | uniform b-bit quantization (nearest / stochastic, symmetric / minmax)   |
| floats    | bf16 and fp16 rounding                                                  |
| hadamard  | randomized Hadamard rotation, quantization onto given levels            |
| gradq     | QSGD, TernGrad, scaled sign                                             |
| sparse    | top-k, random-k, threshold selection, gather/scatter, deltas            |
| aggregate | weighted sums of updates (mean, FedAvg)                                 |
"""

from __future__ import annotations

import importlib

_MODULES = {
    "dense": ("dense_backward", "dense_backward_sgd", "dense_forward", "dense_input_grad", "dense_weight_grad",
              "relu_backward", "relu_forward"),
    "loss": ("softmax_xent",),
    "optim": ("adam", "sgd", "sgd_momentum"),
    "rng": ("MASK64", "keys", "splitmix64"),
    "floats": ("from_bf16", "from_fp16", "to_bf16", "to_fp16"),
    "gradq": ("SQUARES", "bucket_stats", "count_nonfinite", "levels_decode", "scaled_sign", "sign_decode", "stochastic_levels"),
    "bits": ("pack", "unpack"),
    "hadamard": ("levels_times", "quantize_levels", "rotate", "unrotate"),
    "sizes": ("padded_size",),
    "sparse": ("gather", "random_k_indices", "scatter", "top_k"),
    "uniform": ("dequantize_uniform", "quantize_uniform"),
}  # fmt: skip
_WHERE = {name: module for module, names in _MODULES.items() for name in names}

__all__ = sorted(_WHERE)


def __getattr__(name: str):
    """A kernel by name, its module imported (and Numba loaded) when first asked for: importing a module of
    this package (`hwsim.kernels.sizes`) or listing the codecs does not compile or load any kernel."""
    if name not in _WHERE:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(importlib.import_module(f"{__name__}.{_WHERE[name]}"), name)
    globals()[name] = value
    return value
