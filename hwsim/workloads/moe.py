"""A mixture-of-experts feed-forward block as Megatron-core runs it with expert parallelism, on one rank.

A router (a GEMM to the experts' logits, softmax and top-k) picks top_k of the `experts` for each token;
the token copies are permuted into expert order and sent to the ranks that hold their experts by an
all-to-all over the e expert-parallel ranks (dispatch); each rank runs its experts / e experts as grouped
GEMMs (FC1 with SwiGLU's gate and up, the activation, FC2) on the copies it received; a second all-to-all
brings the outputs back (combine), and they are un-permuted and summed with the router's weights. Shared
experts run on every token beside them. The backward runs the same in reverse, with the all-to-alls of the
gradients. (Megatron-core's `MoELayer` with the all-to-all token dispatcher, `MoEAlltoAllTokenDispatcher`:
each tensor rank routes its own s / t tokens, so tensor parallelism needs sequence parallelism.)

With et expert-tensor ranks each expert's FC1 is split by columns and FC2 by rows over them: the copies a rank
receives are all-gathered over its expert-tensor group after the dispatch, so each of its et ranks runs every
copy on its shard, and the outputs are reduce-scattered back before the combine (the dispatcher's steps (4)
and (5), "AG(TP)" and "RS(TP)"; NVIDIA/Megatron-LM megatron/core/transformer/moe/token_dispatcher.py).
The shared experts run as a dense feed-forward block of their joint width, split over the tensor ranks.

The symmetric run simulates one rank for all: the busiest one, which receives `load` times the even share of
token copies (1 when the router spreads them evenly), as the others wait for it at the combine.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from hwsim.config.schema import MoeSpec, TransformerSpec
from hwsim.workloads.ops import Gemm

if TYPE_CHECKING:
    from hwsim.workloads.megatron import BlockContext, BlockPart

ROUTER_BYTES = 4  # the router's logits and probabilities in fp32 (Megatron-core's router runs in fp32)


@dataclass(frozen=True)
class ExpertShare:
    """How a MoE layer runs on the simulated rank: e expert-parallel ranks, the busiest rank's load (token
    copies received over the even share), and whether the all-to-alls run beside the experts' GEMMs."""

    expert: int
    load: float = 1.0
    overlap: bool = False
    dispatch_bytes: float = 2.0  # per element the dispatch sends (DeepSeek-V3's fp8: 1 and a scale per 128)
    nodes: int = 1  # the nodes the expert ranks span (with node_limit: a two-level all-to-all)
    tensor: int = 1  # expert-tensor ranks: each expert's GEMMs split over them


def expert_loads(moe: MoeSpec, expert: int, seed: int) -> np.ndarray:
    """Each expert rank's share of the routed token copies, relative to the even share (mean 1 without a
    capacity): uniform; zipf (expert i's popularity ~ 1 / (i + 1)^alpha, the experts placed on the ranks in a
    shuffle seeded by `seed`); measured (`fractions`, expert i on rank i // (experts / e)). With a capacity
    factor an expert takes at most capacity_factor times its even share; the rest is dropped."""
    n = moe.experts
    if moe.load == "uniform":
        share = np.full(n, 1.0 / n)
        placed = np.arange(n)
    elif moe.load == "zipf":
        share = 1.0 / np.arange(1, n + 1) ** moe.zipf_alpha
        placed = np.random.default_rng(seed).permutation(n)
    else:
        share = np.asarray(moe.fractions, float)
        placed = np.arange(n)
    share = share / share.sum()
    if moe.capacity_factor is not None:
        share = np.minimum(share, moe.capacity_factor / n)
    per_rank = share[placed].reshape(expert, n // expert).sum(axis=1)
    return per_rank * expert


def busiest_load(moe: MoeSpec, expert: int, seed: int) -> float:
    """The busiest expert rank's token copies over the even share (`expert_loads`' largest)."""
    return float(expert_loads(moe, expert, seed).max())


def expert_params(model: TransformerSpec) -> tuple[int, int, int]:
    """(routed, shared, router) parameters of one MoE layer's feed-forward block: the routed experts' FC1
    (SwiGLU: gate and up) and FC2, the shared experts' likewise, the router's."""
    moe, h = model.moe, model.d_model
    per_expert = h * moe.d_ff_expert * (3 if model.mlp == "swiglu" else 2)
    return moe.experts * per_expert, moe.shared_experts * per_expert, h * moe.experts


def moe_part(ctx: BlockContext, share: ExpertShare) -> BlockPart:
    """The MoE block on the busiest rank for one micro-batch (see the module's docstring): its T tokens (s b / c,
    / t with sequence parallelism) send T top_k copies; it receives load x that many for its experts / e
    experts, and with et expert-tensor ranks runs et times that many on its 1 / et of each expert, n per expert."""
    from hwsim.workloads.megatron import ACT_BYTES, OP, BlockPart, Kernel, _memory, activation_kernels, dense_mlp_part

    model = ctx.model
    moe, h, et = model.moe, model.d_model, share.tensor
    tokens = int(ctx.local // h)
    local_experts = moe.experts // share.expert
    copies = tokens * moe.top_k
    received = copies * share.load
    gathered = received * et  # the copies this rank's expert shards run on
    n = math.ceil(gathered / local_experts)
    up = 2 * moe.d_ff_expert if model.mlp == "swiglu" else moe.d_ff_expert
    router = Gemm(tokens, moe.experts, h)
    fc1, fc2 = Gemm(n, up // et, h, local_experts), Gemm(n, h, moe.d_ff_expert // et, local_experts)

    def all_to_all(name: str, per_element: float) -> tuple[Kernel, ...]:
        """The busiest rank's all-to-all of its copies (`received` of them, h each). With `node_limit` and ranks
        on several nodes, two levels as DeepSeek-V3 runs it (section 3.2.2): each token crosses to each of its at
        most node_limit nodes once, to the rank with the sender's index there, over InfiniBand, and NVLink takes
        each copy on to its expert's rank in that node as it arrives (DeepEP's normal kernels: the two levels at
        once, the longer one's time)."""
        beside = OP if share.overlap else ""
        if moe.node_limit is None or share.nodes < 2:
            return (Kernel("all_to_all", name, bytes=received * h * per_element, group="expert", beside=beside),)
        crossing = tokens * min(moe.node_limit, moe.top_k, share.nodes) * share.load * h * per_element
        return (  # DeepEP forwards over NVLink as the InfiniBand data arrives: the two levels side by side
            Kernel("all_to_all", f"{name} between nodes", bytes=crossing, group="expert across", beside=beside, pipelined=True),
            Kernel("all_to_all", f"{name} in the node", bytes=received * h * per_element, group="expert local", beside=beside),
        )

    def over_shards(kind: str, name: str, per_element: float) -> tuple[Kernel, ...]:
        """An all-gather or reduce-scatter of the gathered copies over the expert-tensor ranks."""
        return (Kernel(kind, name, bytes=gathered * h * per_element, group="expert tensor"),) if et > 1 else ()

    activation, activation_grad = activation_kernels(model, n * local_experts * moe.d_ff_expert / et, "expert ")
    route = _memory("router softmax top-k", tokens * moe.experts, 2 * ROUTER_BYTES)
    permute = _memory("permute", copies * h, 2 * ACT_BYTES)  # token copies into expert order
    unpermute = _memory("unpermute", copies * h + tokens * h, 2 * ACT_BYTES)  # back, weighted and summed
    forward = [
        Kernel("gemm", "router", router),
        route,
        permute,
        *all_to_all("dispatch", share.dispatch_bytes),
        *over_shards("all_gather", "expert all-gather", share.dispatch_bytes),
        Kernel("gemm", "expert fc1", fc1),
        activation,
        Kernel("gemm", "expert fc2", fc2),
        *over_shards("reduce_scatter", "expert reduce-scatter", ACT_BYTES),
        *all_to_all("combine", ACT_BYTES),
        unpermute,
    ]
    input_grad = [
        _memory("unpermute grad", copies * h + tokens * h, 2 * ACT_BYTES),
        *all_to_all("combine grad", ACT_BYTES),
        *over_shards("all_gather", "expert all-gather grad", ACT_BYTES),
        Kernel("gemm", "expert fc2 dx", fc2.backward()[0]),
        activation_grad,
        Kernel("gemm", "expert fc1 dx", fc1.backward()[0]),
        *over_shards("reduce_scatter", "expert reduce-scatter grad", ACT_BYTES),
        *all_to_all("dispatch grad", ACT_BYTES),
        _memory("permute grad", copies * h, 2 * ACT_BYTES),
        _memory("router grad", tokens * moe.experts, 3 * ROUTER_BYTES),
        Kernel("gemm", "router dx", router.backward()[0]),
    ]
    weights = {"router": router, "expert fc1": fc1, "expert fc2": fc2}
    if moe.shared_experts:
        shared = dense_mlp_part(ctx, moe.shared_experts * moe.d_ff_expert, "shared ")
        forward += shared.forward
        input_grad = [*shared.input_grad, *input_grad]
        weights |= shared.weights
    return BlockPart(tuple(forward), tuple(input_grad), weights)


def moe_activation_bytes(model: TransformerSpec, dense: float, t: int, tokens: int, local: int, share: ExpertShare) -> float:
    """A MoE block's kept bytes on the busiest rank: a dense block's (`dense`, from `activation_bytes`) without
    its feed-forward tensors (the rank's `tokens`, s b / c, split by t), plus, for its `local` tokens (/ t with
    sequence parallelism), the router's fp32 probabilities, the gathered copies' FC1 inputs, their FC1 outputs
    (SwiGLU: gate and up) and FC2 inputs on its 1 / et of the experts' width, and the shared experts' tensors
    as a dense block's of their width."""
    from hwsim.workloads.megatron import ACT_BYTES

    moe, h, f = model.moe, model.d_model, model.d_ff
    glu = 3 if model.mlp == "swiglu" else 2
    dense_mlp = tokens * glu * f / t * ACT_BYTES  # GeLU's input and FC2's (SwiGLU: gate, up, FC2's)
    received = local * moe.top_k * share.load
    routed = received * (share.tensor * h + glu * moe.d_ff_expert) * ACT_BYTES
    shared = tokens * glu * moe.shared_experts * moe.d_ff_expert / t * ACT_BYTES
    return dense - dense_mlp + local * moe.experts * ROUTER_BYTES + routed + shared
