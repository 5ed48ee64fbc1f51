"""The mechanisms as SimPy processes that wire hardware, policies and kernels together."""

from hwsim.systems.compressed_ps import CompressedPs
from hwsim.systems.federated import Federated
from hwsim.systems.online import Online
from hwsim.systems.pipeline import Pipeline
from hwsim.systems.single_device import SingleDevice

SYSTEMS = {
    "single_device": SingleDevice,
    "compressed_ps": CompressedPs,
    "pipeline": Pipeline,
    "online": Online,
    "federated": Federated,
}
"""System classes by the `system.kind` that names them in scenario files."""

__all__ = ["SYSTEMS", "CompressedPs", "Federated", "Online", "Pipeline", "SingleDevice"]
