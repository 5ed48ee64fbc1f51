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

from hwsim.config.schema import TransformerSpec
from hwsim.workloads.ops import Gemm

ACT_BYTES = 2  # 16-bit activations
MASK_BYTES = 1  # a dropout mask element
GRAD_BYTES = 4  # an element of the fp32 main gradient
WGRAD_BYTES = 8  # a weight gradient GEMM adds into the fp32 main_grad: read 4, write 4 per element (Megatron's
# gradient_accumulation_fusion, its default: fused_dense_cuda.wgrad_gemm_accum_fp32)
RECOMPUTE = ("none", "selective", "full")


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
    group: str = "tensor"  # a collective's group: the tensor ranks, or the context ranks


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
) -> BlockWork:
    """One block on one of t tensor ranks for a micro-batch of b sequences (see the module's docstring).
    Each column-parallel layer's backward re-gather names its input-gradient GEMM as the one it can run
    beside, the reduction of its input gradient its weight-gradient GEMM (`Kernel.beside`). Without
    `wgrad_fusion` a weight-gradient GEMM writes 16-bit gradients, and a kernel adds them into the fp32
    main gradient (read 2 + 4, write 4 bytes per weight: Megatron-LM before 2022-02). With `flash` the
    attention is one fused kernel each way (`flash_attention`). With `context` c > 1 ranks the rank holds s / c
    of each sequence's tokens and needs every key and value (`context_exchange`)."""
    s, h, a, f = model.seq_len, model.d_model, model.heads, model.d_ff
    tokens = s * b // context
    full = tokens * h * ACT_BYTES  # a whole activation tensor, what a tensor-parallel collective carries
    local = tokens * h / (t if sequence else 1)  # elements a layer norm or dropout touches
    heads = a // t
    qkv_cols = heads * model.head_dim + 2 * kv_per_rank(model, t) * model.head_dim
    up = 2 * f if model.mlp == "swiglu" else f  # SwiGLU's gate and up projections, one GEMM
    scores = b * heads * s * s
    gemms = {
        "qkv": Gemm(tokens, qkv_cols, h),
        "scores": Gemm(s, s, h // a, b * heads),
        "context": Gemm(s, h // a, s, b * heads),
        "proj": Gemm(tokens, h, h // t),
        "fc1": Gemm(tokens, up // t, h),
        "fc2": Gemm(tokens, h, f // t),
    }
    gather = (Kernel("all_gather", "all-gather", bytes=full),) if sequence and t > 1 else ()
    reduce = (Kernel("reduce_scatter" if sequence else "all_reduce", "reduce", bytes=full),) if t > 1 else ()
    bias, dropout = model.bias, model.dropout
    # forward: read and write 2-byte elements; a dropout also writes its 1-byte mask
    ln = 2 * ACT_BYTES
    dropout_add = 3 * ACT_BYTES + (MASK_BYTES if dropout else 0)  # input, residual in; output (and mask) out
    add_name = "dropout-add" if dropout else "residual add"
    qkv_elements = tokens * qkv_cols
    rotary = (
        (_memory("rotary", tokens * (heads + kv_per_rank(model, t)) * model.head_dim, 2 * ACT_BYTES),) if model.rotary else ()
    )
    exchange, exchange_grad = context_exchange(model, t, b, context, context_comm)
    if flash:
        attention = (*rotary, *exchange, *flash_attention(model, t, b, context=context))
    else:
        attention = (
            *rotary,
            Kernel("gemm", "scores", gemms["scores"]),
            _memory("softmax", scores, 2 * ACT_BYTES),
            *((_memory("attention dropout", scores, 2 * ACT_BYTES + MASK_BYTES),) if dropout else ()),
            Kernel("gemm", "context", gemms["context"]),
            _memory("context permute", tokens * h / t, 2 * ACT_BYTES),  # [b a, s, h/a] back to [s, b, h]: a copy
        )
    activation = (
        _memory("swiglu", tokens * f / t, 3 * ACT_BYTES)  # reads gate and up, writes their product
        if model.mlp == "swiglu"
        else _memory("bias-gelu" if bias else "gelu", tokens * f / t, 2 * ACT_BYTES)
    )
    forward = (
        _memory("layernorm 1", local, ln),
        *gather,
        Kernel("gemm", "qkv", gemms["qkv"]),
        *((_memory("qkv bias", qkv_elements, 2 * ACT_BYTES),) if bias else ()),  # a column-parallel layer adds its bias apart
        *attention,
        Kernel("gemm", "proj", gemms["proj"]),
        *reduce,
        _memory(f"{add_name} 1", local, dropout_add),
        _memory("layernorm 2", local, ln),
        *gather,
        Kernel("gemm", "fc1", gemms["fc1"]),
        activation,
        Kernel("gemm", "fc2", gemms["fc2"]),
        *reduce,
        _memory(f"{add_name} 2", local, dropout_add),
    )
    # backward: an element-wise kernel reads its saved input and the upstream gradient and writes
    # the input gradient (a dropout reads its mask instead of an input)
    back_ln = 3 * ACT_BYTES
    ln_weight = 2 * ACT_BYTES  # the scale (and shift) gradients: another pass over the input and the gradient
    residual = 3 * ACT_BYTES  # the residual's gradient added to the branch's
    back_dropout = 2 * ACT_BYTES + MASK_BYTES
    # the backward's collectives are the conjugates of the forward's (an all-gather's is a
    # reduce-scatter and back; an all-reduce's is nothing), and with sequence parallelism each
    # column-parallel GEMM's input is all-gathered again for its weight gradient

    def dx(name: str) -> Kernel:
        return Kernel("gemm", f"{name} dx", gemms[name].backward()[0])

    def regather(name: str) -> tuple[Kernel, ...]:  # a column-parallel layer's input, again, for its dW
        return tuple(dataclasses.replace(k, name="re-gather", beside=f"{name} dx") for k in gather)

    def reduce_dx(name: str) -> tuple[Kernel, ...]:  # a column-parallel layer's input gradient
        return tuple(dataclasses.replace(k, beside=f"{name} dw") for k in reduce)

    def bias_grad(name: str, elements: float) -> tuple[Kernel, ...]:  # a pass over the output gradient
        return (_memory(f"{name} bias grad", elements, ACT_BYTES),) if bias else ()

    def dropout_grad(name: str) -> tuple[Kernel, ...]:  # without dropout the add's gradient passes through
        return (_memory(f"{name} grad", local, back_dropout),) if dropout else ()

    activation_grad = (
        _memory("swiglu grad", tokens * f / t, 5 * ACT_BYTES)  # reads gate, up and the gradient; writes both
        if model.mlp == "swiglu"
        else _memory("bias-gelu grad" if bias else "gelu grad", tokens * f / t, 3 * ACT_BYTES)
    )
    rotary_grad = tuple(dataclasses.replace(k, name="rotary grad") for k in rotary)
    if flash:
        attention_grad = (*flash_attention(model, t, b, backward=True, context=context), *exchange_grad)
    else:
        attention_grad = (
            _memory("context permute grad", tokens * h / t, 2 * ACT_BYTES),
            dx("context"),
            Kernel("gemm", "context dw", gemms["context"].backward()[1]),  # the probabilities' gradient: not a weight
            *((_memory("attention dropout grad", scores, back_dropout),) if dropout else ()),
            _memory("softmax grad", scores, 3 * ACT_BYTES),
            dx("scores"),
            Kernel("gemm", "scores dw", gemms["scores"].backward()[1]),  # the keys' gradient: not a weight
        )
    input_grad = (
        *dropout_grad(f"{add_name} 2"),
        *bias_grad("fc2", local),
        *gather,
        dx("fc2"),
        activation_grad,
        *bias_grad("fc1", tokens * up / t),
        dx("fc1"),
        *regather("fc1"),
        *reduce_dx("fc1"),
        _memory("layernorm 2 grad", local, back_ln),
        _memory("layernorm 2 weight grad", local, ln_weight),
        _memory("residual 2 grad", local, residual),
        *dropout_grad(f"{add_name} 1"),
        *bias_grad("proj", local),
        *gather,
        dx("proj"),
        *attention_grad,
        *rotary_grad,
        _memory("qkv split grad", qkv_elements, 2 * ACT_BYTES),  # q, k, v gradients joined
        *bias_grad("qkv", qkv_elements),
        dx("qkv"),
        *regather("qkv"),
        *reduce_dx("qkv"),
        _memory("layernorm 1 grad", local, back_ln),
        _memory("layernorm 1 weight grad", local, ln_weight),
        _memory("residual 1 grad", local, residual),
    )
    weighted = ("qkv", "proj", "fc1", "fc2")
    if wgrad_fusion:
        weight_grad = tuple(Kernel("gemm", f"{n} dw", gemms[n].backward()[1], out_bytes=WGRAD_BYTES) for n in weighted)
    else:
        weight_grad = tuple(
            k
            for n in weighted
            for k in (
                Kernel("gemm", f"{n} dw", gemms[n].backward()[1]),
                _memory(f"{n} main_grad add", gemms[n].k * gemms[n].n, ACT_BYTES + 2 * GRAD_BYTES),
            )
        )
    if recompute == "full":
        redo = forward
    elif recompute == "selective":
        redo = attention
    else:
        redo = ()
    return BlockWork(forward, input_grad, weight_grad, redo)


def kv_per_rank(model: TransformerSpec, t: int) -> int:
    """Key and value heads one of t tensor ranks holds: kv_heads / t, or one (replicated) when t > kv_heads."""
    return max(model.kv // t, 1)


def flash_attention(model: TransformerSpec, t: int, b: int, backward: bool = False, context: int = 1) -> tuple[Kernel, ...]:
    """The attention of one rank's heads as one fused kernel (FlashAttention-2, Dao 2023, arXiv 2307.08691,
    Algorithms 1 and 2), causal: only the key blocks at or before each query block are computed, about half of
    the s x s scores. Forward: each block of queries keeps its output (s rows of the head dimension, per head)
    on chip while it runs S = Q K^T and O += P V over the half of the keys it sees, the softmax between them:
    as a tiled GEMM, outputs (s, d) and a reduction over s/2 + s/2 keys, storing O. Backward: each block of
    keys runs S again, dP = dO V^T, dV += P^T dO, dK += dS^T Q and dQ += dS K over the queries after it (five
    GEMMs, 2.5 times the forward's FLOPs): outputs (s, d), a reduction of 5 s/2, storing dK, dV and dQ. No
    s x s tensor reaches the bank, and no tile waits for the bank between the key blocks. With c context ranks
    a rank has s / c of the queries, and with the causal balance (chunks r and 2c - 1 - r) they see s / 2 keys
    on average, as without."""
    s, hd, heads = model.seq_len, model.head_dim, model.heads // t
    half = -(-s // 2)  # the causal mask: about half the key positions per query
    queries = s // context
    if not backward:
        return (Kernel("gemm", "flash attention", Gemm(queries, hd, 2 * half, b * heads), attention=True),)
    return (
        Kernel("gemm", "flash attention grad", Gemm(queries, hd, 5 * half, b * heads), out_bytes=3 * ACT_BYTES, attention=True),
    )


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
    attention = 4 + 4 * kv_per_rank(model, t) * t / a
    mlp = (6 if model.mlp == "swiglu" else 4) * f / h
    square = 0.0 if recompute == "selective" or flash else (5 if model.dropout else 2) * a * s / h
    split = attention + mlp + square
    if sequence:
        return sbh * (whole + split) / t
    return sbh * (whole + split / t)


def block_params(model: TransformerSpec) -> int:
    """A block's parameters: QKV h (h + 2 kv h/a), projection h^2, FC1 h f (SwiGLU: 2 h f), FC2 f h; their
    biases when the model has them; two norms, 2h each (RMSNorm: h)."""
    h, f = model.d_model, model.d_ff
    qkv = h + 2 * model.kv * model.head_dim
    up = 2 * f if model.mlp == "swiglu" else f
    weights = h * qkv + h * h + h * up + f * h
    biases = qkv + h + up + h if model.bias else 0
    norms = 2 * (2 * h if model.norm == "layernorm" else h)
    return weights + biases + norms


def model_flops(model: TransformerSpec, batch: int) -> float:
    """FLOPs of one training step without recompute (Korthikanti et al. 2022, §6: forward 24 B s l h^2
    (1 + s/(6h) + V/(16 l h)), backward twice that, with f = 4h); here from the block's GEMMs, so any f."""
    s, h, layers, vocab = model.seq_len, model.d_model, model.layers, model.vocab
    block = sum(k.gemm.flops for k in block_work(model, 1, batch, False, "none").forward if k.kind == "gemm")
    logits = 2 * batch * s * h * vocab
    return 3.0 * (layers * block + logits)
