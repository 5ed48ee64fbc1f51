"""Several jobs on one cluster (`system.kind: jobs`): each its own model and system, placed on the fabric's NPUs
by a policy, started as they arrive when there is room."""

from __future__ import annotations

from hwsim.config.fields import spec
from hwsim.config.schema.common import schema
from hwsim.config.schema.megatron import MegatronSpec
from hwsim.config.schema.model import ModelSpec
from hwsim.config.schema.pipeline import PipelineSpec
from hwsim.config.schema.systems import DataParallelSpec, ReplaySpec

PLACEMENTS = ("packed", "spread", "topology")
"""The built-in placement policies (`hwsim.systems.jobs.placement`); `file.py:function` names one of your own."""


@schema
class JobSpec:
    """One job of the cluster: its system (and model) as a scenario of its own would give them, its arrival time,
    and where it runs (null: where the placement policy puts it)."""

    name: str = spec(doc="the job's name (prefixes its devices, metrics and collectives)")
    system: DataParallelSpec | PipelineSpec | MegatronSpec | ReplaySpec = spec(
        doc="the job's system, as a scenario's `system`: data_parallel, pipeline or replay"
    )
    model: ModelSpec | None = spec(None, doc="the job's model: a name, a path or a mapping; null: the scenario's model")
    start: float = spec(
        "0 s", doc="when the job arrives; it starts then, or once the scheduler finds it room", unit="time", min=0
    )
    place: tuple[int, ...] | None = spec(
        None, doc="the NPUs the job runs on, rank by rank (null: the placement policy's choice when it starts)"
    )


@schema
class JobsSpec:
    """Jobs that share one fabric (its links under its sharing model) and nothing else: each on NPUs of its own,
    placed by `placement` when it starts; a job that does not fit waits in the `scheduler`'s queue. Each job is
    also run alone on the same NPUs (`alone`), so the report gives its slowdown in the mix."""

    kind: str = spec("jobs", doc="system", choices=("jobs",))
    jobs: tuple[JobSpec, ...] = spec(doc="the jobs, each a name, a system, a model, an arrival time and an optional place")
    placement: str = spec(
        "packed",
        doc="where a job goes: packed (the lowest free NPUs), spread (round robin over the fabric's nodes: leaves, "
        "switches or a dims fabric's first dimension), topology (the fewest nodes: a node that holds the whole "
        "job, the fullest that does; else whole free nodes first), or file.py:function (your own: "
        "function(free, size, nodes) returns the job's NPUs)",
    )
    scheduler: str = spec(
        "fifo",
        doc="when the free NPUs are too few: fifo (jobs start in arrival order; a job that does not fit holds up "
        "those behind it), backfill (a later job that fits starts ahead of one that waits) or none (every job "
        "starts on arrival; a job that does not fit is an error)",
        choices=("fifo", "backfill", "none"),
    )
    alone: bool = spec(True, doc="also run each job alone on its NPUs, for its slowdown in the mix")
