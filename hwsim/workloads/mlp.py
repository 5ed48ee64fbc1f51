"""A multi-layer perceptron: its per-layer costs and its real math (through the kernels)."""

from __future__ import annotations

import numpy as np

from hwsim.config.schema import MlpSpec
from hwsim.kernels import (
    dense_backward,
    dense_forward,
    dense_input_grad,
    dense_weight_grad,
    relu_backward,
    relu_forward,
    softmax_xent,
)
from hwsim.workloads.ops import Gemm, LayerOps

# Element-operations per output element of each step (vector-unit cost model).
BIAS_RELU_OPS = 2  # add bias, max(., 0)
SOFTMAX_XENT_OPS = 6  # max, subtract, exp, sum, divide, subtract one-hot
RELU_BACKWARD_OPS = 1
BIAS_GRAD_OPS = 1


class Mlp:
    """Dense layers `inputs -> hidden... -> classes`, ReLU between, softmax cross-entropy on top.

    Parameters are a list of (w, b) per layer: w (in, out) and b (out,), float32.
    """

    has_math = True
    edge_layers = (0, 0)
    """Leading and trailing layers that stay with the first and last pipeline stage (none: every layer splits)."""

    def __init__(self, spec: MlpSpec):
        self.spec = spec
        widths = (spec.inputs, *spec.hidden, spec.classes)
        self.shapes = list(zip(widths[:-1], widths[1:], strict=True))
        self.layer_names = [f"dense{i}" for i in range(len(self.shapes))]

    @property
    def num_params(self) -> int:
        return sum(i * o + o for i, o in self.shapes)

    def init_params(self, rng: np.random.Generator) -> list[tuple[np.ndarray, np.ndarray]]:
        """Weights by `spec.init`, zero biases:

        - he: normal, std sqrt(2 / fan_in) (He et al., ICCV 2015);
        - xavier: uniform on +-sqrt(6 / (fan_in + fan_out)) (Glorot and Bengio, AISTATS 2010);
        - normal: normal, std `spec.init_std`;
        - zeros: all zero, as FedAvg baselines start a linear model (refused with hidden layers,
          whose units would never differ from one another).
        """
        return [(self._weights(rng, i, o).astype(np.float32), np.zeros(o, np.float32)) for i, o in self.shapes]

    def _weights(self, rng: np.random.Generator, fan_in: int, fan_out: int) -> np.ndarray:
        init = self.spec.init
        if init == "zeros":
            return np.zeros((fan_in, fan_out))
        if init == "xavier":
            limit = np.sqrt(6.0 / (fan_in + fan_out))
            return rng.uniform(-limit, limit, (fan_in, fan_out))
        std = self.spec.init_std if init == "normal" else np.sqrt(2.0 / fan_in)
        return rng.standard_normal((fan_in, fan_out)) * std

    def layer_ops(self, batch: int) -> list[LayerOps]:
        ops = []
        last = len(self.shapes) - 1
        for li, (fan_in, fan_out) in enumerate(self.shapes):
            fwd = Gemm(batch, fan_out, fan_in)
            d_input, d_weight = fwd.backward()
            # The first layer needs no gradient for its input (the data).
            bwd = (d_weight,) if li == 0 else (d_input, d_weight)
            top = SOFTMAX_XENT_OPS if li == last else BIAS_RELU_OPS
            ops.append(
                LayerOps(
                    name=self.layer_names[li],
                    forward=(fwd,),
                    backward=bwd,
                    forward_vector_ops=batch * fan_out * top,
                    backward_vector_ops=batch * fan_out * (RELU_BACKWARD_OPS + BIAS_GRAD_OPS),
                    params=fan_in * fan_out + fan_out,
                    activations=batch * fan_out * (1 if li == last else 2),  # z, and a = relu(z) below the top
                    outputs=batch * fan_out,
                    weight=(d_weight,),
                    weight_vector_ops=batch * fan_out * BIAS_GRAD_OPS,
                    weight_inputs=batch * (fan_in + fan_out),  # x and dL/dz
                )
            )
        return ops

    # --- real math, one layer at a time (the system calls these as ops complete) ---

    def forward_layer(self, li: int, x: np.ndarray, w: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(z, a) of layer `li`: z = x @ w + b; a = relu(z), or z itself on the last layer."""
        z = dense_forward(x, w, b)
        return z, (z if li == len(self.shapes) - 1 else relu_forward(z))

    def loss(self, logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
        return softmax_xent(logits, labels)

    def backward_layer(
        self, li: int, x: np.ndarray, z: np.ndarray, w: np.ndarray, d_out: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(d_input, dw, db) of layer `li` given dL/d(its output)."""
        dz = d_out if li == len(self.shapes) - 1 else relu_backward(d_out, z)
        return dense_backward(x, w, dz)

    def input_backward_layer(self, li: int, z: np.ndarray, w: np.ndarray, d_out: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(d_input, dL/dz) of layer `li`: a split backward's B; its W takes dL/dz (`weight_layer`)."""
        dz = self.output_grad(li, z, d_out)
        return dense_input_grad(w, dz), dz

    @staticmethod
    def weight_layer(x: np.ndarray, dz: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dw, db) of a layer with input `x` and dL/dz `dz`: a split backward's W."""
        return dense_weight_grad(x, dz)

    def output_grad(self, li: int, z: np.ndarray, d_out: np.ndarray) -> np.ndarray:
        """dL/dz of layer `li` given dL/d(its output): through the ReLU below the top."""
        return d_out if li == len(self.shapes) - 1 else relu_backward(d_out, z)

    def param_shapes(self, li: int) -> list[tuple[int, ...]]:
        """Shapes of layer `li`'s parameters (w, b)."""
        fan_in, fan_out = self.shapes[li]
        return [(fan_in, fan_out), (fan_out,)]

    def predict(self, params: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray) -> np.ndarray:
        a = x
        for li, (w, b) in enumerate(params):
            _, a = self.forward_layer(li, a, w, b)
        return a

    def evaluate(self, params: list[tuple[np.ndarray, np.ndarray]], x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        """(mean loss, accuracy) of `params` on (x, y)."""
        logits = self.predict(params, x)
        loss, _ = softmax_xent(logits, y)
        return float(loss), float(np.mean(np.argmax(logits, axis=1) == y))
