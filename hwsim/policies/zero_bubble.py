"""Schedules with a split backward: B (input gradient) on the critical path, W (weight gradient) deferred.

From Qi, Wan, Huang and Lin, "Zero Bubble Pipeline Parallelism", ICLR 2024 (the
handcrafted ZB-H1 and ZB-H2 of its Section 3.1). The orders here are built from the
paper's description, with B and W of one micro-batch covering every stage a device
holds (contiguous placement):

- ZB-H1: 1F1B's warm-up (p - d - 1 forwards on device d) and steady state, with device
  d's W of micro-batch j run right after its B of micro-batch j + d. The last
  device's deferred W's fill the cool-down, where 1F1B idles. Activations in flight
  (forward started, input gradient not yet done) stay at 1F1B's p - d.
- ZB-H2: more warm-up forwards, 2(p - d) - 1 on device d, enough to reach the first
  input gradient without idling; then after each B, the next F while any remain and
  else the oldest W; up to 2p - 1 micro-batches of activations on the first device.
  The paper lets the next iteration's forwards start into the step's slanted end by
  validating the optimizer step after the fact; hwsim's steps end together.

The bubble is `timing.bubbles`: the most idle time of any device between its own
first and last op (device 0's). In both schedules device d starts at d t_F and idles
(p - 1 - d) x, so the bubble is (p - 1) x and a step takes m (t_F + t_B + t_W) +
(p - 1) max(t_F, x), with

- ZB-H1 (m >= p): x = max(t_F + t_B - t_W, t_B): the paper's (p - 1)(t_F + t_B - t_W)
  when t_W <= t_F; a longer W cannot hide more than the F it stands in for;
- ZB-H2 (m >= 2p): x = max(0, t_F + t_B - 2 t_W, t_B - t_F): the paper's
  (p - 1)(t_F + t_B - 2 t_W) when t_W <= t_F, and 0 when the three times are equal;
  a B longer than an F leaves device 0's warm-up short of the first input gradient.

The paper states the forms for t_W <= t_F; the general x above was found by playing
the schedules (`timing.execute`) and is checked by the property tests on random
times for p up to 8.
"""

from __future__ import annotations

from collections.abc import Callable

from hwsim.policies.pipeline import ClosedForm, Op, Schedule, Shape, backwards_of, forwards_of, register_schedule

SOURCE = "Qi et al., Zero Bubble Pipeline Parallelism, ICLR 2024, Section 3.1"


def _weights(shape: Shape, device: int, mb: int) -> list[Op]:
    """The weight gradients of micro-batch `mb` on every stage of `device`, last stage first."""
    return [Op("W", s, mb) for s in reversed(shape.stages_of(device))]


def _forms(least: Callable[[Shape], int], idle: Callable[[float, float, float], float]) -> tuple[ClosedForm, ClosedForm]:
    """(makespan, bubble) of a schedule whose device d starts at d t_F and idles (p - 1 - d) x, x =
    idle(t_F, t_B, t_W); None below least(shape) micro-batches, where warm-up and cool-down overlap."""

    def makespan(shape: Shape, tf: float, tb: float, tw: float) -> float | None:
        if shape.microbatches < least(shape):
            return None
        return shape.microbatches * (tf + tb + tw) + (shape.devices - 1) * max(tf, idle(tf, tb, tw))

    def bubble(shape: Shape, tf: float, tb: float, tw: float) -> float | None:
        return None if shape.microbatches < least(shape) else (shape.devices - 1) * idle(tf, tb, tw)

    return makespan, bubble


H1_MAKESPAN, H1_BUBBLE = _forms(lambda shape: shape.devices, lambda tf, tb, tw: max(tf + tb - tw, tb))
H2_MAKESPAN, H2_BUBBLE = _forms(lambda shape: 2 * shape.devices, lambda tf, tb, tw: max(0.0, tf + tb - 2 * tw, tb - tf))


@register_schedule(
    "zb_h1",
    placement="contiguous",
    closed_form=H1_MAKESPAN,
    bubble=H1_BUBBLE,
    peak_activations=lambda shape, d: min(shape.devices - d, shape.microbatches),
    source=SOURCE,
)
def zb_h1(shape: Shape) -> Schedule:
    """ZB-H1: 1F1B with each device's weight gradients deferred into its cool-down (1F1B's memory)."""
    return [_h1_device(shape, d) for d in range(shape.devices)]


def _h1_device(shape: Shape, d: int) -> list[Op]:
    p, m = shape.devices, shape.microbatches
    warmup = min(p - d - 1, m)
    ops = [op for j in range(warmup) for op in forwards_of(shape, d, j)]
    done = 0  # W's run so far
    for j in range(m):
        if warmup + j < m:
            ops += forwards_of(shape, d, warmup + j)
        ops += backwards_of(shape, d, j)
        while done <= j - d:  # W of micro-batch j - d follows B of micro-batch j
            ops += _weights(shape, d, done)
            done += 1
    return ops + [op for j in range(done, m) for op in _weights(shape, d, j)]


@register_schedule(
    "zb_h2",
    placement="contiguous",
    closed_form=H2_MAKESPAN,
    bubble=H2_BUBBLE,
    peak_activations=lambda shape, d: min(2 * (shape.devices - d) - 1, shape.microbatches),
    source=SOURCE,
)
def zb_h2(shape: Shape) -> Schedule:
    """ZB-H2: 2(p - d) - 1 warm-up forwards, then B, then the next F or the oldest W (no bubble, more memory)."""
    p, m = shape.devices, shape.microbatches
    out = []
    for d in range(p):
        warmup = min(2 * (p - d) - 1, m)
        ops = [op for j in range(warmup) for op in forwards_of(shape, d, j)]
        forwards, done = warmup, 0
        for j in range(m):
            ops.extend(backwards_of(shape, d, j))
            if forwards < m:
                ops.extend(forwards_of(shape, d, forwards))
                forwards += 1
            elif done < j:
                ops.extend(_weights(shape, d, done))
                done += 1
        ops += [op for j in range(done, m) for op in _weights(shape, d, j)]
        out.append(ops)
    return out
