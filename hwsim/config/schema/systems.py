"""Systems that train locally (`system.kind`: single_device, compressed_ps) and data parallelism; the collective settings."""

from __future__ import annotations

from typing import Any

from hwsim.config.fields import spec
from hwsim.config.schema.common import PRECISIONS, schema
from hwsim.config.schema.hardware import HardwareSpec


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
    reduction_bandwidth: float | None = spec(
        None,
        doc="the local-memory rate a rank reduces a received chunk at: it reads both operands and writes the sum (3 x "
        "the chunk's bytes) from the chunk's arrival; a rank's reductions overlap, and its next send waits for them "
        "(ASTRA-sim's local-mem-bw); null: reductions take no time beyond the vector unit's (real-math runs)",
        unit="rate",
        gt=0,
    )

    @property
    def reduction_rate(self) -> float:
        """`reduction_bandwidth` in bytes/s, 0 for none (what `collectives.collective` takes)."""
        return self.reduction_bandwidth or 0.0


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
class StragglersSpec:
    """Replicas that compute slower than the rest: their forward, backward and optimizer take `slowdown` times as
    long (a given time multiplied, a GEMM or vector op on arrays at 1/slowdown of the clock)."""

    replicas: tuple[int, ...] = spec((), doc="the slow replicas by index")
    fraction: float = spec(
        0.0, doc="or this fraction of the replicas (at least one), drawn with the scenario's seed", min=0, max=1
    )
    slowdown: float = spec(doc="how many times as long their compute takes (1.3: 30 % slower)", min=1)


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
    stragglers: StragglersSpec | None = spec(None, doc="replicas that compute slower (null: none)")
    mode: str = spec(
        "exact",
        doc="exact: every replica and transfer simulated; symmetric: one replica per compute class (the healthy, the "
        "stragglers) alone, its partners mirrored (a symmetric switch fabric; ring, direct or halving_doubling); "
        "lockstep: every replica, each all-reduce round's messages moved together (timing-only; ring, direct or "
        "halving_doubling); compiled: every transfer as exact, in a compiled event loop, one replica's compute per "
        "compute class (timing-only, no codec or failing cables)",
        choices=("exact", "symmetric", "lockstep", "compiled"),
    )


@schema
class ReplaySpec:
    """A recorded workload replayed (model kind chakra): each NPU runs its trace's nodes as their dependencies
    allow, one compute node at a time on its arithmetic unit (a CPU node on its host), one collective or send at
    a time (or one per stream, `streams`); collectives on the fabric with `collective`'s algorithm (the k-th
    collective of a process group's NPUs together), sends and receives as messages, memory nodes on the bank."""

    kind: str = spec("replay", doc="system", choices=("replay",))
    iterations: int = spec(1, doc="times the traces run, one after another (each an iteration: a step)", min=1)
    compute: str = spec(
        "recorded",
        doc="a compute node's time: recorded (its duration_micros), roofline (its num_ops at the arrays' peak or "
        "tensor_size at the bank's rate, whichever is slower: ASTRA-sim's roofline mode with this hardware) or "
        "cycle_model (a GEMM a torch trace identifies on this hardware's arrays, the rest as recorded)",
        choices=("recorded", "roofline", "cycle_model"),
    )
    bank: str | None = spec(None, doc="the bank memory nodes and the roofline use (null: the hardware's first)")
    collective: CollectiveSpec = spec(CollectiveSpec, doc="how the traces' collectives run")
    streams: str = spec(
        "one",
        doc="an NPU's communication: one (one collective or send at a time, ASTRA-sim's HardwareResource) or group "
        "(one at a time per process group, sends and receives on a stream of their own: NCCL's communicators, each "
        "on its own CUDA stream)",
        choices=("one", "group"),
    )
    mode: str = spec(
        "exact",
        doc="exact: every NPU's trace simulated; symmetric: NPU 0's alone, its partners mirrored (every trace the "
        "same, no sends or receives, a symmetric switch fabric; ring, direct or halving_doubling)",
        choices=("exact", "symmetric"),
    )
