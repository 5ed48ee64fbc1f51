"""A collective over a whole fabric: cut into chunks that pipeline through the fabric's dimensions.

`collective(...)` runs operation `op` over NPUs 0..n-1 of a fabric:

- **flat** (`hierarchical=False`): one plan over all n NPUs per chunk;
- **hierarchical** (ASTRA-sim's multi-dimensional collectives; a `dims` or `torus`
  fabric): an all-reduce is a reduce-scatter along dimension 1, then along dimension 2 on
  the piece each NPU kept, ..., then all-gathers in reverse order; a reduce-scatter (an
  all-gather) is the first (the second) half. Each dimension runs its own algorithm
  (`algorithm` may be a list, one per dimension) within each group of NPUs that differ
  only along it.

The buffer is cut into `chunks` chunks (ASTRA-sim's splits). A chunk's phase on a group
starts when every NPU of the group has finished the chunk's previous phase and fewer
than `in_flight` chunks are in a phase of that group's dimension (first come, first
served). The phases of one chunk therefore pipeline with the other chunks' phases on
other dimensions. With equal phases per dimension T_1..T_d (a reduce-scatter) and one
chunk in flight per dimension, c chunks take

    T_1 + ... + T_d + (c - 1) * max_j T_j

(the classic pipeline; `tests/collectives/test_schedule.py` checks it at c = 1, 2, 4 and
d = 1, 2).
"""

from __future__ import annotations

from collections.abc import Generator, Sequence

import numpy as np
import simpy

from hwsim.codecs import Codec, stream_of
from hwsim.collectives.algorithms import SYMMETRY, CollectiveError, plan
from hwsim.collectives.executor import Outcome, bounds, run
from hwsim.network.topology import dimension_groups

HIERARCHICAL = ("all_reduce", "reduce_scatter", "all_gather")


class Slots:
    """The `in_flight` chunk slots of each group of each dimension, shared by every collective of a
    system: a chunk waiting for a slot is served by its collective's age, `fifo` (the oldest
    collective first) or `lifo` (the newest first; ASTRA-sim's scheduling policy, which favours
    the gradients the next forward needs first), and within a collective in chunk order."""

    def __init__(self, env: simpy.Environment, in_flight: int, order: str):
        if order not in ("fifo", "lifo"):
            raise CollectiveError(f"order: fifo or lifo; got {order!r}")
        if in_flight < 1:
            raise CollectiveError(f"in_flight: at least 1; got {in_flight}")
        self.env, self.in_flight, self.order = env, in_flight, order
        self.resources: dict[tuple, simpy.PriorityResource] = {}
        self.issued = 0

    def ticket(self) -> int:
        """The priority of the next collective (lower is served first)."""
        self.issued += 1
        return self.issued if self.order == "fifo" else -self.issued

    def request(self, key: tuple, priority: int):
        if key not in self.resources:
            self.resources[key] = simpy.PriorityResource(self.env, self.in_flight)
        return self.resources[key].request(priority=priority)


def phases(op: str, dims: int) -> list[tuple[str, int]]:
    """(operation, dimension) of each phase of a hierarchical `op` over `dims` dimensions."""
    if op not in HIERARCHICAL:
        raise CollectiveError(f"a hierarchical {op} is not defined; hierarchical collectives: {', '.join(HIERARCHICAL)}")
    down = [("reduce_scatter", j) for j in range(dims)]
    up = [("all_gather", j) for j in reversed(range(dims))]
    return {"all_reduce": down + up, "reduce_scatter": down, "all_gather": up}[op]


def layout(t, op: str, algorithm: str | Sequence[str], everyone: list[int], hierarchical: bool, symmetric: bool = False):
    """(groups, phases, plans) of `op` over the NPUs `everyone` of topology `t`: per dimension its groups (one
    group of `everyone` unless hierarchical; symmetric: only the groups that hold NPU 0), the phases
    (operation, dimension) and the plan of each."""
    groups = dimension_groups(t) if hierarchical else [[everyone]]
    if symmetric:
        groups = [[g for g in per_dim if 0 in g] for per_dim in groups]
    if hierarchical and len(groups) < 2:
        raise CollectiveError(
            f"a hierarchical collective needs a fabric of 2 or more dimensions (dims or torus); this one is a {t.kind}"
        )
    names = [algorithm] * len(groups) if isinstance(algorithm, str) else list(algorithm)
    if len(names) != len(groups):
        raise CollectiveError(f"one algorithm per dimension: {len(groups)}; got {len(names)}")
    steps = phases(op, len(groups)) if hierarchical else [(op, 0)]
    plans = {(o, j): plan(o, names[j], len(groups[j][0]), symmetric and names[j] in SYMMETRY) for o, j in steps}
    return groups, steps, plans


def piece(edges: list[int], group_of: list[dict], chunk: int, dim: int, npu: int) -> tuple[int, int]:
    """The element (or byte) range an NPU works on along `dim`: its chunk (`edges`), narrowed by the
    reduce-scatters of the dimensions before (a rank keeps block r of its group's piece; `group_of[k]`:
    NPU -> its group along dimension k)."""
    lo, hi = edges[chunk], edges[chunk + 1]
    for k in range(dim):
        group = group_of[k][npu]
        edge = bounds(hi - lo, len(group))
        r = group.index(npu)
        lo, hi = lo + edge[r], lo + edge[r + 1]
    return lo, hi


def collective(
    env: simpy.Environment,
    fabric,
    op: str,
    algorithm: str | Sequence[str],
    nbytes: int,
    *,
    chunks: int = 1,
    in_flight: int = 1,
    hierarchical: bool = False,
    data: Sequence[np.ndarray] | None = None,
    devices: Sequence | None = None,
    overhead: float = 0.0,
    npus: int | None = None,
    symmetric: bool = False,
    codec: Codec | None = None,
    seed: int = 0,
    stream: int = 0,
    slots: Slots | None = None,
    transport=None,
    element_bytes: int = 4,
    lockstep: bool = False,
    reduction_rate: float = 0.0,
    members: Sequence[int] | None = None,
) -> Generator:
    """Process: `op` over NPUs 0..npus-1 of `fabric` (default: every NPU; hierarchical: always every NPU), or
    over `members` (a process group's NPUs in rank order; not hierarchical, not symmetric),
    `nbytes` per NPU (`data`, if given, one float32 array per NPU, changed in place); returns an
    `Outcome` (per NPU: end time, bytes sent). `symmetric`: simulate NPU 0 alone, in the group of each
    dimension that holds it, its partners mirrored (`executor.run`'s `mirror`); every NPU's outcome is
    NPU 0's. `codec`: every message is an encoded buffer (`executor`); `seed` and `stream` key a random
    codec's draws (each chunk, phase and group its own stream). `slots`: the chunk slots this
    collective shares with others (`Slots`; its `in_flight` replaces this one's), else its own.
    `transport` moves the messages (`executor.FabricTransport`, or a cluster's); `element_bytes`:
    the size of an element, timing-only (`executor.run`); `lockstep`: every plan round by round
    (`executor.run`); `reduction_rate`: the local-memory rate a reduction streams at (`executor.run`)."""
    if chunks < 1:
        raise CollectiveError(f"chunks: at least 1; got {chunks}")
    if in_flight < 1:
        raise CollectiveError(f"in_flight: at least 1; got {in_flight}")
    t = fabric.topology
    n = t.npus if npus is None else npus
    if hierarchical and n != t.npus:
        raise CollectiveError(f"a hierarchical collective runs on every NPU of the fabric ({t.npus}); asked for {n}")
    if members is not None:
        if hierarchical or symmetric:
            raise CollectiveError("a collective over a process group (members) is neither hierarchical nor symmetric")
        n = t.npus
    everyone = list(range(n)) if members is None else list(members)
    # `data` and `devices` are by rank, NPU ids by fabric
    rank = {npu: r for r, npu in enumerate(everyone)} if data is not None or devices is not None else {}
    groups, steps, plans = layout(t, op, algorithm, everyone, hierarchical, symmetric)
    width = 4 if data is not None else 1
    size = data[0].size if data is not None else nbytes
    edges = bounds(size, chunks)
    own = [{tuple(g): simpy.Resource(env, in_flight) for g in per_dim} for per_dim in groups] if slots is None else None
    priority = slots.ticket() if slots is not None else 0
    outcome = Outcome(env.now, [env.now] * n, [0] * n)
    done = {}  # (chunk, phase, npu) -> event

    group_of = [{npu: g for g in per_dim for npu in g} for per_dim in groups]

    def one(chunk: int, phase: int, group: list[int]) -> Generator:
        waits = [0] if symmetric else group  # symmetric: NPU 0 stands for every NPU of its group
        before = [done[chunk, phase - 1, npu] for npu in waits] if phase else []
        yield simpy.AllOf(env, before)
        o, j = steps[phase]
        turn = own[j][tuple(group)].request() if own is not None else slots.request((j, tuple(group)), priority)
        with turn:
            yield turn
            lo, hi = piece(edges, group_of, chunk, j, group[0])
            views = [data[rank[npu]][lo:hi] for npu in group] if data is not None else None
            mine = [devices[rank[npu]] for npu in (group[:1] if symmetric else group)] if devices is not None else None
            label = f"{op} c{chunk} {o} d{j}"
            play = run(
                env,
                fabric,
                plans[o, j],
                group,
                (hi - lo) * width,
                data=views,
                devices=mine,
                overhead=overhead,
                label=label,
                mirror=symmetric,
                codec=codec,
                seed=seed,
                stream=stream_of(stream, chunk, phase, group[0]),
                transport=transport,
                element_bytes=element_bytes,
                lockstep=lockstep,
                reduction_rate=reduction_rate,
            )
            out = yield env.process(play)
        for r, npu in enumerate(group):
            outcome.bytes_sent[npu] += out.bytes_sent[r]
            outcome.end_s[npu] = max(outcome.end_s[npu], out.end_s[r])
            if not done[chunk, phase, npu].triggered:
                done[chunk, phase, npu].succeed()

    for chunk in range(chunks):
        for phase in range(len(steps)):
            for npu in everyone:
                done[chunk, phase, npu] = env.event()
    processes = [
        env.process(one(chunk, phase, group))
        for chunk in range(chunks)
        for phase, (_, j) in enumerate(steps)
        for group in groups[j]
    ]
    yield simpy.AllOf(env, processes)
    if symmetric:
        outcome.end_s = [outcome.end_s[0]] * len(outcome.end_s)
        outcome.bytes_sent = [outcome.bytes_sent[0]] * len(outcome.bytes_sent)
    return outcome
