"""Models (`model`): an MLP with real math, a transformer and a list of layers for timing, a recorded trace."""

from __future__ import annotations

from hwsim.config.fields import spec
from hwsim.config.schema.common import schema

MLPS = ("gelu", "swiglu")
NORMS = ("layernorm", "rmsnorm")


@schema
class MlpMoeSpec:
    """An mlp's mixture-of-experts layer after its hidden layer: a router and `experts` two-layer experts
    (hidden -> width -> hidden), top_k of them per sample."""

    experts: int = spec(doc="experts", min=1)
    top_k: int = spec(doc="experts each sample goes to", min=1)
    width: int = spec(doc="an expert's hidden width", min=1)


@schema
class MlpSpec:
    """A multi-layer perceptron with ReLU hidden layers and a softmax output: real math."""

    kind: str = spec("mlp", doc="model family", choices=("mlp",))
    name: str = spec("mlp", doc="model name")
    inputs: int = spec(doc="input features", min=1)
    hidden: tuple[int, ...] = spec(doc="widths of the hidden layers (none: a linear model)", min=1)
    classes: int = spec(doc="output classes", min=2)
    dataset: str = spec("digits", doc="training data", choices=("digits",))
    init: str = spec(
        "he",
        doc="initial weights: he (normal, std sqrt(2 / fan_in)), xavier (uniform, limit sqrt(6 / (fan_in + fan_out))), "
        "normal (std init_std), zeros (a linear model only); biases start at zero",
        choices=("he", "xavier", "normal", "zeros"),
    )
    init_std: float = spec(0.01, doc="init: normal: standard deviation of the weights", gt=0)
    moe: MlpMoeSpec | None = spec(
        None, doc="a mixture-of-experts layer after the one hidden layer (the megatron system with expert ranks)"
    )


@schema
class MoeSpec:
    """A transformer's mixture-of-experts layers: a router sends each token to top_k of `experts` feed-forward
    experts (SwiGLU or GeLU as the model's `mlp`, d_ff_expert wide), beside `shared_experts` every token uses."""

    experts: int = spec(doc="routed experts per MoE layer", min=1)
    top_k: int = spec(doc="experts each token goes to", min=1)
    d_ff_expert: int = spec(doc="an expert's feed-forward width", min=1)
    shared_experts: int = spec(0, doc="experts every token goes to as well (DeepSeek's shared experts)", min=0)
    every: int = spec(1, doc="a MoE layer every this many layers (after the first_dense ones)", min=1)
    first_dense: int = spec(0, doc="the first layers keep a dense feed-forward block (DeepSeek-V3: 3)", min=0)
    node_limit: int | None = spec(
        None,
        doc="each token's experts on at most this many nodes (DeepSeek-V3: 4), its dispatch and combine in two levels: "
        "once per node over the scale-out network, then within the node; null: one all-to-all over the expert ranks",
        min=1,
    )
    capacity_factor: float | None = spec(
        None, doc="tokens an expert takes, at most, as a multiple of its even share (the rest dropped); null: no cap", gt=0
    )
    load: str = spec(
        "uniform",
        doc="how the router spreads tokens over the experts: uniform, zipf (expert popularity ~ 1 / rank^zipf_alpha, "
        "experts placed on the expert ranks in a seeded shuffle) or measured (`fractions`); the busiest expert rank "
        "sets the pace",
        choices=("uniform", "zipf", "measured"),
    )
    zipf_alpha: float = spec(1.0, doc="load zipf: the exponent", min=0)
    fractions: tuple[float, ...] | None = spec(None, doc="load measured: each expert's share of the routed tokens", min=0)

    def is_moe(self, layer: int) -> bool:
        """Whether layer (from 0) is a MoE layer."""
        return layer >= self.first_dense and (layer - self.first_dense) % self.every == 0


@schema
class MlaSpec:
    """DeepSeek's multi-head latent attention (DeepSeek-V2, arXiv 2405.04434, section 2.1): queries and keys/values
    through low-rank latents, each head's query and key a non-rotary part and a rotary part shared by the heads."""

    q_rank: int = spec(doc="the queries' latent width (d_c')", min=1)
    kv_rank: int = spec(doc="the keys' and values' latent width (d_c), what the KV cache holds", min=1)
    nope_dim: int = spec(doc="per head, the query and key width without rotary (d_h)", min=1)
    rope_dim: int = spec(doc="per head, the rotary query width; one rotary key of this width for all heads (d_h^R)", min=1)
    v_dim: int = spec(doc="per head, the value width", min=1)


@schema
class TransformerSpec:
    """A decoder-only transformer described by its shapes: timing-only (no math)."""

    kind: str = spec("transformer", doc="model family", choices=("transformer",))
    name: str = spec("transformer", doc="model name")
    layers: int = spec(doc="transformer blocks", min=1)
    d_model: int = spec(doc="hidden width", min=1)
    heads: int = spec(doc="attention heads (must divide d_model)", min=1)
    d_ff: int = spec(doc="feed-forward width", min=1)
    vocab: int = spec(doc="vocabulary size", min=1)
    seq_len: int = spec(doc="tokens per sequence", min=1)
    kv_heads: int | None = spec(
        None, doc="key and value heads: grouped-query attention (a divisor of heads; 1: multi-query; null: heads)", min=1
    )
    mlp: str = spec(
        "gelu",
        doc="the feed-forward block: gelu (d_model to d_ff, GeLU, back) or swiglu (gate and up, d_ff each, SiLU(gate) x up, down)",
        choices=MLPS,
    )
    norm: str = spec("layernorm", doc="the blocks' normalization: layernorm (scale and shift) or rmsnorm (scale)", choices=NORMS)
    bias: bool = spec(True, doc="the linear layers have biases (GPT: yes; Llama: no)")
    dropout: bool = spec(True, doc="dropout on the attention probabilities and the residual branches (a 1-byte mask each)")
    rotary: bool = spec(False, doc="rotary position embeddings on queries and keys in every block, no learned position table")
    tied_embeddings: bool = spec(True, doc="the output layer uses the input embedding's weights (false: its own V x d_model)")
    attention: str = spec(
        "mha", doc="mha (heads, or kv_heads for grouped-query) or mla (latent attention: `mla`)", choices=("mha", "mla")
    )
    mla: MlaSpec | None = spec(None, doc="attention mla: the latent widths")
    moe: MoeSpec | None = spec(None, doc="mixture-of-experts layers (null: every feed-forward block dense)")

    @property
    def kv(self) -> int:
        """Key and value heads (heads without grouped-query attention)."""
        return self.kv_heads or self.heads

    @property
    def head_dim(self) -> int:
        return self.d_model // self.heads


@schema
class LayerSpec:
    """One layer of a `layers` model: its times as measured on your own hardware, or its GEMM shape."""

    name: str = spec("", doc="its name (empty: layer<i>)")
    forward: float | None = spec(None, doc="forward time of one step's batch (or give gemm)", unit="time", min=0)
    backward: float | None = spec(None, doc="backward time: input and weight gradients (or give gemm)", unit="time", min=0)
    gemm: tuple[int, ...] | None = spec(
        None,
        doc="[m, n, k]: the forward GEMM C[m, n] = A[m, k] B[k, n] for one step's batch, timed by the systolic "
        "array's cycle model; the backward is its two GEMMs (m, k, n) and (k, n, m)",
        min=1,
    )
    params: float | None = spec(
        None,
        doc="its parameters' bytes, the gradient all-reduced after its backward (null with gemm: k n x 4)",
        unit="size",
        min=0,
    )


@schema
class LayersSpec:
    """A workload of plain layers with times measured on your hardware: timing-only."""

    kind: str = spec("layers", doc="model family", choices=("layers",))
    name: str = spec("layers", doc="model name")
    layers: tuple[LayerSpec, ...] = spec(doc="the layers, first to last")
    repeat: int = spec(1, doc="the list of layers this many times over (24 identical blocks: one layer, repeat: 24)", min=1)


@schema
class ChakraSpec:
    """A recorded workload: a Chakra execution-trace set, one file per NPU (ASTRA-sim's workload input), replayed
    by system kind `replay`: timing-only."""

    kind: str = spec("chakra", doc="model family", choices=("chakra",))
    name: str = spec("chakra", doc="model name")
    traces: str = spec(
        doc="the trace set's prefix: files PREFIX.0.et, PREFIX.1.et, ... (ASTRA-sim's --workload-configuration), "
        "relative to the scenario file"
    )
    groups: str | None = spec(
        None,
        doc="the process groups a collective's pg_name names: a JSON file {name: [NPU, ...]} (ASTRA-sim's "
        "--comm-group-configuration format), relative to the scenario file; null: PREFIX.groups.json when it "
        "exists, else every collective runs over every NPU",
    )


@schema
class TorchTraceSpec:
    """A PyTorch profiler (Kineto) trace of one rank's training step, replayed by system kind `replay` on `ranks`
    data-parallel ranks (`hwsim.workloads.torch_trace`): timing-only."""

    kind: str = spec("torch_trace", doc="model family", choices=("torch_trace",))
    name: str = spec("torch_trace", doc="model name")
    path: str = spec(doc="the trace (.json or .json.gz from torch.profiler's export_chrome_trace), relative to the scenario file")
    ranks: int | None = spec(None, doc="data-parallel ranks to replay the step on (null: the recorded world size)", min=1)


ModelSpec = MlpSpec | TransformerSpec | LayersSpec | ChakraSpec | TorchTraceSpec
