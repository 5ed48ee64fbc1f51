"""Bubble filling (mechanism M2): place a second model instance into a pipeline's idle windows.

The first instance's idle windows come from its predicted op times
(`timing.idle_windows` of `timing.execute`), within one step: per device, the
(start, end) gaps between its forward and backward ops, in seconds from the step's
start. A filler places the second instance into them without delaying the first:

    filler(windows, job, headroom) -> Placement

- `job` is the second instance as the filler sees it (`Job`): its stages' forward,
  backward and update times, how long an activation or gradient takes to reach
  another device, and the bank bytes each stage and each micro-batch holds;
- `headroom[d]` is what the first instance leaves free in device d's bank at its
  predicted peak; the second instance's weights plus its activations held at any
  moment must fit in it, or the placement is not made;
- the `Placement` names each stage's device and every op's (device, start, end).
  Ops are `Op("F", s, j)`, `Op("B", s, j)` and `Op("U", s, -1)` (stage s's optimizer
  step, after its last backward). Ops are not preempted: each lies whole inside one
  window, after its inputs have arrived.

Micro-batches are placed whole, in order, while they fit (with the updates after
them); `Placement.microbatches` says how many did and `reason` why the next did not.
Fillers are registered by name (`register_filler`) or named `file.py:function`, so a
user can add their own; the built-in ones differ in where stages go and which window
an op takes:

- `first_fit`: stage s on device s (stages spread evenly when S != p), each op in
  the earliest window it fits (the baseline);
- `best_fit`: the same mapping, each op in the window it fills most tightly;
- `reverse`: stage s on device p - 1 - s, first fit. The first instance's first
  device is busy early and idle late, its last device the other way round, so a
  second instance running in the opposite direction meets their gaps in order;
- `best_mapping`: first fit for every rotation of both directions; keeps the one
  that places the most micro-batches, then the one that finishes earliest.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field

from hwsim.policies.pipeline import Op
from hwsim.policies.plugins import resolve
from hwsim.policies.timing import ROUNDING, Timed, stage_dependencies

Windows = list[list[tuple[float, float]]]


class FillError(ValueError):
    """A filler that cannot be found or that returned something unusable."""


@dataclass(frozen=True)
class Job:
    """The second instance: per-stage times for one micro-batch (seconds) and bank bytes.

    `send_forward[s]` moves stage s's output to stage s + 1 and `send_backward[s]` the
    gradient of stage s + 1's input back to stage s, when the two stages sit on
    different devices. `static_bytes[s]` (weights, velocity, gradient accumulator) is
    held all along; `held_bytes[s]` per micro-batch from when its input can arrive (the
    upstream forward's end) to its backward's end: activations and the buffers that
    arrive for them.
    """

    forward: tuple[float, ...]
    backward: tuple[float, ...]
    update: tuple[float, ...]
    microbatches: int
    send_forward: tuple[float, ...] = ()
    send_backward: tuple[float, ...] = ()
    static_bytes: tuple[int, ...] = ()
    held_bytes: tuple[int, ...] = ()

    def __post_init__(self) -> None:
        stages = len(self.forward)
        for name in ("backward", "update", "static_bytes", "held_bytes"):
            if len(getattr(self, name)) not in (0, stages):
                raise FillError(f"job.{name} has {len(getattr(self, name))} entries for {stages} stages")
        for name in ("send_forward", "send_backward"):
            if len(getattr(self, name)) not in (0, stages - 1):
                raise FillError(f"job.{name} has {len(getattr(self, name))} entries for {stages - 1} stage boundaries")

    @property
    def stages(self) -> int:
        return len(self.forward)

    def duration(self, op: Op) -> float:
        return {"F": self.forward, "B": self.backward, "U": self.update}[op.kind][op.stage]

    def static(self, s: int) -> int:
        return self.static_bytes[s] if self.static_bytes else 0

    def held(self, s: int) -> int:
        return self.held_bytes[s] if self.held_bytes else 0


@dataclass(frozen=True)
class Placement:
    """Where the second instance runs: the device of each stage, and (device, start, end) of every op."""

    mapping: tuple[int, ...]
    times: dict[Op, Timed] = field(default_factory=dict)
    microbatches: int = 0
    reason: str = ""

    def end(self) -> float:
        return max((t.end for t in self.times.values()), default=0.0)

    def busy(self, device: int) -> float:
        return sum(t.end - t.start for t in self.times.values() if t.device == device)


Filler = Callable[[Windows, Job, list[float]], Placement]
FILLERS: dict[str, Filler] = {}


def register_filler(name: str) -> Callable[[Filler], Filler]:
    """Decorator: register `filler(windows, job, headroom) -> Placement` under `name`."""

    def add(filler: Filler) -> Filler:
        FILLERS[name] = filler
        return filler

    return add


def resolve_filler(name: str) -> Filler:
    """The registered filler `name`, or one named `module:function` / `path/file.py:function`."""
    return resolve(name, FILLERS, "filling policy", FillError)


def clip_windows(windows: Windows, until: list[float]) -> Windows:
    """The windows of each device d cut off at `until[d]` (time reserved for other work after it)."""
    return [[(a, min(b, t)) for a, b in gaps if min(b, t) > a] for gaps, t in zip(windows, until, strict=True)]


# --- mappings and placement -----------------------------------------------------------


def forward_mapping(stages: int, devices: int) -> tuple[int, ...]:
    """Stage s on device s (S <= p), or the stages spread evenly in order over the devices."""
    return tuple(s if stages <= devices else s * devices // stages for s in range(stages))


def reverse_mapping(stages: int, devices: int) -> tuple[int, ...]:
    return tuple(devices - 1 - d for d in forward_mapping(stages, devices))


def dependencies(job: Job, op: Op, placed: int) -> list[Op]:
    """The ops of the second instance whose outputs `op` needs (`placed`: micro-batches of the step)."""
    if op.kind == "U":
        return [Op("B", op.stage, j) for j in range(placed)]
    return stage_dependencies(job.stages, op)


def _ready(job: Job, mapping: tuple[int, ...], times: dict[Op, Timed], op: Op, placed: int) -> float:
    ready = 0.0
    for dep in dependencies(job, op, placed):
        arrive = times[dep].end
        if mapping[dep.stage] != mapping[op.stage]:
            sends = job.send_forward if op.kind == "F" else job.send_backward
            arrive += sends[min(dep.stage, op.stage)] if sends else 0.0
        ready = max(ready, arrive)
    return ready


def _fit(free: list[tuple[float, float]], ready: float, duration: float, best: bool, slack: float) -> int | None:
    """Index of the free interval the op takes (first or tightest that holds it whole after `ready`)."""
    chosen, left = None, None
    for i, (a, b) in enumerate(free):
        spare = b - max(a, ready) - duration
        if spare < -slack:
            continue
        if not best:
            return i
        if left is None or spare < left:
            chosen, left = i, spare
    return chosen


def _take(free: list[tuple[float, float]], i: int, start: float, end: float) -> None:
    a, b = free[i]
    parts = [(a, start), (end, b)]
    free[i : i + 1] = [(x, y) for x, y in parts if y > x]


def _place_op(job, mapping, free, times, op, placed, best, slack, ready: float | None = None) -> str:
    """Place `op` in device mapping[op.stage]'s free intervals after its inputs (`ready`, if the caller knows
    it); the reason it does not fit, or ""."""
    d = mapping[op.stage]
    ready = _ready(job, mapping, times, op, placed) if ready is None else ready
    duration = job.duration(op)
    if duration <= 0.0:
        times[op] = Timed(d, ready, ready)
        return ""
    i = _fit(free[d], ready, duration, best, slack)
    if i is None:
        return f"{op} ({duration:.4g} s) fits no idle window of device {d} after {ready:.6g} s"
    start = max(free[d][i][0], ready)
    times[op] = Timed(d, start, start + duration)
    _take(free[d], i, start, start + duration)
    return ""


def _memory_problem(job: Job, mapping, times: dict[Op, Timed], headroom: list[float], placed: int | None = None) -> str:
    """Which device would hold more of the job than its headroom (`placed`: the micro-batches in `times`, if
    known: then a device that fits them all held at once needs no closer look)."""
    for d, room in enumerate(headroom):
        static = sum(job.static(s) for s in range(job.stages) if mapping[s] == d)
        if placed is not None and static + placed * sum(job.held(s) for s in range(job.stages) if mapping[s] == d) <= room:
            continue
        events = []
        for op, t in times.items():
            if op.kind == "F" and mapping[op.stage] == d:  # from when its input can arrive to its backward's end
                begin = times[Op("F", op.stage - 1, op.mb)].end if op.stage else t.start
                events.append((min(begin, t.start), job.held(op.stage)))
                events.append((times[Op("B", op.stage, op.mb)].end, -job.held(op.stage)))
        held = peak = 0
        for _, change in sorted(events, key=lambda e: (e[0], e[1])):
            held += change
            peak = max(peak, held)
        if static + peak > room:
            return f"device {d} would hold {static + peak:,} B of the second instance; the first leaves {room:,.0f} B free"
    return ""


def place(windows: Windows, job: Job, headroom: list[float], mapping: tuple[int, ...], best: bool = False) -> Placement:
    """Greedy, non-preemptive placement of whole micro-batches with the given stage mapping.

    Micro-batch j goes in when all its ops and then the updates fit in the windows
    and the memory in the headroom; the first that does not stops the placement.
    """
    if len(mapping) != job.stages or any(not 0 <= d < len(windows) for d in mapping):
        raise FillError(f"mapping {mapping} does not put {job.stages} stages on devices 0..{len(windows) - 1}")
    slack = ROUNDING * max((b for w in windows for _, b in w), default=1.0)
    free = [list(w) for w in windows]
    times: dict[Op, Timed] = {}
    updates: dict[Op, Timed] = {}
    reason = _memory_problem(job, mapping, {}, headroom)
    placed = 0
    last_b = [0.0] * job.stages
    while not reason and placed < job.microbatches:
        j = placed
        trial_free, trial = [list(w) for w in free], dict(times)
        order = [Op("F", s, j) for s in range(job.stages)] + [Op("B", s, j) for s in reversed(range(job.stages))]
        for op in order:
            reason = reason or _place_op(job, mapping, trial_free, trial, op, j + 1, best, slack)
        reason = reason or _memory_problem(job, mapping, trial, headroom, j + 1)
        trial_updates = dict(trial)
        update_free = [list(w) for w in trial_free]
        if not reason:  # an update waits for its stage's backwards: the latest of them, kept as they are placed
            for s in range(job.stages):
                last_b[s] = max(last_b[s], trial[Op("B", s, j)].end)
        for s in range(job.stages):
            ready = last_b[s] if not reason else None
            reason = reason or _place_op(job, mapping, update_free, trial_updates, Op("U", s, -1), j + 1, best, slack, ready)
        if reason:
            reason = f"micro-batch {j}: {reason}"
            break
        free, times, placed = trial_free, trial, j + 1
        updates = {op: t for op, t in trial_updates.items() if op.kind == "U"}
    if placed == job.microbatches:
        reason = ""
    return Placement(tuple(mapping), {**times, **updates} if placed else {}, placed, reason)


def _better(a: Placement, b: Placement) -> bool:
    return (a.microbatches, -a.end()) > (b.microbatches, -b.end())


@register_filler("first_fit")
def first_fit(windows: Windows, job: Job, headroom: list[float]) -> Placement:
    """Stage s on device s, each op in the earliest window that holds it (non-preemptive baseline)."""
    return place(windows, job, headroom, forward_mapping(job.stages, len(windows)))


@register_filler("best_fit")
def best_fit(windows: Windows, job: Job, headroom: list[float]) -> Placement:
    """Stage s on device s, each op in the window it leaves the least of."""
    return place(windows, job, headroom, forward_mapping(job.stages, len(windows)), best=True)


@register_filler("reverse")
def reverse(windows: Windows, job: Job, headroom: list[float]) -> Placement:
    """Stage s on device p - 1 - s (against the first instance's direction), first fit."""
    return place(windows, job, headroom, reverse_mapping(job.stages, len(windows)))


@register_filler("best_mapping")
def best_mapping(windows: Windows, job: Job, headroom: list[float]) -> Placement:
    """First fit under every rotation of both directions; the most micro-batches, then the earliest end."""
    p = len(windows)
    best = None
    for base in (forward_mapping(job.stages, p), reverse_mapping(job.stages, p)):
        for k in range(p):
            candidate = place(windows, job, headroom, tuple((d + k) % p for d in base))
            if best is None or _better(candidate, best):
                best = candidate
    return best


def check_placement(windows: Windows, job: Job, placement: Placement, headroom: list[float]) -> list[str]:
    """What is wrong with a placement: ops missing, outside the windows, overlapping or before
    their inputs, or more memory than the headroom."""
    out = []
    slack = ROUNDING * max((b for w in windows for _, b in w), default=1.0)
    k = placement.microbatches
    expected = {Op(kind, s, j) for kind in "FB" for s in range(job.stages) for j in range(k)}
    if k:
        expected |= {Op("U", s, -1) for s in range(job.stages)}
    if set(placement.times) != expected:
        out.append(f"{len(set(placement.times) ^ expected)} ops missing or unexpected for {k} micro-batches")
        return out
    for op, t in placement.times.items():
        if t.device != placement.mapping[op.stage]:
            out.append(f"{op} on device {t.device}, its stage is mapped to {placement.mapping[op.stage]}")
        if t.end > t.start and not any(a - slack <= t.start and t.end <= b + slack for a, b in windows[t.device]):
            out.append(f"{op} [{t.start:.6g}, {t.end:.6g}] s is not inside an idle window of device {t.device}")
        ready = _ready(job, placement.mapping, placement.times, op, k)
        if t.start < ready - slack:
            out.append(f"{op} starts at {t.start:.6g} s, before its inputs are there at {ready:.6g} s")
    for d in range(len(windows)):
        spans = sorted((t.start, t.end) for t in placement.times.values() if t.device == d and t.end > t.start)
        for (_, end), (start, _) in zip(spans, spans[1:], strict=False):
            if start < end - slack:
                out.append(f"two ops overlap on device {d} at {start:.6g} s")
    memory = _memory_problem(job, placement.mapping, placement.times, headroom) if k else ""
    return out + ([memory] if memory else [])
