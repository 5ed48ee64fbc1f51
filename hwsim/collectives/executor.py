"""Play a collective's steps (`algorithms.Plan`) on a fabric.

Each rank is a SimPy process per lane that takes its steps of that lane in order. A `Send` starts a transfer of
its blocks' bytes from the rank's fabric NPU to the peer's (under the fabric's sharing
model) and goes on at once; a `Recv` waits for the matching transfer (the k-th receive
from a peer matches that peer's k-th send to this rank) and then writes or adds its
blocks. With `data` (one float32 array per rank) the blocks are real slices and the
sums are real: a reduction adds in float32, in the order the steps give, the same on
every run. With `devices` a reduction of k elements also holds the rank's vector unit
for k element-wise adds.

The buffer of `nbytes` is cut into `plan.blocks` blocks at element (or byte) boundaries
round(b x size / blocks), so blocks differ by at most one element.
"""

from __future__ import annotations

from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
import simpy

from hwsim.collectives.algorithms import CollectiveError, Plan, Send


@dataclass
class Outcome:
    """When each rank started and ended, and the bytes each sent."""

    start_s: float
    end_s: list[float] = field(default_factory=list)
    bytes_sent: list[int] = field(default_factory=list)

    @property
    def duration_s(self) -> float:
        return max(self.end_s) - self.start_s if self.end_s else 0.0


def bounds(size: int, blocks: int) -> list[int]:
    """Block b is [bounds[b], bounds[b + 1])."""
    return [(b * size) // blocks for b in range(blocks + 1)]


def run(
    env: simpy.Environment,
    fabric,
    plan: Plan,
    group: Sequence[int],
    nbytes: int,
    *,
    data: Sequence[np.ndarray] | None = None,
    devices: Sequence | None = None,
    overhead: float = 0.0,
    label: str = "",
) -> Generator:
    """Process: the collective `plan` over the fabric NPUs `group` (rank r on NPU group[r]), `nbytes` per
    rank; returns an `Outcome`. `data`, when given, is changed in place (its bytes are `nbytes`)."""
    n = plan.n
    if len(group) != n:
        raise CollectiveError(f"the plan is for {n} NPUs; the group has {len(group)}")
    if data is not None:
        if len(data) != n or any(a.dtype != np.float32 or a.shape != data[0].shape for a in data):
            raise CollectiveError(f"data: {n} float32 arrays of one shape")
        if int(data[0].nbytes) != nbytes:
            raise CollectiveError(f"data has {data[0].nbytes} bytes per rank; nbytes is {nbytes}")
    elements = data[0].size if data is not None else nbytes
    edge = bounds(elements, plan.blocks)
    width = 4 if data is not None else 1  # bytes per element
    arrived: dict[tuple[int, int, int, int], simpy.Event] = {}
    sent_count: dict[tuple[int, int, int], int] = {}
    outcome = Outcome(env.now, [env.now] * n, [0] * n)
    name = label or f"{plan.op} {plan.algorithm}"

    def channel(src: int, dst: int, lane: int, seq: int) -> simpy.Event:
        key = (src, dst, lane, seq)
        if key not in arrived:
            arrived[key] = env.event()
        return arrived[key]

    def transfer(src: int, dst: int, size: int, payload, done: simpy.Event) -> Generator:
        yield from fabric.transfer(group[src], group[dst], size, f"{name} r{src}->r{dst}", overhead)
        done.succeed(payload)

    def rank(i: int, lane: int) -> Generator:
        received = [0] * n
        for step in plan.steps[i]:
            if step.lane != lane:
                continue
            spans = [(edge[b], edge[b + 1]) for b in step.blocks]
            size = sum(hi - lo for lo, hi in spans) * width
            if isinstance(step, Send):
                seq = sent_count.get((i, step.peer, lane), 0)
                sent_count[i, step.peer, lane] = seq + 1
                payload = [data[i][lo:hi].copy() for lo, hi in spans] if data is not None else None
                outcome.bytes_sent[i] += size
                env.process(transfer(i, step.peer, size, payload, channel(i, step.peer, lane, seq)))
                continue
            payload = yield channel(step.peer, i, lane, received[step.peer])
            received[step.peer] += 1
            if data is not None:
                parts = [p.size for p in payload]
                if parts != [hi - lo for lo, hi in spans]:
                    raise CollectiveError(
                        f"rank {i} received blocks of {parts} elements into blocks of {[hi - lo for lo, hi in spans]}"
                    )
                for (lo, hi), part in zip(spans, payload, strict=True):
                    if step.reduce:
                        data[i][lo:hi] += part
                    else:
                        data[i][lo:hi] = part
            if step.reduce and devices is not None:
                yield from devices[i].vector.elementwise(size // width, 1, f"{name} add")
        outcome.end_s[i] = max(outcome.end_s[i], env.now)

    lanes = [sorted({step.lane for step in plan.steps[i]} or {0}) for i in range(n)]
    yield simpy.AllOf(env, [env.process(rank(i, lane)) for i in range(n) for lane in lanes[i]])
    return outcome
