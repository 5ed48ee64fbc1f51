"""A decoder-only transformer described by its shapes: per-layer costs only (timing-only)."""

from __future__ import annotations

from hwsim.config.schema import TransformerSpec
from hwsim.workloads.megatron import block_params
from hwsim.workloads.ops import Gemm, LayerOps

# Element-operations per element of each element-wise step (vector-unit cost model).
LAYERNORM_OPS = 5  # mean, subtract, square, rsqrt, scale-and-shift
SOFTMAX_OPS = 5  # max, subtract, exp, sum, divide
GELU_OPS = 8  # tanh approximation
SWIGLU_OPS = 5  # SiLU(gate) = gate / (1 + exp(-gate)): exp, add, divide, multiply; times up
ROTARY_OPS = 3  # per element of q and k: x cos + rotated(x) sin
RESIDUAL_OPS = 1
XENT_OPS = 6
BACKWARD_VECTOR_FACTOR = 2  # backward of an element-wise op reads the input and the upstream gradient


class Transformer:
    """Embedding, `layers` blocks (attention + MLP, pre-LayerNorm), LM head (tied to the embedding unless
    `tied_embeddings` is false).

    Per block for a batch of B sequences of S tokens (T = B S), width d, h heads of d/h, g key and value
    heads (grouped-query attention; g = h without) and feed-forward width f, the forward GEMMs are QKV
    (T, d + 2 g d/h, d), scores (S, S, d/h) x B h, context (S, d/h, S) x B h, projection (T, d, d), FF up
    (T, f, d) (SwiGLU: gate and up, (T, 2f, d)), FF down (T, d, f); each has the two backward GEMMs of
    `Gemm.backward`. Activations kept for the backward pass per block: T (5 d + 2 g d/h + 2 f) (SwiGLU:
    3 f) + 2 B h S^2 elements (inputs of every GEMM, both LayerNorm outputs, the attention probabilities
    and their scores). Rotary embeddings add ROTARY_OPS per element of q and k to the vector work.
    """

    has_math = False
    edge_layers = (1, 1)
    """The embedding rides with the first pipeline stage and the head with the last; the blocks split."""

    def __init__(self, spec: TransformerSpec):
        if spec.d_model % spec.heads:
            raise ValueError(f"heads ({spec.heads}) must divide d_model ({spec.d_model})")
        self.spec = spec
        self.layer_names = ["embed", *(f"block{i}" for i in range(spec.layers)), "head"]

    @property
    def num_params(self) -> int:
        return sum(op.params for op in self.layer_ops(1))

    def layer_ops(self, batch: int) -> list[LayerOps]:
        s = self.spec
        d, f, h, seq = s.d_model, s.d_ff, s.heads, s.seq_len
        tokens = batch * seq
        # the embedding's backward is its weight gradient (rows scattered into the table)
        embed = LayerOps(
            "embed",
            (),
            (),
            tokens * d,
            tokens * d,
            s.vocab * d + (0 if s.rotary else seq * d),  # the table, and the learned positions without rotary
            tokens * d,
            tokens * d,
            weight_vector_ops=tokens * d,
        )
        kv = s.kv * (d // h)  # the key (and the value) width
        up = 2 * f if s.mlp == "swiglu" else f
        fwd = (
            Gemm(tokens, d + 2 * kv, d),
            Gemm(seq, seq, d // h, batch * h),
            Gemm(seq, d // h, seq, batch * h),
            Gemm(tokens, d, d),
            Gemm(tokens, up, d),
            Gemm(tokens, d, f),
        )
        vector = (
            2 * tokens * d * LAYERNORM_OPS
            + batch * h * seq * seq * SOFTMAX_OPS
            + tokens * f * (SWIGLU_OPS if s.mlp == "swiglu" else GELU_OPS)
            + 2 * tokens * d * RESIDUAL_OPS
            + (tokens * (d + kv) * ROTARY_OPS if s.rotary else 0)
        )
        params = block_params(s)
        block_acts = tokens * (5 * d + 2 * kv + (3 if s.mlp == "swiglu" else 2) * f) + 2 * batch * h * seq * seq
        weighted = (fwd[0], fwd[3], fwd[4], fwd[5])  # QKV, projection, FF up, FF down; attention has no weights
        weight = tuple(g.backward()[1] for g in weighted)
        weight_inputs = sum(g.m * (g.k + g.n) for g in weighted)  # each GEMM's input and output gradient
        biases = tokens * (d + 2 * kv + d + up + d) if s.bias else 0  # bias sums
        weight_vector = biases + 2 * (2 if s.norm == "layernorm" else 1) * tokens * d  # and the norms' gains (and shifts)
        blocks = [
            LayerOps(
                f"block{i}",
                fwd,
                tuple(g for gemm in fwd for g in gemm.backward()),
                vector,
                vector * BACKWARD_VECTOR_FACTOR,
                params,
                block_acts,
                tokens * d,
                weight=weight,
                weight_vector_ops=weight_vector,
                weight_inputs=weight_inputs,
            )
            for i in range(s.layers)
        ]
        head_gemm = Gemm(tokens, s.vocab, d)  # tied to the embedding: no parameters of its own (else V d)
        head = LayerOps(
            "head",
            (head_gemm,),
            head_gemm.backward(),
            tokens * s.vocab * XENT_OPS + tokens * d * LAYERNORM_OPS,
            tokens * s.vocab + tokens * d * LAYERNORM_OPS * BACKWARD_VECTOR_FACTOR,
            (2 * d if s.norm == "layernorm" else d) + (0 if s.tied_embeddings else s.vocab * d),  # the final norm
            tokens * s.vocab + tokens * d,
            tokens * s.vocab,
            weight=(head_gemm.backward()[1],),  # the output layer's (tied: the embedding's) gradient
            weight_inputs=tokens * (d + s.vocab),
        )
        return [embed, *blocks, head]
