"""The pipeline system (`system.kind: pipeline`) and its bubble filling (`system.fill`)."""

from __future__ import annotations

from hwsim.config.fields import spec
from hwsim.config.schema.common import PRECISIONS, schema
from hwsim.config.schema.model import ModelSpec


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
