"""One device trains alone: the compressed bank, decompress, compute, re-compress (M1 without a network)."""

from hwsim.systems.single_device.system import SingleDevice

__all__ = ["SingleDevice"]
