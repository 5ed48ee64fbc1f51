"""The mechanisms as SimPy processes that wire hardware, policies and kernels together."""

from hwsim.systems.single_device import SingleDevice

SYSTEMS = {"single_device": SingleDevice}
"""System classes by the `system.kind` that names them in scenario files."""

__all__ = ["SYSTEMS", "SingleDevice"]
