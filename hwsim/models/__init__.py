"""Models: per-layer costs derived from a description, and real math where it is small enough."""

from hwsim.config.schema import MlpSpec, TransformerSpec
from hwsim.models.mlp import Mlp
from hwsim.models.ops import Gemm, LayerOps
from hwsim.models.transformer import Transformer


def make_model(spec: MlpSpec | TransformerSpec) -> Mlp | Transformer:
    return {"mlp": Mlp, "transformer": Transformer}[spec.kind](spec)


__all__ = ["Gemm", "LayerOps", "Mlp", "Transformer", "make_model"]
