"""Online training (`system.kind: online`): the stream, delta selection, real-time and full updates."""

from __future__ import annotations

from typing import Any

from hwsim.config.fields import spec
from hwsim.config.schema.common import PRECISIONS, schema
from hwsim.config.schema.hardware import HardwareSpec


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
