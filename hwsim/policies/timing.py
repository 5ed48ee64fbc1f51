"""Predicted op times of a pipeline schedule, and the structural checks every schedule must pass.

`execute` plays a schedule without a simulator: each device runs its ops in order,
and an op starts when the device is free and its inputs are there:

- F(s, j) needs F(s - 1, j) (the activations of the stage before);
- B(s, j) needs F(s, j) and B(s + 1, j) (the gradient of the stage after); the last
  stage's backward starts from its own loss;
- W(s, j), in a schedule with a split backward, needs B(s, j).

An input made on another device arrives `transfer(src_stage, dst_stage)` after the op
that made it ended. With deterministic op times this is exactly what the simulated
pipeline does when nothing else competes for a unit, so it predicts idle windows
before a run (bubble filling) and gives the makespans the validator compares with
closed forms.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from hwsim.policies.pipeline import Op, Schedule, ScheduleError, Shape, is_split

ROUNDING = 1e-12  # relative size of float rounding in sums of op times


class Deadlock(ScheduleError):
    """Every device waits for an op that another device will only run later."""


@dataclass(frozen=True)
class Timed:
    """When an op ran: its device, start and end."""

    device: int
    start: float
    end: float


def dependencies(shape: Shape, op: Op) -> list[Op]:
    """The ops whose outputs `op` needs."""
    return _chain_dependencies(op, shape.first(op.stage), shape.last(op.stage))


def stage_dependencies(stages: int, op: Op) -> list[Op]:
    """The ops whose outputs `op` needs, in a model of `stages` stages (one pipeline)."""
    return _chain_dependencies(op, op.stage == 0, op.stage == stages - 1)


def _chain_dependencies(op: Op, first: bool, last: bool) -> list[Op]:
    """F after the F upstream (none at the pipeline's first stage); B after its F and the B downstream
    (none at the last stage, which starts from its loss); W after its B."""
    if op.kind == "F":
        return [] if first else [Op("F", op.stage - 1, op.mb)]
    if op.kind == "W":
        return [Op("B", op.stage, op.mb)]
    return [Op("F", op.stage, op.mb)] + ([] if last else [Op("B", op.stage + 1, op.mb)])


def problems(shape: Shape, schedule: Schedule) -> list[str]:
    """What is wrong with the op lists themselves: ops missing, repeated, unknown, or on the wrong device
    (with any W op, every backward must be split: a W for every B)."""
    out = []
    kinds = "FBW" if is_split(schedule) else "FB"
    expected = {Op(k, s, j) for k in kinds for s in range(shape.stages) for j in shape.microbatches_of(s)}
    seen: dict[Op, int] = {}
    for d, ops in enumerate(schedule):
        for op in ops:
            if op not in expected:
                out.append(f"device {d} runs {op}, which is not an op of this shape")
            elif op in seen:
                out.append(f"{op} runs twice (devices {seen[op]} and {d})")
            elif shape.device(op.stage) != d:
                out.append(f"{op} runs on device {d}, but stage {op.stage} is placed on device {shape.device(op.stage)}")
            seen.setdefault(op, d)
    missing = sorted(expected - set(seen))
    if missing:
        shown = ", ".join(map(str, missing[:5])) + (" ..." if len(missing) > 5 else "")
        out.append(f"{len(missing)} ops never run: {shown}")
    return out


def execute(
    shape: Shape,
    schedule: Schedule,
    forward: Callable[[int], float],
    backward: Callable[[int], float],
    transfer: Callable[[int, int], float] | None = None,
    weight: Callable[[int], float] | None = None,
) -> dict[Op, Timed]:
    """Start and end of every op; `forward(stage)`, `backward(stage)` and `weight(stage)` are the
    durations of F, B and W ops (with a split backward, B is the input gradient alone; give the
    fused time as `backward` to a schedule without W ops).

    Raises ScheduleError if the op lists are malformed and Deadlock if they cannot all run.
    """
    found = problems(shape, schedule)
    if found:
        raise ScheduleError("; ".join(found[:3]))
    if weight is None and is_split(schedule):
        raise ScheduleError("a schedule with W ops needs their durations (`weight`)")
    duration = {"F": forward, "B": backward, "W": weight}
    times: dict[Op, Timed] = {}
    free = [0.0] * shape.devices
    pos = [0] * shape.devices
    remaining = sum(len(ops) for ops in schedule)
    while remaining:
        progress = False
        for d, ops in enumerate(schedule):
            while pos[d] < len(ops):
                op = ops[pos[d]]
                deps = dependencies(shape, op)
                if any(dep not in times for dep in deps):
                    break
                ready = free[d]
                for dep in deps:
                    arrive = times[dep].end
                    if transfer is not None and times[dep].device != d:
                        arrive += transfer(dep.stage, op.stage)
                    ready = max(ready, arrive)
                took = duration[op.kind](op.stage)
                times[op] = Timed(d, ready, ready + took)
                free[d] = ready + took
                pos[d] += 1
                remaining -= 1
                progress = True
        if not progress:
            waiting = [f"device {d} waits at {ops[pos[d]]}" for d, ops in enumerate(schedule) if pos[d] < len(ops)]
            raise Deadlock("the schedule deadlocks: " + "; ".join(waiting))
    return times


def makespan(times: dict[Op, Timed]) -> float:
    return max(t.end for t in times.values()) - min(t.start for t in times.values())


def bubbles(times: dict[Op, Timed], devices: int) -> list[float]:
    """Per device, its idle time between its own first op's start and last op's end (a device that
    starts late and ends late, as in ZB-H2's parallelogram, has no bubble for it)."""
    out = []
    for d in range(devices):
        mine = [t for t in times.values() if t.device == d]
        span = max(t.end for t in mine) - min(t.start for t in mine) if mine else 0.0
        out.append(span - sum(t.end - t.start for t in mine))
    return out


def idle_windows(times: dict[Op, Timed], devices: int) -> list[list[tuple[float, float]]]:
    """Per device, the (start, end) gaps between its ops within [first start, last end] of the whole
    schedule; gaps of float rounding (under 1e-12 of the span) are not windows."""
    begin, finish = min(t.start for t in times.values()), max(t.end for t in times.values())
    shortest = ROUNDING * (finish - begin)
    out = []
    for d in range(devices):
        spans = sorted((t.start, t.end) for t in times.values() if t.device == d)
        gaps, at = [], begin
        for start, end in [*spans, (finish, finish)]:
            if start - at > shortest:
                gaps.append((at, start))
            at = max(at, end)
        out.append(gaps)
    return out


def peak_activations(shape: Shape, times: dict[Op, Timed]) -> list[float]:
    """Per device, the most micro-batches of activations held at once (in units of one
    micro-batch through all v of its stages): a stage holds them from its forward's start
    to its backward's end (with a split backward, B's end: what a deferred W still needs,
    its GEMMs' inputs and output gradients, is counted in the bank, not here)."""
    out = []
    for d in range(shape.devices):
        events = []
        for op, t in times.items():
            if t.device == d and op.kind != "W":
                events.append((t.start, 1) if op.kind == "F" else (t.end, -1))
        held = peak = 0
        for _, change in sorted(events, key=lambda e: (e[0], e[1])):  # frees before allocations at one instant
            held += change
            peak = max(peak, held)
        out.append(peak / shape.stages_per_device)
    return out
