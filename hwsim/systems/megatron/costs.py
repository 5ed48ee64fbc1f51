"""What one micro-batch costs a Megatron pipeline stage on one tensor rank, and what each NPU holds.

Times come from the hardware description before anything runs: GEMMs from the
arithmetic unit's cycle model (`array_cycles`: a GPU's tensor cores as small systolic
arrays, tiles in waves) plus each wave's exposed prologue and epilogue (`gemm_seconds`),
memory-bound kernels from the bank's achieved rate (the memory roofline: bytes / rate),
tensor-parallel collectives from the collectives library
played on the cluster's fabric over the NPUs of one tensor group (one run per
operation and size, cached). A block's time is their sum, as Megatron runs them one after
another on one stream, except what the framework (`system.framework`) runs beside a GEMM:
with `tp_overlap` the backward's re-gathers and input-gradient reductions, each pair taking
max(c, g + comm_slowdown min(c, g)). The arrays run at the framework's `gemm_efficiency`.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field

import numpy as np
import simpy

from hwsim.collectives import plan
from hwsim.collectives.executor import run as run_plan
from hwsim.config.schema import BankSpec, HardwareSpec, SystolicSpec, TransformerSpec
from hwsim.config.schema.megatron import FrameworkSpec
from hwsim.hardware import array_cycles, tile_waves
from hwsim.network.cluster import curve_at
from hwsim.network.fabric import Fabric
from hwsim.network.topology import Topology
from hwsim.systems.megatron.traffic import channels
from hwsim.workloads.megatron import (
    ACT_BYTES,
    GRAD_BYTES,
    OP,
    WGRAD_BYTES,
    BlockWork,
    Kernel,
    block_params,
    block_work,
    layer_is_moe,
)
from hwsim.workloads.moe import ExpertShare, expert_params
from hwsim.workloads.ops import Gemm

WEIGHT_BYTES = 2  # 16-bit weights the GEMMs read
ADAM_BYTES = 12  # fp32 master weights, first and second moments
FP8_BYTES = 1  # an fp8 (e4m3 or e5m2) element
# Megatron's vocabulary-parallel cross entropy on fp32 logits (its default, no --fp16-lm-cross-entropy), bytes
# per logit: forward, the cast (read 2, write 4), max (4), subtract it (4 + 4), exp (4 + 4), sum (4), divide
# into the softmax kept for backward (4 + 4); backward, scale by the loss gradient (4 + 4) and cast back (4 + 2)
XENT_FORWARD_BYTES = 38
XENT_BACKWARD_BYTES = 14


def optimizer_bytes(precision: str) -> tuple[float, float]:
    """Bytes the step's optimizer work moves per parameter, as Megatron's mixed-precision optimizer runs it
    (Megatron-LM 2022, `Float16OptimizerWithFloat16Params.step`, each a memory-bound multi-tensor kernel):
    (on every parameter) zeroing the fp32 gradient buffer, 4; (on the optimizer's shard) with fp16 only,
    unscaling the gradients and checking them for inf/nan, read and write 4 + 4; the gradient norm for
    clipping, read 4; Adam (apex FusedAdam), read master, gradient, m, v and write master, m, v, 16 + 12;
    copying the master weights into the 16-bit ones, read 4 and write 2."""
    unscale = 8.0 if precision == "fp16" else 0.0
    return 4.0, unscale + 4.0 + 28.0 + 6.0


def gemm_seconds(
    array: SystolicSpec, bank: BankSpec, g: Gemm, precision: str, out_bytes: float = ACT_BYTES, fused: bool = False
) -> float:
    """A GEMM on the arrays (a GPU's tensor cores): their cycles, tiles in waves (`array_cycles`), plus what
    no MAC overlaps: each wave waits one bank latency for its first operands (the prologue), and stores its
    output tiles, `out_bytes` per element, at the bank's rate (the epilogue). Or, if longer, the time to move
    the operands and the result (the roofline); `fused` (a fused attention kernel, whose m x k operand is made
    on chip): the result only."""
    compute = array_cycles(array, g.m, g.n, g.k, precision, g.count) / array.clock
    outputs = g.count * g.m * g.n
    exposed = tile_waves(array, g.m, g.n, g.count) * bank.latency + outputs * out_bytes / bank.rate
    operands = 0 if fused else g.count * (g.m * g.k + g.k * g.n) * ACT_BYTES
    traffic = (operands + outputs * out_bytes) / bank.rate
    return max(compute + exposed, traffic)


@dataclass
class Part:
    """One op split by where it goes: GEMMs (seconds, FLOP; with the slowdown of a collective beside them),
    memory-bound kernels (seconds, bytes moved to and from the bank), tensor-parallel collectives (exposed
    seconds, bytes each rank sends on the ring), gaps between kernels; and the communication hidden
    beside GEMMs."""

    gemm_s: float = 0.0
    memory_s: float = 0.0
    tensor_s: float = 0.0  # exposed: what no GEMM beside it hides
    gemm_flops: float = 0.0
    memory_bytes: float = 0.0
    tensor_bytes: float = 0.0
    context_bytes: float = 0.0  # what the rank sends to its context ranks (their seconds are in tensor_s)
    expert_bytes: float = 0.0  # what the rank sends to its expert ranks in all-to-alls (seconds in tensor_s)
    expert_across_bytes: float = 0.0  # two-level all-to-alls: to the ranks of its index on the other nodes
    expert_local_bytes: float = 0.0  # ... and to the expert ranks of its node
    expert_tensor_bytes: float = 0.0  # to its expert-tensor ranks (the received copies gathered, the outputs scattered)
    gap_s: float = 0.0  # idle between kernels (launch and framework)
    hidden_s: float = 0.0  # tensor-parallel communication run beside a GEMM, not in the total

    @property
    def total_s(self) -> float:
        return self.gemm_s + self.memory_s + self.tensor_s + self.gap_s

    def __add__(self, other: Part) -> Part:
        return Part(*(getattr(self, f) + getattr(other, f) for f in PART_FIELDS))

    def times(self, n: float) -> Part:
        return Part(*(getattr(self, f) * n for f in PART_FIELDS))


PART_FIELDS = tuple(f.name for f in dataclasses.fields(Part))


def ring_wire_bytes(op: str, n: int, nbytes: float) -> float:
    """Bytes each of n ranks sends to its successor in a ring `op` on a buffer of `nbytes` (an all-reduce
    is a reduce-scatter and an all-gather: 2 (n - 1) / n of it; each of those alone: (n - 1) / n)."""
    if n < 2:
        return 0.0
    share = (n - 1) / n * nbytes
    return 2 * share if op == "all_reduce" else share


def weight_grad_bytes(work: BlockWork) -> float:
    """What a split backward keeps of a block from its B to its W on one rank: each weight-gradient GEMM's
    operands, the layer's input and its output's gradient, 16-bit (dW = X^T dY needs both; zero-bubble
    schedules hold them while W waits)."""
    return float(
        sum((k.gemm.m * k.gemm.k + k.gemm.k * k.gemm.n) * k.gemm.count * ACT_BYTES for k in work.weight_grad if k.kind == "gemm")
    )


ROUNDS = {"all_reduce": lambda n: 2 * (n - 1), "all_gather": lambda n: n - 1, "reduce_scatter": lambda n: n - 1}
"""Rounds of a ring collective over n ranks: Patarasuk and Yuan's all-reduce is a reduce-scatter and an all-gather."""


@dataclass
class CollectiveTimer:
    """Seconds of a ring collective (NCCL's algorithm for these sizes) over a group of fabric NPUs, worked out
    once per (op, group, bytes) on a scratch copy of the fabric: a group spread over nodes with several ranks
    on each runs NCCL's channels, rings side by side that leave each node through different NICs
    (`traffic.channels`). In lockstep every round of a ring moves the same block from each rank to the next,
    so one round, every channel's messages leaving together (each paying the NIC overhead), is played on the
    fabric and counted once per round: the collective executor's lockstep run of the same plan, one round
    instead of all (under store_and_forward, whose queues let channels drift apart, several channels run the
    executor's whole plan). With `curves` (`cluster.size_curves`) each dimension's links run at the rate of the
    collective's size."""

    topology: Topology
    model: str
    overhead: float
    curves: dict[str, list[tuple[float, float]]] = field(default_factory=dict)
    cache: dict = field(default_factory=dict)
    fabric: Fabric | None = None

    def seconds(self, op: str, group: tuple[int, ...], nbytes: float) -> float:
        """`op` on a buffer of `nbytes` on each rank of `group`. An all-to-all sends each other rank its share
        (nbytes / n) at once, every pair a flow on the fabric (NCCL's all-to-all: a send and a receive per peer
        in one group call), played whole."""
        if len(group) < 2 or nbytes <= 0:
            return 0.0
        key = (op, group, int(nbytes))
        if key not in self.cache:
            if self.fabric is None:  # one scratch fabric: each collective runs alone on it, one after another
                self.fabric = Fabric(
                    simpy.Environment(), self.topology, self.model, [f"npu{i}" for i in range(self.topology.npus)]
                )
                self.base = self.fabric.bandwidth.copy()
                self.levels = np.asarray(self.topology.level)
            if self.curves:  # the links at this size's rates
                rates = self.base.copy()
                for level, points in self.curves.items():
                    rates[self.levels == level] *= curve_at(points, nbytes)
                self.fabric.set_rates(rates)
            env, n = self.fabric.env, len(group)
            rings = channels(self.topology, group)
            start = env.now
            if op == "all_to_all":
                block = max(1, int(nbytes) // n)
                moves = [(a, b, block) for a in group for b in group if a != b]
                env.run(env.process(self.fabric.transfer_group(moves, "all-to-all", self.overhead)))
                self.cache[key] = env.now - start
            elif len(rings) > 1 and self.model == "store_and_forward":  # queued channels drift apart: play them all
                steps = plan(op, "ring", n)
                share = int(nbytes) // len(rings)
                runs = [
                    env.process(run_plan(env, self.fabric, steps, r, share, overhead=self.overhead, lockstep=True)) for r in rings
                ]
                env.run(simpy.AllOf(env, runs))
                self.cache[key] = env.now - start
            else:
                block = max(1, int(nbytes) // (n * len(rings)))  # each rank's block of its channel's share
                moves = [(a, b, block) for ring in rings for a, b in zip(ring, ring[1:] + ring[:1], strict=True)]
                env.run(env.process(self.fabric.transfer_group(moves, f"{op} round", self.overhead)))
                self.cache[key] = ROUNDS[op](n) * (env.now - start)
        return self.cache[key]


class StageCosts:
    """Per micro-batch, the seconds of a stage's F, B (input gradient), W (weight gradient) and recompute
    on one tensor rank, from `blocks` transformer blocks plus the embedding (first stage) or the final
    layer norm, logits and loss (last stage)."""

    def __init__(
        self,
        hardware: HardwareSpec,
        bank: str,
        model: TransformerSpec,
        tensor_group: tuple[int, ...],
        timer: CollectiveTimer,
        *,
        microbatch: int,
        sequence: bool,
        recompute: str,
        precision: str,
        framework: FrameworkSpec | None = None,
        context_group: tuple[int, ...] = (),
        context_comm: str = "ring",
        expert_groups: dict[str, tuple[int, ...]] | None = None,
        experts: ExpertShare | None = None,
        fp8_scaling: str = "tensor",
    ):
        self.hardware, self.model, self.timer = hardware, model, timer
        self.group, self.precision = tensor_group, precision
        self._bf16 = "bf16" if precision == "fp8" else precision  # what runs at 16 bits
        self.fp8_scaling = fp8_scaling
        self.groups = {"tensor": tensor_group, "context": context_group, **(expert_groups or {})}
        self.c = max(len(context_group), 1)
        self.framework = framework = framework or FrameworkSpec()
        self.bank = hardware.memory[bank]
        self.bandwidth = self.bank.rate
        # the arrays at the rate this framework's libraries reach
        self.array = dataclasses.replace(hardware.systolic, efficiency=hardware.systolic.efficiency * framework.gemm_efficiency)
        # fp8 GEMMs at their measured fraction of it; the fused attention kernel at its measured fraction
        self.fp8_array = dataclasses.replace(self.array, efficiency=self.array.efficiency * hardware.systolic.fp8_efficiency)
        self.attention_array = dataclasses.replace(
            self.array, efficiency=self.array.efficiency * hardware.systolic.attention_efficiency
        )
        self.t = len(tensor_group)
        self.b, self.sequence, self.recompute = microbatch, sequence, recompute

        def work(experts_share: ExpertShare | None) -> BlockWork:
            return block_work(
                model,
                self.t,
                microbatch,
                sequence,
                recompute,
                framework.wgrad_fusion,
                framework.flash_attention,
                self.c,
                context_comm,
                experts_share,
                framework.tp_comm_overlap,
            )

        self.work: BlockWork = work(None)
        self.block = self._parts(self.work)
        # a MoE layer's block, on the busiest expert rank
        self.moe_work: BlockWork | None = work(experts or ExpertShare(1)) if model.moe is not None else None
        self.moe_block: dict[str, Part] = self._parts(self.moe_work) if self.moe_work is not None else {}

    def _parts(self, work: BlockWork) -> dict[str, Part]:
        out = {name: self._part(getattr(work, name)) for name in ("forward", "input_grad", "weight_grad", "recompute")}
        out["backward"] = self._part(work.backward)  # fused: a reduction beside its weight gradient
        return out

    def _part(self, kernels: tuple[Kernel, ...]) -> Part:
        """The kernels one after another (`timed`), each followed by the framework's gap; collectives beside OP
        (MoE's all-to-alls with moe_overlap) beside all the op's GEMMs together, as another micro-batch's work
        hides them in DualPipe."""
        out = Part(gap_s=len(kernels) * self.framework.kernel_gap)
        pooled = 0.0  # collectives beside the op's GEMMs as a whole (beside OP)
        for _, part, seconds, where in self.timed(kernels):
            out = out + part
            if where == OP:
                pooled += seconds
        if pooled:
            g = out.gemm_s
            out.gemm_s = g + self.framework.comm_slowdown * min(pooled, g)
            exposed = max(0.0, pooled - out.gemm_s)
            out.tensor_s += exposed
            out.hidden_s += pooled - exposed
        return out

    def timed(self, kernels: tuple[Kernel, ...]) -> list[tuple[Kernel, Part, float, str]]:
        """Each kernel with its share of the op's Part, its own seconds and where it runs ("": in sequence; a
        GEMM's name: beside that GEMM; OP: beside the op's GEMMs together). With `tp_overlap` a collective whose
        GEMM is among the kernels runs beside it: the pair takes max(c, g + slowdown min(c, g)), the GEMM's
        Part holding the slowed GEMM and what of c it does not hide. A context ring always runs beside its
        attention (it is built to). A collective beside a GEMM or OP adds only its bytes to the Part."""
        fw = self.framework
        gemms = {k.name for k in kernels if k.kind == "gemm"}

        def overlapped(k: Kernel) -> bool:
            return k.kind not in ("gemm", "memory") and k.beside in gemms and (fw.tp_overlap or k.group != "tensor")

        seconds = self._collective_seconds(kernels)
        beside: dict[str, float] = {}  # a GEMM's name: seconds of the collective run beside it
        for i, k in enumerate(kernels):
            if overlapped(k) and k.beside != OP:
                beside[k.beside] = beside.get(k.beside, 0.0) + seconds[i]
        out = []
        for i, k in enumerate(kernels):
            if k.kind == "gemm":
                part = self._gemm(k.gemm, k.out_bytes, k.attention, quantize=not k.name.endswith(" dw"))
                c = beside.get(k.name, 0.0)
                if c:
                    g = part.gemm_s
                    part.gemm_s = g + fw.comm_slowdown * min(c, g)
                    part.tensor_s = max(0.0, c - part.gemm_s)
                    part.hidden_s = c - part.tensor_s
                out.append((k, part, part.gemm_s + part.memory_s, ""))
            elif k.kind == "memory":
                part = Part()
                self._memory(part, k.bytes)
                out.append((k, part, part.memory_s, ""))
            else:
                part = Part()
                self._count_bytes(part, k)
                where = OP if k.beside == OP else k.beside if overlapped(k) else ""
                if not where:
                    part.tensor_s = seconds[i]
                out.append((k, part, seconds[i], where))
        return out

    def _collective_seconds(self, kernels: tuple[Kernel, ...]) -> dict[int, float]:
        """Each collective's seconds by its index; a `pipelined` one and the next run side by side: the first
        takes the pair's longer time, the second none."""
        out = {
            i: self.timer.seconds(k.kind, self.groups[k.group], k.bytes)
            for i, k in enumerate(kernels)
            if k.kind not in ("gemm", "memory")
        }
        for i, k in enumerate(kernels):
            if k.pipelined and i + 1 in out:
                out[i], out[i + 1] = max(out[i], out[i + 1]), 0.0
        return out

    def _memory(self, part: Part, nbytes: float) -> None:
        """A memory-bound kernel moving `nbytes` at the bank's achieved rate."""
        part.memory_s += nbytes / self.bandwidth
        part.memory_bytes += nbytes

    def _collective(self, part: Part, op: str, nbytes: float, group: str = "tensor") -> None:
        """A tensor-parallel (or context-parallel) collective on the whole tensor of `nbytes`: its time is the
        op's tensor communication."""
        part.tensor_s += self.timer.seconds(op, self.groups[group], nbytes)
        self._count_bytes(part, Kernel(op, "", bytes=nbytes, group=group))

    def _count_bytes(self, part: Part, k: Kernel) -> None:
        """What this rank sends on the ring of a collective, by group."""
        sent = ring_wire_bytes(k.kind, len(self.groups[k.group]), k.bytes)
        if k.group == "context":
            part.context_bytes += sent
        elif k.group == "expert across":
            part.expert_across_bytes += sent
        elif k.group == "expert local":
            part.expert_local_bytes += sent
        elif k.group == "expert":
            part.expert_bytes += sent
        elif k.group == "expert tensor":
            part.expert_tensor_bytes += sent
        else:
            part.tensor_bytes += sent

    def _gemm(self, g: Gemm, out_bytes: float = ACT_BYTES, attention: bool = False, quantize: bool = False) -> Part:
        """A GEMM at the run's precision (fp8: the linear layers; the attention stays bf16); with fp8 and
        `quantize` its first input is quantized first: a pass reading 16 and writing 8 bits per element (and a
        32-bit scale per 128 with block scaling)."""
        fp8 = self.precision == "fp8" and not attention
        array = self.attention_array if attention else self.fp8_array if fp8 else self.array
        seconds = gemm_seconds(array, self.bank, g, "fp8" if fp8 else self._bf16, out_bytes, fused=attention)
        part = Part(gemm_s=seconds, gemm_flops=float(g.flops))
        if fp8 and quantize:
            per = ACT_BYTES + FP8_BYTES + (4 / 128 if self.fp8_scaling == "block" else 0.0)
            self._memory(part, g.m * g.k * g.count * per)
        return part

    def edge(self, first: bool, last: bool) -> dict[str, Part]:
        """The embedding's and the head's work: the lookup (first stage); final layer norm, logits GEMM
        (tokens, V/t, h) against the tied embedding, cross entropy and their backward (last stage)."""
        m, t = self.model, self.t
        tokens, h = m.seq_len * self.b // self.c, m.d_model
        out = {name: Part() for name in ("forward", "input_grad", "weight_grad")}
        if first:
            self._memory(out["forward"], 2 * tokens * h * ACT_BYTES)  # gather rows, add positions
            self._memory(out["weight_grad"], 2 * tokens * h * ACT_BYTES)  # scatter-add into the table
        if last:
            logits = Gemm(tokens, m.vocab // t, h)
            dx, dw = logits.backward()
            elements = tokens * m.vocab / t
            full = tokens * h * ACT_BYTES
            out["forward"] = out["forward"] + self._gemm(logits)
            self._memory(out["forward"], elements * XENT_FORWARD_BYTES + tokens * h / (t if self.sequence else 1) * 4)
            out["input_grad"] = out["input_grad"] + self._gemm(dx)
            self._memory(out["input_grad"], elements * XENT_BACKWARD_BYTES)
            self._collective(out["input_grad"], "reduce_scatter" if self.sequence else "all_reduce", full)
            if self.sequence:
                self._collective(out["forward"], "all_gather", full)
            out["weight_grad"] = out["weight_grad"] + self._gemm(dw, WGRAD_BYTES if self.framework.wgrad_fusion else ACT_BYTES)
            if not self.framework.wgrad_fusion:
                self._memory(out["weight_grad"], dw.m * dw.n * (ACT_BYTES + 2 * GRAD_BYTES))
        out["backward"] = out["input_grad"] + out["weight_grad"]
        return out


@dataclass(frozen=True)
class Memory:
    """Bytes one NPU holds: 16-bit weights, fp32 gradients, Adam state (fp32 master, m, v; sharded over d by
    a distributed optimizer, all three by a sharded one), and at the step's peak the activations and (sharded)
    the gathered chunks' full weights and gradient buffers."""

    weights: float
    gradients: float
    optimizer: float
    activations: float
    gathered: float = 0.0
    fill: float = 0.0  # a fill job's weights (and state) and activations at the peak

    @property
    def total(self) -> float:
        return self.weights + self.gradients + self.optimizer + self.activations + self.gathered + self.fill

    def as_dict(self) -> dict[str, float]:
        return {
            "weights_bytes": self.weights,
            "gradients_bytes": self.gradients,
            "optimizer_bytes": self.optimizer,
            "activations_bytes": self.activations,
            "gathered_bytes": self.gathered,
            "fill_bytes": self.fill,
            "total_bytes": self.total,
        }


def stage_params(model: TransformerSpec, blocks: int, t: int, first: bool, last: bool, start: int = 0, expert: int = 1) -> float:
    """Parameters of one tensor rank of a stage whose blocks are layers start .. start + blocks - 1: a dense
    block's split by t; a MoE block's attention, norms and shared experts split by t, its routed experts by the
    `expert` shards (expert x expert-tensor ranks, `routed_params`), its router whole; plus the
    vocabulary-parallel embedding (V/t rows) and the learned positions (none with rotary) on the first stage,
    and the output layer (the tied copy, or its own) on the last."""
    positions = 0 if model.rotary else model.seq_len * model.d_model
    edge = (model.vocab * model.d_model / t + positions) if first else 0.0
    if last and (not first or not model.tied_embeddings):
        edge += model.vocab * model.d_model / t
    moe = sum(layer_is_moe(model, i) for i in range(start, start + blocks))
    dense = (blocks - moe) * block_params(model) / t
    if moe:
        routed, _, router = expert_params(model)
        dense += moe * ((block_params(model, True) - routed - router) / t + router)
    return dense + routed_params(model, blocks, start, expert) + edge


def routed_params(model: TransformerSpec, blocks: int, start: int, expert: int) -> float:
    """The routed experts' parameters a rank holds in layers start .. start + blocks - 1, split into `expert`
    shards (expert x expert-tensor ranks; their gradients are reduced over the ranks that hold the same shard)."""
    moe = sum(layer_is_moe(model, i) for i in range(start, start + blocks))
    return moe * expert_params(model)[0] / expert if moe else 0.0


def stage_memory(
    params: float,
    d: int,
    optimizer: str,
    activations: float = 0.0,
    gathered: float = 0.0,
    fill: float = 0.0,
    secondary: int = 0,
    weight_bytes: float = WEIGHT_BYTES,
    routed: float = 0.0,
    expert_data: int = 1,
) -> Memory:
    """What an NPU holding `params` parameters keeps with the `optimizer` (allreduce, distributed: ZeRO-1,
    sharded: ZeRO-3) over d replicas; `secondary` > 0: hierarchical partitioning's second copy of the
    16-bit weights, over that many ranks of the node; `weight_bytes`: per weight as the bank stores it;
    `routed` of the params are routed experts, whose state the distributed optimizer shards over the
    `expert_data` ranks that hold the same shards."""
    shards, routed_shards = (1, 1) if optimizer == "allreduce" else (d, expert_data)
    state = (params - routed) * ADAM_BYTES / shards + routed * ADAM_BYTES / routed_shards
    kept = 1 / d if optimizer == "sharded" else 1
    weights = params * (weight_bytes * kept + (WEIGHT_BYTES / secondary if secondary else 0.0))
    return Memory(weights, params * GRAD_BYTES * kept, state, activations, gathered, fill)


def slowed(hardware: HardwareSpec, bank: str, slowdown: float) -> HardwareSpec:
    """`hardware` whose every GEMM and memory-bound kernel on `bank` takes `slowdown` times as long (a straggler):
    the arrays' clock divided by it, the bank's rate divided and its latency multiplied by it."""
    array = hardware.systolic
    boost = array.boost_clock / slowdown if array.boost_clock else array.boost_clock
    systolic = dataclasses.replace(array, clock=array.clock / slowdown, boost_clock=boost)
    held = hardware.memory[bank]
    memory = {
        **hardware.memory,
        bank: dataclasses.replace(held, efficiency=held.efficiency / slowdown, latency=held.latency * slowdown),
    }
    return dataclasses.replace(hardware, systolic=systolic, memory=memory)
