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

from hwsim.collectives.algorithms import CollectiveError, Plan, Send, counterpart, symmetric


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
    mirror: bool = False,
) -> Generator:
    """Process: the collective `plan` over the fabric NPUs `group` (rank r on NPU group[r]), `nbytes` per
    rank; returns an `Outcome`. `data`, when given, is changed in place (its bytes are `nbytes`).

    `mirror` (symmetric mode): only rank 0 runs. Each of its sends crosses its own uplink and comes back
    on its own downlink through the switch (NPU, switch, NPU routes only), standing in for the identical
    message its counterpart sends it; its receive from rank p matches its own send to the rank that
    plays p's part (`counterpart`). Exact when the fabric and the ranks are symmetric and the blocks
    are equal (nbytes a multiple of the ranks); timing only."""
    n = plan.n
    if len(group) != n:
        raise CollectiveError(f"the plan is for {n} NPUs; the group has {len(group)}")
    if data is not None:
        if len(data) != n or any(a.dtype != np.float32 or a.shape != data[0].shape for a in data):
            raise CollectiveError(f"data: {n} float32 arrays of one shape")
        if int(data[0].nbytes) != nbytes:
            raise CollectiveError(f"data has {data[0].nbytes} bytes per rank; nbytes is {nbytes}")
    if mirror and (data is not None or not symmetric(plan)):
        raise CollectiveError(
            f"symmetric mode: timing only, and a symmetric plan (ring, direct, halving_doubling); got {plan.algorithm} {plan.op}"
        )
    loop = loopbacks(fabric.topology, group) if mirror else None
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
        if loop is not None:
            yield from fabric.model.transfer(loop[dst], size, f"{name} r{src}->r{dst}", overhead)
        else:
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
            if loop is not None:  # what p sends rank 0 is what rank 0 sends the rank in p's part
                payload = yield channel(i, counterpart(plan.algorithm, n, step.peer), lane, received[step.peer])
            else:
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

    ranks = [0] if mirror else range(n)
    lanes = {i: sorted({step.lane for step in plan.steps[i]} or {0}) for i in ranks}
    yield simpy.AllOf(env, [env.process(rank(i, lane)) for i in ranks for lane in lanes[i]])
    if mirror:  # every rank as rank 0
        outcome.end_s = [outcome.end_s[0]] * n
        outcome.bytes_sent = [outcome.bytes_sent[0]] * n
    return outcome


def loopbacks(t, group: Sequence[int]) -> dict[int, tuple[int, int]]:
    """Per rank r of `group` on topology `t`, the path standing in for rank 0's transfer to it: out on rank
    0's link to the switch that joins them, back on that switch's link to rank 0."""
    out = {}
    for r, npu in enumerate(group):
        if r == 0:
            continue
        there, back = t.route(group[0], npu), t.route(npu, group[0])
        if len(there) != 2 or len(back) != 2 or t.dst[there[0]] != t.src[back[1]]:
            raise CollectiveError(
                f"symmetric mode needs every transfer to cross one switch (NPU, switch, NPU); NPU {group[0]} to {npu} is {len(there)} hops on this {t.kind}"
            )
        out[r] = (there[0], back[1])
    return out
