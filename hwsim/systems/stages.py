"""A model cut into pipeline stages: which layers each stage holds, and what one micro-batch costs.

Costs come from the cycle model before anything runs (the systolic array's fold
model for every GEMM, the vector unit's lanes for element-wise work), so the same
numbers drive the simulated ops and the schedule predictions of `policies.timing`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np

from hwsim.config.schema import HardwareSpec
from hwsim.hardware import array_cycles
from hwsim.kernels import sgd_momentum
from hwsim.workloads.ops import LayerOps

ACCUMULATE_OPS = 1  # add a micro-batch's weight gradient into the stage's accumulator
UPDATE_OPS = 3  # SGD + momentum per parameter: velocity, scale, subtract


def split_layers(model, stages: int, layers_per_stage: tuple[int, ...] | None) -> list[list[int]]:
    """Layer indices of each stage. The model's `edge_layers` (an embedding, a head) ride with the
    first and last stage; the others split evenly, or as `layers_per_stage` says. Raises ValueError."""
    lead, trail = model.edge_layers
    total = len(model.layer_names)
    body = total - lead - trail
    if layers_per_stage is None:
        if body % stages:
            raise ValueError(f"{stages} stages do not divide the model's {body} layers evenly")
        counts = [body // stages] * stages
    else:
        counts = list(layers_per_stage)
        if len(counts) != stages or sum(counts) != body:
            raise ValueError(f"{len(counts)} entries summing to {sum(counts)}; need {stages} entries summing to {body}")
    out, at = [], lead
    for count in counts:
        out.append(list(range(at, at + count)))
        at += count
    out[0] = list(range(lead)) + out[0]
    out[-1] = out[-1] + list(range(total - trail, total))
    return out


@dataclass(frozen=True)
class StageCost:
    """One stage for one micro-batch: unit seconds, FLOP, and sizes in elements."""

    forward_systolic_s: float
    forward_vector_s: float
    backward_systolic_s: float
    backward_vector_s: float
    forward_flops: float
    backward_flops: float
    params: int
    activations: int  # kept from forward to backward
    inputs: int  # elements received from the stage before (activations) and sent back as their gradient
    outputs: int
    # a split backward: B (input gradient) and W (weight gradient, with the accumulate), parts of the above
    input_systolic_s: float = 0.0
    input_vector_s: float = 0.0
    weight_systolic_s: float = 0.0
    weight_vector_s: float = 0.0
    weight_flops: float = 0.0
    weight_inputs: int = 0  # kept from B to W
    # element operations on the vector unit (its work; the seconds above are these over its lanes)
    forward_vector_ops: int = 0
    backward_vector_ops: int = 0
    input_vector_ops: int = 0
    weight_vector_ops: int = 0

    @property
    def forward_s(self) -> float:
        return self.forward_systolic_s + self.forward_vector_s

    @property
    def backward_s(self) -> float:
        """The fused backward (input and weight gradients)."""
        return self.backward_systolic_s + self.backward_vector_s

    @property
    def input_s(self) -> float:
        """A split backward's B."""
        return self.input_systolic_s + self.input_vector_s

    @property
    def weight_s(self) -> float:
        """A split backward's W."""
        return self.weight_systolic_s + self.weight_vector_s


def stage_costs(ops: list[LayerOps], stages: list[list[int]], hardware: HardwareSpec, precision: str) -> list[StageCost]:
    """The cost of each stage's forward and backward for one micro-batch (`ops` are the model's layers at that batch)."""
    array, vector = hardware.systolic, hardware.vector

    def systolic_s(gemms) -> float:  # a stage's GEMMs run as one call: one launch
        cycles = sum(array_cycles(array, g.m, g.n, g.k, precision, g.count) for g in gemms)
        return cycles / array.clock + (array.launch if gemms else 0.0)

    def vector_s(element_ops: int) -> float:  # one element-wise op: one launch
        return math.ceil(element_ops / vector.lanes) / vector.clock + vector.launch

    out = []
    for layers in stages:
        mine = [ops[li] for li in layers]
        fwd = [g for op in mine for g in op.forward]
        bwd = [g for op in mine for g in op.backward]
        weight = [g for op in mine for g in op.weight]
        params = sum(op.params for op in mine)
        weight_vector = sum(op.weight_vector_ops for op in mine) + params * ACCUMULATE_OPS
        forward_vector = sum(op.forward_vector_ops for op in mine)
        backward_vector = sum(op.backward_vector_ops for op in mine) + params * ACCUMULATE_OPS
        input_vector = sum(op.backward_vector_ops for op in mine) - sum(op.weight_vector_ops for op in mine)
        first = mine[0]
        inputs = first.forward[0].m * first.forward[0].k if first.forward else first.outputs
        out.append(
            StageCost(
                forward_systolic_s=systolic_s(fwd),
                forward_vector_s=vector_s(forward_vector),
                backward_systolic_s=systolic_s(bwd),
                backward_vector_s=vector_s(backward_vector),
                forward_flops=float(sum(g.flops for g in fwd)),
                backward_flops=float(sum(g.flops for g in bwd)),
                params=params,
                activations=sum(op.activations for op in mine),
                inputs=inputs,
                outputs=mine[-1].outputs,
                input_systolic_s=systolic_s([g for op in mine for g in op.input_backward]),
                input_vector_s=vector_s(input_vector),
                weight_systolic_s=systolic_s(weight),
                weight_vector_s=vector_s(weight_vector),
                weight_flops=float(sum(g.flops for g in weight)),
                weight_inputs=sum(op.weight_inputs for op in mine),
                forward_vector_ops=forward_vector,
                backward_vector_ops=backward_vector,
                input_vector_ops=input_vector,
                weight_vector_ops=weight_vector,
            )
        )
    return out


# --- the math of one stage ----------------------------------------------------------


def stage_forward(model, layers: list[int], params: list, x: np.ndarray) -> tuple[np.ndarray, list]:
    """The stage's output for input `x`, and the (input, pre-activation) of each layer for its backward."""
    kept = []
    for (w, b), li in zip(params, layers, strict=True):
        z, a = model.forward_layer(li, x, w, b)
        kept.append((x, z))
        x = a
    return x, kept


def stage_backward(model, layers: list[int], params: list, grads: list, kept: list, grad: np.ndarray) -> np.ndarray:
    """Add the stage's weight gradients into `grads` and return the gradient of its input."""
    for li, (x, z), (w, _), (gw, gb) in reversed(list(zip(layers, kept, params, grads, strict=True))):
        grad, dw, db = model.backward_layer(li, x, z, w, grad)
        gw += dw
        gb += db
    return grad


def stage_input_backward(model, layers: list[int], params: list, kept: list, grad: np.ndarray) -> tuple[np.ndarray, list]:
    """A split backward's B: the gradient of the stage's input, and per layer the (input, dL/dz) its
    W needs."""
    saved = []
    for li, (x, z), (w, _) in reversed(list(zip(layers, kept, params, strict=True))):
        grad, dz = model.input_backward_layer(li, z, w, grad)
        saved.append((x, dz))
    return grad, saved[::-1]


def stage_weight_backward(model, grads: list, saved: list) -> None:
    """A split backward's W: add the stage's weight gradients into `grads`, last layer first (the
    order of the fused backward, so the sums match it)."""
    for (x, dz), (gw, gb) in reversed(list(zip(saved, grads, strict=True))):
        dw, db = model.weight_layer(x, dz)
        gw += dw
        gb += db


def stage_update(params: list, grads: list, velocity: list, scale: float, lr: float, momentum: float) -> None:
    """SGD + momentum on `scale` x the accumulated gradients, which are then cleared."""
    scale = np.float32(scale)
    for (w, b), (gw, gb), (vw, vb) in zip(params, grads, velocity, strict=True):
        sgd_momentum(w, gw * scale, vw, lr, momentum)
        sgd_momentum(b, gb * scale, vb, lr, momentum)
        gw[...] = 0.0
        gb[...] = 0.0
