"""Large models in 3D: Megatron's tensor, sequence, pipeline and data parallelism."""

from hwsim.systems.megatron.system import Megatron

__all__ = ["Megatron"]
