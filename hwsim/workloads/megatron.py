"""A transformer block as Megatron runs it on one tensor-parallel rank: its kernels, collectives and memory.

Tensor parallelism (Shoeybi et al. 2019, "Megatron-LM", §3): the attention heads and
the MLP's first GEMM are split by columns over the t ranks, the projection and the
MLP's second GEMM by rows, so each block needs one all-reduce after attention and one
after the MLP in forward (the `g` operator), and one each in backward (the `f`
operator, after the QKV and FC1 input gradients). With sequence parallelism
(Korthikanti et al. 2022, "Reducing Activation Recomputation in Large Transformer
Models", arXiv 2205.05198, §4.2.2) the layer norms and dropouts work on s/t of the
tokens: each all-reduce becomes a reduce-scatter in forward and an all-gather in
backward, and an all-gather precedes each column-parallel GEMM (a reduce-scatter
after its input gradient); Megatron does not keep the gathered input, so the backward
gathers it again for the weight gradient.

Per block and micro-batch of b sequences of s tokens, width h, a heads, feed-forward f
(T = s b tokens), one rank runs the forward GEMMs QKV (T, 3h/t, h), scores (s, s, h/a)
x b a/t, context (s, h/a, s) x b a/t, projection (T, h, h/t), FC1 (T, f/t, h) and FC2
(T, h, f/t); a backward GEMM pair per forward GEMM (`Gemm.backward`): the input
gradients are the B work, the weight gradients of the four weighted GEMMs the W work.
The element-wise kernels are memory bound; their bytes (2-byte activations, a 1-byte
dropout mask) are those of the kernels Megatron-LM (2022) runs: its fused layer norm,
bias-dropout-add, bias-GeLU, scale-mask-softmax and the attention dropout; the QKV
layer's separate bias add and the context's permute copy; in backward also the bias
gradients (a pass over each output gradient), the layer norms' scale and shift
gradients, the residual gradients' sums, and the copies that undo the QKV split and the
context permute.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import TYPE_CHECKING

from hwsim.config.schema import TransformerSpec
from hwsim.workloads.ops import Gemm

if TYPE_CHECKING:
    from hwsim.workloads.moe import ExpertShare

ACT_BYTES = 2  # 16-bit activations
MASK_BYTES = 1  # a dropout mask element
GRAD_BYTES = 4  # an element of the fp32 main gradient
WGRAD_BYTES = 8  # a weight gradient GEMM adds into the fp32 main_grad: read 4, write 4 per element (Megatron's
# gradient_accumulation_fusion, its default: fused_dense_cuda.wgrad_gemm_accum_fp32)
RECOMPUTE = ("none", "selective", "full")
OP = "op"  # `Kernel.beside` for a collective that runs beside all its op's GEMMs together


@dataclass(frozen=True)
class Kernel:
    """One step of a block's work on one rank: a GEMM, a memory-bound kernel (`bytes` moved to and
    from the bank), or a collective over the tensor group (`bytes`: the whole tensor's size)."""

    kind: str  # "gemm", "memory", "all_reduce", "all_gather", "reduce_scatter"
    name: str
    gemm: Gemm | None = None
    bytes: float = 0.0
    out_bytes: float = ACT_BYTES  # a GEMM's bytes moved per output element
    beside: str = ""  # a collective: the GEMM it can run beside (Megatron's async communication), by name
    attention: bool = False  # a GEMM of the fused attention kernel (at the arrays' attention_efficiency)
    group: str = "tensor"  # a collective's group: the tensor ranks, the context ranks, the expert ranks (or parts)
    pipelined: bool = False  # a collective that runs side by side with the next one: the pair takes the longer


@dataclass(frozen=True)
class BlockWork:
    """A block's work for one micro-batch on one rank, in order: forward, a split backward's input
    (B) and weight (W) gradients, and what recompute adds before the backward."""

    forward: tuple[Kernel, ...]
    input_grad: tuple[Kernel, ...]
    weight_grad: tuple[Kernel, ...]
    recompute: tuple[Kernel, ...]

    @property
    def backward(self) -> tuple[Kernel, ...]:
        return self.input_grad + self.weight_grad


def _memory(name: str, elements: float, bytes_per_element: float) -> Kernel:
    return Kernel("memory", name, bytes=elements * bytes_per_element)


@dataclass(frozen=True)
class BlockPart:
    """A block's attention or feed-forward part on one rank: its forward kernels, its input-gradient kernels
    (in backward order), its weighted GEMMs by name (their weight gradients are the W work), and what
    selective recompute runs again."""

    forward: tuple[Kernel, ...]
    input_grad: tuple[Kernel, ...]
    weights: dict[str, Gemm]
    recompute: tuple[Kernel, ...] = ()


@dataclass(frozen=True)
class BlockContext:
    """What every part of a block needs: the model, t tensor ranks, b sequences, sequence parallelism, the
    rank's tokens, the tensor-parallel collectives (forward gather, reduce; with `overlap` each beside the GEMM
    it feeds or follows) and the backward's helpers."""

    model: TransformerSpec
    t: int
    b: int
    sequence: bool
    tokens: int
    gather: tuple[Kernel, ...]
    reduce: tuple[Kernel, ...]
    overlap: bool = False  # Transformer Engine's userbuffers: each forward gather and reduce beside its GEMM

    def gather_for(self, name: str) -> tuple[Kernel, ...]:  # the gather before GEMM `name` (beside it with overlap)
        return tuple(dataclasses.replace(k, beside=name) for k in self.gather) if self.overlap else self.gather

    def reduce_after(self, name: str) -> tuple[Kernel, ...]:  # the reduction after GEMM `name` (beside it with overlap)
        return tuple(dataclasses.replace(k, beside=name) for k in self.reduce) if self.overlap else self.reduce

    @property
    def local(self) -> float:  # elements a norm or dropout touches
        return self.tokens * self.model.d_model / (self.t if self.sequence else 1)

    def gemm(self, name: str, g: Gemm) -> Kernel:
        return Kernel("gemm", name, g)

    def dx(self, name: str, g: Gemm) -> Kernel:
        return Kernel("gemm", f"{name} dx", g.backward()[0])

    def regather(self, name: str) -> tuple[Kernel, ...]:  # a column-parallel layer's input, again, for its dW
        return tuple(dataclasses.replace(k, name="re-gather", beside=f"{name} dx") for k in self.gather)

    def reduce_dx(self, name: str) -> tuple[Kernel, ...]:  # a column-parallel layer's input gradient
        return tuple(dataclasses.replace(k, beside=f"{name} dw") for k in self.reduce)

    def bias(self, name: str, elements: float, grad: bool = False) -> tuple[Kernel, ...]:
        """A column-parallel layer's separate bias add (forward), or its bias gradient: a pass over the output
        gradient (backward); nothing without biases."""
        if not self.model.bias:
            return ()
        return (
            (_memory(f"{name} bias grad", elements, ACT_BYTES),) if grad else (_memory(f"{name} bias", elements, 2 * ACT_BYTES),)
        )


def block_work(
    model: TransformerSpec,
    t: int,
    b: int,
    sequence: bool,
    recompute: str,
    wgrad_fusion: bool = True,
    flash: bool = False,
    context: int = 1,
    context_comm: str = "ring",
    experts: ExpertShare | None = None,
    comm_overlap: bool = False,
) -> BlockWork:
    """One block on one of t tensor ranks for a micro-batch of b sequences (see the module's docstring).
    Each column-parallel layer's backward re-gather names its input-gradient GEMM as the one it can run
    beside, the reduction of its input gradient its weight-gradient GEMM (`Kernel.beside`). Without
    `wgrad_fusion` a weight-gradient GEMM writes 16-bit gradients, and a kernel adds them into the fp32
    main gradient (read 2 + 4, write 4 bytes per weight: Megatron-LM before 2022-02). With `flash` the
    attention is one fused kernel each way (`flash_attention`). With `context` c > 1 ranks the rank holds s / c
    of each sequence's tokens and needs every key and value (`context_exchange`). With `experts` the block is
    a mixture-of-experts layer (`workloads.moe.moe_part`); `model.attention` mla runs latent attention. With
    `comm_overlap` (Transformer Engine's userbuffers, Megatron-core's --tp-comm-overlap; sequence parallelism)
    the forward's all-gathers run beside the column-parallel GEMMs they feed and its reduce-scatters beside the
    row-parallel GEMMs they follow, and the backward's all-gathers of the output gradients beside the
    row-parallel input-gradient GEMMs (TE's ring-exchange and pipelined overlaps of qkv/fc1 fprop, proj/fc2
    fprop and proj/fc2 dgrad; the bulk overlaps of the dgrad and wgrad GEMMs are `tp_overlap`'s)."""
    from hwsim.workloads.moe import moe_part

    h = model.d_model
    tokens = model.seq_len * b // context
    full = tokens * h * ACT_BYTES  # a whole activation tensor, what a tensor-parallel collective carries
    ctx = BlockContext(
        model,
        t,
        b,
        sequence,
        tokens,
        (Kernel("all_gather", "all-gather", bytes=full),) if sequence and t > 1 else (),
        (Kernel("reduce_scatter" if sequence else "all_reduce", "reduce", bytes=full),) if t > 1 else (),
        comm_overlap and sequence,
    )
    exchange = context_exchange(model, t, b, context, context_comm)
    if model.attention == "mla":
        attention = mla_part(ctx, context, exchange)
    else:
        attention = mha_part(ctx, flash, context, exchange)
    mlp = moe_part(ctx, experts) if experts is not None else dense_mlp_part(ctx)
    dropout = model.dropout
    local = ctx.local
    ln = 2 * ACT_BYTES  # forward: read and write 2-byte elements; a dropout also writes its 1-byte mask
    dropout_add = 3 * ACT_BYTES + (MASK_BYTES if dropout else 0)  # input, residual in; output (and mask) out
    add_name = "dropout-add" if dropout else "residual add"
    forward = (
        _memory("layernorm 1", local, ln),
        *attention.forward,
        _memory(f"{add_name} 1", local, dropout_add),
        _memory("layernorm 2", local, ln),
        *mlp.forward,
        _memory(f"{add_name} 2", local, dropout_add),
    )
    # backward: an element-wise kernel reads its saved input and the upstream gradient and writes the input
    # gradient (a dropout reads its mask instead of an input); the backward's collectives are the conjugates of
    # the forward's (an all-gather's is a reduce-scatter and back; an all-reduce's is nothing), and with
    # sequence parallelism each column-parallel GEMM's input is all-gathered again for its weight gradient
    back_ln = 3 * ACT_BYTES
    ln_weight = 2 * ACT_BYTES  # the scale (and shift) gradients: another pass over the input and the gradient
    residual = 3 * ACT_BYTES  # the residual's gradient added to the branch's
    back_dropout = 2 * ACT_BYTES + MASK_BYTES

    def dropout_grad(name: str) -> tuple[Kernel, ...]:  # without dropout the add's gradient passes through
        return (_memory(f"{name} grad", local, back_dropout),) if dropout else ()

    input_grad = (
        *dropout_grad(f"{add_name} 2"),
        *mlp.input_grad,
        _memory("layernorm 2 grad", local, back_ln),
        _memory("layernorm 2 weight grad", local, ln_weight),
        _memory("residual 2 grad", local, residual),
        *dropout_grad(f"{add_name} 1"),
        *attention.input_grad,
        _memory("layernorm 1 grad", local, back_ln),
        _memory("layernorm 1 weight grad", local, ln_weight),
        _memory("residual 1 grad", local, residual),
    )
    weighted = {**attention.weights, **mlp.weights}
    if wgrad_fusion:
        weight_grad = tuple(Kernel("gemm", f"{n} dw", g.backward()[1], out_bytes=WGRAD_BYTES) for n, g in weighted.items())
    else:
        weight_grad = tuple(
            k
            for n, g in weighted.items()
            for k in (
                Kernel("gemm", f"{n} dw", g.backward()[1]),
                _memory(f"{n} main_grad add", g.k * g.n * g.count, ACT_BYTES + 2 * GRAD_BYTES),
            )
        )
    if recompute == "full":
        redo = forward
    elif recompute == "selective":
        redo = attention.recompute
    else:
        redo = ()
    return BlockWork(forward, input_grad, weight_grad, redo)


def mha_part(ctx: BlockContext, flash: bool, context: int, exchange) -> BlockPart:
    """Multi-head (or grouped-query) attention on one rank: QKV (column-parallel), the attention core of its
    a / t heads (Megatron-LM's GEMMs, softmax and dropout on the s x s scores, or the fused kernel), the
    projection (row-parallel)."""
    model, t, b, tokens = ctx.model, ctx.t, ctx.b, ctx.tokens
    s, h, a = model.seq_len, model.d_model, model.heads
    heads = a // t
    qkv_cols = heads * model.head_dim + 2 * kv_per_rank(model, t) * model.head_dim
    qkv_elements = tokens * qkv_cols
    scores = b * heads * s * s
    qkv, proj = Gemm(tokens, qkv_cols, h), Gemm(tokens, h, h // t)
    score_gemm, context_gemm = Gemm(s, s, h // a, b * heads), Gemm(s, h // a, s, b * heads)
    rotary = (
        (_memory("rotary", tokens * (heads + kv_per_rank(model, t)) * model.head_dim, 2 * ACT_BYTES),) if model.rotary else ()
    )
    dropout = model.dropout
    back_dropout = 2 * ACT_BYTES + MASK_BYTES
    exchange_forward, exchange_grad = exchange
    if flash:
        core = (*rotary, *exchange_forward, *flash_attention(model, t, b, context=context))
        core_grad = (*flash_attention(model, t, b, backward=True, context=context), *exchange_grad)
    else:
        core = (
            *rotary,
            Kernel("gemm", "scores", score_gemm),
            _memory("softmax", scores, 2 * ACT_BYTES),
            *((_memory("attention dropout", scores, 2 * ACT_BYTES + MASK_BYTES),) if dropout else ()),
            Kernel("gemm", "context", context_gemm),
            _memory("context permute", tokens * h / t, 2 * ACT_BYTES),  # [b a, s, h/a] back to [s, b, h]: a copy
        )
        core_grad = (
            _memory("context permute grad", tokens * h / t, 2 * ACT_BYTES),
            ctx.dx("context", context_gemm),
            Kernel("gemm", "context dw", context_gemm.backward()[1]),  # the probabilities' gradient: not a weight
            *((_memory("attention dropout grad", scores, back_dropout),) if dropout else ()),
            _memory("softmax grad", scores, 3 * ACT_BYTES),
            ctx.dx("scores", score_gemm),
            Kernel("gemm", "scores dw", score_gemm.backward()[1]),  # the keys' gradient: not a weight
        )
    rotary_grad = tuple(dataclasses.replace(k, name="rotary grad") for k in rotary)
    forward = (
        *ctx.gather_for("qkv"),
        ctx.gemm("qkv", qkv),
        *ctx.bias("qkv", qkv_elements),
        *core,
        ctx.gemm("proj", proj),
        *ctx.reduce_after("proj"),
    )
    input_grad = (
        *ctx.bias("proj", ctx.local, grad=True),
        *ctx.gather_for("proj dx"),
        ctx.dx("proj", proj),
        *core_grad,
        *rotary_grad,
        _memory("qkv split grad", qkv_elements, 2 * ACT_BYTES),  # q, k, v gradients joined
        *ctx.bias("qkv", qkv_elements, grad=True),
        ctx.dx("qkv", qkv),
        *ctx.regather("qkv"),
        *ctx.reduce_dx("qkv"),
    )
    return BlockPart(forward, input_grad, {"qkv": qkv, "proj": proj}, core)


def dense_mlp_part(ctx: BlockContext, width: int | None = None, name: str = "") -> BlockPart:
    """The dense feed-forward block on one rank: FC1 (column-parallel; SwiGLU's gate and up in one GEMM), the
    activation, FC2 (row-parallel); `width` wide (the model's d_ff), its kernels' names after `name`."""
    model, t, tokens = ctx.model, ctx.t, ctx.tokens
    h, f = model.d_model, width or model.d_ff
    up = 2 * f if model.mlp == "swiglu" else f  # SwiGLU's gate and up projections, one GEMM
    fc1, fc2 = Gemm(tokens, up // t, h), Gemm(tokens, h, f // t)
    n1, n2 = f"{name}fc1", f"{name}fc2"
    activation, activation_grad = activation_kernels(model, tokens * f / t, name)
    forward = (*ctx.gather_for(n1), ctx.gemm(n1, fc1), activation, ctx.gemm(n2, fc2), *ctx.reduce_after(n2))
    input_grad = (
        *ctx.bias(n2, ctx.local, grad=True),
        *ctx.gather_for(f"{n2} dx"),
        ctx.dx(n2, fc2),
        activation_grad,
        *ctx.bias(n1, tokens * up / t, grad=True),
        ctx.dx(n1, fc1),
        *ctx.regather(n1),
        *ctx.reduce_dx(n1),
    )
    return BlockPart(forward, input_grad, {n1: fc1, n2: fc2})


def activation_kernels(model: TransformerSpec, elements: float, name: str = "") -> tuple[Kernel, Kernel]:
    """The feed-forward activation over `elements` (its output's), forward and backward: SwiGLU reads gate and
    up and writes their product (backward: reads both and the gradient, writes both gradients); GeLU (fused
    with the bias when the model has biases) reads and writes one (backward: reads it and the gradient)."""
    if model.mlp == "swiglu":
        return _memory(f"{name}swiglu", elements, 3 * ACT_BYTES), _memory(f"{name}swiglu grad", elements, 5 * ACT_BYTES)
    gelu = f"{name}bias-gelu" if model.bias else f"{name}gelu"
    return _memory(gelu, elements, 2 * ACT_BYTES), _memory(f"{gelu} grad", elements, 3 * ACT_BYTES)


def mla_part(ctx: BlockContext, context: int, exchange) -> BlockPart:
    """DeepSeek's multi-head latent attention on one rank (DeepSeek-V2, arXiv 2405.04434, section 2.1; the
    widths in `model.mla`): queries down to q_rank and normed, up to a / t heads of nope + rope; keys and values
    down to kv_rank (plus one rotary key of rope for all heads) and normed, up to a / t heads of nope (keys) and
    v (values); the rotary parts turned; the fused attention over qk = nope + rope and v; the projection from
    a / t heads of v. The down projections are computed whole on each tensor rank (they are small); the up
    projections and the projection split by heads."""
    model, t, b, tokens = ctx.model, ctx.t, ctx.b, ctx.tokens
    mla, h = model.mla, model.d_model
    heads = model.heads // t
    qk = mla.nope_dim + mla.rope_dim
    q_down, q_up = Gemm(tokens, mla.q_rank, h), Gemm(tokens, heads * qk, mla.q_rank)
    kv_down, kv_up = Gemm(tokens, mla.kv_rank + mla.rope_dim, h), Gemm(tokens, heads * (mla.nope_dim + mla.v_dim), mla.kv_rank)
    proj = Gemm(tokens, h, heads * mla.v_dim)
    norms = (_memory("q norm", tokens * mla.q_rank, 2 * ACT_BYTES), _memory("kv norm", tokens * mla.kv_rank, 2 * ACT_BYTES))
    rotary = (_memory("rotary", tokens * (heads + 1) * mla.rope_dim, 2 * ACT_BYTES),) if model.rotary else ()
    exchange_forward, exchange_grad = exchange
    core = (
        *rotary,
        *exchange_forward,
        *flash_attention(model, t, b, context=context, qk_dim=qk, v_dim=mla.v_dim),
    )
    core_grad = (
        *flash_attention(model, t, b, backward=True, context=context, qk_dim=qk, v_dim=mla.v_dim),
        *exchange_grad,
        *(dataclasses.replace(k, name="rotary grad") for k in rotary),
    )
    forward = (
        *ctx.gather_for("q down"),
        ctx.gemm("q down", q_down),
        ctx.gemm("kv down", kv_down),
        *norms,
        ctx.gemm("q up", q_up),
        ctx.gemm("kv up", kv_up),
        *core,
        ctx.gemm("proj", proj),
        *ctx.reduce_after("proj"),
    )
    input_grad = (
        *ctx.gather_for("proj dx"),
        ctx.dx("proj", proj),
        *core_grad,
        ctx.dx("kv up", kv_up),
        ctx.dx("q up", q_up),
        *(dataclasses.replace(k, name=f"{k.name} grad", bytes=k.bytes * 3 / 2) for k in norms),
        ctx.dx("kv down", kv_down),
        ctx.dx("q down", q_down),
        *ctx.regather("q down"),
        *ctx.reduce_dx("q down"),
    )
    weights = {"q down": q_down, "kv down": kv_down, "q up": q_up, "kv up": kv_up, "proj": proj}
    return BlockPart(forward, input_grad, weights, core)


def kv_per_rank(model: TransformerSpec, t: int) -> int:
    """Key and value heads one of t tensor ranks holds: kv_heads / t, or one (replicated) when t > kv_heads."""
    return max(model.kv // t, 1)


def flash_attention(
    model: TransformerSpec,
    t: int,
    b: int,
    backward: bool = False,
    context: int = 1,
    qk_dim: int | None = None,
    v_dim: int | None = None,
) -> tuple[Kernel, ...]:
    """The attention of one rank's heads as one fused kernel (FlashAttention-2, Dao 2023, arXiv 2307.08691,
    Algorithms 1 and 2), causal: only the key blocks at or before each query block are computed, about half of
    the s x s scores. Forward: each block of queries keeps its output (s rows of the value width, per head) on
    chip while it runs S = Q K^T and O += P V over the half of the keys it sees, the softmax between them: as a
    tiled GEMM with outputs (s, v) and the FLOPs of both (a reduction of s/2 (qk + v) / v), storing O.
    Backward: each block of keys runs S again, dP = dO V^T, dV += P^T dO, dK += dS^T Q and dQ += dS K over the
    queries after it (five GEMMs, 2.5 times the forward's FLOPs when qk = v): outputs (s, v), storing dK, dV and
    dQ. No s x s tensor reaches the bank, and no tile waits for the bank between the key blocks. With c context
    ranks a rank has s / c of the queries, and with the causal balance (chunks r and 2c - 1 - r) they see s / 2
    keys on average, as without. `qk_dim`, `v_dim`: the query/key and value widths per head (the head width)."""
    s, heads = model.seq_len, model.heads // t
    qk, v = qk_dim or model.head_dim, v_dim or model.head_dim
    half = -(-s // 2)  # the causal mask: about half the key positions per query
    queries = s // context
    if not backward:
        g = Gemm(queries, v, -(-half * (qk + v) // v), b * heads)  # S (qk) and P V (v)
        return (Kernel("gemm", "flash attention", g, attention=True),)
    g = Gemm(queries, v, -(-half * (3 * qk + 2 * v) // v), b * heads)  # S, dQ, dK (qk); dP, dV (v)
    return (Kernel("gemm", "flash attention grad", g, out_bytes=3 * ACT_BYTES, attention=True),)


def context_exchange(
    model: TransformerSpec, t: int, b: int, context: int, comm: str
) -> tuple[tuple[Kernel, ...], tuple[Kernel, ...]]:
    """(forward, backward) collectives over the context ranks for one block: every rank needs every key and value
    of its kv heads, 2 s b kv d 16-bit values in all. `ring` (Megatron-core with Transformer Engine): passed round
    the ring beside the attention kernel, as an all-gather's ring takes them; the backward passes them round again
    and their gradients back (an all-gather and a reduce-scatter beside the attention's backward). `all_gather`
    (Llama 3, section 3.3.2): gathered before the attention and kept, the gradients reduce-scattered after its
    backward, nothing beside."""
    if context == 1:
        return (), ()
    kv = 2 * model.seq_len * b * kv_per_rank(model, t) * model.head_dim * ACT_BYTES
    if comm == "ring":
        forward = (Kernel("all_gather", "kv ring", bytes=kv, beside="flash attention", group="context"),)
        backward = (
            Kernel("all_gather", "kv ring", bytes=kv, beside="flash attention grad", group="context"),
            Kernel("reduce_scatter", "kv grad ring", bytes=kv, beside="flash attention grad", group="context"),
        )
        return forward, backward
    return (
        (Kernel("all_gather", "kv all-gather", bytes=kv, group="context"),),
        (Kernel("reduce_scatter", "kv grad reduce-scatter", bytes=kv, group="context"),),
    )


def activation_bytes(
    model: TransformerSpec, t: int, b: int, sequence: bool, recompute: str, flash: bool = False, context: int = 1
) -> float:
    """Bytes one block keeps from its forward to its backward for one micro-batch, counted as Korthikanti et al.
    2022 count them (§4.1) tensor by tensor, in units of s b h bytes:
    - kept whole on every tensor rank (split by t only with sequence parallelism): the two norms' inputs 2 + 2,
      the QKV and FC1 inputs 2 + 2, the two dropout masks 1 + 1;
    - split by t: Q 2, K and V 4 kv / a (each rank keeps its kv heads, one when replicated), the projection's
      input 2; GeLU's input and FC2's input 2 f / h each (SwiGLU: gate and up 4 f / h, FC2's input 2 f / h);
    - the attention's s x s tensors (split by t): the softmax's output 2 a s / h, the dropout's mask and
      output 3 a s / h; none with flash attention or selective recompute.
    For GPT (f = 4h, kv = a, dropout) this is their s b h (34 + 5 a s / h), and s b h (10 + 24/t + 5 a s / (h t))
    with tensor parallelism; full recompute keeps the block's input alone, 2 s b h (/ t with sequence
    parallelism). A context rank keeps its s / c tokens' share of each."""
    s, h, a, f = model.seq_len, model.d_model, model.heads, model.d_ff
    sbh = s * b * h / context
    if recompute == "full":
        return 2 * sbh / (t if sequence else 1)
    whole = 8 + (2 if model.dropout else 0)
    if model.attention == "mla":  # q, k (nope + rope), v, the projection's input; the latents whole on each rank
        m = model.mla
        attention = 2 * a * (2 * (m.nope_dim + m.rope_dim) + 2 * m.v_dim) / h
        whole += 2 * (m.q_rank + m.kv_rank + m.rope_dim) / h
    else:
        attention = 4 + 4 * kv_per_rank(model, t) * t / a
    mlp = (6 if model.mlp == "swiglu" else 4) * f / h
    square = 0.0 if recompute == "selective" or flash else (5 if model.dropout else 2) * a * s / h
    split = attention + mlp + square
    if sequence:
        return sbh * (whole + split) / t
    return sbh * (whole + split / t)


def block_params(model: TransformerSpec, moe_layer: bool = False) -> int:
    """A block's parameters: its attention's (`attention_params`), its feed-forward block's (dense: FC1 h f,
    SwiGLU 2 h f, FC2 f h, their biases when the model has them; a MoE layer: every routed and shared expert
    and the router, `moe.expert_params`), two norms of 2h each (RMSNorm: h)."""
    from hwsim.workloads.moe import expert_params

    h, f = model.d_model, model.d_ff
    if moe_layer:
        mlp = sum(expert_params(model))
    else:
        up = 2 * f if model.mlp == "swiglu" else f
        mlp = h * up + f * h + (up + h if model.bias else 0)
    norms = 2 * (2 * h if model.norm == "layernorm" else h)
    return attention_params(model) + mlp + norms


def attention_params(model: TransformerSpec) -> int:
    """The attention's parameters: QKV h (h + 2 kv h/a) and the projection h^2, with their biases; or latent
    attention's down projections (h q_rank, h (kv_rank + rope)), their norms, up projections (q_rank a (nope +
    rope), kv_rank a (nope + v)) and the projection (a v h)."""
    h = model.d_model
    if model.attention == "mla":
        m, a = model.mla, model.heads
        return (
            h * m.q_rank
            + m.q_rank
            + m.q_rank * a * (m.nope_dim + m.rope_dim)
            + h * (m.kv_rank + m.rope_dim)
            + m.kv_rank
            + m.kv_rank * a * (m.nope_dim + m.v_dim)
            + a * m.v_dim * h
        )
    qkv = h + 2 * model.kv * model.head_dim
    return h * qkv + h * h + (qkv + h if model.bias else 0)


def layer_is_moe(model: TransformerSpec, layer: int) -> bool:
    return model.moe is not None and model.moe.is_moe(layer)


def model_flops(model: TransformerSpec, batch: int) -> float:
    """FLOPs of one training step without recompute (Korthikanti et al. 2022, §6: forward 24 B s l h^2
    (1 + s/(6h) + V/(16 l h)), backward twice that, with f = 4h); here from the blocks' GEMMs, so any f, the
    attention's s x s in full (PaLM's count), and a MoE layer's top_k routed and its shared experts per token."""
    s, h, layers, vocab = model.seq_len, model.d_model, model.layers, model.vocab

    def forward(moe: bool) -> float:
        from hwsim.workloads.moe import ExpertShare

        work = block_work(model, 1, batch, False, "none", experts=ExpertShare(1) if moe else None)
        flops = sum(k.gemm.flops for k in work.forward if k.kind == "gemm")
        # latent attention always runs fused, the causal half: count the s x s in full, as for the others
        return flops + sum(k.gemm.flops for k in work.forward if k.attention)

    moe_layers = sum(layer_is_moe(model, i) for i in range(layers))
    blocks = (layers - moe_layers) * forward(False) + (moe_layers * forward(True) if moe_layers else 0.0)
    logits = 2 * batch * s * h * vocab
    return 3.0 * (blocks + logits)
