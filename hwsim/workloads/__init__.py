"""Models: per-layer costs derived from a description, and real math where it is small enough."""

from hwsim.config.schema import LayersSpec, MlpSpec, TransformerSpec
from hwsim.workloads.layers import Layers
from hwsim.workloads.mlp import Mlp
from hwsim.workloads.ops import Gemm, LayerOps
from hwsim.workloads.transformer import Transformer


def make_model(spec: MlpSpec | TransformerSpec | LayersSpec) -> Mlp | Transformer | Layers:
    if spec.kind == "mlp" and spec.moe is not None:
        from hwsim.workloads.moe_mlp import MoeMlp

        return MoeMlp(spec)
    return {"mlp": Mlp, "transformer": Transformer, "layers": Layers}[spec.kind](spec)


__all__ = ["Gemm", "LayerOps", "Layers", "Mlp", "Transformer", "make_model"]
