"""Pipeline schedules as data: per device, the ordered list of forward and backward ops.

A model is cut into S = p v stages over p devices (v stages per device). Stage s runs
on device `shape.device(s)`: s // v with contiguous placement, s mod p with looping
(modular) placement. `Op("F", s, j)` is the forward of stage s for micro-batch j,
`Op("B", s, j)` its backward. A schedule only fixes the order of ops on each device;
an op starts when its device has finished the previous op and its inputs are there
(see `timing.execute`).

Every builder has one signature, `builder(shape) -> list[list[Op]]`, and is
registered by name with `register_schedule`, so a user can add a schedule and run
`hwsim validate` on it. A registration may carry the schedule's closed-form
makespan and its peak of micro-batch activations per device, which the validator
checks where they exist.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hwsim.policies.plugins import resolve

PLACEMENTS = ("contiguous", "looping")


class ScheduleError(ValueError):
    """A schedule that cannot be built for a shape (the message says why)."""


@dataclass(frozen=True, order=True)
class Op:
    """The forward ("F") or backward ("B") of stage `stage` for micro-batch `mb`."""

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
    group: int = 0  # micro-batches per group (hybrid; 0: the schedule's default)

    def __post_init__(self):
        for name in ("devices", "stages_per_device", "microbatches"):
            if getattr(self, name) < 1:
                raise ScheduleError(f"{name} must be at least 1, got {getattr(self, name)}")
        if self.placement not in PLACEMENTS:
            raise ScheduleError(f"placement must be one of {', '.join(PLACEMENTS)}, got {self.placement!r}")

    @property
    def stages(self) -> int:
        return self.devices * self.stages_per_device

    def device(self, stage: int) -> int:
        """The device that runs `stage`."""
        if self.placement == "looping":
            return stage % self.devices
        return stage // self.stages_per_device

    def stages_of(self, device: int) -> list[int]:
        """The stages on `device`, in model order."""
        return [s for s in range(self.stages) if self.device(s) == device]


Schedule = list[list[Op]]
Builder = Callable[[Shape], Schedule]
ClosedForm = Callable[[Shape, float, float], float | None]
"""makespan(shape, t_f, t_b), or None where the form does not apply; t_f and t_b are one device's
forward and backward time for one micro-batch (all its stages) with free communication."""
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
    breadth_first_group: Callable[[Shape], int] | None = None
    """Micro-batches per breadth-first group, for the validator's ordering check (None: not breadth-first)."""
    about: str = ""


SCHEDULES: dict[str, ScheduleKind] = {}


def register_schedule(
    name: str,
    placement: str | None = None,
    closed_form: ClosedForm | None = None,
    peak_activations: PeakActivations | None = None,
    breadth_first_group: Callable[[Shape], int] | None = None,
) -> Callable[[Builder], Builder]:
    """Decorator: register `builder(shape) -> list[list[Op]]` under `name`."""

    def add(builder: Builder) -> Builder:
        about = (builder.__doc__ or "").strip().splitlines()[0] if builder.__doc__ else ""
        SCHEDULES[name] = ScheduleKind(name, builder, placement, closed_form, peak_activations, breadth_first_group, about)
        return builder

    return add


def resolve_schedule(name: str) -> ScheduleKind:
    """The registered schedule `name`, or a builder named `module:function` or `path/file.py:function`
    (relative to the working directory), which is registered under that name on first use."""
    return resolve(name, SCHEDULES, "schedule", ScheduleError, lambda name, builder: register_schedule(name)(builder))


def build_schedule(name: str, shape: Shape) -> Schedule:
    """The schedule `name` for `shape`; raises ScheduleError for an unknown name or an unfit shape."""
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
    return [list(ops) for ops in schedule]


# --- the builders ---------------------------------------------------------------------


def _forward(shape: Shape, device: int, mb: int) -> list[Op]:
    """Forwards of micro-batch `mb` through every stage of `device`, in model order."""
    return [Op("F", s, mb) for s in shape.stages_of(device)]


def _backward(shape: Shape, device: int, mb: int) -> list[Op]:
    return [Op("B", s, mb) for s in reversed(shape.stages_of(device))]


def _uniform_makespan(shape: Shape, tf: float, tb: float) -> float | None:
    if shape.placement == "looping" and shape.stages_per_device > 1:
        return None  # a device's stages are not back to back for one micro-batch
    return (shape.microbatches + shape.devices - 1) * (tf + tb)


@register_schedule("gpipe", closed_form=_uniform_makespan, peak_activations=lambda shape, d: shape.microbatches)
def gpipe(shape: Shape) -> Schedule:
    """GPipe: every micro-batch forward, then every micro-batch backward (Huang et al., 2019)."""
    out = []
    for d in range(shape.devices):
        ops = [op for j in range(shape.microbatches) for op in _forward(shape, d, j)]
        ops += [op for j in range(shape.microbatches) for op in _backward(shape, d, j)]
        out.append(ops)
    return out


@register_schedule(
    "1f1b",
    placement="contiguous",
    closed_form=_uniform_makespan,
    peak_activations=lambda shape, d: min(shape.devices - d, shape.microbatches),
)
def one_f_one_b(shape: Shape) -> Schedule:
    """1F1B: p - d - 1 warm-up forwards on device d, then one forward, one backward, then the cool-down (PipeDream-Flush)."""
    out = []
    p, m = shape.devices, shape.microbatches
    for d in range(p):
        warmup = min(p - d - 1, m)
        ops = [op for j in range(warmup) for op in _forward(shape, d, j)]
        for i in range(m - warmup):
            ops += _forward(shape, d, warmup + i) + _backward(shape, d, i)
        ops += [op for j in range(m - warmup, m) for op in _backward(shape, d, j)]
        out.append(ops)
    return out


def _grouped(shape: Shape, group: int) -> Schedule:
    """Looping placement, micro-batches in groups of `group`: each group goes through a device's
    stages breadth-first (every micro-batch of the group at one stage, then the next stage), and
    forwards and backwards alternate one-for-one after a warm-up of (v - 1) group + 2 (p - d - 1)
    forwards (Megatron-LM's interleaved order when group = p)."""
    p, v, m = shape.devices, shape.stages_per_device, shape.microbatches
    groups = [range(start, min(start + group, m)) for start in range(0, m, group)]
    out = []
    for d in range(p):
        stages = shape.stages_of(d)
        fwd = [Op("F", s, j) for g in groups for s in stages for j in g]
        bwd = [Op("B", s, j) for g in groups for s in reversed(stages) for j in g]
        warmup = min((v - 1) * group + 2 * (p - d - 1), len(fwd))
        ops = fwd[:warmup]
        for i in range(len(fwd) - warmup):
            ops += [fwd[warmup + i], bwd[i]]
        ops += bwd[len(fwd) - warmup :]
        out.append(ops)
    return out


def _check_interleaved(shape: Shape) -> None:
    if shape.microbatches % shape.devices:
        raise ScheduleError(
            f"interleaved 1F1B needs micro-batches ({shape.microbatches}) to be a multiple of the devices ({shape.devices})"
        )


@register_schedule(
    "interleaved",
    placement="looping",
    closed_form=lambda shape, tf, tb: shape.microbatches * (tf + tb) + (shape.devices - 1) * (tf + tb) / shape.stages_per_device,
)
def interleaved(shape: Shape) -> Schedule:
    """Interleaved 1F1B: v stages per device in a loop, micro-batches in groups of p (Narayanan et al., 2021)."""
    _check_interleaved(shape)
    return _grouped(shape, shape.devices)


def _breadth_first_makespan(shape: Shape, tf: float, tb: float) -> float:
    p, v, m = shape.devices, shape.stages_per_device, shape.microbatches
    return m * (tf + tb) + (p - 1) * (tf + tb) / v + (v - 1) * max(0, p - m) * (tf + tb) / v


@register_schedule(
    "breadth_first",
    placement="looping",
    closed_form=_breadth_first_makespan,
    peak_activations=lambda shape, d: shape.microbatches,
    breadth_first_group=lambda shape: shape.microbatches,
)
def breadth_first(shape: Shape) -> Schedule:
    """Breadth-first (layered gradient accumulation): each stage's forwards of every micro-batch, then backwards from the last stage down."""
    out = []
    for d in range(shape.devices):
        stages = shape.stages_of(d)
        ops = [Op("F", s, j) for s in stages for j in range(shape.microbatches)]
        ops += [Op("B", s, j) for s in reversed(stages) for j in range(shape.microbatches)]
        out.append(ops)
    return out


def _hybrid_group(shape: Shape) -> int:
    return min(shape.group or shape.devices, shape.microbatches)


@register_schedule("hybrid", placement="looping", breadth_first_group=_hybrid_group)
def hybrid(shape: Shape) -> Schedule:
    """Hybrid: groups of `group` micro-batches run breadth-first, the groups one-forward-one-backward (depth-first)."""
    group, p, m = _hybrid_group(shape), shape.devices, shape.microbatches
    if group < m and (group < p or m % group):
        raise ScheduleError(
            f"hybrid needs a group of micro-batches that is at least the devices ({p}) and divides the "
            f"micro-batches ({m}), or one group of all {m}; got group {shape.group or p}"
        )
    return _grouped(shape, group)
