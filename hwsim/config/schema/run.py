"""How to run and what to report (`run`, `report`)."""

from __future__ import annotations

from hwsim.config.fields import spec
from hwsim.config.schema.common import schema


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
