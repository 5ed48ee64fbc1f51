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


def block_work(model: TransformerSpec, t: int, b: int, sequence: bool, recompute: str, wgrad_fusion: bool = True) -> BlockWork:
    """One block on one of t tensor ranks for a micro-batch of b sequences (see the module's docstring).
    Each column-parallel layer's backward re-gather names its input-gradient GEMM as the one it can run
    beside, the reduction of its input gradient its weight-gradient GEMM (`Kernel.beside`). Without
    `wgrad_fusion` a weight-gradient GEMM writes 16-bit gradients, and a kernel adds them into the fp32
    main gradient (read 2 + 4, write 4 bytes per weight: Megatron-LM before 2022-02)."""
    s, h, a, f = model.seq_len, model.d_model, model.heads, model.d_ff
    tokens = s * b
    full = tokens * h * ACT_BYTES  # a whole activation tensor, what a tensor-parallel collective carries
    local = tokens * h / (t if sequence else 1)  # elements a layer norm or dropout touches
    scores = b * (a // t) * s * s
    gemms = {
        "qkv": Gemm(tokens, 3 * h // t, h),
        "scores": Gemm(s, s, h // a, b * (a // t)),
        "context": Gemm(s, h // a, s, b * (a // t)),
        "proj": Gemm(tokens, h, h // t),
        "fc1": Gemm(tokens, f // t, h),
        "fc2": Gemm(tokens, h, f // t),
    }
    gather = (Kernel("all_gather", "all-gather", bytes=full),) if sequence and t > 1 else ()
    reduce = (Kernel("reduce_scatter" if sequence else "all_reduce", "reduce", bytes=full),) if t > 1 else ()
    # forward: read and write 2-byte elements; a dropout also writes its 1-byte mask
    ln = 2 * ACT_BYTES
    dropout_add = 3 * ACT_BYTES + MASK_BYTES  # input, residual in; output, mask out
    attention = (
        Kernel("gemm", "scores", gemms["scores"]),
        _memory("softmax", scores, 2 * ACT_BYTES),
        _memory("attention dropout", scores, 2 * ACT_BYTES + MASK_BYTES),
        Kernel("gemm", "context", gemms["context"]),
        _memory("context permute", tokens * h / t, 2 * ACT_BYTES),  # [b a, s, h/a] back to [s, b, h]: a copy
    )
    forward = (
        _memory("layernorm 1", local, ln),
        *gather,
        Kernel("gemm", "qkv", gemms["qkv"]),
        _memory("qkv bias", tokens * 3 * h / t, 2 * ACT_BYTES),  # a column-parallel layer adds its bias apart
        *attention,
        Kernel("gemm", "proj", gemms["proj"]),
        *reduce,
        _memory("dropout-add 1", local, dropout_add),
        _memory("layernorm 2", local, ln),
        *gather,
        Kernel("gemm", "fc1", gemms["fc1"]),
        _memory("bias-gelu", tokens * f / t, 2 * ACT_BYTES),
        Kernel("gemm", "fc2", gemms["fc2"]),
        *reduce,
        _memory("dropout-add 2", local, dropout_add),
    )
    # backward: an element-wise kernel reads its saved input and the upstream gradient and writes
    # the input gradient (a dropout reads its mask instead of an input)
    back_ln = 3 * ACT_BYTES
    ln_weight = 2 * ACT_BYTES  # the scale and shift gradients: another pass over the input and the gradient
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

    input_grad = (
        _memory("dropout-add 2 grad", local, back_dropout),
        _memory("fc2 bias grad", local, ACT_BYTES),
        *gather,
        dx("fc2"),
        _memory("bias-gelu grad", tokens * f / t, 3 * ACT_BYTES),
        _memory("fc1 bias grad", tokens * f / t, ACT_BYTES),
        dx("fc1"),
        *regather("fc1"),
        *reduce_dx("fc1"),
        _memory("layernorm 2 grad", local, back_ln),
        _memory("layernorm 2 weight grad", local, ln_weight),
        _memory("residual 2 grad", local, residual),
        _memory("dropout-add 1 grad", local, back_dropout),
        _memory("proj bias grad", local, ACT_BYTES),
        *gather,
        dx("proj"),
        _memory("context permute grad", tokens * h / t, 2 * ACT_BYTES),
        dx("context"),
        Kernel("gemm", "context dw", gemms["context"].backward()[1]),  # the probabilities' gradient: not a weight
        _memory("attention dropout grad", scores, back_dropout),
        _memory("softmax grad", scores, 3 * ACT_BYTES),
        dx("scores"),
        Kernel("gemm", "scores dw", gemms["scores"].backward()[1]),  # the keys' gradient: not a weight
        _memory("qkv split grad", tokens * 3 * h / t, 2 * ACT_BYTES),  # q, k, v gradients joined
        _memory("qkv bias grad", tokens * 3 * h / t, ACT_BYTES),
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


def activation_bytes(model: TransformerSpec, t: int, b: int, sequence: bool, recompute: str) -> float:
    """Bytes one block keeps from its forward to its backward for one micro-batch, as Korthikanti et al.
    2022 count them (§4, Table 2): s b h (34 + 5 a s / h) with no parallelism; s b h (10 + 24/t +
    5 a s / (h t)) with tensor parallelism; s b h (34 + 5 a s / h) / t with sequence parallelism too;
    selective recompute drops the 5 a s / h term; full recompute keeps the block's input alone,
    2 s b h (/ t with sequence parallelism)."""
    s, h, a = model.seq_len, model.d_model, model.heads
    sbh = s * b * h
    if recompute == "full":
        return 2 * sbh / (t if sequence else 1)
    attention = 0.0 if recompute == "selective" else 5 * a * s / h
    if sequence:
        return sbh * (34 + attention) / t
    return sbh * (10 + 24 / t + attention / t)


def block_params(model: TransformerSpec) -> int:
    """A block's parameters: QKV 3h^2 + 3h, projection h^2 + h, FC1 h f + f, FC2 f h + h, two layer norms 4h."""
    h, f = model.d_model, model.d_ff
    return 4 * h * h + 2 * h * f + 9 * h + f


def model_flops(model: TransformerSpec, batch: int) -> float:
    """FLOPs of one training step without recompute (Korthikanti et al. 2022, §6: forward 24 B s l h^2
    (1 + s/(6h) + V/(16 l h)), backward twice that, with f = 4h); here from the block's GEMMs, so any f."""
    s, h, layers, vocab = model.seq_len, model.d_model, model.layers, model.vocab
    block = sum(k.gemm.flops for k in block_work(model, 1, batch, False, "none").forward if k.kind == "gemm")
    logits = 2 * batch * s * h * vocab
    return 3.0 * (layers * block + logits)
