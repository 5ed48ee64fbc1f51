"""Pipeline schedules as data: per device, the ordered list of forward and backward ops.

A model is cut into S = p v stages over p devices (v stages per device). Stage s runs
on device `shape.device(s)`: s // v with contiguous placement, s mod p with looping
(modular) placement, and with the V-shape placement (v = 2) s for the first p stages
and 2p - 1 - s for the next p (down the devices and back up). `Op("F", s, j)` is the forward of stage s for micro-batch j,
`Op("B", s, j)` its backward. A schedule with a split backward (zero-bubble schedules)
also has `Op("W", s, j)`: B is then the input gradient alone (what stage s - 1
waits for) and W the weight gradient, which needs only its B and can be deferred.
A schedule without W ops keeps them fused: its B does both. A schedule only fixes
the order of ops on each device; an op starts when its device has finished the
previous op and its inputs are there (see `timing.execute`).

Every builder has one signature, `builder(shape) -> list[list[Op]]`, and is
registered by name with `register_schedule`, so a user can add a schedule and run
`hwsim validate` on it. A registration may carry the schedule's closed-form
makespan, its bubble (the most idle time of any device between its own first and
last op) and its peak of micro-batch activations per device, which the validator
checks where they exist. Closed forms take t_f, t_b, t_w: one device's forward,
input-gradient and weight-gradient time for one micro-batch (all its stages); a
fused backward takes t_b + t_w.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable
from dataclasses import dataclass

from hwsim.policies.plugins import resolve

PLACEMENTS = ("contiguous", "looping", "vshape", "dual")


class ScheduleError(ValueError):
    """A schedule that cannot be built for a shape (the message says why)."""


@dataclass(frozen=True, order=True)
class Op:
    """The forward ("F"), backward ("B") or weight gradient ("W", split backward only) of stage
    `stage` for micro-batch `mb`."""

    kind: str
    stage: int
    mb: int

    def __str__(self) -> str:
        return f"{self.kind}{self.stage}.{self.mb}"


@dataclass(frozen=True)
class Shape:
    """p devices, v stages per device, m micro-batches, a placement, and a group size (hybrid)."""

    devices: int
    stages_per_device: int
    microbatches: int
    placement: str = "contiguous"
    group: int = 0  # micro-batches per group (interleaved, hybrid; 0: the devices p)
    reverse: bool = False  # gpipe, breadth_first: backwards in reverse micro-batch order

    def __post_init__(self):
        for name in ("devices", "stages_per_device", "microbatches"):
            if getattr(self, name) < 1:
                raise ScheduleError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.placement not in PLACEMENTS:
            raise ScheduleError(f"placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")
        if self.placement in ("vshape", "dual") and self.stages_per_device != 2:
            raise ScheduleError(f"{self.placement} placement must have 2 stages per device, got {self.stages_per_device}")

    @property
    def stages(self) -> int:
        return self.devices * self.stages_per_device

    def device(self, stage: int) -> int:
        """The device that runs `stage`."""
        if self.placement == "looping":
            return stage % self.devices
        if self.placement in ("vshape", "dual"):  # down the devices, then back up: s, then 2p - 1 - s
            return stage if stage < self.devices else 2 * self.devices - 1 - stage
        return stage // self.stages_per_device

    def stages_of(self, device: int) -> list[int]:
        """The stages on `device`, in model order."""
        return list(self._stages_by_device[device])

    @functools.cached_property
    def _stages_by_device(self) -> tuple[tuple[int, ...], ...]:
        by = [[] for _ in range(self.devices)]
        for s in range(self.stages):
            by[self.device(s)].append(s)
        return tuple(map(tuple, by))

    # With `dual` placement (DualPipe) the 2p stages are two pipelines over the same p model stages:
    # stages 0 .. p - 1 run model stages 0 .. p - 1 down the devices for the first half of the
    # micro-batches, stages p .. 2p - 1 run them again up the devices for the second half.

    @property
    def model_stages(self) -> int:
        """The model's stages (the parameters): p with dual placement, else every stage."""
        return self.devices if self.placement == "dual" else self.stages

    def model_stage(self, stage: int) -> int:
        """The model stage whose parameters `stage` runs."""
        return stage % self.devices if self.placement == "dual" else stage

    def first(self, stage: int) -> bool:
        """Whether `stage` reads the micro-batch (the first of its pipeline)."""
        return stage == 0 or (self.placement == "dual" and stage == self.devices)

    def last(self, stage: int) -> bool:
        """Whether `stage` computes the loss (the last of its pipeline)."""
        return stage == self.stages - 1 or (self.placement == "dual" and stage == self.devices - 1)

    def microbatches_of(self, stage: int) -> range:
        """The micro-batches that go through `stage`: all, or with dual placement its pipeline's half."""
        m = self.microbatches
        if self.placement != "dual":
            return range(m)
        return range(m // 2) if stage < self.devices else range(m // 2, m)


Schedule = list[list[Op]]
Builder = Callable[[Shape], Schedule]
ClosedForm = Callable[[Shape, float, float, float], float | None]
"""makespan(shape, t_f, t_b, t_w) (or the bubble), None where the form does not apply; t_f, t_b and
t_w are one device's forward, input-gradient and weight-gradient time for one micro-batch (all its
stages) with free communication (a fused backward takes t_b + t_w)."""
PeakActivations = Callable[[Shape, int], float]
"""peak(shape, device): micro-batches of activations the device holds at most at once."""


@dataclass(frozen=True)
class ScheduleKind:
    """A registered schedule: its builder, the placement it needs, and what is known of it in closed form."""

    name: str
    build: Builder
    placement: str | None  # required placement (None: either)
    closed_form: ClosedForm | None = None
    peak_activations: PeakActivations | None = None
    breadth_first_groups: Callable[[Shape], list[list[int]]] | None = None
    """The micro-batches of each breadth-first group, for the validator's ordering check (None: not breadth-first)."""
    about: str = ""
    bubble: ClosedForm | None = None
    """The most idle time of any device between its own first and last op (`timing.bubbles`)."""
    source: str = ""
    """Where the schedule and its formulas come from."""
    reverse: bool = False
    """Whether the builder honours `Shape.reverse` (backwards in reverse micro-batch order)."""


SCHEDULES: dict[str, ScheduleKind] = {}


def register_schedule(
    name: str,
    placement: str | None = None,
    closed_form: ClosedForm | None = None,
    peak_activations: PeakActivations | None = None,
    breadth_first_groups: Callable[[Shape], list[list[int]]] | None = None,
    bubble: ClosedForm | None = None,
    source: str = "",
    reverse: bool = False,
) -> Callable[[Builder], Builder]:
    """Decorator: register `builder(shape) -> list[list[Op]]` under `name`."""

    def add(builder: Builder) -> Builder:
        about = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        SCHEDULES[name] = ScheduleKind(
            name, builder, placement, closed_form, peak_activations, breadth_first_groups, about, bubble, source, reverse
        )
        return builder

    return add


def resolve_schedule(name: str) -> ScheduleKind:
    """The registered schedule `name`, or a builder named `module:function` or `path/file.py:function`
    (relative to the working directory), which is registered under that name on first use."""
    return resolve(name, SCHEDULES, "schedule", ScheduleError, lambda name, builder: register_schedule(name)(builder))


def build_schedule(name: str, shape: Shape) -> Schedule:
    """The schedule `name` for `shape`; raises ScheduleError for an unknown name or an unfit shape."""
    return [list(ops) for ops in _built(name, shape)]


@functools.lru_cache(maxsize=8)
def _built(name: str, shape: Shape) -> tuple[tuple[Op, ...], ...]:
    """A schedule built once per name and shape (a check and the run ask for the same one; a 1T model's
    has 65,536 ops)."""
    kind = resolve_schedule(name)
    if kind.placement is not None and shape.placement != kind.placement:
        raise ScheduleError(f"schedule {name!r} needs {kind.placement} placement, got {shape.placement}")
    try:
        schedule = kind.build(shape)
    except ScheduleError:
        raise
    except Exception as err:  # a user's builder failing is a result to report, not a crash
        raise ScheduleError(f"schedule {name!r} failed to build: {type(err).__name__}: {err}") from None
    if len(schedule) != shape.devices:
        raise ScheduleError(f"schedule {name!r} returned {len(schedule)} device lists for {shape.devices} devices")
    return tuple(tuple(ops) for ops in schedule)


# --- the builders ---------------------------------------------------------------------


def forwards_of(shape: Shape, device: int, mb: int) -> list[Op]:
    """Forwards of micro-batch `mb` through every stage of `device`, in model order."""
    return [Op("F", s, mb) for s in shape.stages_of(device)]


def backwards_of(shape: Shape, device: int, mb: int) -> list[Op]:
    return [Op("B", s, mb) for s in reversed(shape.stages_of(device))]


def is_split(schedule: Schedule) -> bool:
    """Whether the schedule splits its backwards into B and W ops."""
    return any(op.kind == "W" for ops in schedule for op in ops)


def _uniform_makespan(shape: Shape, tf: float, tb: float, tw: float) -> float | None:
    if shape.placement != "contiguous" and shape.stages_per_device > 1:
        return None  # a device's stages are not back to back for one micro-batch
    return (shape.microbatches + shape.devices - 1) * (tf + tb + tw)


def _idle(makespan: ClosedForm) -> ClosedForm:
    """The bubble of a schedule whose first device runs from the first op to the last: the makespan
    less its m micro-batches of work."""

    def bubble(shape: Shape, tf: float, tb: float, tw: float) -> float | None:
        span = makespan(shape, tf, tb, tw)
        return None if span is None else span - shape.microbatches * (tf + tb + tw)

    return bubble


def _backward_order(shape: Shape) -> range:
    """The micro-batches in the order a gpipe or breadth-first device runs their backwards."""
    m = shape.microbatches
    return range(m - 1, -1, -1) if shape.reverse else range(m)


@register_schedule(
    "gpipe",
    closed_form=_uniform_makespan,
    bubble=_idle(_uniform_makespan),
    peak_activations=lambda shape, d: shape.microbatches,
    source="Huang et al., GPipe, NeurIPS 2019; reverse: the backward order of PyTorch's ScheduleLoopedBFS",
    reverse=True,
)
def gpipe(shape: Shape) -> Schedule:
    """GPipe: every micro-batch forward, then every micro-batch backward (Huang et al., 2019)."""
    out = []
    for d in range(shape.devices):
        ops = [op for j in range(shape.microbatches) for op in forwards_of(shape, d, j)]
        ops += [op for j in _backward_order(shape) for op in backwards_of(shape, d, j)]
        out.append(ops)
    return out


@register_schedule(
    "1f1b",
    placement="contiguous",
    closed_form=_uniform_makespan,
    bubble=_idle(_uniform_makespan),
    peak_activations=lambda shape, d: min(shape.devices - d, shape.microbatches),
    source="Narayanan et al., PipeDream-2BW / PipeDream-Flush, ICML 2021",
)
def one_f_one_b(shape: Shape) -> Schedule:
    """1F1B: p - d - 1 warm-up forwards on device d, then one forward, one backward, then the cool-down (PipeDream-Flush)."""
    out = []
    p, m = shape.devices, shape.microbatches
    for d in range(p):
        warmup = min(p - d - 1, m)
        ops = [op for j in range(warmup) for op in forwards_of(shape, d, j)]
        for i in range(m - warmup):
            ops += forwards_of(shape, d, warmup + i) + backwards_of(shape, d, i)
        ops += [op for j in range(m - warmup, m) for op in backwards_of(shape, d, j)]
        out.append(ops)
    return out


def _megatron_groups(shape: Shape) -> list[range]:
    """Megatron-core's micro-batch groups of the interleaved schedule: N = `shape.group` (its
    `microbatch_group_size_per_vp_stage`, default p) consecutive micro-batches, the last group the
    rest; it refuses N outside [p, m] and a last group of fewer than p (dependency bubbles)."""
    p, m = shape.devices, shape.microbatches
    n = shape.group or p
    if not p <= n <= m:
        raise ScheduleError(
            f"interleaved needs a micro-batch group (`group`, 0: the devices) from the devices ({p}) to the "
            f"micro-batches ({m}), got {n}: with the default group, m must be a multiple of p"
        )
    if 0 < m % n < p:
        raise ScheduleError(
            f"interleaved needs micro-batches ({m}) to be a multiple of the group ({n}) or to leave a last group "
            f"of at least the devices ({p}), as Megatron-core does; got a last group of {m % n}"
        )
    return [range(start, min(start + n, m)) for start in range(0, m, n)]


def _interleaved_warmup(shape: Shape, device: int, extra: int = 0) -> int:
    """Megatron-core's warm-up forwards on `device` (plus `extra`: the first steady-state forward,
    which makes the peak of stage activations), at most every forward, v m."""
    p, v = shape.devices, shape.stages_per_device
    return min(2 * (p - device - 1) + (v - 1) * (shape.group or p) + extra, v * shape.microbatches)


def _interleaved_makespan(shape: Shape, tf: float, tb: float, tw: float) -> float | None:
    if (shape.group or shape.devices) != shape.devices:
        return None
    return (shape.microbatches + (shape.devices - 1) / shape.stages_per_device) * (tf + tb + tw)


@register_schedule(
    "interleaved",
    placement="looping",
    closed_form=_interleaved_makespan,
    bubble=_idle(_interleaved_makespan),
    peak_activations=lambda shape, d: _interleaved_warmup(shape, d, 1) / shape.stages_per_device,
    source="Narayanan et al., SC 2021; the order of Megatron-core's forward_backward_pipelining_with_interleaving",
)
def interleaved(shape: Shape) -> Schedule:
    """Interleaved 1F1B (Megatron-LM): v stages per device in a loop, micro-batches in groups of p (or `group`).

    Megatron-core's order (`megatron/core/pipeline_parallel/schedules.py`, since its tunable
    schedule of November 2024): each group goes through a device's stages in turn (every
    micro-batch of the group at one stage, then the next stage), backwards through the stages in
    reverse; device d runs min(2 (p - d - 1) + (v - 1) N, v m) forwards as warm-up, then one
    forward one backward, then the remaining backwards. With m = p and v > 1 the early devices
    warm up with every forward. (Before that change Megatron ran every forward as warm-up on
    every device whenever m = p.)
    """
    groups = _megatron_groups(shape)
    out = []
    for d in range(shape.devices):
        stages = shape.stages_of(d)
        fwd = [Op("F", s, j) for g in groups for s in stages for j in g]
        bwd = [Op("B", s, j) for g in groups for s in reversed(stages) for j in g]
        warmup = _interleaved_warmup(shape, d)
        ops = fwd[:warmup]
        for i in range(len(fwd) - warmup):
            ops += [fwd[warmup + i], bwd[i]]
        out.append(ops + bwd[len(fwd) - warmup :])
    return out


def _breadth_first_makespan(shape: Shape, tf: float, tb: float, tw: float) -> float:
    p, v, m, t = shape.devices, shape.stages_per_device, shape.microbatches, tf + tb + tw
    return m * t + (p - 1) * t / v + (v - 1) * max(0, p - m) * t / v


@register_schedule(
    "breadth_first",
    placement="looping",
    closed_form=_breadth_first_makespan,
    bubble=_idle(_breadth_first_makespan),
    peak_activations=lambda shape, d: shape.microbatches,
    breadth_first_groups=lambda shape: [list(range(shape.microbatches))],
    source="Lamy-Poirier, Breadth-First Pipeline Parallelism, MLSys 2023 (US12585929B2); reverse: PyTorch's ScheduleLoopedBFS",
    reverse=True,
)
def breadth_first(shape: Shape) -> Schedule:
    """Breadth-first (layered gradient accumulation): each stage's forwards of every micro-batch, then backwards from the last stage down."""
    out = []
    for d in range(shape.devices):
        stages = shape.stages_of(d)
        ops = [Op("F", s, j) for s in stages for j in range(shape.microbatches)]
        ops += [Op("B", s, j) for s in reversed(stages) for j in _backward_order(shape)]
        out.append(ops)
    return out


def _hybrid_groups(shape: Shape) -> list[list[int]]:
    """Fast-LLM's depth-first groups: `group` (breadth-first micro-batches, 0: p) per group, m / group
    groups, micro-batch b D + k in group k (strided)."""
    size, m = min(shape.group or shape.devices, shape.microbatches), shape.microbatches
    if m % size:
        raise ScheduleError(f"hybrid needs a group (`group`, 0: the devices) that divides the micro-batches ({m}), got {size}")
    depth = m // size
    return [[b * depth + k for b in range(size)] for k in range(depth)]


def _hybrid_makespan(shape: Shape, tf: float, tb: float, tw: float) -> float:
    groups = _hybrid_groups(shape)
    return len(groups) * _breadth_first_makespan(dataclasses.replace(shape, microbatches=len(groups[0])), tf, tb, tw)


@register_schedule(
    "hybrid",
    placement="looping",
    closed_form=_hybrid_makespan,
    bubble=_idle(_hybrid_makespan),
    peak_activations=lambda shape, d: len(_hybrid_groups(shape)[0]),
    breadth_first_groups=_hybrid_groups,
    source="Lamy-Poirier, Breadth-First Pipeline Parallelism, MLSys 2023 (US12585929B2); Fast-LLM's Schedule._create_steps",
)
def hybrid(shape: Shape) -> Schedule:
    """Fast-LLM's breadth-first schedule with depth-first groups: each group breadth-first, all its forwards and backwards before the next group.

    Fast-LLM (`fast_llm/engine/schedule/schedule.py`) lists, for each depth-first micro-batch k
    of D = m / group, every stage's forwards of the group's micro-batches b D + k (b < group), then
    every stage's backwards from the last stage down; a device runs its stages' steps (s mod p) in
    that order. So a group drains the pipeline before the next starts: peak activations are one
    group's, the bubble is paid once per group.
    """
    groups = _hybrid_groups(shape)
    out = []
    for d in range(shape.devices):
        stages = shape.stages_of(d)
        ops = []
        for group in groups:
            ops += [Op("F", s, j) for s in stages for j in group]
            ops += [Op("B", s, j) for s in reversed(stages) for j in group]
        out.append(ops)
    return out
