"""The sharded optimizer (`system.optimizer: sharded`, ZeRO-3 / fully sharded data parallelism) on a
pipeline device: when its model chunks' parameters are gathered and their gradients reduce-scattered.

Each data-parallel rank holds 1/d of its chunks' 16-bit weights, fp32 gradients and Adam state. A
device runs its schedule's ops in order; a *run* is a stretch of consecutive ops on one model chunk.
Before a run with a forward or a backward the chunk's weights are all-gathered over the data group
(and freed when the run ends); after a run that finished weight gradients (a fused backward, or a
split backward's W) the chunk's full gradient buffer, accumulated over the run's micro-batches, is
reduce-scattered into the rank's shard. The next run's all-gather is issued when a run starts (one
chunk prefetched, as FSDP's backward and forward prefetch do), so it overlaps the run's compute.

So a schedule pays one gather per run and one reduce-scatter per backward run: a breadth-first schedule,
whose runs hold every micro-batch of a chunk, pays two gathers and one reduce-scatter per chunk and step,
which is why Lamy-Poirier (Breadth-First Pipeline Parallelism, MLSys 2023, section 4) pairs it with
sharding; a depth-first interleaved one, whose runs are a few micro-batches long, pays many. A W op needs
no weights (dW = X^T dY), so a run of W ops alone gathers nothing.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Run:
    """Ops `first`..`last` (indices into a device's op list) of one model chunk `stage`; `gathers`: it has an
    F or B (needs the chunk's weights); `reduces`: it finishes weight gradients (fused B, or W); `forward`:
    it has an F (hierarchical partitioning gathers a run without one inside the node)."""

    first: int
    last: int
    stage: int
    gathers: bool
    reduces: bool
    forward: bool = True


def runs(ops, split: bool) -> list[Run]:
    """A device's ops cut into runs of consecutive ops on the same model chunk."""
    out: list[Run] = []
    first = 0
    for i, op in enumerate(ops):
        if i + 1 < len(ops) and ops[i + 1].stage == op.stage:
            continue
        kinds = {o.kind for o in ops[first : i + 1]}
        reduces = "W" in kinds if split else "B" in kinds
        out.append(Run(first, i, op.stage, bool(kinds & {"F", "B"}), reduces, "F" in kinds))
        first = i + 1
    return out
