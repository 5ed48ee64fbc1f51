"""Models: per-layer costs derived from a description, and real math where it is small enough."""

from hwsim.workloads.layers import Layers
from hwsim.workloads.mlp import Mlp
from hwsim.workloads.ops import Gemm, LayerOps
from hwsim.workloads.transformer import Transformer

RECORDED = ("chakra", "torch_trace")
"""Model kinds that are recorded traces (system kind replay runs them)."""


def recorded(spec):
    """The trace set of a recorded model: a Chakra trace set, or a torch trace on its ranks."""
    if spec.kind == "chakra":
        from hwsim.workloads.chakra import TraceSet

        return TraceSet(spec)
    from hwsim.workloads.torch_trace import TorchTrace

    return TorchTrace(spec)


def make_model(spec):
    """The workload object of a model spec: an mlp, a transformer, a list of layers or a Chakra trace set."""
    if spec.kind == "mlp" and spec.moe is not None:
        from hwsim.workloads.moe_mlp import MoeMlp

        return MoeMlp(spec)
    if spec.kind in RECORDED:
        return recorded(spec)
    return {"mlp": Mlp, "transformer": Transformer, "layers": Layers}[spec.kind](spec)


__all__ = ["RECORDED", "Gemm", "LayerOps", "Layers", "Mlp", "Transformer", "make_model", "recorded"]
