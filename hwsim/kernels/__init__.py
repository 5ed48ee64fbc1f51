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

from hwsim.kernels.dense import (
    dense_backward,
    dense_backward_sgd,
    dense_forward,
    dense_input_grad,
    dense_weight_grad,
    relu_backward,
    relu_forward,
)
from hwsim.kernels.loss import softmax_xent
from hwsim.kernels.optim import adam, sgd, sgd_momentum

__all__ = [
    "adam",
    "dense_backward",
    "dense_backward_sgd",
    "dense_forward",
    "dense_input_grad",
    "dense_weight_grad",
    "relu_backward",
    "relu_forward",
    "sgd",
    "sgd_momentum",
    "softmax_xent",
]
