"""`hwsim export chakra SCENARIO OUT/`: a scenario's workload as Chakra execution traces, one file per NPU.

Built so far: a pipeline of D replicas (`system.kind: pipeline`; `pipeline_step`), and a
data-parallel job of layers (`system.kind: data_parallel`, `model.kind: layers`). Each NPU's data-parallel
trace is the step as the data-parallel system runs it: the layers' forwards, then their backwards in reverse,
each layer's gradient all-reduce after its backward, the optimizer after the last all-reduce (when it takes
time). A layer given as GEMMs gets the cycle model's time on the scenario's hardware. What ASTRA-sim or hwsim's
replay makes of the files differs from the data-parallel system in one way: an NPU there runs one collective at
a time (ASTRA-sim's `HardwareResource`), where the data-parallel system overlaps them.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable
from pathlib import Path

import simpy

from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError
from hwsim.hardware.device import Device
from hwsim.workloads.chakra import EtNode, write_trace
from hwsim.workloads.layers import Layers

Progress = Callable[..., None]


def export_chakra(scenario: Scenario, out: Path, progress: Progress | None = None) -> list[Path]:
    """Write the scenario's traces into `out` as NAME.0.et, NAME.1.et, ... and, when its collectives run over
    process groups, NAME.groups.json; returns the files. Nothing is written when the scenario is not one export
    knows. `progress(done, total, what)` hears of each rank built and each file written."""
    check_exportable(scenario)
    system = scenario.system
    groups: dict[str, list[int]] = {}
    if system.kind == "pipeline":
        traces, groups = pipeline_step(scenario)
    elif system.kind == "megatron":
        from hwsim.systems.megatron.export import megatron_step

        traces, groups = megatron_step(scenario, progress)
    else:
        traces = [data_parallel_step(scenario)] * system.replicas
    files = [out / f"{scenario.name}.{r}.et" for r in range(len(traces))]
    for r, (path, nodes) in enumerate(zip(files, traces, strict=True)):
        write_trace(path, nodes)
        if progress:
            progress(r + 1, len(files), "writing")
    if groups:  # the process groups the collectives' pg_name names (read as PREFIX.groups.json)
        files.append(out / f"{scenario.name}.groups.json")
        files[-1].write_text(json.dumps(groups, indent=1) + "\n")
    return files


def check_exportable(scenario: Scenario, where: str = "scenario") -> None:
    """A scenario `export_chakra` knows, or a clear error."""
    system, model = scenario.system, scenario.model
    if system.kind == "pipeline":
        if system.fill is not None:
            raise ConfigError(where, "system.fill", "set", "null (a second instance is not exported)")
        return
    if system.kind == "megatron":
        from hwsim.systems.megatron.export import check_megatron_exportable

        check_megatron_exportable(scenario, where)
        return
    if system.kind == "data_parallel" and system.stragglers is not None:
        raise ConfigError(where, "system.stragglers", "set", "null (every replica's trace is the same step)")
    if system.kind != "data_parallel" or model.kind != "layers":
        raise ConfigError(
            where,
            "system.kind",
            f"{system.kind} with a {model.kind} model",
            "data_parallel with a layers model, a pipeline, or megatron (what `hwsim export chakra` writes)",
        )


def pipeline_step(scenario: Scenario) -> tuple[list[list[EtNode]], dict[str, list[int]]]:
    """Each pipeline device's step as the pipeline system runs it: its ops in the schedule's order; a forward
    waits for its input activations from the stage before (a receive), a backward for its output gradient from
    the stage after, each sending what the next needs when it ends (a send; on one device, a dependency); with
    data_parallel D > 1, after a stage's last backward (or W) the all-reduce of its gradient over the D replicas'
    devices at its position (process group `stage_device{d}`: NPUs d, p + d, ..., as the system lays replicas
    out); after the last op and the device's all-reduces, each stage's update. Op times are the stages'
    cycle-model costs. Returns the traces of NPUs 0 .. D p - 1 and the process groups."""
    from hwsim.systems.pipeline.checks import stage_plan
    from hwsim.systems.stages import UPDATE_OPS
    from hwsim.systems.storage import element_bytes

    spec = scenario.system
    plan = stage_plan(scenario)
    shape, schedule, split, costs = plan.shape, plan.schedule, plan.split, plan.costs
    elem = element_bytes(scenario.hardware.memory[spec.bank].precision)
    vector = Device(simpy.Environment(), "export", scenario.hardware).vector
    traces: list[list[EtNode]] = [[] for _ in range(shape.devices)]
    done: dict[tuple, int] = {}  # (kind, stage, micro-batch) -> its compute node, on its device

    def add(d: int, name: str, kind: str, deps: tuple[int, ...], **fields) -> int:
        traces[d].append(EtNode(len(traces[d]), name, kind, deps, **fields))
        return len(traces[d]) - 1

    def tag(kind: str, s: int, j: int) -> int:
        return (s * shape.microbatches + j) * 2 + (kind == "B")

    replicas, p = spec.data_parallel, shape.devices
    group = [f"stage_device{d}" for d in range(p)]
    last = "W" if split else "B"
    backwards = dict.fromkeys(range(shape.stages), 0)  # a stage's ops that have added into its gradient
    reduces: list[list[int]] = [[] for _ in range(p)]
    previous = [()] * shape.devices
    pending = list(range(shape.devices))
    position = [0] * shape.devices
    while pending:  # walk the devices' op lists together, so a same-device input exists before its consumer
        progressed = False
        for d in list(pending):
            op = schedule[d][position[d]]
            s, j = op.stage, op.mb
            source = None if op.kind == "W" else (s - 1 if op.kind == "F" else s + 1)
            first_input = op.kind == "F" and shape.first(s) or op.kind == "B" and shape.last(s)
            deps = list(previous[d])
            if op.kind == "W":
                deps.append(done["B", s, j])
            elif not first_input:
                key = ("F" if op.kind == "F" else "B", source, j)
                if shape.device(source) == d:
                    if key not in done:
                        continue  # its producer on this device has not been written yet
                    deps.append(done[key])
                else:
                    sent = costs[source].outputs if op.kind == "F" else costs[source].inputs
                    deps.append(
                        add(
                            d,
                            f"recv {op.kind}{s}.{j}",
                            "recv",
                            (),
                            bytes=math.ceil(sent * elem),  # what the sender sends (ASTRA-sim needs it on both)
                            peer=shape.device(source),
                            tag=tag(op.kind, source, j),
                        )
                    )
            c = costs[s]
            if op.kind == "F":
                seconds = c.forward_systolic_s + c.forward_vector_s
            elif op.kind == "W":
                seconds = c.weight_systolic_s + c.weight_vector_s
            elif split:
                seconds = c.input_systolic_s + c.input_vector_s
            else:
                seconds = c.backward_systolic_s + c.backward_vector_s
            node = add(d, f"{op.kind}{s}.{j}", "compute", tuple(deps), seconds=seconds)
            done[op.kind, s, j] = node
            previous[d] = (node,)
            target = s + 1 if op.kind == "F" else s - 1
            if op.kind != "W" and 0 <= target < shape.stages and shape.device(target) != d:
                nbytes = math.ceil((c.outputs if op.kind == "F" else c.inputs) * elem)
                add(d, f"send {op.kind}{s}.{j}", "send", (node,), bytes=nbytes, peer=shape.device(target), tag=tag(op.kind, s, j))
            if op.kind == last:
                backwards[s] += 1
                if replicas > 1 and backwards[s] == len(shape.microbatches_of(s)):
                    nbytes = math.ceil(c.params * elem)
                    reduces[d].append(
                        add(d, f"all-reduce s{s}", "collective", (node,), bytes=nbytes, collective="all_reduce", group=group[d])
                    )
            position[d] += 1
            progressed = True
            if position[d] == len(schedule[d]):
                pending.remove(d)
        if not progressed:
            raise ConfigError("scenario", "system.schedule", spec.schedule, "a schedule whose ops can run (this one deadlocks)")
    for d in range(shape.devices):
        previous[d] = (*previous[d], *reduces[d])
        for s in shape.stages_of(d):
            update = vector.seconds(costs[s].params, UPDATE_OPS)
            previous[d] = (add(d, f"update s{s}", "compute", previous[d], seconds=update),)
    shifted = [  # replica r's devices are NPUs r p .. r p + p - 1, its messages among them
        [dataclasses.replace(n, peer=n.peer + r * p) if n.kind in ("send", "recv") else n for n in nodes]
        for r in range(replicas)
        for nodes in traces
    ]
    groups = {group[d]: [r * p + d for r in range(replicas)] for d in range(p)} if replicas > 1 else {}
    return shifted, groups


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
