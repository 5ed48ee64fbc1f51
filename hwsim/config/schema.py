"""The typed, frozen schema of scenario files (hardware, model, system, run, report).

All quantities are SI floats once parsed: seconds, bytes, bytes/s, Hz. `hwsim schema`
prints this as JSON Schema; `fields.build` checks files against it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from hwsim.config.fields import spec

schema = dataclass(frozen=True, kw_only=True)

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4")
BANK_PRECISIONS = (*PRECISIONS, "int2")
"""What a memory bank may store: the compute precisions, and 2-bit storage."""
DATAFLOWS = ("output_stationary", "weight_stationary", "input_stationary")


# --- hardware -----------------------------------------------------------------------


@schema
class MacsSpec:
    """Multiply-accumulates one processing element completes per cycle, per operand precision."""

    fp32: int = spec(1, doc="MACs per PE per cycle at fp32", min=1)
    bf16: int = spec(2, doc="MACs per PE per cycle at bf16", min=1)
    fp16: int = spec(2, doc="MACs per PE per cycle at fp16", min=1)
    int8: int = spec(4, doc="MACs per PE per cycle at int8", min=1)
    int4: int = spec(8, doc="MACs per PE per cycle at int4", min=1)


@schema
class SystolicSpec:
    """A systolic array of rows x cols processing elements that runs GEMMs."""

    rows: int = spec(doc="rows of processing elements", min=1)
    cols: int = spec(doc="columns of processing elements", min=1)
    clock: float = spec(doc="clock of the array", unit="frequency", gt=0)
    dataflow: str = spec("output_stationary", doc="what stays in place in each PE", choices=DATAFLOWS)
    edge_folds: str = spec(
        "padded",
        doc="padded: a partial fold at an edge costs a whole array's cycles (SCALE-Sim 3.0); "
        "used: only the rows and columns it uses",
        choices=("padded", "used"),
    )
    macs_per_cycle: MacsSpec = spec(MacsSpec, doc="MACs per PE per cycle at each precision")
    arrays: int = spec(
        1, doc="identical arrays (a GPU's tensor cores); more than one: GEMMs are cut into tiles run in waves", min=1
    )
    per_tile: int = spec(1, doc="arrays that share one output tile (a GPU's tensor cores per SM)", min=1)
    tile: tuple[int, ...] = spec((128, 128), doc="[rows, cols] of the output tile one group of per_tile arrays computes", min=1)
    boost_clock: float | None = spec(
        None, doc="the clock of the datasheet's peak, which MFU and HFU are quoted against (null: clock)", unit="frequency", gt=0
    )
    efficiency: float = spec(
        1.0,
        doc="the fraction of cycles on which the arrays issue MACs in a GEMM's steady state (the rest are operand "
        "stalls): 1 every cycle; a GPU preset takes it from a measured maximum achievable matmul throughput",
        gt=0,
        max=1,
    )


@schema
class VectorSpec:
    """A SIMD vector unit for element-wise work (quantize, dequantize, activations, optimizer)."""

    lanes: int = spec(doc="elements processed per cycle", min=1)
    clock: float = spec(doc="clock of the vector unit", unit="frequency", gt=0)


@schema
class BankSpec:
    """A memory bank: what precision it stores, how much, and how fast it moves bytes."""

    precision: str = spec(doc="precision of the numbers this bank stores", choices=BANK_PRECISIONS)
    capacity: float = spec(doc="capacity of the bank", unit="size", gt=0)
    bandwidth: float = spec(doc="read/write bandwidth of the bank", unit="rate", gt=0)
    latency: float = spec("0 s", doc="fixed latency of one access", unit="time", min=0)
    efficiency: float = spec(
        1.0, doc="the fraction of the bandwidth a streaming kernel achieves (measured; 1: the datasheet's)", gt=0, max=1
    )

    @property
    def rate(self) -> float:
        """Bytes per second the bank moves: bandwidth x efficiency."""
        return self.bandwidth * self.efficiency


@schema
class NicSpec:
    """A network interface and, on the default single switch, its full-duplex link to the switch."""

    bandwidth: float = spec(
        doc="line rate of the link (the default single switch; a described fabric sets its own)", unit="rate", gt=0
    )
    latency: float = spec(doc="propagation latency of one hop (the default single switch)", unit="time", min=0)
    overhead: float = spec("0 s", doc="per-message processing time in the NIC", unit="time", min=0)


SHARING = ("flow", "ideal", "store_and_forward")
"""Link-sharing models of the fabric (see hwsim/network/sharing.py)."""


@schema
class LinkOverride:
    """Changes to the links of one NPU (every link that starts or ends at it): a slow NIC, say."""

    npu: int = spec(doc="the NPU's index", min=0)
    bandwidth: float | None = spec(None, doc="its links' bandwidth (null: unchanged)", unit="rate", gt=0)
    latency: float | None = spec(None, doc="its links' latency (null: unchanged)", unit="time", min=0)
    down: bool = spec(False, doc="the NPU is out: its links carry nothing, and routes go round it")


@schema
class FabricSpec:
    """What every fabric has: the link-sharing model and per-NPU link changes."""

    model: str = spec(
        "flow",
        doc="flow: concurrent transfers share links max-min fairly, cut-through; ideal: no contention; "
        "store_and_forward: whole messages, FIFO per link, hop by hop",
        choices=SHARING,
    )
    overrides: tuple[LinkOverride, ...] = spec((), doc="links of single NPUs that differ (bandwidth, latency)")


@schema
class SwitchNet(FabricSpec):
    """One switch; every NPU has one full-duplex link to it (NPU, switch, NPU: 2 hops)."""

    kind: str = spec("switch", doc="topology", choices=("switch",))
    npus: int = spec(0, doc="NPUs (0: as many as the system needs)", min=0)
    bandwidth: float | None = spec(None, doc="each link's bandwidth (null: each device's nic.bandwidth)", unit="rate", gt=0)
    latency: float | None = spec(None, doc="each link's latency (null: each device's nic.latency)", unit="time", min=0)


@schema
class UniformNet(FabricSpec):
    """n NPUs joined by links that all have one bandwidth and latency (a ring, all-to-all)."""

    npus: int = spec(0, doc="NPUs (0: as many as the system needs)", min=0)
    bandwidth: float = spec(doc="each link's bandwidth", unit="rate", gt=0)
    latency: float = spec(doc="each link's latency", unit="time", min=0)


@schema
class RingNet(UniformNet):
    """NPUs in a ring, a full-duplex link between neighbours; a message takes the shorter way round."""

    kind: str = spec("ring", doc="topology", choices=("ring",))


@schema
class FullyConnectedNet(UniformNet):
    """A full-duplex link between every two NPUs (1 hop)."""

    kind: str = spec("fully_connected", doc="topology", choices=("fully_connected",))


@schema
class TorusNet(FabricSpec):
    """A 2- or 3-dimensional torus: a ring (with wrap-around) along every dimension; routes are
    dimension-ordered, the shorter way round each ring."""

    kind: str = spec("torus", doc="topology", choices=("torus",))
    shape: tuple[int, ...] = spec(doc="NPUs along each dimension (2 or 3 dimensions)", min=2)
    bandwidth: float = spec(doc="each link's bandwidth", unit="rate", gt=0)
    latency: float = spec(doc="each link's latency", unit="time", min=0)


@schema
class FatTreeNet(FabricSpec):
    """A two-level switch: leaf switches of `npus_per_leaf` NPUs, every leaf linked to every spine.
    Each leaf-spine link has npus_per_leaf x bandwidth / (spines x oversubscription)."""

    kind: str = spec("fat_tree", doc="topology", choices=("fat_tree",))
    leaves: int = spec(doc="leaf switches", min=1)
    npus_per_leaf: int = spec(doc="NPUs on each leaf switch", min=1)
    spines: int = spec(doc="spine switches", min=1)
    bandwidth: float = spec(doc="each NPU-leaf link's bandwidth", unit="rate", gt=0)
    latency: float = spec(doc="each NPU-leaf link's latency", unit="time", min=0)
    spine_latency: float = spec(doc="each leaf-spine link's latency", unit="time", min=0)
    oversubscription: float = spec(1.0, doc="a leaf's NPU bandwidth over its spine bandwidth (1: full bisection)", gt=0)


@schema
class DimSpec:
    """One dimension of a multi-dimensional fabric (as ASTRA-sim describes a cluster)."""

    kind: str = spec(doc="how the NPUs of one group along it connect", choices=("switch", "ring", "fully_connected"))
    size: int = spec(doc="NPUs along this dimension (0, the last dimension only: as many as the system needs)", min=0)
    bandwidth: float = spec(doc="each link's bandwidth", unit="rate", gt=0)
    latency: float = spec(doc="each link's latency", unit="time", min=0)
    efficiency: float = spec(
        1.0,
        doc="the fraction of the bandwidth a collective library achieves on these links (measured bus bandwidth / "
        "line rate; 1: the line rate)",
        gt=0,
        max=1,
    )


@schema
class DimsNet(FabricSpec):
    """A multi-dimensional fabric: an NPU is a tuple of coordinates (the first dimension varies
    fastest); along each dimension the NPUs that differ only there form a group connected by a
    switch, a ring or all-to-all links. Routes are dimension-ordered."""

    kind: str = spec("dims", doc="topology (a mapping with `dims` and no kind is this)", choices=("dims",))
    dims: tuple[DimSpec, ...] = spec(doc="the dimensions, innermost (fastest, e.g. the NVSwitch in a node) first")


NetworkSpec = SwitchNet | RingNet | FullyConnectedNet | TorusNet | FatTreeNet | DimsNet


@schema
class HardwareSpec:
    """One device: a systolic array, a vector unit, named memory banks and a NIC; and the cluster's
    network (the scenario's top-level hardware describes it for every device)."""

    name: str = spec("custom", doc="name of this hardware description")
    systolic: SystolicSpec = spec(doc="the matrix unit")
    vector: VectorSpec = spec(doc="the element-wise unit")
    memory: dict[str, BankSpec] = spec(doc="memory banks by name")
    nic: NicSpec = spec(doc="network interface")
    network: NetworkSpec | None = spec(
        None,
        doc="the cluster's fabric (null: one switch, each device's link from its nic); a mapping with `kind`, or with `dims`",
    )


# --- models -------------------------------------------------------------------------


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


ModelSpec = MlpSpec | TransformerSpec | LayersSpec


# --- systems ------------------------------------------------------------------------


@schema
class LocalTrainingSpec:
    """Settings of every system whose devices train locally from a parameter bank."""

    batch: int = spec(32, doc="samples per step (on each device)", min=1)
    lr: float = spec(0.05, doc="learning rate", gt=0)
    momentum: float = spec(0.9, doc="SGD momentum (each device keeps its own velocity)", min=0, max=0.999)
    block: int = spec(64, doc="quantization block of the stored parameters (elements)", min=1)
    param_bank: str = spec("params", doc="bank that stores the parameters")
    work_bank: str = spec("working", doc="bank for decompressed weights, gradients and activations")
    compute_precision: str = spec("fp32", doc="precision of the GEMMs", choices=PRECISIONS)


@schema
class SingleDeviceSpec(LocalTrainingSpec):
    """One device trains while its parameters live in a storage bank (mechanism M1 on one device).

    Every step reads the stored parameters, decompresses them into the working bank,
    runs forward, backward and update, re-compresses and writes them back.
    """

    kind: str = spec("single_device", doc="system", choices=("single_device",))
    steps: int = spec(200, doc="training steps", min=1)


@schema
class CollectiveSpec:
    """How a collective runs on the fabric (`hwsim/collectives`)."""

    algorithm: Any = spec(
        "ring", doc="ring, direct, halving_doubling, double_binary_tree; hierarchical: one name, or a list with one per dimension"
    )
    hierarchical: bool = spec(
        False, doc="dimension by dimension on a dims or torus fabric (reduce-scatter 1, 2, ..., all-gather back)"
    )
    chunks: int = spec(1, doc="pieces the buffer is cut into, pipelined through the dimensions", min=1)
    in_flight: int = spec(1, doc="chunks at once in each dimension", min=1)
    order: str = spec(
        "none",
        doc="concurrent collectives: none (each has its own in_flight chunks; they share the links), "
        "fifo (in_flight is shared, the oldest collective first) or lifo (the newest first)",
        choices=("none", "fifo", "lifo"),
    )
    codec: Any = spec(None, doc="codec of every message: a name (int8), a mapping {name: qsgd, levels: 8}, or null for fp32")


@schema
class CompressedPsSpec(LocalTrainingSpec):
    """N workers and a parameter server (mechanism M1 across a cluster): each worker keeps
    the parameters in a low-precision bank, trains on decompressed copies, sends them (or
    its change) through its NIC with the uplink codec; the server aggregates and sends the
    model back with the downlink codec, which the worker writes into its bank. The server
    keeps its master copy in its `work_bank`. With `server: none` the workers all-reduce
    their encoded updates among themselves instead.
    """

    kind: str = spec("compressed_ps", doc="system", choices=("compressed_ps",))
    workers: int = spec(4, doc="number of workers", min=1)
    steps: int = spec(100, doc="training steps of each worker", min=1)
    uplink: Any = spec(None, doc="codec of what workers send: a name (int8), a mapping {name: qsgd, levels: 8}, or null for fp32")
    downlink: Any = spec(None, doc="codec of what the server sends back (same forms as uplink)")
    update: str = spec("params", doc="workers send their parameters, or their change this step", choices=("params", "delta"))
    error_feedback: bool = spec(False, doc="workers add what the uplink codec lost last step to what they send next")
    server: str = spec(
        "sync",
        doc="sync: average all workers each round; async: apply each update on arrival; none: no server, the "
        "workers all-reduce their uplink-encoded updates directly (system.collective) and each applies the mean",
        choices=("sync", "async", "none"),
    )
    collective: CollectiveSpec = spec(
        CollectiveSpec, doc="server: none: the all-reduce of the updates (its messages use the uplink codec)"
    )
    reply: str = spec(
        "direct",
        doc="sync: the server's reply as a broadcast (hwsim.collectives): direct (a message to each worker) or ring "
        "(a chain server -> w0 -> w1 -> ..., block by block)",
        choices=("direct", "ring"),
    )
    max_staleness: int = spec(2, doc="async: a worker may run at most this many steps ahead of the slowest", min=0)
    overlap: bool = spec(False, doc="sync: start the next step on local weights while the exchange is in flight")
    worker_hardware: dict[str, HardwareSpec] | None = spec(
        None, doc="per-worker hardware by worker index: changes merged onto hardware (for example a slower NIC)"
    )
    server_hardware: HardwareSpec | None = spec(
        None, doc="the server's hardware: changes merged onto hardware (default: the same)"
    )


@schema
class FillSpec:
    """A second model instance run in the pipeline's predicted idle windows (mechanism M2): the
    same model or another, with its own stages, data, micro-batches and optimizer."""

    model: ModelSpec | None = spec(None, doc="a model name from models/, a path, or a mapping; null: the pipeline's model")
    policy: str = spec(
        "best_mapping", doc="filling policy: first_fit, best_fit, reverse, best_mapping, or a registered / 'file.py:function' one"
    )
    stages: int = spec(
        0, doc="stages of the second instance (0: the most, up to one per device, that split its layers evenly)", min=0
    )
    layers_per_stage: tuple[int, ...] | None = spec(
        None, doc="layers of each of its stages; null: the model's layers split evenly", min=1
    )
    microbatches: int = spec(2, doc="micro-batches per step to place; as many as fit run (the summary says how many)", min=1)
    microbatch: int = spec(8, doc="samples per micro-batch of the second instance", min=1)
    lr: float = spec(0.05, doc="learning rate of the second instance", gt=0)
    momentum: float = spec(0.5, doc="SGD momentum of the second instance", min=0, max=0.999)
    slowdown_budget: float = spec(
        0.0,
        doc="largest slowdown of the first instance's step the filling may cause (a fraction); hwsim validate checks it",
        min=0,
    )
    during_allreduce: bool = spec(
        False,
        doc="with data_parallel > 1, also fill a device's windows after its first all-reduce starts "
        "(not predicted: the reduction's messages and adds can delay the second instance there)",
    )


@schema
class PipelineSpec:
    """A model cut into stages over devices and run by a pipeline schedule (mechanism M4), with
    optional data parallelism: D replicas of the pipeline, each stage's gradient reduced by a
    ring all-reduce that starts when the stage's last backward ends.
    """

    kind: str = spec("pipeline", doc="system", choices=("pipeline",))
    schedule: str = spec(
        "1f1b",
        doc="schedule: gpipe, 1f1b, interleaved, breadth_first, hybrid, zb_h1, zb_h2, zb_v, v_half, v_min, dualpipe_v, dualpipe (split backward), "
        "or a registered / 'file.py:function' builder",
    )
    devices: int = spec(4, doc="pipeline devices p", min=1)
    stages_per_device: int = spec(1, doc="stages per device v (S = p v stages in all)", min=1)
    placement: str | None = spec(
        None,
        doc="stage s on device s // v (contiguous), s mod p (looping), or s then 2p - 1 - s (vshape, and dual: "
        "DualPipe's two pipelines; v = 2); null: what the schedule needs",
    )
    layers_per_stage: tuple[int, ...] | None = spec(
        None, doc="layers of each stage (S entries); null: the model's layers split evenly", min=1
    )
    microbatches: int = spec(8, doc="micro-batches m per step (per replica)", min=1)
    microbatch: int = spec(8, doc="samples per micro-batch", min=1)
    group: int = spec(
        0,
        doc="micro-batches per group (0: the devices p); interleaved: Megatron-core's microbatch_group_size_per_vp_stage "
        "(p to m); hybrid: Fast-LLM's breadth-first micro-batches per depth-first group (dividing m)",
        min=0,
    )
    reverse_backward: bool = spec(
        False, doc="gpipe, breadth_first: run the backwards in reverse micro-batch order (as PyTorch's ScheduleLoopedBFS)"
    )
    data_parallel: int = spec(1, doc="pipeline replicas D; each stage's gradients are all-reduced over them", min=1)
    replicas: str = spec(
        "all",
        doc="all: simulate every replica; one: simulate replica 0, its ring partners mirror it (timing-only)",
        choices=("all", "one"),
    )
    network: str = spec(
        "nic", doc="nic: activations, gradients and all-reduce cross the NICs; free: they arrive at once", choices=("nic", "free")
    )
    steps: int = spec(20, doc="training steps (each: m micro-batches per replica, then the optimizer)", min=1)
    lr: float = spec(0.05, doc="learning rate", gt=0)
    momentum: float = spec(0.9, doc="SGD momentum", min=0, max=0.999)
    bank: str = spec("working", doc="bank for weights, gradients and activations")
    compute_precision: str = spec("fp32", doc="precision of the GEMMs", choices=PRECISIONS)
    fill: FillSpec | None = spec(None, doc="a second model instance placed into the idle windows (bubble filling); null: none")


@schema
class StreamSpec:
    """Labelled samples arriving over time (digits drawn at random from the training split).

    Each arrival is first a prediction request to a prediction worker (round robin); its
    label arrives `label_delay` later, scores the prediction (prequential accuracy) and
    goes to a training worker (round robin). The labelling function drifts: every
    `drift_every`, `drift_classes` classes chosen at random swap labels in a cycle.
    """

    arrivals: str = spec(
        "poisson", doc="poisson: exponential gaps at `rate`; trace: the times in `trace`", choices=("poisson", "trace")
    )
    rate: float = spec("1000 /s", doc="mean arrivals per second (poisson)", unit="event_rate", gt=0)
    trace: str | None = spec(None, doc="arrivals: trace: a CSV file with a column time_s (seconds from the start, ascending)")
    label_delay: float = spec("5 ms", doc="time from a sample's arrival to its label's", unit="time", min=0)
    drift_every: float | None = spec("2 s", doc="time between drift points (null: no drift)", unit="time", gt=0)
    drift_classes: int = spec(3, doc="classes whose labels swap (in a cycle) at each drift point", min=2, max=10)


@schema
class SelectSpec:
    """Which weights an update carries, and the codec of their values (indices are uint32)."""

    select: str = spec(
        "threshold",
        doc="threshold: every weight whose change exceeds `threshold`; topk: the `ratio` largest changes; "
        "all: every weight; or a registered / 'file.py:function' rule",
    )
    threshold: float = spec(0.0, doc="select: threshold: smallest |change| that is sent", min=0)
    ratio: float = spec(0.05, doc="select: topk: fraction of the weights sent", gt=0, max=1)
    codec: Any = spec(None, doc="codec of the values: a name (fp16), a mapping {name: int8, block: 64}, or null for fp32")


@schema
class RealtimeSpec(SelectSpec):
    """The server's frequent real-time updates: the weights where the master differs from what the
    receiving worker last got (by more than `threshold`, or the top `ratio`)."""

    period: float = spec("50 ms", doc="time between real-time updates", unit="time", gt=0)
    allow_slower: bool = spec(False, doc="allow a real-time period longer than the full period (normally a mistake)")


@schema
class FullSpec:
    """The server's rare full updates: every weight of the master."""

    period: float = spec("1 s", doc="time between full updates", unit="time", gt=0)
    codec: Any = spec(None, doc="codec of the weights (null: fp32)")


@schema
class LinkDownSpec:
    """A window during which a worker's link is down: messages to or from it are lost."""

    worker: str = spec(doc="p<i> (prediction worker i) or t<i> (training worker i)")
    start: float = spec(doc="when the link goes down", unit="time", min=0)
    end: float = spec(doc="when it comes back", unit="time", gt=0)


@schema
class OnlineSpec:
    """Online training (mechanism M3): a drifting stream; training workers that train on it and send
    their model's change since a snapshot to a parameter server; prediction workers that only
    serve requests; the server sends frequent real-time updates (a subset of the weights) and rare
    full updates to both kinds of worker.
    """

    kind: str = spec("online", doc="system", choices=("online",))
    duration: float = spec("6 s", doc="how long the stream runs", unit="time", gt=0)
    stream: StreamSpec = spec(StreamSpec, doc="the labelled stream and its drift")
    training_workers: int = spec(2, doc="workers that train on the labelled stream", min=1)
    prediction_workers: int = spec(2, doc="workers that answer prediction requests (never train)", min=1)
    batch: int = spec(16, doc="labelled samples per training step", min=1)
    window: int = spec(2, doc="training steps between a training worker's deltas", min=1)
    lr: float = spec(0.05, doc="learning rate of the training workers", gt=0)
    momentum: float = spec(0.5, doc="SGD momentum of the training workers", min=0, max=0.999)
    serve_batch: int = spec(8, doc="most queued requests a prediction worker answers in one forward pass", min=1)
    delta: SelectSpec = spec(SelectSpec, doc="what a training worker sends: its change since the snapshot")
    realtime: RealtimeSpec | None = spec(RealtimeSpec, doc="real-time updates (null: full updates only)")
    full: FullSpec = spec(FullSpec, doc="full updates")
    link_down: tuple[LinkDownSpec, ...] = spec((), doc="windows when a worker's link is down")
    prediction_hardware: HardwareSpec | None = spec(None, doc="the prediction workers' hardware: changes merged onto hardware")
    training_hardware: HardwareSpec | None = spec(None, doc="the training workers' hardware: changes merged onto hardware")
    server_hardware: HardwareSpec | None = spec(None, doc="the server's hardware: changes merged onto hardware")
    bank: str = spec("working", doc="bank for weights, snapshots, mirrors and activations (fp32)")
    compute_precision: str = spec("fp32", doc="precision of the GEMMs", choices=PRECISIONS)


@schema
class DistSpec:
    """A factor drawn once per client: fixed `value`; uniform on [low, high]; lognormal with median
    `value` and log-space spread `sigma`."""

    dist: str = spec("fixed", doc="fixed, uniform or lognormal", choices=("fixed", "uniform", "lognormal"))
    value: float = spec(1.0, doc="fixed: the value; lognormal: the median", gt=0)
    low: float = spec(0.5, doc="uniform: smallest value", gt=0)
    high: float = spec(1.0, doc="uniform: largest value", gt=0)
    sigma: float = spec(0.5, doc="lognormal: standard deviation of the log", min=0)


@schema
class AvailabilitySpec:
    """When clients are online: each client is online for a fraction (drawn per client) of every
    `period`, starting at a random phase; a client that goes offline before its upload drops out."""

    period: float = spec("60 s", doc="length of one availability cycle", unit="time", gt=0)
    online: DistSpec = spec(DistSpec, doc="fraction of each period a client is online (1: always)")


@schema
class ClientsSpec:
    """The K clients' devices: a base hardware (changes merged onto `hardware`) scaled per client by
    factors drawn from distributions."""

    hardware: HardwareSpec | None = spec(None, doc="the clients' base hardware: changes merged onto hardware")
    speed: DistSpec = spec(DistSpec, doc="factor on the clocks of the systolic array and vector unit")
    memory: DistSpec = spec(DistSpec, doc="factor on the capacity of every memory bank")
    bandwidth: DistSpec = spec(DistSpec, doc="factor on the NIC line rate")
    availability: AvailabilitySpec = spec(AvailabilitySpec, doc="online windows")


@schema
class PartitionSpec:
    """How the training data is split over the clients."""

    how: str = spec(
        "iid", doc="iid, dirichlet (per class shares ~ Dirichlet(alpha)) or shards", choices=("iid", "dirichlet", "shards")
    )
    alpha: float = spec(0.5, doc="dirichlet: concentration (small: few classes per client)", gt=0)
    shards: int = spec(2, doc="shards: label-sorted shards per client", min=1)


@schema
class SelectionSpec:
    """Which available clients train each round."""

    policy: str = spec(
        "random", doc="random; fast (over-commit, prefer fast clients); or a registered / 'file.py:function' policy"
    )
    overcommit: float = spec(
        0.0, doc="select this fraction more than per_round; the round closes when per_round have reported", min=0
    )


@schema
class ReductionSpec:
    """The reduced-size model the server sends: quantized with `codec`, and only `train` layers trained."""

    codec: Any = spec(
        None, doc="codec of the model sent, stored on the client and sent back: a name (int8), a mapping, or null for fp32"
    )
    policy: str = spec(
        "subset", doc="subset: train the `train` layers every round; rotate: one layer per round in turn; or 'file.py:function'"
    )
    train: tuple[str, ...] | None = spec(None, doc="subset: names of the layers clients train (null: every layer)")
    frozen: str = spec(
        "send",
        doc="layers not trained: send (with the codec) or seed (never sent: clients rebuild them from the model seed)",
        choices=("send", "seed"),
    )


@schema
class DeadlineSpec:
    """When the server stops waiting for a round's updates."""

    policy: str = spec(
        "none",
        doc="none: wait for every selected client; fixed: `seconds` after the round starts; quantile; or 'file.py:function'",
    )
    seconds: float = spec("10 s", doc="fixed: the deadline after the round starts", unit="time", gt=0)
    quantile: float = spec(
        0.8, doc="quantile: this quantile of the selected clients' estimated times, times (1 + slack)", gt=0, max=1
    )
    slack: float = spec(0.2, doc="quantile: extra margin on the estimate", min=0)
    late: str = spec(
        "drop",
        doc="updates after the deadline: drop, or buffer them into the next aggregation (asynchronous)",
        choices=("drop", "buffer"),
    )


@schema
class FederatedSpec:
    """Federated learning (mechanisms M5 and M6): a server and K clients; each round the server
    selects clients, sends them a reduced-size model, they train it locally and send it back, and
    the server aggregates with FedAvg weights. Clients keep the model compressed and decompress it
    up front or layer by layer, on the fly.
    """

    kind: str = spec("federated", doc="system", choices=("federated",))
    clients: int = spec(100, doc="clients K", min=1)
    per_round: int = spec(10, doc="clients C whose updates each round aggregates", min=1)
    rounds: int = spec(30, doc="rounds", min=1)
    epochs: int = spec(1, doc="local epochs E over a client's data per round", min=1)
    batch: int = spec(16, doc="samples per local step", min=1)
    lr: float = spec(0.05, doc="learning rate of local SGD", gt=0)
    partition: PartitionSpec = spec(PartitionSpec, doc="how the data is split over clients")
    selection: SelectionSpec = spec(SelectionSpec, doc="client selection")
    reduction: ReductionSpec = spec(ReductionSpec, doc="the reduced-size model sent to clients")
    uplink: Any = spec(
        None,
        doc="codec of the update each client sends (its trained layers minus what it received): a name (eden), "
        "a mapping {name: eden, bits: 2}; null: send the trained layers as stored (with the reduction codec)",
    )
    error_feedback: bool = spec(
        False, doc="with an uplink codec: each client adds what the codec lost in its last upload of a layer to the next"
    )
    aggregation: str = spec(
        "fedavg", doc="fedavg (weights by samples, late updates by samples / (1 + staleness)), or 'file.py:function'"
    )
    deadline: DeadlineSpec = spec(DeadlineSpec, doc="the round deadline and what happens to late updates")
    decompression: str = spec(
        "upfront",
        doc="upfront: decompress every layer before a step; on_the_fly: each layer just before it is used, freed right after",
        choices=("upfront", "on_the_fly"),
    )
    client_hardware: ClientsSpec = spec(ClientsSpec, doc="the clients' devices and availability")
    server_hardware: HardwareSpec | None = spec(None, doc="the server's hardware: changes merged onto hardware")
    param_bank: str = spec("params", doc="client bank that keeps the compressed model")
    work_bank: str = spec("working", doc="client bank for decompressed layers and activations (fp32)")
    compute_precision: str = spec("fp32", doc="precision of the GEMMs", choices=PRECISIONS)


@schema
class DataParallelSpec:
    """Data parallelism: every NPU holds a replica; each step runs forward and backward, and each
    layer's gradient is all-reduced over the replicas as soon as its backward is done, overlapped
    with the backward of the layers before it; the optimizer runs after the last all-reduce."""

    kind: str = spec("data_parallel", doc="system", choices=("data_parallel",))
    replicas: int = spec(8, doc="replicas, one per NPU (NPUs 0 to replicas - 1)", min=1)
    steps: int = spec(1, doc="training steps", min=1)
    batch: int = spec(1, doc="samples per step on each replica", min=1)
    optimizer: float = spec(
        "0 s", doc="optimizer time after the last all-reduce (an mlp adds its SGD on the vector unit)", unit="time", min=0
    )
    lr: float = spec(0.05, doc="learning rate (mlp)", gt=0)
    momentum: float = spec(0.9, doc="SGD momentum (mlp)", min=0, max=0.999)
    bank: str = spec("working", doc="bank for weights, gradients and activations (mlp)")
    compute_precision: str = spec("fp32", doc="precision of the GEMMs (mlp)", choices=PRECISIONS)
    collective: CollectiveSpec = spec(CollectiveSpec, doc="the gradient all-reduce")
    mode: str = spec(
        "exact",
        doc="exact: every replica and transfer simulated; symmetric: replica 0 alone, its partners mirrored "
        "(identical replicas on a symmetric switch fabric; ring, direct or halving_doubling); lockstep: every "
        "replica, each all-reduce round's messages moved together (timing-only; ring, direct or halving_doubling)",
        choices=("exact", "symmetric", "lockstep"),
    )


@schema
class ParallelSpec:
    """Megatron's 3D layout: tensor t, pipeline p and data d ranks (t p d NPUs), and where they sit."""

    tensor: int = spec(1, doc="tensor-parallel ranks t (each block's GEMMs split over them)", min=1)
    pipeline: int = spec(1, doc="pipeline stages' devices p", min=1)
    data: int = spec(1, doc="data-parallel replicas d", min=1)
    virtual: int = spec(1, doc="model chunks per pipeline device v (interleaved 1F1B when above 1)", min=1)
    sequence: bool = spec(False, doc="sequence parallelism: all-gather / reduce-scatter, layer norms and dropouts split by t")
    order: str = spec(
        "tpd",
        doc="placement: the axes from fastest-varying NPU index to slowest (tpd: tensor groups on adjacent NPUs, "
        "so in a fabric's first dimension)",
        choices=("tpd", "tdp", "ptd", "pdt", "dtp", "dpt"),
    )


@schema
class MegatronSpec:
    """Megatron-style training in 3D (tensor, pipeline, data parallelism): a transformer, timing-only, or an
    mlp with the real math (tensor and data parallelism).

    Each block's GEMMs run on the arithmetic unit's cycle model, element-wise work on the
    memory roofline, tensor-parallel collectives on the fabric; the pipeline runs 1F1B
    (interleaved with v > 1); then the data-parallel gradient reduction and the optimizer.
    An mlp's layers pair up as column- and row-split layers with real all-reduces.
    """

    kind: str = spec("megatron", doc="system", choices=("megatron",))
    parallel: ParallelSpec = spec(ParallelSpec, doc="the 3D layout")
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
        "reduce-scattered, Adam state sharded over d, parameters all-gathered",
        choices=("allreduce", "distributed"),
    )
    precision: str = spec(
        "bf16", doc="compute precision (fp32 master weights, gradients and Adam state)", choices=("bf16", "fp16")
    )
    steps: int = spec(1, doc="training steps", min=1)
    bank: str = spec("hbm", doc="bank that holds weights, gradients, optimizer state and activations")
    lr: float = spec(0.05, doc="learning rate (an mlp's SGD + momentum)", gt=0)
    momentum: float = spec(0.9, doc="SGD momentum (mlp)", min=0, max=0.999)


SystemSpec = SingleDeviceSpec | CompressedPsSpec | PipelineSpec | OnlineSpec | FederatedSpec | DataParallelSpec | MegatronSpec


# --- run and report -----------------------------------------------------------------


@schema
class RunSpec:
    """How to run: with the real math, or timing only."""

    mode: str = spec("full", doc="'full' runs the math; 'timing-only' only the cycle model", choices=("full", "timing-only"))
    eval_every: int = spec(20, doc="steps between evaluations of loss and test accuracy", min=1)
    test_fraction: float = spec(0.25, doc="share of the dataset held out for testing", gt=0, max=0.9)
    target_accuracy: float | None = spec(
        None, doc="test accuracy whose first crossing gives the time-to-accuracy (null: not measured)", gt=0, max=1
    )


@schema
class ReportSpec:
    """What the report folder holds."""

    out: str = spec("reports", doc="root folder of reports; a run writes to <out>/<scenario>/<run-id>/")
    plots: bool = spec(True, doc="write PNG plots")
    trace: bool = spec(True, doc="write trace.json (Chrome/Perfetto)")
    html: bool = spec(True, doc="write a self-contained report.html")
    zoom_steps: int = spec(2, doc="steps shown in the zoomed timeline", min=1)


@schema
class Scenario:
    """A scenario file: hardware, a model, a system that trains it, and how to run and report."""

    name: str = spec(doc="scenario name (names the report folder)")
    description: str = spec("", doc="one line on what this scenario shows")
    seed: int = spec(0, doc="seed of every random stream in the run", min=0)
    hardware: HardwareSpec = spec(doc="a preset name, a path, or a mapping (with optional 'base')")
    model: ModelSpec = spec(doc="a model name from models/, a path, or a mapping (with optional 'base')")
    system: SystemSpec = spec(doc="the training system and its settings")
    run: RunSpec = spec(RunSpec, doc="run settings")
    report: ReportSpec = spec(ReportSpec, doc="report settings")
