"""`hwsim export chakra SCENARIO OUT/`: a scenario's workload as Chakra execution traces, one file per NPU.

Built so far: a data-parallel job of layers (`system.kind: data_parallel`, `model.kind: layers`). Each NPU's
trace is the step as the data-parallel system runs it: the layers' forwards, then their backwards in reverse,
each layer's gradient all-reduce after its backward, the optimizer after the last all-reduce (when it takes
time). A layer given as GEMMs gets the cycle model's time on the scenario's hardware. What ASTRA-sim or hwsim's
replay makes of the files differs from the data-parallel system in one way: an NPU there runs one collective at
a time (ASTRA-sim's `HardwareResource`), where the data-parallel system overlaps them.
"""

from __future__ import annotations

from pathlib import Path

import simpy

from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError
from hwsim.hardware.device import Device
from hwsim.workloads.chakra import EtNode, write_trace
from hwsim.workloads.layers import Layers


def export_chakra(scenario: Scenario, out: Path) -> list[Path]:
    """Write the scenario's traces into `out` as NAME.0.et, NAME.1.et, ...; returns the files. Nothing is
    written when the scenario is not one export knows."""
    check_exportable(scenario)
    system = scenario.system
    nodes = data_parallel_step(scenario)
    files = [out / f"{scenario.name}.{r}.et" for r in range(system.replicas)]
    for path in files:
        write_trace(path, nodes)
    return files


def check_exportable(scenario: Scenario, where: str = "scenario") -> None:
    """A scenario `export_chakra` knows, or a clear error."""
    system, model = scenario.system, scenario.model
    if system.kind != "data_parallel" or model.kind != "layers":
        raise ConfigError(
            where,
            "system.kind",
            f"{system.kind} with a {model.kind} model",
            "data_parallel with a layers model (what `hwsim export chakra` writes so far)",
        )


def data_parallel_step(scenario: Scenario) -> list[EtNode]:
    """One replica's step of a data-parallel layers job (the module's docstring)."""
    system = scenario.system
    layers = Layers(scenario.model).layers
    device = Device(simpy.Environment(), "export", scenario.hardware)
    precision = system.compute_precision

    def seconds(layer, what: str) -> float:
        if layer.gemm is None:
            return layer.forward_s if what == "forward" else layer.backward_s
        gemms = (layer.gemm,) if what == "forward" else layer.gemm.backward()
        return sum(device.systolic.seconds(g.m, g.n, g.k, precision, g.count) for g in gemms)

    nodes: list[EtNode] = []

    def add(name: str, kind: str, deps: tuple[int, ...], **fields) -> int:
        nodes.append(EtNode(len(nodes), name, kind, deps, **fields))
        return len(nodes) - 1

    last: tuple[int, ...] = ()
    for layer in layers:
        last = (add(f"forward {layer.name}", "compute", last, seconds=seconds(layer, "forward")),)
    reduces = []
    for layer in reversed(layers):
        last = (add(f"backward {layer.name}", "compute", last, seconds=seconds(layer, "backward")),)
        if layer.param_bytes:
            reduces.append(add(f"all-reduce {layer.name}", "collective", last, bytes=layer.param_bytes, collective="all_reduce"))
    if system.optimizer > 0:
        add("optimizer", "compute", (*last, *reduces), seconds=system.optimizer)
    return nodes
