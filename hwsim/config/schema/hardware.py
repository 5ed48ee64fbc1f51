"""One device (`hardware`): the systolic array, the vector unit, memory banks, the NIC, and the fabric."""

from __future__ import annotations

from hwsim.config.fields import spec
from hwsim.config.schema.common import BANK_PRECISIONS, DATAFLOWS, schema
from hwsim.config.schema.network import NetworkSpec


@schema
class MacsSpec:
    """Multiply-accumulates one processing element completes per cycle, per operand precision."""

    fp32: int = spec(1, doc="MACs per PE per cycle at fp32", min=1)
    bf16: int = spec(2, doc="MACs per PE per cycle at bf16", min=1)
    fp16: int = spec(2, doc="MACs per PE per cycle at fp16", min=1)
    int8: int = spec(4, doc="MACs per PE per cycle at int8", min=1)
    int4: int = spec(8, doc="MACs per PE per cycle at int4", min=1)
    fp8: int | None = spec(None, doc="MACs per PE per cycle at fp8 (e4m3 and e5m2); null: no fp8 tensor cores", min=1)


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
    tile: tuple[int, ...] = spec(
        (128, 128), doc="[rows, cols] of the output tile one group of per_tile arrays computes", min=1, length=2
    )
    boost_clock: float | None = spec(
        None, doc="the clock of the datasheet's peak, which MFU and HFU are quoted against (null: clock)", unit="frequency", gt=0
    )
    fp8_efficiency: float = spec(
        1.0,
        doc="the fraction of `efficiency` an fp8 GEMM reaches (its scaling and the accumulation's promotion cost "
        "issue slots): measured fp8 throughput over the tile model's on the same shapes",
        gt=0,
        max=1,
    )
    attention_efficiency: float = spec(
        1.0,
        doc="the fraction of the arrays' GEMM rate a fused attention kernel reaches on its GEMMs (the softmax between "
        "them on chip): measured attention throughput over the tile model's on the same shapes",
        gt=0,
        max=1,
    )
    efficiency: float = spec(
        1.0,
        doc="the fraction of cycles on which the arrays issue MACs in a GEMM's steady state (the rest are operand "
        "stalls): 1 every cycle; a GPU preset takes it from a measured maximum achievable matmul throughput",
        gt=0,
        max=1,
    )
    launch: float = spec(
        "0 s",
        doc="fixed time each GEMM call takes beyond its cycles (a kernel launch, a framework's dispatch; `hwsim "
        "calibrate` measures it): systems that run ops one by one pay it per GEMM",
        unit="time",
        min=0,
    )


@schema
class VectorSpec:
    """A SIMD vector unit for element-wise work (quantize, dequantize, activations, optimizer)."""

    lanes: int = spec(doc="elements processed per cycle", min=1)
    clock: float = spec(doc="clock of the vector unit", unit="frequency", gt=0)
    launch: float = spec(
        "0 s", doc="fixed time each element-wise op takes beyond its cycles (as systolic.launch)", unit="time", min=0
    )


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


@schema
class MacEnergySpec:
    """Energy of one multiply-accumulate on the arrays, per operand precision."""

    fp32: float = spec(doc="energy of an fp32 MAC", unit="energy", min=0)
    bf16: float = spec(doc="energy of a bf16 MAC", unit="energy", min=0)
    fp16: float = spec(doc="energy of an fp16 MAC", unit="energy", min=0)
    int8: float = spec(doc="energy of an int8 MAC", unit="energy", min=0)
    int4: float = spec(doc="energy of an int4 MAC", unit="energy", min=0)
    fp8: float | None = spec(
        None, doc="energy of an fp8 MAC (null: half a bf16 one, the same power per cycle at twice the rate)", unit="energy", min=0
    )


@schema
class EnergySpec:
    """What a device's work costs in energy, and what it draws doing nothing: each unit's energy per
    operation (dynamic), the board's idle (static) power, and its power cap."""

    mac: MacEnergySpec = spec(doc="per MAC of the arrays, by precision")
    vector: float = spec(doc="per FLOP of the vector unit", unit="energy", min=0)
    memory: dict[str, float] = spec(doc="per byte each bank moves, by bank name", unit="energy_per_byte", min=0)
    l2: float = spec(
        "0 J/B",
        doc="per byte a GEMM's tiles read from the L2 cache (arrays > 1: the tile model's traffic, `tile_traffic`)",
        unit="energy_per_byte",
        min=0,
    )
    l1: float = spec(
        "0 J/B",
        doc="per byte through L1/shared memory: a tile's operands written in from L2 and read by each array",
        unit="energy_per_byte",
        min=0,
    )
    network: float = spec(
        "0 J/B", doc="per byte the device sends over the fabric (its NIC, links and switches)", unit="energy_per_byte", min=0
    )
    static: float = spec(doc="the board's power when idle", unit="power", min=0)
    cap: float | None = spec(
        None,
        doc="the board's power limit (TDP): each GEMM draws at most this (the power limiter), and a device averaging more is reported over it",
        unit="power",
        gt=0,
    )


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
    energy: EnergySpec | None = spec(None, doc="energy per operation, idle power and power cap (null: no energy model)")
