"""Numba kernels: arrays and scalars in and out, no simulator, no config objects."""

from hwsim.kernels.dense import dense_backward, dense_forward, relu_backward, relu_forward
from hwsim.kernels.loss import softmax_xent
from hwsim.kernels.optim import sgd_momentum
from hwsim.kernels.quant import dequantize_int8_blocks, quantize_int8_blocks

__all__ = [
    "dense_backward",
    "dense_forward",
    "dequantize_int8_blocks",
    "quantize_int8_blocks",
    "relu_backward",
    "relu_forward",
    "sgd_momentum",
    "softmax_xent",
]
