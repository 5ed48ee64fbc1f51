"""Federated learning (`system.kind: federated`): clients, partition, selection, reduction, deadline."""

from __future__ import annotations

from typing import Any

from hwsim.config.fields import spec
from hwsim.config.schema.common import PRECISIONS, schema
from hwsim.config.schema.hardware import HardwareSpec


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
