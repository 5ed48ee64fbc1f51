"""Large models in 3D (`system.kind: megatron`): the layout and its settings."""

from __future__ import annotations

from itertools import permutations
from typing import Any

from hwsim.config.fields import spec
from hwsim.config.schema.common import schema
from hwsim.config.schema.model import ModelSpec

ORDERS = tuple("".join(o) for axes in ("tpd", "tcpd") for o in permutations(axes))
"""The placement orders: each permutation of tensor, pipeline, data (and context)."""


@schema
class ParallelSpec:
    """Megatron's 3D layout: tensor t, pipeline p and data d ranks (t p d NPUs), and where they sit."""

    tensor: int = spec(1, doc="tensor-parallel ranks t (each block's GEMMs split over them)", min=1)
    pipeline: int = spec(1, doc="pipeline stages' devices p", min=1)
    data: int = spec(1, doc="data-parallel replicas d", min=1)
    virtual: int = spec(1, doc="model chunks per pipeline device v (interleaved 1F1B when above 1)", min=1)
    sequence: bool = spec(False, doc="sequence parallelism: all-gather / reduce-scatter, layer norms and dropouts split by t")
    context: int = spec(
        1,
        doc="context-parallel ranks c: each sequence split over them in 2c chunks, rank r holding chunks r and 2c-1-r "
        "(causal balance); they exchange keys and values in every attention and reduce gradients with the data ranks "
        "(t p c d NPUs)",
        min=1,
    )
    expert: int = spec(
        1,
        doc="expert-parallel ranks e: a MoE layer's experts split over e ranks of a stage (with expert_tensor "
        "et: every et-th of its t c d ranks, Megatron-core's folding), tokens dispatched to them and combined back "
        "by all-to-all; expert gradients reduced over the t c d / (et e) ranks that hold the same expert shards",
        min=1,
    )
    expert_tensor: int | None = spec(
        None,
        doc="expert-tensor ranks: each expert's GEMMs split over them (FC1 by columns, FC2 by rows), the tokens the "
        "expert ranks receive all-gathered over them before and reduce-scattered after (Megatron-core's "
        "--expert-tensor-parallel-size); the t c d ranks of a stage regrouped as expert_tensor x expert x expert "
        "data (its parallel folding); null: tensor, Megatron-core's default",
        min=1,
    )
    context_comm: str = spec(
        "ring",
        doc="how context ranks get each other's keys and values: ring (Megatron-core / Transformer Engine: passed "
        "round the ring beside the attention, gradients back the same way) or all_gather (Llama 3: gathered before "
        "the attention, gradients reduce-scattered after it)",
        choices=("ring", "all_gather"),
    )
    order: str = spec(
        "tpd",
        doc="placement: the axes from fastest-varying NPU index to slowest (tpd: tensor groups on adjacent NPUs, "
        "so in a fabric's first dimension); with context ranks, c among them (tcpd: Llama 3's [TP, CP, PP, DP]; "
        "without c, it follows t)",
        choices=ORDERS,
    )


@schema
class CompressionSpec:
    """Codecs on the 3D system's communication (M1 at scale), each exact in its bytes on the wire: a name
    (int8), a mapping {name: int8, block: 2048}, or null for what Megatron sends."""

    weights: Any = spec(
        None,
        doc="weight all-gathers (sharded's gathers, distributed's parameter all-gather); ZeRO++'s qwZ: int8 in "
        "blocks; null: 16-bit",
    )
    gradients: Any = spec(
        None,
        doc="gradient reductions (all-reduce, reduce-scatter); ZeRO++'s qgZ: int4; fp16 or bf16 for DeepSpeed's "
        "16-bit reduction; null: fp32 (Megatron's main_grad)",
    )
    pipeline: Any = spec(None, doc="activations and their gradients sent between pipeline stages; null: 16-bit")
    storage: Any = spec(
        None,
        doc="the weights as the bank holds them (M6: fp8_e4m3, int8, int4, any codec), each stage's decompressed to "
        "16-bit one block at a time just before its forward and its backward, on the vector unit, and freed after; "
        "null: 16-bit",
    )
    hierarchical: bool = spec(
        False,
        doc="sharded: ZeRO++'s hpZ, a second copy of each chunk's weights partitioned over the data ranks of the "
        "node, kept from its forward's gather, so its backward's gathers stay inside the node",
    )


@schema
class MegatronFillSpec:
    """Bubble filling at scale (M2, as PipeFill does it): a second job on every GPU of the pipeline, run in
    the idle windows the cost model and the schedule predict for it."""

    model: ModelSpec = spec(
        doc="the fill job's model: a transformer name from models/, a path, or a mapping (with an mlp main job and a "
        "pipeline: an mlp, trained with the real math)"
    )
    mode: str = spec(
        "inference",
        doc="inference: forward passes only (batch inference); train: forward, backward and an Adam step "
        "(fine-tuning; an mlp: SGD + momentum at system.lr and system.momentum), each GPU its own replica",
        choices=("inference", "train"),
    )
    policy: str = spec(
        "best_fit", doc="filling policy: first_fit, best_fit, reverse, best_mapping, or a registered / 'file.py:function' one"
    )
    microbatches: int = spec(64, doc="the fill job's micro-batches per step to place; as many as fit run", min=1)
    microbatch: int = spec(1, doc="sequences per fill micro-batch", min=1)
    budget: float = spec(
        0.02, doc="largest slowdown of the main job's step the filling may cause (a fraction); hwsim validate checks it", min=0
    )
    resident: bool = spec(
        True,
        doc="the fill job's weights stay in the bank; false (inference only): they stay in host memory and are "
        "copied in over host_bandwidth before each forward, held during it",
    )
    host_bandwidth: float = spec(
        32e9, doc="host-to-GPU copy rate for a fill job that is not resident (PCIe 4.0 x16: 32 GB/s each way)", unit="rate", gt=0
    )


@schema
class StragglerSpec:
    """One slow GPU of a 3D job: its kernels (GEMMs and memory-bound) take `slowdown` times as long (its arrays'
    clock and its memory's rate divided by it: a GPU held at a lower clock, a hotter one); its tensor group waits
    for it at every collective, its pipeline for its stage, and every other replica for its gradients. The
    healthy replicas' time comes from a second run of the job without it."""

    npu: int = spec(doc="the slow GPU's NPU index on the fabric (`placement` in summary.json names each)", min=0)
    slowdown: float = spec(doc="how many times as long its kernels take (1.2: 20 % slower)", min=1)


@schema
class FrameworkSpec:
    """What the training framework runs around the model's math, as a version of it does by default: a profile
    (`hwsim/config/frameworks/NAME.yaml`, each switch with its source) or these switches written out."""

    name: str = spec("custom", doc="the profile's name (a label in the report)")
    tp_overlap: bool = spec(
        False,
        doc="the backward's tensor-parallel collectives overlapped with its GEMMs: each column-parallel layer's "
        "re-gather of its input with its input-gradient GEMM, its input gradient's all-reduce (reduce-scatter with "
        "sequence parallelism) with its weight-gradient GEMM (Megatron-LM's async communication, 2021-09 on)",
    )
    tp_comm_overlap: bool = spec(
        False,
        doc="Transformer Engine's userbuffers (Megatron-core's --tp-comm-overlap, with sequence parallelism): the "
        "forward's all-gathers beside the GEMMs they feed, its reduce-scatters beside the GEMMs they follow, the "
        "backward's output-gradient all-gathers beside the input-gradient GEMMs; needs tp_overlap",
    )
    wgrad_fusion: bool = spec(
        True,
        doc="weight-gradient GEMMs add into the fp32 main gradient (gradient_accumulation_fusion, Megatron-LM "
        "2022-02 on); false: they write 16-bit gradients that a separate kernel adds into it",
    )
    overlap_grad_reduce: bool = spec(
        False,
        doc="the data-parallel gradient reduction overlapped with the backward (Megatron-core's "
        "--overlap-grad-reduce, 2023-08 on); system.overlap_grad_reduce, when set, decides instead",
    )
    overlap_param_gather: bool = spec(
        False,
        doc="the distributed optimizer's all-gather of the updated weights overlapped with the next step's forwards, "
        "bucket by bucket: a forward waits for its chunk's first bucket to start and for the rest to end "
        "(Megatron-core's --overlap-param-gather)",
    )
    comm_slowdown: float = spec(
        0.0,
        doc="fraction by which a GEMM slows while a collective runs beside it on the same GPU (the communication "
        "kernels' share of the SMs and of the memory bandwidth)",
        min=0,
        max=1,
    )
    gemm_efficiency: float = spec(
        1.0,
        doc="the fraction of the hardware's GEMM rate (its preset's, from the latest measured libraries) that this "
        "framework's PyTorch and cuBLAS reach",
        gt=0,
        max=1,
    )
    kernel_gap: float = spec(
        "0 s", doc="idle time between two consecutive kernels of an op on the GPU (launch and framework)", unit="time", min=0
    )
    flash_attention: bool = spec(
        False,
        doc="the attention as one fused kernel each way (FlashAttention-2 or cuDNN's: causal blocks skipped, no s x s "
        "tensor in memory; Transformer Engine's default in Megatron-core); false: Megatron-LM's GEMMs, fused softmax "
        "and dropout on the whole s x s scores",
    )


@schema
class MegatronSpec:
    """Megatron-style training in 3D (tensor, pipeline, data parallelism): a transformer, timing-only, or an
    mlp with the real math (tensor and data parallelism).

    Each block's GEMMs run on the arithmetic unit's cycle model, element-wise work on the
    memory roofline, tensor-parallel collectives on the fabric; the pipeline runs 1F1B
    (interleaved with v > 1) or any schedule of the library; then the data-parallel
    gradient reduction and the optimizer.
    An mlp's layers pair up as column- and row-split layers with real all-reduces.
    """

    kind: str = spec("megatron", doc="system", choices=("megatron",))
    parallel: ParallelSpec = spec(ParallelSpec, doc="the 3D layout")
    schedule: str | None = spec(
        None,
        doc="pipeline schedule: null for Megatron's own (1f1b, interleaved when parallel.virtual > 1), or any of the "
        "schedule library (gpipe, 1f1b, interleaved, breadth_first, hybrid, zb_h1, zb_h2, zb_v, v_half, v_min, "
        "dualpipe_v, dualpipe; split backward: W ops are the blocks' weight-gradient GEMMs) or 'file.py:function'",
    )
    placement: str | None = spec(
        None,
        doc="model chunks on devices: contiguous, looping, vshape or dual (v = 2); null: what the schedule needs "
        "(looping when parallel.virtual > 1)",
    )
    group: int = spec(
        0,
        doc="micro-batches per group (0: the devices p): interleaved's microbatch_group_size_per_vp_stage, "
        "hybrid's breadth-first micro-batches per depth-first group",
        min=0,
    )
    reverse_backward: bool = spec(False, doc="gpipe, breadth_first: the backwards in reverse micro-batch order")
    layers_per_stage: tuple[int, ...] | None = spec(
        None,
        doc="transformer blocks of each model chunk, in model order (an uneven split: the first and the last often "
        "hold fewer, where the embedding and the head take their place, as DeepSpeed's partition "
        "'type:transformer|embedding' does; Llama 3's first and last chunks hold them alone: 0); null: model.layers "
        "/ chunks each",
        min=0,
    )
    moe_overlap: bool = spec(
        False,
        doc="MoE: the dispatch and combine all-to-alls run beside all their op's GEMMs together (DualPipe's pairing of "
        "one micro-batch's forward with another's backward hides them behind computation: DeepSeek-V3, section "
        "3.2.1), the GEMMs slowed by the framework's comm_slowdown; false: each waits for its all-to-all",
    )
    overlap_grad_reduce: bool | None = spec(
        None,
        doc="reduce each model chunk's gradients over the data group as soon as its last backward (or W) of the step "
        "ends, overlapped with the rest of the pipeline (Megatron-core's --overlap-grad-reduce; layered gradient "
        "accumulation); false: every chunk's after the device's last op (Megatron-LM 2022); null: as the framework does",
    )
    framework: FrameworkSpec = spec(
        FrameworkSpec,
        doc="the framework's version and what it overlaps: a profile name (megatron-2021, megatron-2022, "
        "megatron-core; default megatron-2022 for a transformer), {base: NAME, ...changes}, or the switches",
    )
    batch: int = spec(doc="global batch: sequences per step over all replicas", min=1)
    microbatch: int = spec(1, doc="sequences per micro-batch", min=1)
    recompute: str = spec(
        "none",
        doc="activation recompute: none, selective (attention's scores, softmax, dropout and context redone), "
        "full (each block's forward rerun before its backward)",
        choices=("none", "selective", "full"),
    )
    optimizer: str = spec(
        "allreduce",
        doc="allreduce: gradients all-reduced over d, Adam state on every replica; distributed: ZeRO-1, gradients "
        "reduce-scattered, Adam state sharded over d, parameters all-gathered; sharded: ZeRO-3 / FSDP, weights, "
        "gradients and Adam state sharded over d, each model chunk's weights all-gathered before each run of its "
        "forwards and of its backwards, its gradients reduce-scattered after each run of its backwards (an mlp: "
        "with a pipeline)",
        choices=("allreduce", "distributed", "sharded"),
    )
    compression: CompressionSpec = spec(CompressionSpec, doc="codecs on the communication (all null: none)")
    fill: MegatronFillSpec | None = spec(None, doc="a second job in the pipeline's bubbles (timing-only); null: none")
    straggler: StragglerSpec | None = spec(
        None, doc="one slow GPU (a transformer): the step with it, and where the healthy replicas wait; null: none"
    )
    precision: str = spec(
        "bf16",
        doc="compute precision (fp32 master weights, gradients and Adam state); fp8: the linear layers' GEMMs in fp8 "
        "(Transformer Engine's recipe: each GEMM's inputs quantized, `fp8_scaling`), attention and the rest in bf16",
        choices=("bf16", "fp16", "fp8"),
    )
    fp8_scaling: str = spec(
        "tensor",
        doc="precision fp8: tensor (one scale per tensor, Transformer Engine's delayed scaling) or block (DeepSeek-V3's "
        "1 x 128 tiles of activations, 128 x 128 blocks of weights: a scale per 128 values more to move); each GEMM "
        "input quantized by a pass that reads 16 bits and writes 8",
        choices=("tensor", "block"),
    )
    steps: int = spec(1, doc="training steps", min=1)
    bank: str = spec("hbm", doc="bank that holds weights, gradients, optimizer state and activations")
    lr: float = spec(0.05, doc="learning rate (an mlp's SGD + momentum)", gt=0)
    momentum: float = spec(0.9, doc="SGD momentum (mlp)", min=0, max=0.999)
