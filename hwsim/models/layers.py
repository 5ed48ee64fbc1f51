"""A workload of plain layers with times measured on the user's own hardware (timing-only)."""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.config.schema import LayersSpec


@dataclass(frozen=True)
class Layer:
    name: str
    forward_s: float
    backward_s: float
    param_bytes: int


class Layers:
    """`spec.layers` repeated `spec.repeat` times, first to last."""

    def __init__(self, spec: LayersSpec):
        self.spec = spec
        self.layers = [
            Layer(layer.name or f"layer{i}", layer.forward, layer.backward, int(layer.params))
            for i, layer in enumerate(spec.layers * spec.repeat)
        ]
        if spec.repeat > 1 and any(layer.name for layer in spec.layers):  # name the copies apart
            self.layers = [
                Layer(f"{x.name}.{i // len(spec.layers)}", x.forward_s, x.backward_s, x.param_bytes)
                for i, x in enumerate(self.layers)
            ]
        self.layer_names = [x.name for x in self.layers]

    @property
    def param_bytes(self) -> int:
        return sum(x.param_bytes for x in self.layers)
