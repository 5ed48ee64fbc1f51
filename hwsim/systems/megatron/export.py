"""A Megatron job (system kind megatron, a transformer, timing-only) as Chakra traces, for `hwsim export chakra`
and for a Megatron job on a shared cluster (`systems.jobs`, which replays them): every GPU's step, kernel by
kernel, as the 3D system times it.

Rank (i, j, k) (tensor, pipeline, data) is NPU `layout(parallel)[(i, j, k)]`. Its trace is its pipeline device's
ops in the schedule's order (`Megatron.plan`); each op is its blocks' kernels (`BlockWork`: a fused backward's
recompute and backward, a split backward's B and W) one after another, each GEMM and memory-bound kernel a
compute node of the cost model's seconds (`StageCosts.timed`), each tensor-parallel collective a collective
node over the rank's tensor group (process group `tp.p{j}.d{k}`). A collective the system runs beside a GEMM
(`tp_overlap`, `tp_comm_overlap`) depends on what the GEMM depends on, and what follows waits for both: the
replay runs them side by side, the GEMM slowed as the cost model slows it (`comm_slowdown`), so the pair takes
what the system charges. The embedding's and the head's work (`StageCosts.edge`) is one compute node per op,
its tensor-parallel collectives inside its time; the kernel gaps (`kernel_gap`) are one node per op.

A forward whose input comes from another device starts with a receive of the rank's 1/t of the activation
(from the same tensor and data rank of the device before; without sequence parallelism, then an all-gather over
the tensor group); a backward the same for its output gradient. An op whose output another device needs ends
with the send, and the rank's next op waits for it (Megatron's synchronised point-to-point calls). After the
last op: the gradients' all-reduce (or the distributed optimizer's reduce-scatter) over the data group
(`dp.t{i}.p{j}`; with `overlap_grad_reduce`, each model chunk's after its last backward, as the system does),
the tied embedding's all-reduce between the first and the last stage (`embedding.t{i}.d{k}`), the optimizer
step (`Megatron.optimizer_step`) and the distributed optimizer's parameter all-gather.

How a replay of it differs from the system: the replay sends each message over the fabric under its sharing
model, where the system charges the unloaded path; an NPU there runs one collective or send at a time, where
the system gives data-parallel reductions a track of their own (replay them with `streams: group`); with more
than one gradient bucket the first chunk's buckets start at the end of a block, where the system spreads them
evenly over its last op. Refused by name: MoE, context parallelism,
the sharded optimizer, codecs, bubble filling and overlap_param_gather.
"""

from __future__ import annotations

import math

import numpy as np
import simpy

from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError
from hwsim.workloads.chakra import EtNode
from hwsim.workloads.megatron import OP

KIND_INDEX = {"F": 0, "B": 1, "W": 2}


def check_megatron_exportable(scenario: Scenario, where: str) -> None:
    """A Megatron job the export writes, or a clear error naming what it does not."""
    system, model = scenario.system, scenario.model
    if model.kind != "transformer":
        raise ConfigError(where, "model.kind", model.kind, "transformer (the 3D system's timing-only model)")
    gather = system.framework.overlap_param_gather and system.optimizer == "distributed" and system.parallel.data > 1
    refused = [  # key, value, whether it is refused, what is expected
        ("model.moe", "set", model.moe is not None, "null (MoE's expert all-to-alls are not written yet)"),
        ("system.parallel.context", system.parallel.context, system.parallel.context > 1, "1 (not written yet)"),
        ("system.optimizer", system.optimizer, system.optimizer == "sharded", "allreduce or distributed (not written yet)"),
        ("system.fill", "set", system.fill is not None, "null (a second job is not exported)"),
        ("system.straggler", "set", system.straggler is not None, "null (one slow GPU is not written)"),
        ("system.framework.overlap_param_gather", True, gather, "false (the next step's gathers are not written)"),
    ]
    for key in ("weights", "gradients", "pipeline", "storage"):
        codec = getattr(system.compression, key)
        refused.append((f"system.compression.{key}", str(codec), codec is not None, "null (codecs are not written)"))
    for key, value, bad, expected in refused:
        if bad:
            raise ConfigError(where, key, value, expected)


def megatron_step(scenario: Scenario, progress=None) -> tuple[list[list[EtNode]], dict[str, list[int]]]:
    """Every GPU's trace (by NPU index) and the process groups (the module's docstring); `progress(done, total,
    what)` hears of each rank built."""
    from hwsim.network import Cluster
    from hwsim.systems.megatron.costs import GRAD_BYTES, WEIGHT_BYTES
    from hwsim.systems.megatron.system import Megatron
    from hwsim.trace.recorder import Recorder

    names = Megatron.npu_names(scenario.system)
    cluster = Cluster(simpy.Environment(), scenario.hardware, names, Recorder(), precision=scenario.system.precision)
    m = Megatron(scenario, cluster, None, None, np.random.default_rng(scenario.seed))
    costs, shape, work = m.costs, m.shape, m.costs.work
    block_kernels = {"F": work.forward, "B": work.input_grad if m.split else work.backward, "W": work.weight_grad}
    timed = {kind: costs.timed(kernels) for kind, kernels in block_kernels.items()}
    recompute = costs.timed(work.recompute)
    edge_name = {"F": "forward", "B": "input_grad" if m.split else "backward", "W": "weight_grad"}
    reduce = "all_reduce" if m.spec.optimizer == "allreduce" else "reduce_scatter"
    gap = costs.framework.kernel_gap
    traces: list[list[EtNode]] = [[] for _ in range(len(m.place))]
    groups: dict[str, list[int]] = {}

    def group(name: str, members) -> str:
        groups[name] = list(members)
        return name

    for done, ((i, j, k), npu) in enumerate(m.place.items(), 1):
        tensor = group(f"tp.p{j}.d{k}", m.group("tensor", j, k)) if m.t > 1 else ""
        data = group(f"dp.t{i}.p{j}", m.group("data", j, 0, i)) if m.d > 1 else ""
        trace = _Trace(tensor, m.t)
        add, collective, kernels = trace.add, trace.collective, trace.kernels
        last: tuple[int, ...] = ()
        reductions: list[int] = []  # overlap_grad_reduce: each model chunk's, once its last backward is done
        for index, (key, waits, label, _, _, _, send, dest) in enumerate(m.plan[j]):
            kind, stage, mb = key
            if waits is not None:
                src = m.place[(i, shape.device(waits[1]), k)]
                tag = (waits[1] * m.microbatches + mb) * 3 + KIND_INDEX[kind]
                last = (*last, add(f"recv {label}", "recv", (), bytes=math.ceil(m.p2p_bytes), peer=src, tag=tag))
                if not m.spec.parallel.sequence and m.t > 1:  # the 1/t pieces gathered
                    last = (collective(f"gather {label}", "all_gather", m.p2p_bytes * m.t, tensor, last, m.t),)
            edge = costs.edge(shape.first(stage), shape.last(stage))[edge_name[kind]]
            if edge.total_s > 0 and kind == "B":
                last = (add(f"{label} head and embedding", "compute", last, seconds=edge.total_s),)
            ends = []  # what each block ends with
            for b in range(m.blocks(stage)):
                if kind == "B":
                    last = kernels(f"{label} block {b} recompute", recompute, last)
                last = kernels(f"{label} block {b}", timed[kind], last)
                ends.append(last)
            if edge.total_s > 0 and kind != "B":
                last = (add(f"{label} head and embedding", "compute", last, seconds=edge.total_s),)
            if gap > 0:  # the system's gap after each kernel, as one node
                count = len(block_kernels[kind]) + (len(work.recompute) if kind == "B" else 0)
                last = (add(f"{label} kernel gaps", "compute", last, seconds=gap * count * m.blocks(stage)),)
            closed = m.closes[j].get(index) if m.overlap and data else None
            if closed is not None:  # the first chunk's bucket by bucket, each once its share of the op is done
                n = m.buckets(m.stage_params[0]) if closed == 0 else 1
                for bucket in range(n):
                    after = last if bucket == n - 1 else ends[min(len(ends), math.ceil((bucket + 1) * len(ends) / n)) - 1]
                    nbytes = m.stage_params[closed] * GRAD_BYTES / n
                    reductions.append(collective(f"gradients chunk {closed} ({bucket})", reduce, nbytes, data, after, m.d))
            if send is not None:
                tag = (stage * m.microbatches + mb) * 3 + KIND_INDEX[kind]
                dst = m.place[(i, dest, k)]
                last = (add(f"send {label}", "send", last, bytes=math.ceil(m.p2p_bytes), peer=dst, tag=tag),)
        if data and not m.overlap:
            last = (collective("gradient reduce", reduce, m.params[j] * GRAD_BYTES, data, last, m.d),)
        last = (*last, *reductions)
        if m.p > 1 and m.model.tied_embeddings and j in (0, m.p - 1):
            pair = group(f"embedding.t{i}.d{k}", (m.place[(i, 0, k)], m.place[(i, m.p - 1, k)]))
            last = (collective("embedding all-reduce", "all_reduce", m.tied_bytes, pair, last, 2),)
        adam_s, adam_bytes = m.optimizer_step(j)
        last = (add("optimizer step", "compute", last, seconds=adam_s, bytes=math.ceil(adam_bytes)),)
        if data and m.spec.optimizer == "distributed":
            collective("parameter all-gather", "all_gather", m.params[j] * WEIGHT_BYTES, data, last, m.d)
        traces[npu] = trace.nodes
        if progress:
            progress(done, len(traces), "building")
    return traces, groups


class _Trace:
    """One rank's nodes as they are written; `tensor`: its tensor group's name, of `t` ranks."""

    def __init__(self, tensor: str, t: int):
        self.nodes: list[EtNode] = []
        self.tensor, self.t = tensor, t

    def add(self, name: str, kind: str, deps: tuple[int, ...], **fields) -> int:
        self.nodes.append(EtNode(len(self.nodes), name, kind, deps, **fields))
        return len(self.nodes) - 1

    def collective(self, name: str, op: str, nbytes: float, group: str, deps: tuple[int, ...], size: int) -> int:
        """`op` on a tensor of `nbytes` (the cost model's size: an all-gather's output) over `group`."""
        comm = nbytes / size if op == "all_gather" else nbytes  # Chakra's comm_size of an all-gather is its input
        return self.add(name, "collective", deps, bytes=math.ceil(comm), collective=op, group=group)

    def kernels(self, label: str, entries, last: tuple[int, ...]) -> tuple[int, ...]:
        """One block's kernels (`StageCosts.timed`) after `last`; returns what the next kernel waits for."""
        beside: dict[str, list] = {}
        for kernel, _, _, where in entries:
            if where == OP:
                raise ConfigError("scenario", "model.moe", "set", "null (collectives beside a whole op are not written)")
            if where:
                beside.setdefault(where, []).append(kernel)
        for kernel, part, seconds, where in entries:
            if where:
                continue  # written beside its GEMM
            name = f"{label} {kernel.name}"
            if kernel.kind == "gemm":
                if part.memory_s > 0:  # fp8: its input quantized first
                    last = (self.add(f"{name} quantize", "compute", last, seconds=part.memory_s),)
                pair = [self.add(name, "compute", last, seconds=part.gemm_s, flops=part.gemm_flops)]
                for other in beside.get(kernel.name, ()):
                    pair.append(self.collective(f"{label} {other.name}", other.kind, other.bytes, self.tensor, last, self.t))
                last = tuple(pair)
            elif kernel.kind == "memory":
                last = (self.add(name, "compute", last, seconds=seconds),)
            else:
                last = (self.collective(name, kernel.kind, kernel.bytes, self.tensor, last, self.t),)
        return last
