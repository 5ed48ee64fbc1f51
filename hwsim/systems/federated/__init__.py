"""Federated learning of a large model (M5) with on-the-fly decompression on the clients (M6)."""

from hwsim.systems.federated.system import Federated

__all__ = ["Federated"]
