"""Megatron-style 3D parallel training of a transformer: tensor, pipeline and data parallelism, timing-only
(an mlp runs the real math with tensor and data parallelism instead: `megatron_mlp`).

Sources: Shoeybi et al. 2019 (Megatron-LM: the tensor split), Narayanan et al. 2021 (the 3D
layout, interleaved 1F1B), Korthikanti et al. 2022 (sequence parallelism, selective
recompute, activation memory); Calculon (Isaev et al. 2023) was read for what a model of
these runs must count, not copied.

`system.parallel` lays t p d NPUs out on the fabric (`order`: which axis varies fastest
in the NPU index; `tpd`, the default, puts each tensor group on adjacent NPUs, so in
the fabric's first, fastest dimension). The run is symmetric: one tensor rank of one
data-parallel replica stands for its group (Megatron's ranks of a group do identical
work), so p devices are simulated, one per pipeline position, on the NPUs of tensor
rank 0 of replica 0. Each runs its schedule's ops (Megatron's 1F1B, or its interleaved
1F1B with v > 1, unless `system.schedule` names another of the library; a split backward's
W is the blocks' weight-gradient GEMMs), every op the sum of its blocks' GEMMs (cycle model), memory-bound kernels
(roofline) and tensor-parallel collectives (played on the fabric, `megatron_costs`);
activations cross to the next stage's NPU at the fabric's unloaded path time, each tensor
rank sending 1/t of them (Megatron's scatter-gather; without sequence parallelism the
receiver all-gathers), and the sender waits for the transfer as Megatron's synchronised
point-to-point calls do (`pipeline_comm_s`). After its last backward a device reduces
its gradients over its data-parallel group (all-reduce, or a reduce-scatter with the
distributed optimizer), or, with `overlap_grad_reduce`, each model chunk's as soon as the
chunk's last backward (or W) ends, on the data track while the pipeline goes on; the first and the last
stage all-reduce the tied embedding's gradient (`tied_embeddings`); each device runs the optimizer step at the bank's achieved rate
(`megatron_costs.optimizer_bytes`) and, with the distributed optimizer, all-gathers its
parameters. With the sharded optimizer (ZeRO-3) each model chunk's weights are gathered
before each run of its ops and its gradients reduce-scattered after each run of its
backwards, on the data track and prefetched (`sharded`). `compression` puts codecs on the
weight gathers, gradient reductions and pipeline sends (exact wire bytes, `wire`) and on the
weights the bank holds (decompressed block by block before each F and B); `fill` runs a second
job in the predicted bubbles of every GPU (`fill`).

What the report shows of the network: each simulated rank's communication tracks (tensor, pipeline,
data) carry the bytes it sends, against the bandwidth of its group's path; the fabric's links
carry what every rank of every group sends, worked out from the simulated ranks (`traffic`:
ring collectives and pipeline sends on their routes), not simulated message by message.

Memory per NPU: weights, gradients, optimizer state allocated at the start, each
micro-batch's activations (Korthikanti et al.'s per-block bytes) from its forward to its
backward; past the bank's capacity the run goes on counting and ends as out of memory with
the breakdown.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Generator

import numpy as np
import pandas as pd
import simpy

from hwsim.config.fields import to_plain
from hwsim.config.schema import Scenario
from hwsim.config.units import format_quantity
from hwsim.errors import ConfigError, OutOfMemory
from hwsim.hardware.unit import Unit
from hwsim.network import Cluster
from hwsim.network.cluster import size_curves
from hwsim.policies import build_schedule, is_split
from hwsim.systems.megatron.checks import check_megatron, expert_group, expert_tensor, layout, megatron_schedule
from hwsim.systems.megatron.costs import (
    FP8_BYTES,
    GRAD_BYTES,
    WEIGHT_BYTES,
    CollectiveTimer,
    Part,
    StageCosts,
    optimizer_bytes,
    ring_wire_bytes,
    routed_params,
    slowed,
    stage_memory,
    stage_params,
    weight_grad_bytes,
)
from hwsim.systems.megatron.fill import Fill
from hwsim.systems.megatron.mlp import MegatronMlp
from hwsim.systems.megatron.mlp3d import MegatronMlp3D
from hwsim.systems.megatron.moe_mlp import MegatronMoeMlp
from hwsim.systems.megatron.sharded import runs
from hwsim.systems.megatron.traffic import Traffic, node_parts
from hwsim.systems.megatron.wire import Wire
from hwsim.trace.recorder import Recorder
from hwsim.workloads.megatron import ACT_BYTES, activation_bytes, block_params, block_work, layer_is_moe, model_flops
from hwsim.workloads.moe import ExpertShare, busiest_load, moe_activation_bytes

Progress = Callable[[int, int], None]
MIRRORED_SPANS = 200_000  # trace spans of the mirrored tensor ranks, at most (a 1T run's would be millions)
OP_NAMES = {"F": "forward", "B": "backward", "W": "weight"}
"""The trace's names of a schedule's ops (`report.pipeline.PIPELINE_OPS`)."""
# Megatron-core's default gradient bucket: max(40M, 1M x data-parallel ranks) parameters
# (NVIDIA/Megatron-LM megatron/core/distributed/distributed_data_parallel.py, f2e5db4)
DDP_BUCKET, DDP_BUCKET_PER_RANK = 40_000_000, 1_000_000
BREAKDOWN = (
    "compute_s",
    "decompress_s",
    "recompute_s",
    "tensor_comm_s",
    "pipeline_comm_s",
    "bubble_s",
    "data_comm_s",
    "optimizer_s",
)


class CommTrack(Unit):
    """The time one rank spends in one kind of communication (tensor, pipeline, data): its work is the bytes
    the rank sends, its peak the bandwidth of the fabric path to a peer of its group."""

    kind = "network"

    def __init__(self, env: simpy.Environment, name: str, clock_hz: float, rate: float):
        super().__init__(env, name, clock_hz)
        self.rate = rate

    @property
    def peak_per_s(self) -> float:
        return self.rate


class Megatron:
    """p simulated pipeline devices standing for t p d NPUs; `run()` is the SimPy process."""

    check = staticmethod(check_megatron)
    takes_layers = False

    @staticmethod
    def npu_names(spec) -> list[str]:
        place = layout(spec.parallel)
        names = [""] * len(place)
        for (i, j, k), npu in place.items():
            names[npu] = f"t{i}.p{j}.d{k}"
        return names

    @staticmethod
    def check_samples(spec, train: int) -> None:
        """An mlp's step takes `batch` distinct samples."""
        if spec.batch > train:
            raise ConfigError("scenario", "system.batch", spec.batch, f"at most the {train} training samples")

    def __new__(cls, scenario: Scenario, *args, **kwargs):
        """An mlp runs the real math with tensor and data parallelism (`megatron_mlp`)."""
        if scenario.model.kind == "mlp":
            if scenario.model.moe is not None:
                return MegatronMoeMlp(scenario, *args, **kwargs)
            kind = MegatronMlp3D if scenario.system.parallel.pipeline > 1 else MegatronMlp
            return kind(scenario, *args, **kwargs)
        return super().__new__(cls)

    def __init__(
        self, scenario: Scenario, cluster: Cluster, model, data, rng: np.random.Generator, progress: Progress | None = None
    ):
        self.spec = spec = scenario.system
        self.scenario = scenario
        self.model = m = scenario.model
        self.env, self.cluster, self.progress = cluster.env, cluster, progress
        self.hardware = scenario.hardware
        par = spec.parallel
        self.t, self.p, self.v, self.c = par.tensor, par.pipeline, par.virtual, par.context
        # the gradients' group: the data replicas' ranks, with each replica's context ranks (Megatron-core reduces
        # over data x context); the batch splits over the replicas alone
        self.d = par.data * self.c
        self.e = par.expert  # expert ranks: a MoE layer's experts split over e of a stage's t d ranks
        self.et = expert_tensor(par)  # expert-tensor ranks: each expert split over et of them
        self.ed = self.t * self.d // (self.et * self.e) if m.moe is not None else 1  # ranks holding the same shards
        self.place = layout(par)
        self.microbatches = spec.batch // (par.data * spec.microbatch)
        self.schedule_name, self.shape = megatron_schedule(spec)
        self.sharded = spec.optimizer == "sharded"
        grad_overlap = spec.framework.overlap_grad_reduce if spec.overlap_grad_reduce is None else spec.overlap_grad_reduce
        self.overlap = grad_overlap and not self.sharded  # sharded reduces per run anyway
        # the updated weights' all-gather beside the next step's forwards (the distributed optimizer's)
        self.prefetch = spec.framework.overlap_param_gather and spec.optimizer == "distributed" and self.d > 1
        self.schedule = build_schedule(self.schedule_name, self.shape)
        self.split = is_split(self.schedule)  # B the input gradients, W the weight gradients
        self.stages = self.shape.stages
        per = m.layers // self.shape.model_stages
        self.chunk_blocks = list(spec.layers_per_stage or [per] * self.shape.model_stages)  # blocks per model chunk
        net = self.hardware.network
        timer = CollectiveTimer(
            cluster.topology,
            net.model if net is not None else "flow",
            self.hardware.nic.overhead,
            size_curves(self.hardware),
        )
        self.timer = timer
        self.costs = self._stage_costs(scenario, self.hardware)
        # a straggler (system.straggler): the simulated replica is its replica, the simulated tensor rank of its
        # pipeline device stands for its tensor group, which waits for it at every collective
        self.slow_device, self.slow_costs = None, None
        if spec.straggler is not None:
            self.slow_rank = next(key for key, npu in self.place.items() if npu == spec.straggler.npu)
            self.slow_device = self.slow_rank[1]
            self.slow_costs = self._stage_costs(scenario, slowed(self.hardware, spec.bank, spec.straggler.slowdown))
        self.ops = {kind: self._stage_parts(kind) for kind in ("F", "B", "W")}
        flash = spec.framework.flash_attention
        self.act_block = activation_bytes(m, self.t, spec.microbatch, par.sequence, spec.recompute, flash, self.c)
        self.w_block = weight_grad_bytes(self.costs.work)  # a split backward's W buffer per block
        self.act_moe = self.w_moe = 0.0  # the same for a MoE block, on the busiest expert rank
        if self.costs.moe_work is not None:
            tokens = m.seq_len * spec.microbatch // self.c
            local = tokens // (self.t if par.sequence else 1)
            self.act_moe = moe_activation_bytes(m, self.act_block, self.t, tokens, local, self.experts(scenario))
            self.w_moe = weight_grad_bytes(self.costs.moe_work)
        self.act_transient = (
            activation_bytes(m, self.t, spec.microbatch, par.sequence, "none", flash, self.c) if spec.recompute == "full" else 0.0
        )
        # Megatron's scatter-gather (Narayanan et al. 2021, section 4.1): each tensor rank sends 1/t of the
        # activation; without sequence parallelism the receiver all-gathers it over its tensor group
        self.wire = wire = Wire(spec.compression, self.hardware.memory[spec.bank].rate)
        self.p2p_elements = m.seq_len * spec.microbatch * m.d_model / (self.t * self.c)
        self.p2p_bytes = wire.total(wire.pipeline, self.p2p_elements, ACT_BYTES)
        self.p2p_codec_s = wire.codec_s(wire.pipeline, self.p2p_elements, ACT_BYTES)
        self.p2p_gather_s = (
            0.0 if par.sequence else timer.seconds("all_gather", self.group("tensor", 0, 0), self.p2p_bytes * self.t)
        )
        # the bank is labelled with the run's precision (its 16-bit weights and activations), not the preset's
        stored = "bf16" if spec.precision == "fp8" else spec.precision  # fp8: the weights stay 16-bit, quantized per GEMM
        bank = dataclasses.replace(self.hardware.memory[spec.bank], precision=stored)
        held = dataclasses.replace(self.hardware, memory={**self.hardware.memory, spec.bank: bank})
        self.devices = [cluster.add(self.place[(0, j, 0)], f"t0.p{j}.d0", held) for j in range(self.p)]
        shape = self.shape
        self.stage_params = [self._chunk_params(shape.model_stage(s)) for s in range(self.stages)]
        chunks = [{shape.model_stage(s) for s in shape.stages_of(j)} for j in range(self.p)]
        # each model chunk a device holds once (dual placement: two, each run twice)
        self.params = [sum(self._chunk_params(ms) for ms in held) for held in chunks]
        self.routed = [
            sum(routed_params(m, self.chunk_blocks[ms], self.start(ms), self.e * self.et) for ms in held) for held in chunks
        ]
        self.plan = self._plan()
        place, t, p, d = self.place, self.t, self.p, self.d
        self.tensor_units = [
            self._unit(dev, "tensor_comm", place[(1, j, 0)] if t > 1 else None) for j, dev in enumerate(self.devices)
        ]
        self.pipeline_units = [
            self._unit(dev, "pipeline_comm", place[(0, (j + 1) % p, 0)] if p > 1 else None) for j, dev in enumerate(self.devices)
        ]
        self.mirrors = self._mirrors(scenario)
        # the data track's peer: a replica's, or (one replica) the stage at the other end of the tied embedding
        tied_peer = {0: place[(0, p - 1, 0)], p - 1: place[(0, 0, 0)]} if p > 1 and m.tied_embeddings else {}
        self.data_units = [
            self._unit(dev, "data_comm", place[(0, j, 1)] if d > 1 else tied_peer.get(j)) for j, dev in enumerate(self.devices)
        ]
        self.traffic = Traffic(self.p)
        # hierarchical partitioning: a second copy of the weights over the data ranks of the node
        self.secondary = len(self.local_group(0)) if spec.compression.hierarchical else 0
        # stored weights (compression.storage): bytes per weight as the bank holds the device's
        self.weight_bytes = [
            wire.total(wire.storage, self.params[j], WEIGHT_BYTES) / self.params[j] if self.params[j] else WEIGHT_BYTES
            for j in range(self.p)
        ]
        self.static = [self._memory(j) for j in range(self.p)]
        self.held = [0.0] * self.p  # activation bytes each device holds now
        self.gathered = [0.0] * self.p  # sharded: bytes of full chunk weights and gradient buffers held now
        self.filled = [0.0] * self.p  # a fill job's bytes held now
        self.peak = [(0.0, 0.0, 0.0)] * self.p  # (activations, gathered, fill) when their sum peaked
        self.overflow: list[str] = []  # the first allocation past each device's capacity
        self.full = [False] * self.p  # past its capacity: the bank holds no more, the counts go on
        self.records: list[dict] = []  # per step and device: the time breakdown
        self.fill = Fill(self, scenario) if spec.fill is not None else None
        if self.fill is not None:
            self.fill.plan()

    # --- layout -----------------------------------------------------------------------

    def group(self, axis: str, j: int, k: int, i: int = 0) -> tuple[int, ...]:
        """The NPUs of the tensor group of (stage device j, data rank k), the context group of (i, j, k), the
        expert, expert tensor or expert data group of (i, j, k) (`checks.expert_group`), or the data group of
        (i, j) (the gradients': every replica's context ranks)."""
        if axis == "tensor":
            return tuple(self.place[(r, j, k)] for r in range(self.t))
        if axis == "context":
            first = k - k % self.c
            return tuple(self.place[(i, j, first + r)] for r in range(self.c))
        if axis.startswith("expert"):
            group = expert_group(axis, i + self.t * k, self.t * self.d, self.et, self.e)
            return tuple(self.place[(q % self.t, j, q // self.t)] for q in group)
        return tuple(self.place[(i, j, r)] for r in range(self.d))

    def local_group(self, j: int) -> tuple[int, ...]:
        """The data ranks of stage device j's group that share its node (hierarchical partitioning)."""
        group, npu = list(self.group("data", j, 0)), self.place[(0, j, 0)]
        return tuple(next(part for part in node_parts(self.cluster.topology, group) if npu in part))

    def _unit(self, device, what: str, peer: int | None) -> CommTrack:
        """The track of one kind of communication of `device`'s rank, its peak the fabric path's bandwidth to
        `peer` (an NPU of its group: the next stage's for pipeline sends; None when it has no group)."""
        npu = self.cluster.npu[device.name]
        rate = 0.0 if peer is None else self.cluster.fabric.path_bandwidth(self.cluster.fabric.route(npu, peer))
        unit = CommTrack(self.env, f"{device.name}.{what}", device.systolic.clock_hz, float(rate))
        self.cluster.recorder.attach_unit(unit, device.name)
        return unit

    def _mirrors(self, scenario: Scenario) -> list[list[tuple[Unit, Unit, Unit]]]:
        """Trace tracks for tensor ranks 1..t-1 of each stage (kind `mirror`: they repeat rank 0's first step,
        as the symmetric run says they would, so Perfetto shows a stage's ranks side by side; left out of
        utilization and FLOP totals). Only with `report.trace` and at most MIRRORED_SPANS spans."""
        spans = (self.t - 1) * sum(len(ops) for ops in self.schedule) * 3
        if not scenario.report.trace or self.t == 1 or spans > MIRRORED_SPANS:
            return [[] for _ in range(self.p)]
        out = []
        for j, dev in enumerate(self.devices):
            ranks = []
            for i in range(1, self.t):
                name = f"t{i}.p{j}.d0"
                units = tuple(
                    Unit(self.env, f"{name}.{what}", dev.systolic.clock_hz) for what in ("systolic", "hbm", "tensor_comm")
                )
                for unit in units:
                    unit.kind = "mirror"
                    self.cluster.recorder.attach_unit(unit, name)
                ranks.append(units)
            out.append(ranks)
        return out

    # --- costs ------------------------------------------------------------------------

    def blocks(self, stage: int) -> int:
        """Transformer blocks of a schedule stage (its model chunk's)."""
        return self.chunk_blocks[self.shape.model_stage(stage)]

    def start(self, chunk: int) -> int:
        """The first layer of model chunk `chunk`."""
        return sum(self.chunk_blocks[:chunk])

    def moe_blocks(self, stage: int) -> int:
        """The MoE blocks of a schedule stage's model chunk."""
        chunk = self.shape.model_stage(stage)
        first = self.start(chunk)
        return sum(layer_is_moe(self.model, i) for i in range(first, first + self.chunk_blocks[chunk]))

    def activations(self, stage: int) -> float:
        """Bytes a stage's forward keeps for its backward, for one micro-batch."""
        moe = self.moe_blocks(stage)
        return (self.blocks(stage) - moe) * self.act_block + moe * self.act_moe

    def w_buffer(self, stage: int) -> float:
        """Bytes a split backward keeps of a stage from its B to its W."""
        moe = self.moe_blocks(stage)
        return (self.blocks(stage) - moe) * self.w_block + moe * self.w_moe

    def _chunk_params(self, chunk: int) -> float:
        last = self.shape.model_stages - 1
        return stage_params(
            self.model, self.chunk_blocks[chunk], self.t, chunk == 0, chunk == last, self.start(chunk), self.e * self.et
        )

    def _memory(self, j: int, *peak: float):
        """What device j holds: its parameters' weights, gradients and optimizer state (`stage_memory`), and
        `peak` (activations, gathered, fill)."""
        return stage_memory(
            self.params[j],
            self.d,
            self.spec.optimizer,
            *peak,
            secondary=self.secondary,
            weight_bytes=self.weight_bytes[j],
            routed=self.routed[j],
            expert_data=self.ed,
        )

    def expert_groups(self) -> dict[str, tuple[int, ...]]:
        """The simulated rank's expert group, and its parts: the ranks of it in the rank's node (`expert local`)
        and the ranks with the same place in each node (`expert across`); its expert-tensor group."""
        if self.model.moe is None:
            return {}
        group = self.group("expert", 0, 0)
        parts = node_parts(self.cluster.topology, list(group))
        local = next(part for part in parts if group[0] in part)
        index = local.index(group[0])
        across = tuple(part[index] for part in parts if len(part) > index)
        return {
            "expert": group,
            "expert local": tuple(local),
            "expert across": across,
            "expert tensor": self.group("expert tensor", 0, 0),
        }

    def experts(self, scenario: Scenario) -> ExpertShare | None:
        """How a MoE layer runs on the simulated rank: the busiest of the e expert ranks (`moe.busiest_load`,
        seeded by the scenario), its all-to-alls beside the op's GEMMs with `moe_overlap`, fp8 dispatch with
        precision fp8 (DeepSeek-V3, section 3.3: a byte and a 32-bit scale per 128), the nodes its ranks span."""
        moe = self.model.moe
        if moe is None:
            return None
        nodes = len(node_parts(self.cluster.topology, list(self.group("expert", 0, 0)))) if self.e > 1 else 1
        per = FP8_BYTES + 4 / 128 if self.spec.precision == "fp8" else ACT_BYTES
        load = busiest_load(moe, self.e, scenario.seed)
        return ExpertShare(self.e, load, self.spec.moe_overlap, per, nodes, self.et)

    def _stage_costs(self, scenario: Scenario, hardware) -> StageCosts:
        """The cost model of one tensor rank's ops on `hardware`."""
        spec, par = scenario.system, scenario.system.parallel
        return StageCosts(
            hardware,
            spec.bank,
            self.model,
            self.group("tensor", 0, 0),
            self.timer,
            microbatch=spec.microbatch,
            sequence=par.sequence,
            recompute=spec.recompute,
            precision=spec.precision,
            framework=spec.framework,
            context_group=self.group("context", 0, 0) if self.c > 1 else (),
            context_comm=par.context_comm,
            expert_groups=self.expert_groups(),
            experts=self.experts(scenario),
            fp8_scaling=spec.fp8_scaling,
        )

    def _stage_parts(self, kind: str) -> list[dict[str, Part]]:
        """Per stage, the parts of an F, B or W op: a fused backward is the recompute, the input and the weight
        gradients; a split one's B the recompute and the input gradients, its W the weight-gradient GEMMs
        (with their fp32 main-grad accumulation) and the embedding's scatter-add. A straggler's stages: its
        slowed kernels."""
        out, shape = [], self.shape
        for s in range(self.stages):
            c = self.slow_costs if shape.device(s) == self.slow_device else self.costs
            edge = c.edge(shape.first(s), shape.last(s))
            moe = self.moe_blocks(s)
            dense = self.blocks(s) - moe

            def times(name: str, moe=moe, dense=dense, c=c) -> Part:
                return c.block[name].times(dense) + (c.moe_block[name].times(moe) if moe else Part())

            block = {name: times(name) + edge.get(name, Part()) for name in c.block}
            if kind == "F":
                out.append({"work": block["forward"], "recompute": Part()})
            elif kind == "W":
                out.append({"work": block["weight_grad"], "recompute": Part()})
            else:
                work = block["input_grad"] if self.split else block["backward"]
                out.append({"work": work, "recompute": times("recompute")})
        for parts in out:
            work, redo = parts["work"], parts["recompute"]
            parts["both"] = redo + work
            parts["row"] = (
                ("compute_s", work.gemm_s + work.memory_s + work.gap_s),
                ("recompute_s", redo.gemm_s + redo.memory_s + redo.gap_s),
                ("tensor_comm_s", work.tensor_s + redo.tensor_s),
            )
        return out

    def _transfer_s(self, src_stage: int, dst_stage: int) -> float:
        """An activation (or its gradient) from one stage's device to another's: the fabric's unloaded path
        time for one rank's 1/t, plus the receiver's all-gather when the tensor is not sequence-split."""
        a = self.place[(0, self.shape.device(src_stage), 0)]
        b = self.place[(0, self.shape.device(dst_stage), 0)]
        return self.cluster.unloaded(a, b, self.p2p_bytes) + self.p2p_gather_s + self.p2p_codec_s if a != b else 0.0

    # --- the run ----------------------------------------------------------------------

    def run(self) -> Generator:
        """The steps; a device past its bank's capacity goes on counting bytes, and the run ends as out of
        memory with every device's breakdown in the summary (so a sweep still sees its time and demand)."""
        for j, dev in enumerate(self.devices):
            for name in ("weights", "gradients", "optimizer"):
                self._allocate(j, dev.bank(self.spec.bank), name, getattr(self.static[j], name), kind="static")
        if self.fill is not None:
            self.fill.allocate()
        filling = []
        self.healthy = self._healthy() if self.slow_device is not None else None
        for step in range(1, self.spec.steps + 1):
            start = self.env.now
            sent: set[tuple] = set()  # ops (kind, stage, mb) whose output has reached the device that needs it
            waiting: dict[tuple, simpy.Event] = {}  # what a device waits for that has not arrived
            rows = [dict.fromkeys(BREAKDOWN, 0.0) for _ in range(self.p)]
            tied = (self.env.event(), self.env.event()) if self.p > 1 and self.model.tied_embeddings else None
            devices = [self.env.process(self._device(step, j, sent, waiting, tied, rows[j])) for j in range(self.p)]
            filling += self.fill.run_step(step) if self.fill is not None else []
            yield simpy.AllOf(self.env, devices)
            for j, row in enumerate(rows):
                row.update(step=step, device=self.devices[j].name, step_s=self.env.now - start)
                self.records.append(row)
            self.cluster.recorder.metric(self.env.now, step, "step_time_s", self.env.now - start)
            if self.progress:
                self.progress(step, self.spec.steps)
        yield simpy.AllOf(self.env, filling)  # the fill job's last ops, if they outlast the step
        if self.overflow:
            more = len(self.overflow) - 1
            raise OutOfMemory(
                self.overflow[0] + (f" (and {more} more device{'s' if more > 1 else ''} past capacity)" if more else "")
            )

    def _healthy(self) -> list[dict]:
        """The last step's per-device rows of the same job without its straggler: a run of its own, what every
        healthy replica does until the gradient reductions make it wait."""
        scenario = dataclasses.replace(self.scenario, system=dataclasses.replace(self.spec, straggler=None))
        env = simpy.Environment()
        cluster = Cluster(env, self.hardware, self.cluster.names, Recorder(), precision=self.cluster.precision)
        twin = Megatron(scenario, cluster, None, None, np.random.default_rng(scenario.seed))
        env.run(env.process(twin.run()))
        return [r for r in twin.records if r["step"] == self.spec.steps]

    def _straggler_summary(self, step_s: float, last: list[dict]) -> dict:
        """With a straggler: where it is, the step with it and without it, and per pipeline device how long the
        healthy replicas' ranks there wait for its replica before their gradients can be reduced."""
        if self.slow_device is None or not last:
            return {}
        healthy = self.healthy
        healthy_s = max(r["step_s"] for r in healthy)
        i, j, k = self.slow_rank
        waits = [
            {"device": f"p{d}", "wait_s": max(0.0, mine["ops_s"] - theirs["ops_s"])}
            for d, (mine, theirs) in enumerate(zip(last, healthy, strict=True))
        ]
        return {
            "straggler": {
                "npu": self.spec.straggler.npu,
                "rank": f"t{i}.p{j}.d{k}",
                "slowdown": self.spec.straggler.slowdown,
                "step_s": step_s,
                "healthy_step_s": healthy_s,
                "cost": step_s / healthy_s if healthy_s else None,
                "waits": waits,
            }
        }

    @functools.cached_property
    def decompress_s(self) -> list[float]:
        """Per stage, the seconds to decompress its stored weights before an F or a B (0: 16-bit storage)."""
        return [self.wire.decompress_s(self.stage_params[s]) for s in range(self.stages)]

    def _plan(self) -> list[list[tuple]]:
        """Per device, its ops in order, worked out once rather than per op run: (its key (kind, stage, mb),
        the key of the op on another device whose output it waits for or None, its label, its activations'
        buffer name, its parts and seconds, the seconds its output takes to reach another device or
        None, and that device). An F waits for the F upstream, a B for the B
        downstream (`policies.timing.dependencies`); an input made on the same device came from an earlier
        op of its list, as a schedule runs a device's ops in dependency order."""
        per_stage, shape = {}, self.shape
        for kind in ("F", "B", "W"):
            for stage in range(self.stages):
                parts = self.ops[kind][stage]
                here = shape.device(stage)
                # an F's output goes down its pipeline, a B's back up; a W's stays (the schedule runs it after its B)
                end, start = (shape.last(stage), shape.first(stage)) if kind == "F" else (shape.first(stage), shape.last(stage))
                step = 1 if kind == "F" else -1
                to = None if kind == "W" or end else stage + step
                source = None if kind == "W" or start else stage - step
                send = self._transfer_s(stage, to) if to is not None and shape.device(to) != here else None
                remote = source is not None and shape.device(source) != here
                dest = shape.device(to) if send is not None else None
                seconds = parts["both"].total_s + (self.decompress_s[stage] if kind != "W" else 0.0)
                per_stage[kind, stage] = (parts, seconds, send, dest, source if remote else None)
        self.per_stage = per_stage
        out = []
        closing = "W" if self.split else "B"
        self.closes = []  # per device: {index in its plan: the stage whose gradients are complete after it}
        for ops in self.schedule:
            last = {op.stage: i for i, op in enumerate(ops) if op.kind == closing}
            self.closes.append({i: stage for stage, i in last.items()})
            steps = []
            for op in ops:
                kind, stage, mb = op.kind, op.stage, op.mb
                parts, seconds, send, dest, source = per_stage[kind, stage]
                waits = None if source is None else (kind, source, mb)
                where = f"{stage}.{mb}"
                steps.append(((kind, stage, mb), waits, f"{kind} {where}", f"act {where}", parts, seconds, send, dest))
            out.append(steps)
        # sharded over one replica: the shard is the chunk, nothing to gather or scatter
        self.runs = [runs(ops, self.split) if self.sharded and self.d > 1 else [] for ops in self.schedule]
        return out

    def _device(self, step: int, j: int, sent: set, waiting: dict, tied, row: dict) -> Generator:
        bank = self.devices[j].bank(self.spec.bank)
        env, record_op = self.env, self.cluster.recorder.op
        name, transient, mirror = f"d{j}", self.act_transient, step == 1
        rebuilt = False  # whether the full-recompute buffer is allocated
        first = env.now
        busy = 0.0
        sends, gather = self.traffic.sends[j], ring_wire_bytes("all_gather", self.t, self.p2p_bytes * self.t)
        overlap, closes, reducing = self.overlap, self.closes[j], []
        prefetch = self._prefetch(j) if self.prefetch else {}
        chunks = self.runs[j]  # sharded: the runs of ops on one model chunk
        starts = {run.first: k for k, run in enumerate(chunks)}
        ends = {run.last: k for k, run in enumerate(chunks)}
        gathers: dict[int, simpy.Process] = {}
        lock = self.fill.locks[j] if self.fill is not None else None
        for index, (key, waits, label, buffer, parts, seconds, send, dest) in enumerate(self.plan[j]):
            k = starts.get(index)
            if k is not None:  # a run starts: its chunk's gather and the next one's (prefetched) under way
                for r in (k, next((r for r in range(k + 1, len(chunks)) if chunks[r].gathers), None)):
                    if r is not None and chunks[r].gathers and r not in gathers:
                        gathers[r] = env.process(self._gather(j, chunks[r], r))
            if waits is not None and waits not in sent:
                waiting[waits] = event = env.event()
                yield event
            if k is not None:
                if chunks[k].gathers:  # what of the gather is left once the op could start is exposed
                    waited = env.now
                    yield gathers[k]
                    row["data_comm_s"] += env.now - waited
                    busy += env.now - waited
                if chunks[k].reduces:
                    self._allocate(j, bank, f"full gradients {k}", self.stage_params[chunks[k].stage] * GRAD_BYTES, "gathered")
            kind, stage, mb = key
            forward, act = kind == "F", self.activations(stage)
            if forward:
                self._allocate(j, bank, buffer, act)
            elif kind == "B" and transient and not rebuilt:
                # full recompute: one block's activations, rebuilt before each backward in one buffer that
                # stays reserved to the step's end (as PyTorch's caching allocator keeps it)
                self._allocate(j, bank, "recomputed block", transient)
                rebuilt = True
            # one timeout for the op and the send that follows it (Megatron's point-to-point calls end in
            # torch.cuda.synchronize(): the sender waits for the transfer too); with a fill job, once the
            # device is free of the fill op running on it
            gathering = prefetch.pop(self.shape.model_stage(stage), None) if kind == "F" else None
            if gathering is not None:  # overlap_param_gather: the chunk's first bucket before the forward starts
                waited = env.now
                yield gathering[0]
                row["data_comm_s"] += env.now - waited
                busy += env.now - waited
            turn = lock.request() if lock is not None else None
            if turn is not None:
                yield turn
            begin = env.now
            unpack = self.decompress_s[stage] if kind != "W" else 0.0  # stored weights to 16-bit, block by block
            if unpack:
                self._allocate(j, bank, "decompressed block", self.block_weight_bytes, "gathered")
            closed = closes.get(index) if overlap else None
            if closed == 0:  # the first chunk's buckets, reduced as the op finishes each (`_reduce_buckets`)
                reducing.append(env.process(self._reduce_buckets(j, begin, seconds)))
            yield env.timeout(seconds + send if send else seconds)
            if gathering is not None:  # ... and the rest before it ends
                waited = env.now
                yield gathering[1]
                row["data_comm_s"] += env.now - waited
                busy += env.now - waited
            if turn is not None:
                lock.release(turn)
            end = begin + seconds
            if unpack:
                row["decompress_s"] += unpack
                self._free(j, bank, "decompressed block", self.block_weight_bytes, "gathered")
                elements = self.stage_params[stage]
                self.devices[j].vector.record(f"decompress {label}", begin, begin + unpack, elements)
                self.devices[j].bank(self.spec.bank).record(f"decompress {label}", begin, begin + unpack, unpack * self.wire.rate)
            self._record(j, label, begin + unpack, parts["both"], mirror)
            record_op(name, step, OP_NAMES[kind], stage, mb, begin, end)
            busy += seconds
            for part, value in parts["row"]:
                row[part] += value
            if kind == "B":
                self._free(j, bank, buffer, act)
                if self.split:  # what W needs (its GEMMs' inputs and output gradients) stays until W
                    self._allocate(j, bank, "w" + buffer, self.w_buffer(stage))
            elif kind == "W":
                self._free(j, bank, "w" + buffer, self.w_buffer(stage))
            if closed:  # this chunk's gradients are complete: reduce them, one bucket, while the rest runs
                reducing.append(env.process(self._reduce(j, self.stage_params[closed], f"chunk {closed}", self._routed(closed))))
            k = ends.get(index)
            if k is not None:  # a run ends: its gathered weights go, its gradients are reduce-scattered into the shard
                chunk = chunks[k]
                if chunk.gathers:
                    self._free(j, bank, f"gathered {k}", self.stage_params[chunk.stage] * WEIGHT_BYTES, "gathered")
                if chunk.reduces:
                    reducing.append(env.process(self._reduce_run(j, chunk, k)))
            if send is not None:
                sends[dest] += self.p2p_bytes
                if not self.spec.parallel.sequence:  # the receiver all-gathers the 1/t pieces
                    self.traffic.tensor[dest] += gather
                if send > 0:
                    self.pipeline_units[j].record(f"send {label}", end, env.now, self.p2p_bytes)
                    row["pipeline_comm_s"] += send
                    busy += send
                sent.add(key)
                event = waiting.pop(key, None)
                if event is not None:
                    event.succeed()
        if rebuilt:
            self._free(j, bank, "recomputed block", transient)
        row["bubble_s"] = env.now - first - busy
        row["ops_s"] = env.now - first  # its last op done: from here it waits for (and runs) the reductions
        if reducing:  # what of the overlapped reductions outlasts the device's last op is exposed
            waited = env.now
            yield simpy.AllOf(env, reducing)
            row["data_comm_s"] += env.now - waited
        yield from self._update(j, row, tied)
        row["end_s"] = env.now - first

    def _record(self, j: int, label: str, begin: float, both: Part, mirror: bool) -> None:
        """The op's spans on the device's units, end to end: GEMMs (arithmetic unit), memory-bound kernels
        (the bank), tensor-parallel collectives (in the op they interleave; their sums are what count); and
        on the mirrored tensor ranks' tracks in the first step."""
        device, at = self.devices[j], begin
        own = (device.systolic, device.bank(self.spec.bank), self.tensor_units[j])
        self.traffic.tensor[j] += both.tensor_bytes
        self.traffic.context[j] += both.context_bytes
        self.traffic.expert[j] += both.expert_bytes
        self.traffic.expert_across[j] += both.expert_across_bytes
        self.traffic.expert_local[j] += both.expert_local_bytes
        self.traffic.expert_tensor[j] += both.expert_tensor_bytes
        spans = ((both.gemm_s, both.gemm_flops), (both.memory_s, both.memory_bytes), (both.tensor_s, both.tensor_bytes))
        for k, (seconds, work) in enumerate(spans):
            if seconds > 0:
                own[k].record(label, at, at + seconds, work)
                if mirror:
                    for units in self.mirrors[j]:
                        units[k].record(label, at, at + seconds)
                at += seconds

    def _update(self, j: int, row: dict, tied: tuple[simpy.Event, simpy.Event] | None) -> Generator:
        """Data-parallel gradient reduction, the tied embedding's all-reduce (first and last stage), the optimizer
        step at the bank's achieved rate, the distributed optimizer's all-gather."""
        distributed, sharded = self.spec.optimizer == "distributed", self.sharded
        params = self.params[j]
        routed = self.routed[j]
        if not self.overlap and not sharded:
            start = self.env.now
            yield from self._reduce(j, params, "gradient reduce", routed)
            row["data_comm_s"] += self.env.now - start
        # each rank's updated shard back to every rank; with overlap_param_gather in the next step's forwards
        gather_s, gather_bytes = self._param_gather(j, params, routed) if distributed and not self.prefetch else (0.0, 0.0)
        adam_s, adam_bytes = self.optimizer_step(j)
        self.traffic.data[j] += gather_bytes
        if tied is not None and j in (0, self.p - 1):
            yield from self._tied_embedding(j, row, tied)
        turn = self.fill.locks[j].request() if self.fill is not None else None  # the fill job waits, or it is waited for
        if turn is not None:
            yield turn
        yield from self._busy(self.devices[j].bank(self.spec.bank), adam_s, "optimizer step", row, "optimizer_s", adam_bytes)
        if turn is not None:
            self.fill.locks[j].release(turn)
        yield from self._busy(self.data_units[j], gather_s, "parameter all-gather", row, "data_comm_s", gather_bytes)

    def optimizer_step(self, j: int) -> tuple[float, float]:
        """(seconds, bytes moved) of device j's optimizer step at the bank's achieved rate: every parameter's
        16-bit weight and gradient, and the master weights this rank owns (`optimizer_bytes`)."""
        params, routed = self.params[j], self.routed[j]
        every, shard = optimizer_bytes(self.spec.precision)
        shards = 1 if self.spec.optimizer == "allreduce" else self.d
        routed_shards = 1 if self.spec.optimizer == "allreduce" else self.ed
        owned = (params - routed) / shards + routed / routed_shards  # the master weights this rank updates
        adam_bytes = params / (self.d if self.sharded else 1) * every + owned * shard
        if self.wire.storage is not None:  # the update writes the stored encoding, not 16-bit, after reading the masters again
            adam_bytes += params * (self.weight_bytes[j] - WEIGHT_BYTES + GRAD_BYTES)
        slowdown = self.spec.straggler.slowdown if j == self.slow_device else 1.0  # its bank, as its kernels
        return adam_bytes / self.hardware.memory[self.spec.bank].rate * slowdown, adam_bytes

    def _param_gather(self, j: int, params: float, routed: float) -> tuple[float, float]:
        """(seconds, bytes sent) of the distributed optimizer's all-gather of `params` updated 16-bit weights over
        device j's data group (the `routed` of them over the ranks that hold the same expert shards)."""
        seconds = sent = 0.0
        codec = self.wire.weights
        for count, members in ((params - routed, self.group("data", j, 0)), (routed, self.group("expert data", j, 0))):
            if count <= 0 or len(members) < 2:
                continue
            weights = self.wire.total(codec, count, WEIGHT_BYTES, len(members))
            seconds += self.timer.seconds("all_gather", members, weights)
            seconds += self.wire.codec_s(codec, count, WEIGHT_BYTES, len(members))
            sent += ring_wire_bytes("all_gather", len(members), weights)
        return seconds, sent

    def _prefetch(self, j: int) -> dict[int, tuple[simpy.Event, simpy.Event]]:
        """overlap_param_gather: the previous step's all-gather of device j's updated weights, model chunk by model
        chunk in the order its forwards first need them, bucket by bucket (`buckets`): {model chunk: (its first
        bucket is in, all of it is in)}. Megatron-core dispatches the first bucket's all-gather at the optimizer step and each
        next one from the forward pre-hook of the bucket before (distributed optimizer, f2e5db4), so a forward
        waits for its chunk's first bucket before it starts and for the rest before it ends."""
        model_stage = self.shape.model_stage  # a model chunk that two stages run (dual placement) gathers once
        order = list(dict.fromkeys(model_stage(key[1]) for key, *_ in self.plan[j] if key[0] == "F"))
        events = {chunk: (self.env.event(), self.env.event()) for chunk in order}

        def gather(pairs: list) -> Generator:
            for chunk, (first, done) in pairs:
                params = self._chunk_params(chunk)
                routed = routed_params(self.model, self.chunk_blocks[chunk], self.start(chunk), self.e * self.et)
                n = self.buckets(params)
                seconds, sent = self._param_gather(j, params / n, routed / n)
                self.traffic.data[j] += sent * n
                for i in range(n):
                    yield from self.data_units[j].busy(seconds, f"parameter all-gather {chunk}", sent)
                    if i == 0:
                        first.succeed()
                done.succeed()

        self.env.process(gather(list(events.items())))
        return events

    def buckets(self, params: float) -> int:
        """How many of Megatron-core's default buckets (at least max(40M, 1M x d) parameters) `params` fill."""
        return max(1, int(params // max(DDP_BUCKET, DDP_BUCKET_PER_RANK * self.spec.parallel.data)))

    def _routed(self, stage: int) -> float:
        """The routed experts' parameters of model chunk `stage` on a rank."""
        return routed_params(self.model, self.blocks(stage), self.start(self.shape.model_stage(stage)), self.e * self.et)

    def _reduce_buckets(self, j: int, begin: float, seconds: float) -> Generator:
        """Reduce the first model chunk's gradients bucket by bucket as the op that completes them (from `begin`,
        `seconds` long) finishes each: Megatron-core's DDP splits a chunk's gradients into buckets of at least
        max(40M, 1M x d) parameters and reduces each once all its gradients are in (distributed_data_parallel.py
        and param_and_grad_buffer.py at f2e5db4, 2024-07); only on the first pipeline rank's first model chunk
        (the others' reductions are off the critical path; disable_bucketing for chunks after the first): there,
        one bucket. Here the gradients arrive evenly over the op."""
        params, routed = self.stage_params[0], self._routed(0)
        n = self.buckets(params)
        for i in range(n):
            ready = begin + seconds * (i + 1) / n
            if ready > self.env.now:
                yield self.env.timeout(ready - self.env.now)
            yield from self._reduce(j, params / n, f"chunk 0 bucket {i}" if n > 1 else "chunk 0", routed / n)

    def _reduce(self, j: int, params: float, label: str, routed: float = 0.0) -> Generator:
        """Reduce `params` parameters' fp32 gradients over device j's data group on its data track: an
        all-reduce, or the distributed optimizer's reduce-scatter (reductions queue on the track); `routed` of
        them (routed experts) over the ranks that hold the same expert shards."""
        reduce = "all_reduce" if self.spec.optimizer == "allreduce" else "reduce_scatter"
        codec = self.wire.gradients
        seconds = sent = 0.0
        for count, group in ((params - routed, self.group("data", j, 0)), (routed, self.group("expert data", j, 0))):
            if count <= 0 or len(group) < 2:
                continue
            nbytes = self.wire.total(codec, count, GRAD_BYTES, len(group))
            seconds += self.timer.seconds(reduce, group, nbytes) + self.wire.codec_s(codec, count, GRAD_BYTES, len(group))
            sent += ring_wire_bytes(reduce, len(group), nbytes)
        self.traffic.data[j] += sent
        if seconds > 0:
            yield from self.data_units[j].busy(seconds, label, sent)

    def _gather(self, j: int, run, k: int) -> Generator:
        """Sharded: all-gather run k's model chunk's 16-bit weights over device j's data group (encoded by the
        weights codec), into a buffer held to the run's end; with hierarchical partitioning, a run without a
        forward gathers the second copy's 16-bit shares from the node's ranks alone."""
        params = self.stage_params[run.stage]
        self._allocate(j, self.devices[j].bank(self.spec.bank), f"gathered {k}", params * WEIGHT_BYTES, "gathered")
        local = self.secondary and not run.forward
        group, codec = (self.local_group(j), None) if local else (self.group("data", j, 0), self.wire.weights)
        nbytes = self.wire.total(codec, params, WEIGHT_BYTES, len(group))
        seconds = self.timer.seconds("all_gather", group, nbytes)
        seconds += self.wire.codec_s(codec, params, WEIGHT_BYTES, len(group)) if len(group) > 1 else 0.0
        sent = ring_wire_bytes("all_gather", len(group), nbytes)
        (self.traffic.local if local else self.traffic.data)[j] += sent
        if seconds > 0:
            yield from self.data_units[j].busy(seconds, f"gather chunk {run.stage}", sent)

    def _reduce_run(self, j: int, run, k: int) -> Generator:
        """Sharded: reduce-scatter the gradients run k accumulated, then free their full buffer."""
        params = self.stage_params[run.stage]
        yield from self._reduce(j, params, f"reduce-scatter chunk {run.stage}")
        self._free(j, self.devices[j].bank(self.spec.bank), f"full gradients {k}", params * GRAD_BYTES, "gathered")

    @staticmethod
    def _busy(unit: Unit, seconds: float, label: str, row: dict, key: str, work: float) -> Generator:
        if seconds > 0:
            yield from unit.busy(seconds, label, work)
            row[key] += seconds

    @functools.cached_property
    def block_weight_bytes(self) -> float:
        """One block's weights on a tensor rank in 16-bit: what decompression holds at a time."""
        return block_params(self.model) / self.t * WEIGHT_BYTES

    @functools.cached_property
    def tied_bytes(self) -> float:
        """The word embedding's fp32 gradient (V/t rows; sharded: the rank's 1/d of them), all-reduced between
        the first and the last stage."""
        return self.model.vocab / self.t * self.model.d_model * GRAD_BYTES / (self.d if self.sharded else 1)

    @functools.cached_property
    def tied_s(self) -> float:
        pair = (self.place[(0, 0, 0)], self.place[(0, self.p - 1, 0)])
        return self.timer.seconds("all_reduce", pair, self.tied_bytes)

    def _tied_embedding(self, j: int, row: dict, tied: tuple[simpy.Event, simpy.Event]) -> Generator:
        """Megatron's `train_step` (2022) all-reduces the tied embedding's gradient between the first and the
        last stage once both have reduced their data-parallel gradients; the one there first waits."""
        mine, other = tied if j == 0 else tied[::-1]
        mine.succeed()
        start = self.env.now
        yield other
        row["data_comm_s"] += self.env.now - start
        sent = ring_wire_bytes("all_reduce", 2, self.tied_bytes)
        if j == 0:
            self.traffic.tied += sent
        yield from self._busy(self.data_units[j], self.tied_s, "embedding all-reduce", row, "data_comm_s", sent)

    def _allocate(self, j: int, bank, name: str, nbytes: float, kind: str = "activation") -> None:
        """Hold `nbytes` in device j's bank; `kind`: activation, gathered, fill (counted towards the step's peak)
        or static."""
        if kind != "static":
            self._held(kind)[j] += nbytes
            if self.held[j] + self.gathered[j] + self.filled[j] > sum(self.peak[j]):
                self.peak[j] = (self.held[j], self.gathered[j], self.filled[j])
        if self.full[j]:
            return
        try:
            bank.allocate(name, nbytes=int(nbytes))
        except OutOfMemory:
            self.full[j] = True
            self.overflow.append(self._oom(j, bank, name, nbytes))

    def _free(self, j: int, bank, name: str, nbytes: float, kind: str = "activation") -> None:
        self._held(kind)[j] -= nbytes
        if not self.full[j]:
            bank.free(name)

    def _held(self, kind: str) -> list[float]:
        return {"activation": self.held, "gathered": self.gathered, "fill": self.filled}[kind]

    def _oom(self, j: int, bank, name: str, nbytes: float) -> str:
        s = self.static[j]
        transient = name.startswith(("gathered", "full gradients"))
        held = self.held[j] - (nbytes if name.startswith(("act", "recomputed")) else 0.0)
        gathered = self.gathered[j] - (nbytes if transient else 0.0)
        filled = self.filled[j] - (nbytes if name.startswith("fill") else 0.0)
        q = lambda x: format_quantity(x, "size")  # noqa: E731
        # what the bank holds already: the static buffers allocated before this one (each once), and activations
        others = [f"{n} {q(getattr(s, n))}" for n in ("weights", "gradients", "optimizer") if n != name and bank.holds(n)]
        others += [f"activations {q(held)}"] if others or held > 0 else []
        others += [f"gathered chunks {q(gathered)}"] if gathered > 0 else []
        others += [f"the fill job {q(filled)}"] if filled > 0 else []
        on_top = f"on top of {', '.join(others)}" if others else "with nothing else held"
        return (
            f"out of memory on {self.devices[j].name} ({bank.name}, {q(bank.capacity)}): allocating {name} ({q(nbytes)}) {on_top}"
        )

    # --- results ----------------------------------------------------------------------

    def memory(self) -> list[dict[str, float]]:
        """Per simulated device, its bytes by kind when its activations and gathered chunks together peaked."""
        out = []
        for j in range(self.p):
            mem = self._memory(j, *self.peak[j])
            out.append(
                {
                    "device": self.devices[j].name,
                    **mem.as_dict(),
                    "capacity_bytes": float(self.devices[j].bank(self.spec.bank).capacity),
                }
            )
        return out

    def hidden_s(self, device: str | None) -> float:
        """Seconds of tensor-parallel communication a step of `device` runs beside its GEMMs (not in its
        breakdown: `framework.tp_overlap`)."""
        j = next((j for j, dev in enumerate(self.devices) if dev.name == device), None)
        return 0.0 if j is None else float(sum(step[4]["both"].hidden_s for step in self.plan[j]))

    def flops(self) -> tuple[float, float]:
        """Model FLOPs of one step (no recompute) and the hardware's (with recompute)."""
        model = model_flops(self.model, self.spec.batch)
        work = block_work(self.model, 1, self.spec.microbatch, False, self.spec.recompute)
        redo = sum(k.gemm.flops for k in work.recompute if k.kind == "gemm")
        return model, model + redo * self.model.layers * self.spec.batch / self.spec.microbatch

    def summary(self, trace) -> dict:
        """The `megatron` section of summary.json."""
        last = [r for r in self.records if r["step"] == self.spec.steps]
        step_s = max(r["step_s"] for r in last) if last else 0.0
        worst = max(last, key=lambda r: r["end_s"]) if last else {}  # the device that ends the step
        array = self.hardware.systolic
        peak = 2.0 * array.rows * array.cols * array.arrays * getattr(array.macs_per_cycle, self.spec.precision)
        peak *= array.boost_clock or array.clock
        npus = self.t * self.p * self.d
        model, hardware = self.flops()
        memory = self.memory()
        par = self.spec.parallel
        return {
            "megatron": {
                "layout": {
                    "tensor": self.t,
                    "pipeline": self.p,
                    "data": par.data,
                    "context": self.c,
                    "virtual": self.v,
                    "sequence": par.sequence,
                    "order": par.order,
                    **({"expert": self.e, "expert_tensor": self.et} if self.model.moe is not None else {}),
                },
                "placement": self.placement(),
                "schedule": self.schedule_name,
                "chunk_placement": self.shape.placement,
                "split_backward": self.split,
                "microbatches": self.microbatches,
                "recompute": self.spec.recompute,
                "optimizer": self.spec.optimizer,
                "framework": to_plain(self.spec.framework),
                "tensor_comm_hidden_s": self.hidden_s(worst.get("device")),
                "compression": {
                    k: to_plain(getattr(self.spec.compression, k))
                    for k in ("weights", "gradients", "pipeline", "storage", "hierarchical")
                },
                "sent_per_rank_step": self.sent_per_rank_step(),
                "step_s": step_s,
                "breakdown": {k: float(worst.get(k, 0.0)) for k in BREAKDOWN},
                "breakdown_device": worst.get("device"),
                "devices": last,
                "memory": memory,
                "memory_per_npu_bytes": max(m["total_bytes"] for m in memory),
                "fits": not self.overflow,
                "model_flops": model,
                "hardware_flops": hardware,
                "peak_flop_per_s": peak,
                "mfu": model / (step_s * npus * peak) if step_s else None,
                "hfu": hardware / (step_s * npus * peak) if step_s else None,
                **self._fill_summary(step_s, last),
                **self._straggler_summary(step_s, last),
            }
        }

    def _fill_summary(self, step_s: float, last: list[dict]) -> dict:
        """With a fill job, its section; each device's row gets `fill_s`, its seconds of fill work a step."""
        if self.fill is None or not last:
            return {}
        for j, row in enumerate(last):
            row["fill_s"] = sum(t.end - t.start for t in self.fill.placements[j].times.values())
        return {"fill": self.fill.summary(step_s, last)}

    def sent_per_rank_step(self) -> dict[str, float]:
        """Bytes a rank sends per step, by kind, averaged over the pipeline positions: tensor-parallel rings,
        pipeline sends, data-parallel collectives (over the whole data group, so across nodes), and those
        inside the node (hierarchical partitioning's gathers)."""
        per = self.p * self.spec.steps
        tr = self.traffic
        return {
            "tensor": sum(tr.tensor) / per,
            "pipeline": sum(sum(c.values()) for c in tr.sends) / per,
            "data": sum(tr.data) / per,
            "data_in_node": sum(tr.local) / per,
        }

    def mirrored_links(self, links: pd.DataFrame) -> pd.DataFrame:
        """The links as every rank of the layout uses them: the simulated ranks stand for their groups, so
        each link gets the bytes all ranks' rings and sends put on it (`traffic`), busy for their
        serialization; `mirrored` marks the links that carried something."""
        loads = self.traffic.link_bytes(self.cluster.topology, self.place, self.t, self.d, self.c, (self.e, self.et))
        bandwidth = links.bandwidth_bytes_per_s.to_numpy()
        span = self.env.now if self.env.now > 0 else np.nan
        return links.assign(bytes=loads, busy_s=loads / bandwidth, util=loads / (bandwidth * span), mirrored=loads > 0)

    def network_bytes(self) -> float:
        """Bytes all NPUs of the layout sent (what `bytes_moved.network` counts for this run)."""
        return self.traffic.sent_bytes(self.t, self.d)

    def represented(self, device: str) -> int:
        """NPUs a simulated device stands for: its pipeline position's t x c x d ranks (energy, power)."""
        return self.t * self.d

    def placement(self) -> dict[str, str]:
        """Where each kind of group landed on the fabric: its NPUs, and the dimensions they differ along."""
        t = self.cluster.topology
        pipeline = tuple(self.place[(0, j, 0)] for j in range(self.p))
        out = {}
        groups = [("tensor", self.group("tensor", 0, 0)), ("pipeline", pipeline), ("data", self.group("data", 0, 0))]
        if self.c > 1:
            groups.insert(2, ("context", self.group("context", 0, 0)))
        if self.model.moe is not None:
            groups += [("expert", self.group("expert", 0, 0)), ("expert tensor", self.group("expert tensor", 0, 0))]
        for axis, group in groups:
            if len(group) < 2:
                out[axis] = "one NPU"
                continue
            where = f"NPUs {_npus(group)}"
            if t.coords:
                spans = sorted(
                    {i for a in group for i, (x, y) in enumerate(zip(t.coords[a], t.coords[group[0]], strict=True)) if x != y}
                )
                where += f" (dimension{'s' if len(spans) > 1 else ''} {', '.join(str(i + 1) for i in spans)})"
            out[axis] = where
        return out


def _npus(group: tuple[int, ...]) -> str:
    shown = ", ".join(map(str, group[:4]))
    return shown + (f", ... ({len(group)} NPUs)" if len(group) > 4 else "")
