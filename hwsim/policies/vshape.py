"""V-shape schedules with a split backward: ZB-V, V-Half, V-Min, DualPipeV and DualPipe.

The V-shape placement (v = 2) puts stage s on device s for the first p stages and on
device 2p - 1 - s for the next p: a micro-batch goes down the devices and back up, so
the first device holds both the first and the last stage (Qi, Wan, Huang and Lin,
"Pipeline Parallelism with Controllable Memory", NeurIPS 2024; ZB-V also in the
zero-bubble repository, sail-sg/zero-bubble-pipeline-parallelism). Each device runs
six kinds of op per micro-batch, one stage's worth each: F and B of its first stage
("chunk 0"), F and B of its second ("chunk 1"), and the two W's. The orders are built
once, for equal F, B and W times (the papers' setting); as data they then run with
any times.

- `zb_v`: list scheduling in time steps of one op, the way the zero-bubble
  repository's ZB-V generator (`zbv.py`, a greedy) does it, under 1F1B's activation
  memory. Memory in that generator's units: an F adds 2, a B and a W each free 1, at
  most 4p per device (p micro-batches through both stages). A free device runs, in
  order of preference: a ready B (earliest micro-batch, chunk 1 first); a ready
  chunk-1 F; a chunk-0 F if it leaves room for one chunk-1 F; the oldest pending W.
- `v_half`, `v_min`: the controllable-memory paper's building blocks (its Section 3
  and Appendix A): a block of period 6 (the six ops of one micro-batch on a device)
  whose positions move from device i to i + 1 by the offsets (k, -1, k, -1) for
  (F chunk 0, F chunk 1, B chunk 1, B chunk 0), each W in the first free slot after
  its B, repeated for every micro-batch and squeezed (each device runs the ops in the
  order of their block times; `timing.execute` then starts each as early as its
  inputs allow). A micro-batch then lives about 2p (k + 1) time units on a device, so
  the memory is about p (k + 1) / 6 micro-batches: k = 2 (V-Half) about half of
  1F1B's p, k = 1 (V-Min) about a third. The paper searches the starting pattern and
  offsets; hwsim takes the two natural blocks (positions as the offsets give them,
  ties run in op order, or moved to the next free slot of the device) and keeps the
  one with the smaller step at equal times. The paper also reorders warm-up and
  cool-down; hwsim does not, so these keep the squeezed block's ends.

- `dualpipe_v`: DeepSeek's DualPipeV (deepseek-ai/DualPipe, `dualpipev.py`), the
  V-shape form of DualPipe (DeepSeek-V3 technical report, 2024) that holds the
  parameters once: its eight steps per device (warm-up forwards of chunk 0, then of
  both chunks, backward-weight-forward of chunk 1 with zero bubble, the main loop
  pairing a forward of one chunk with a backward of the other, and the cool-down, the
  later backwards with deferred W's). DualPipe overlaps a pair's forward and backward
  to hide MoE all-to-all communication; hwsim runs a pair one after the other (t_F&B =
  t_F + t_B + t_W). Peak activations 2p + 1 stages' worth on every device (DeepSeek's
  PP + 1, with PP = 2p stages).
- `dualpipe`: DualPipe itself (`dualpipe.py`) on the `dual` placement: two pipelines
  over the same p model stages, one fed from the first device (stages 0 .. p - 1) and
  one from the last (stages p .. 2p - 1, model stage k on device p - 1 - k), half the
  micro-batches each; the same eight steps with p/2 as the V's devices and
  min(d, p - 1 - d) as the rank, the two phases swapped on the second half of the
  devices as DualPipe does. Each model stage's parameters are held twice (stage k and
  k + p); `systems.pipeline` sums the two copies' gradients before the step. Peak
  activations p + 1 stages' worth (DeepSeek's PP + 1).

The bubbles these reach are measured (`hwsim validate`, the tests), not closed forms:
at equal times ZB-V has none for m >= 2p (at most one op's time otherwise, on 2 or 3
devices), V-Half about half of 1F1B's, V-Min about two thirds.
"""

from __future__ import annotations

from hwsim.policies.pipeline import Op, Schedule, ScheduleError, Shape, register_schedule
from hwsim.policies.timing import execute, makespan

SOURCE = "Qi et al., Pipeline Parallelism with Controllable Memory, NeurIPS 2024"
PERIOD = 6  # one micro-batch's ops on a device: F, f (chunk 1), b (chunk 1), B, and two W's


def _stages(shape: Shape, device: int) -> tuple[int, int]:
    return device, 2 * shape.devices - 1 - device


@register_schedule("zb_v", placement="vshape", source=f"{SOURCE}; the zero-bubble repository's ZB-V generator (zbv.py)")
def zb_v(shape: Shape) -> Schedule:
    """ZB-V: V-shape placement, split backward, no bubble with equal F, B, W times at 1F1B's activation memory."""
    p, m = shape.devices, shape.microbatches
    last = 2 * p - 1
    limit = 4 * p
    end: dict[Op, int] = {}
    forwards, backwards = [0] * (2 * p), [0] * (2 * p)  # next micro-batch per stage
    memory = [0] * p
    waiting: list[list[Op]] = [[] for _ in range(p)]  # W's whose B ran, oldest first
    out: list[list[Op]] = [[] for _ in range(p)]
    remaining, t = 6 * p * m, 0

    def done(op: Op) -> bool:
        return end.get(op, t + 1) <= t

    while remaining:
        started = {}
        for d in range(p):
            first, second = _stages(shape, d)
            op = None
            for s in (second, first):  # a ready B, earliest micro-batch, chunk 1 first on a tie
                j = backwards[s]
                if j < m and done(Op("F", s, j)) and (s == last or done(Op("B", s + 1, j))):
                    if op is None or j < op.mb:
                        op = Op("B", s, j)
            if op is None and forwards[second] < m and done(Op("F", second - 1, forwards[second])):
                if memory[d] + 2 <= limit:
                    op = Op("F", second, forwards[second])
            if op is None and forwards[first] < m and memory[d] + 4 <= limit:
                if first == 0 or done(Op("F", first - 1, forwards[first])):
                    op = Op("F", first, forwards[first])
            if op is None and waiting[d]:
                op = waiting[d].pop(0)
            if op is None:
                continue
            started[op] = t + 1
            out[d].append(op)
            remaining -= 1
            if op.kind == "F":
                forwards[op.stage] += 1
                memory[d] += 2
            elif op.kind == "B":
                backwards[op.stage] += 1
                memory[d] -= 1
                waiting[d].append(Op("W", op.stage, op.mb))
            else:
                memory[d] -= 1
        if not started and not any(e > t for e in end.values()):
            raise ScheduleError(f"zb_v found no op to run at step {t} (p={p}, m={m})")
        end.update(started)
        t += 1
    return out


def _block(shape: Shape, k: int, resolve: bool) -> Schedule:
    """The building block with offsets (k, -1, k, -1), repeated m times; `resolve` moves an op whose
    slot (time mod 6) is taken on its device to the next free one."""
    p = shape.devices
    used: list[set[int]] = [set() for _ in range(p)]

    def place(d: int, earliest: int) -> int:
        t = earliest
        while resolve and t % PERIOD in used[d]:
            t += 1
        used[d].add(t % PERIOD)
        return t

    fwd0, fwd1, bwd1, bwd0 = ([0] * p for _ in range(4))
    for d in range(p):
        fwd0[d] = place(d, fwd0[d - 1] + k if d else 0)
    for d in reversed(range(p)):
        fwd1[d] = place(d, fwd0[p - 1] + 1 if d == p - 1 else fwd1[d + 1] + 1)
    for d in range(p):
        bwd1[d] = place(d, bwd1[d - 1] + k if d else fwd1[0] + 1)
    for d in reversed(range(p)):
        bwd0[d] = place(d, bwd1[p - 1] + 1 if d == p - 1 else bwd0[d + 1] + 1)
    out = []
    for d in range(p):
        first, second = _stages(shape, d)
        taken = {t % PERIOD for t in (fwd0[d], fwd1[d], bwd1[d], bwd0[d])}

        def weight_slot(after: int, taken: set[int] = taken) -> int:
            t = after + 1
            while t % PERIOD in taken:
                t += 1
            taken.add(t % PERIOD)
            return t

        w1, w0 = weight_slot(bwd1[d]), weight_slot(bwd0[d])
        timed = []
        for j in range(shape.microbatches):
            at = PERIOD * j
            timed += [
                (at + fwd0[d], 0, Op("F", first, j)),
                (at + fwd1[d], 1, Op("F", second, j)),
                (at + bwd1[d], 2, Op("B", second, j)),
                (at + bwd0[d], 3, Op("B", first, j)),
                (at + w1, 4, Op("W", second, j)),
                (at + w0, 5, Op("W", first, j)),
            ]
        out.append([op for _, _, op in sorted(timed, key=lambda e: (e[0], e[1]))])
    return out


def _best_block(shape: Shape, k: int) -> Schedule:
    """Of the two blocks, the one with the shorter step at equal times (the first on a tie)."""
    candidates = [_block(shape, k, resolve) for resolve in (False, True)]
    return min(candidates, key=lambda c: makespan(execute(shape, c, _unit, _unit, weight=_unit)))


def _unit(stage: int) -> float:
    return 1.0


@register_schedule("v_half", placement="vshape", source=f"{SOURCE}, Section 3 (building blocks, offsets 2, -1, 2, -1)")
def v_half(shape: Shape) -> Schedule:
    """V-Half: V-shape building block with offset 2: about half of 1F1B's bubble at about half its activation memory."""
    return _best_block(shape, 2)


@register_schedule("v_min", placement="vshape", source=f"{SOURCE}, Section 3 (building blocks, offsets 1, -1, 1, -1)")
def v_min(shape: Shape) -> Schedule:
    """V-Min: V-shape building block with offset 1: about a third of 1F1B's activation memory, more bubble."""
    return _best_block(shape, 1)


def _dual_steps(ranks: int, rank: int, chunks: int, units: tuple[int, int], first_mb: tuple[int, int]) -> list[Op]:
    """One device's ops in DualPipe's eight steps (DeepSeek's dualpipe/dualpipe.py and dualpipev.py), for
    `ranks` devices of a V (half of DualPipe's) and `chunks` micro-batches per phase; phase c runs
    stage units[c] on micro-batches first_mb[c], first_mb[c] + 1, ... A backward without zero bubble is
    B then its W at once; one with it defers its W to a first-in-first-out queue that a weight step pops."""
    forwards, backwards = [0, 0], [0, 0]  # micro-batches done per phase
    deferred: list[Op] = []
    ops: list[Op] = []

    def forward(phase: int) -> None:
        ops.append(Op("F", units[phase], first_mb[phase] + forwards[phase]))
        forwards[phase] += 1

    def backward(phase: int, zero_bubble: bool = False) -> None:
        j = first_mb[phase] + backwards[phase]
        backwards[phase] += 1
        ops.append(Op("B", units[phase], j))
        (deferred.append if zero_bubble else ops.append)(Op("W", units[phase], j))

    def weight() -> None:
        ops.append(deferred.pop(0))

    rest = ranks - rank - 1
    for _ in range(2 * rest):  # 1: nF0
        forward(0)
    for _ in range(rank + 1):  # 2: nF0F1
        forward(0)
        forward(1)
    for _ in range(rest):  # 3: nB1W1F1, zero bubble
        backward(1, zero_bubble=True)
        weight()
        forward(1)
    for _ in range(chunks - 2 * ranks + rank + 1):  # 4 (main): nF0B1F1B0, a forward paired with a backward
        forward(0)
        backward(1)
        forward(1)
        backward(0)
    for _ in range(rest):  # 5: nB1F1B0
        backward(1)
        forward(1)
        backward(0)
    zero_bubble = False
    for i in range(rank + 1):  # 6: nB1B0, the second half with zero bubble
        zero_bubble |= i == (rank + 1) // 2 and rank % 2 == 1
        backward(1, zero_bubble)
        zero_bubble |= i == (rank + 1) // 2 and rank % 2 == 0
        backward(0, zero_bubble)
    for _ in range(rest):  # 7: nWB0, zero bubble
        weight()
        backward(0, zero_bubble=True)
    for _ in range(rank + 1):  # 8: nW
        weight()
    return ops


@register_schedule(
    "dualpipe_v",
    placement="vshape",
    peak_activations=lambda shape, d: shape.devices + 0.5,  # 2p + 1 stages' worth: DeepSeek's PP + 1
    source="DeepSeek-V3 technical report, 2024 (DualPipe); DualPipeV as in deepseek-ai/DualPipe dualpipev.py",
)
def dualpipe_v(shape: Shape) -> Schedule:
    """DualPipeV: DualPipe folded onto the V-shape (parameters once): forwards of one chunk paired with backwards of the other."""
    p, m = shape.devices, shape.microbatches
    if m < 2 * p:
        raise ScheduleError(f"dualpipe_v needs at least 2p = {2 * p} micro-batches, got {m}")
    return [_dual_steps(p, d, m, _stages(shape, d), (0, 0)) for d in range(p)]


@register_schedule(
    "dualpipe",
    placement="dual",
    peak_activations=lambda shape, d: shape.devices / 2 + 0.5,  # p + 1 stages' worth: DeepSeek's PP + 1
    source="DeepSeek-V3 technical report, 2024; deepseek-ai/DualPipe dualpipe.py",
)
def dualpipe(shape: Shape) -> Schedule:
    """DualPipe: two pipelines fed from both ends (parameters held twice), each device's two stages paired as in DualPipeV."""
    p, m = shape.devices, shape.microbatches
    if p % 2 or m % 2 or m < 2 * p:
        raise ScheduleError(f"dualpipe needs an even number of devices and of micro-batches, at least 2p; got p={p}, m={m}")
    half = m // 2
    out = []
    for d in range(p):
        down, up = _stages(shape, d)  # down-pipeline stage d (micro-batches from 0), up-pipeline 2p - 1 - d (from m/2)
        phases = ((down, up), (0, half)) if d < p // 2 else ((up, down), (half, 0))  # phase ^= is_in_second_half
        out.append(_dual_steps(p // 2, min(d, p - 1 - d), half, *phases))
    return out
