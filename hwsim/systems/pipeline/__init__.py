"""Pipelines and layered gradient accumulation (M4), bubble filling with a second instance (M2)."""

from hwsim.systems.pipeline.system import Pipeline

__all__ = ["Pipeline"]
