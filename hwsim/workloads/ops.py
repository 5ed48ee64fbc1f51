"""What a layer costs: its GEMMs, element-wise work, parameters and activations."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Gemm:
    """`count` independent GEMMs C[m, n] = A[m, k] @ B[k, n]."""

    m: int
    n: int
    k: int
    count: int = 1

    @property
    def flops(self) -> int:
        return 2 * self.m * self.n * self.k * self.count

    def backward(self) -> tuple[Gemm, Gemm]:
        """The two GEMMs of its backward pass: dA = dC @ B^T (m, k, n) and dB = A^T @ dC (k, n, m)."""
        return Gemm(self.m, self.k, self.n, self.count), Gemm(self.k, self.n, self.m, self.count)


@dataclass(frozen=True)
class LayerOps:
    """One layer for a batch: the units' work in forward and backward, and its memory.

    Vector work is in element-operations (elements x operations per element).
    Parameters and activations are element counts; bytes depend on the precision.
    `outputs` is the size of the layer's output (what the next layer, or the next
    pipeline stage, receives; its gradient has the same size).
    """

    name: str
    forward: tuple[Gemm, ...]
    backward: tuple[Gemm, ...]
    forward_vector_ops: int
    backward_vector_ops: int
    params: int
    activations: int
    outputs: int
    weight: tuple[Gemm, ...] = ()
    """The GEMMs of `backward` that make weight gradients: a split backward's W runs them, its B the rest."""
    weight_vector_ops: int = 0
    """The part of `backward_vector_ops` that makes weight gradients (bias sums)."""
    weight_inputs: int = 0
    """Elements a deferred W keeps from its B until it runs: its GEMMs' inputs and output gradients."""

    @property
    def flops(self) -> int:
        return sum(g.flops for g in self.forward + self.backward)

    @property
    def input_backward(self) -> tuple[Gemm, ...]:
        """The GEMMs of `backward` that are not weight gradients (a split backward's B)."""
        rest = list(self.backward)
        for g in self.weight:
            rest.remove(g)
        return tuple(rest)
