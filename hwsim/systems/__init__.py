"""The mechanisms as SimPy processes that wire hardware, policies and kernels together."""

from hwsim.systems.compressed_ps import CompressedPs
from hwsim.systems.data_parallel import DataParallel
from hwsim.systems.federated import Federated
from hwsim.systems.jobs import Jobs
from hwsim.systems.megatron import Megatron
from hwsim.systems.online import Online
from hwsim.systems.pipeline import Pipeline
from hwsim.systems.replay import Replay
from hwsim.systems.single_device import SingleDevice

SYSTEMS = {
    "single_device": SingleDevice,
    "compressed_ps": CompressedPs,
    "pipeline": Pipeline,
    "online": Online,
    "federated": Federated,
    "data_parallel": DataParallel,
    "megatron": Megatron,
    "replay": Replay,
    "jobs": Jobs,
}
"""System classes by the `system.kind` that names them in scenario files.

A system class has `npu_names(spec)` (the device on each NPU of the cluster, in order),
`check(scenario, where)` (its cross-field checks), `check_samples(spec, training samples)`
(a system whose NPUs come from its model, `takes_traces`, has `npu_names(spec, model)`),
and is built as `kind(scenario, cluster, model, data, rng, progress)`; `run()` is its
SimPy process. A new system is a class with these and an entry here."""

__all__ = [
    "SYSTEMS",
    "CompressedPs",
    "DataParallel",
    "Federated",
    "Jobs",
    "Megatron",
    "Online",
    "Pipeline",
    "Replay",
    "SingleDevice",
]
