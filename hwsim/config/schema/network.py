"""The cluster's fabric (`hardware.network`): one switch, a ring, a torus, a fat tree, or dimensions."""

from __future__ import annotations

from hwsim.config.fields import spec
from hwsim.config.schema.common import schema

SHARING = ("flow", "ideal", "store_and_forward")
"""Link-sharing models of the fabric (see hwsim/network/sharing.py)."""


@schema
class LinkOverride:
    """Changes to the links of one NPU (every link that starts or ends at it): a slow NIC, say."""

    npu: int = spec(doc="the NPU's index", min=0)
    bandwidth: float | None = spec(None, doc="its links' bandwidth (null: unchanged)", unit="rate", gt=0)
    latency: float | None = spec(None, doc="its links' latency (null: unchanged)", unit="time", min=0)
    down: bool = spec(False, doc="the NPU is out: its links carry nothing, and routes go round it")
    dim: int | None = spec(None, doc="a dims fabric: only its links of this dimension (its scale-out NIC, say); null: all", min=0)


@schema
class LinkFailure:
    """A cable that fails while the run goes on: both directions of the link named, from `at` for `duration`."""

    link: str = spec(doc="a link as links.csv names it (leaf0->spine1, npu3.nic.up, ...); its reverse fails with it")
    at: float = spec(doc="when it goes down (simulated time)", unit="time", min=0)
    duration: float | None = spec(None, doc="how long it stays down (null: to the end of the run)", unit="time", gt=0)


@schema
class FabricSpec:
    """What every fabric has: the link-sharing model, per-NPU link changes and cables that fail mid-run."""

    model: str = spec(
        "flow",
        doc="flow: concurrent transfers share links max-min fairly, cut-through; ideal: no contention; "
        "store_and_forward: whole messages, FIFO per link, hop by hop",
        choices=SHARING,
    )
    overrides: tuple[LinkOverride, ...] = spec((), doc="links of single NPUs that differ (bandwidth, latency)")
    failures: tuple[LinkFailure, ...] = spec(
        (), doc="cables that go down mid-run (model flow): the flows on them stall, then on_failure decides"
    )
    on_failure: str = spec(
        "reroute",
        doc="what a stalled flow does: reroute (after reroute_delay, its bytes left go round the failed cables, on "
        "the shortest path left; new flows too) or abort (NCCL-like: it waits for the cable; still down after "
        "timeout, the run fails)",
        choices=("reroute", "abort"),
    )
    reroute_delay: float = spec(
        "0 s",
        doc="reroute: from a cable's failure to the flows' new routes (give your fabric's failover time)",
        unit="time",
        min=0,
    )
    timeout: float = spec(
        "10 min",
        doc="abort: how long a flow may stall before the run fails (PyTorch's default NCCL process-group timeout, "
        "torch.distributed.init_process_group: 10 minutes)",
        unit="time",
        gt=0,
    )


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
    efficiency_by_size: dict[str, float] | None = spec(
        None,
        doc="the fraction as it changes with a collective's buffer size, {size: fraction} (e.g. {1 MB: 0.2, 1 GB: "
        "0.77}; between sizes interpolated in log size, beyond them the nearest): what the 3D system's "
        "collectives run at; null: efficiency at every size",
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
