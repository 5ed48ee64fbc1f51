"""A workload of plain layers: times measured on the user's own hardware, or GEMM shapes (timing-only)."""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.config.schema import LayersSpec
from hwsim.workloads.ops import Gemm

GRADIENT_BYTES = 4  # a GEMM layer's default gradient: k x n float32 weights


@dataclass(frozen=True)
class Layer:
    """A layer's given times (seconds), or its forward GEMM (`gemm`; times from the cycle model)."""

    name: str
    forward_s: float | None
    backward_s: float | None
    param_bytes: int
    gemm: Gemm | None = None


class Layers:
    """`spec.layers` repeated `spec.repeat` times, first to last."""

    def __init__(self, spec: LayersSpec):
        self.spec = spec
        named = spec.repeat > 1 and any(layer.name for layer in spec.layers)  # name the copies apart
        self.layers = []
        for i, layer in enumerate(spec.layers * spec.repeat):
            name = layer.name or f"layer{i}"
            if named:
                name = f"{name}.{i // len(spec.layers)}"
            gemm = Gemm(*layer.gemm) if layer.gemm is not None else None
            params = layer.params if layer.params is not None else (gemm.k * gemm.n * GRADIENT_BYTES if gemm else 0)
            self.layers.append(Layer(name, layer.forward, layer.backward, int(params), gemm))
        self.layer_names = [x.name for x in self.layers]

    @property
    def param_bytes(self) -> int:
        return sum(x.param_bytes for x in self.layers)


def check_layers(spec: LayersSpec) -> list[tuple[str, object, str]]:
    """What is wrong with each layer, as (key under model, value, what is expected): a layer is timed
    (forward and backward) or a GEMM, not both, not neither; params are needed without a GEMM."""
    problems = []
    for i, layer in enumerate(spec.layers):
        key = f"layers[{i}]"
        timed = layer.forward is not None or layer.backward is not None
        if layer.gemm is not None:
            if len(layer.gemm) != 3:
                problems.append((f"{key}.gemm", list(layer.gemm), "[m, n, k]: three sizes"))
            if timed:
                problems.append((f"{key}.forward", layer.forward, "no time with gemm (the cycle model times a GEMM layer)"))
        else:
            for what in ("forward", "backward"):
                if getattr(layer, what) is None:
                    problems.append((f"{key}.{what}", None, f"a {what} time, or gemm: [m, n, k]"))
            if layer.params is None:
                problems.append((f"{key}.params", None, "the parameters' bytes (only a GEMM layer has a default)"))
    return problems
