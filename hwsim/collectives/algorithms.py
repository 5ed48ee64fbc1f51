"""Collective algorithms as data: for each NPU, the ordered steps it takes.

A collective works on a buffer of M bytes on each of n NPUs, cut into `blocks` equal
blocks (block b of NPU i is the same slice of every NPU's buffer). A step is a `Send`
of some blocks to a peer, or a `Recv` from a peer of what it sent, into some blocks,
either replacing them or added into them (`reduce`). An NPU takes its steps in order; a
send leaves at once (it carries the blocks as they are then), a receive waits for the
matching send (the k-th receive from a peer matches that peer's k-th send to it). A
step's `lane` lets one rank run independent sequences at once (the two trees of a
double binary tree): steps of one lane are in order, lanes run side by side, and sends
match receives within a lane. The executor (`hwsim.collectives.executor`) plays the
steps on a fabric.

Algorithms, for n NPUs (ranks 0..n-1; `group` maps them to fabric NPUs):

| operation | `ring` | `direct` | `halving_doubling` (n a power of two) |
|---|---|---|---|
| reduce_scatter | n - 1 steps of M/n: send block i - s to i + 1, add block i - s - 1 from i - 1 | send block j to each j, add what each sends | log2 n steps: exchange half of what is left with the partner at distance n/2, n/4, ...; keep the half that holds your block |
| all_gather | n - 1 steps of M/n around the ring | send your block to each j | log2 n steps: exchange what you hold with the partner at distance 1, 2, 4, ... |
| all_reduce | reduce_scatter then all_gather | the same | the same |
| all_to_all | - | send block j to each j, which puts it in slot i | - |
| broadcast (from rank 0) | a chain 0 -> 1 -> ... -> n-1, block by block (pipelined) | 0 sends all to each | - |
| reduce (to rank 0) | a chain n-1 -> ... -> 0, adding block by block | each sends all to 0, which adds | - |

`double_binary_tree` (all_reduce; NCCL's, Sanders, Speck and Traeff 2009): two binary
trees, each carrying half of the buffer: tree A is the heap over ranks 0..n-1 (parent
(i - 1) // 2), tree B the heap over ranks n-1..0, so a rank inner in one is mostly a leaf
in the other. In each, a rank adds what its children send, sends the sum to its parent,
then takes the result from its parent and sends it to its children. With no contention
(`ideal`) both trees run side by side and the all-reduce takes 2 D (h a + M / (2 b)),
D = floor(log2 n) the trees' depth.

After reduce_scatter NPU i holds the sum of block i (ring and halving-doubling leave
block i on NPU i; so does direct). All-reduce under `ring` is Patarasuk and Yuan's
bandwidth-optimal ring (2(n-1) steps of M/n); `halving_doubling` is Thakur, Rabenseifner
and Gropp's recursive halving then doubling (2 log2 n steps, 2(n-1)/n M bytes sent).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass


class CollectiveError(ValueError):
    """A collective that cannot run as asked: the message says what is allowed."""


@dataclass(frozen=True)
class Send:
    peer: int
    blocks: tuple[int, ...]
    lane: int = 0


@dataclass(frozen=True)
class Recv:
    peer: int
    blocks: tuple[int, ...]
    reduce: bool  # add into the local blocks (else replace them)
    lane: int = 0


Step = Send | Recv


@dataclass(frozen=True)
class Plan:
    """Per rank, its steps; the buffer is cut into `blocks` blocks."""

    op: str
    algorithm: str
    n: int
    blocks: int
    steps: tuple[tuple[Step, ...], ...]


def _ring_reduce_scatter(n: int, ranks: range) -> list[list[Step]]:
    steps: list[list[Step]] = [[] for _ in range(n)]
    for s in range(n - 1):
        for i in ranks:
            steps[i] += [Send((i + 1) % n, ((i - s - 1) % n,)), Recv((i - 1) % n, ((i - s - 2) % n,), True)]
    return steps


def _ring_all_gather(n: int, ranks: range) -> list[list[Step]]:
    steps: list[list[Step]] = [[] for _ in range(n)]
    for s in range(n - 1):
        for i in ranks:
            steps[i] += [Send((i + 1) % n, ((i - s) % n,)), Recv((i - 1) % n, ((i - s - 1) % n,), False)]
    return steps


def _direct(n: int, ranks: range, op: str) -> list[list[Step]]:
    """Every rank sends to every other at once, staggered (rank i sends to i + 1, i + 2, ... so no rank is
    every sender's first): reduce_scatter sends block j to rank j, which adds it; all_gather sends the
    rank's own block i to everyone; all_to_all sends block j to rank j, which puts it in slot i."""
    steps: list[list[Step]] = [[] for _ in range(n)]
    for i in ranks:
        for k in range(1, n):
            j = (i + k) % n
            steps[i].append(Send(j, (i,) if op == "all_gather" else (j,)))
        for k in range(1, n):
            j = (i - k) % n
            steps[i].append(Recv(j, (i,) if op == "reduce_scatter" else (j,), op == "reduce_scatter"))
    return steps


def _power_of_two(n: int, algorithm: str) -> int:
    if n < 1 or n & (n - 1):
        raise CollectiveError(f"{algorithm} needs a power-of-two number of NPUs; got {n}")
    return n.bit_length() - 1


def _halving_reduce_scatter(n: int, ranks: range) -> list[list[Step]]:
    steps: list[list[Step]] = [[] for _ in range(n)]
    for i in ranks:
        lo, hi = 0, n  # the blocks this rank still reduces
        distance = n // 2
        while distance >= 1:
            partner = i ^ distance
            mid = (lo + hi) // 2
            keep, give = ((lo, mid), (mid, hi)) if i & distance == 0 else ((mid, hi), (lo, mid))
            steps[i] += [Send(partner, tuple(range(*give))), Recv(partner, tuple(range(*keep)), True)]
            lo, hi = keep
            distance //= 2
    return steps


def _doubling_all_gather(n: int, ranks: range) -> list[list[Step]]:
    steps: list[list[Step]] = [[] for _ in range(n)]
    for i in ranks:
        lo, hi = i, i + 1  # the blocks this rank holds
        distance = 1
        while distance < n:
            partner = i ^ distance
            size = hi - lo
            other = (lo + size, hi + size) if i & distance == 0 else (lo - size, hi - size)
            steps[i] += [Send(partner, tuple(range(lo, hi))), Recv(partner, tuple(range(*other)), False)]
            lo, hi = min(lo, other[0]), max(hi, other[1])
            distance *= 2
    return steps


def _chain(n: int, reduce: bool) -> list[list[Step]]:
    """Broadcast from rank 0 down the chain 0 -> 1 -> ... (or reduce up it to 0), one block per step, so
    the n blocks pipeline."""
    steps: list[list[Step]] = [[] for _ in range(n)]
    order = list(range(n)) if not reduce else list(range(n - 1, -1, -1))
    for b in range(n):
        for k, i in enumerate(order):
            if k > 0:
                steps[i].append(Recv(order[k - 1], (b,), reduce))
            if k < n - 1:
                steps[i].append(Send(order[k + 1], (b,)))
    return steps


def _star(n: int, reduce: bool) -> list[list[Step]]:
    everything = tuple(range(n))
    steps: list[list[Step]] = [[] for _ in range(n)]
    for j in range(1, n):
        if reduce:
            steps[j].append(Send(0, everything))
            steps[0].append(Recv(j, everything, True))
        else:
            steps[0].append(Send(j, everything))
            steps[j].append(Recv(0, everything, False))
    return steps


def _double_binary_tree(n: int) -> list[list[Step]]:
    steps: list[list[Step]] = [[] for _ in range(n)]
    for lane, rank_of in enumerate((lambda h: h, lambda h: n - 1 - h)):  # heap position -> rank
        for h in range(n):
            i = rank_of(h)
            children = [rank_of(c) for c in (2 * h + 1, 2 * h + 2) if c < n]
            parent = rank_of((h - 1) // 2) if h else None
            steps[i] += [Recv(c, (lane,), True, lane) for c in children]
            if parent is not None:
                steps[i] += [Send(parent, (lane,), lane), Recv(parent, (lane,), False, lane)]
            steps[i] += [Send(c, (lane,), lane) for c in children]
    return steps


def _join(*parts: list[list[Step]]) -> list[list[Step]]:
    return [sum((p[i] for p in parts), []) for i in range(len(parts[0]))]


BUILDERS = {
    ("reduce_scatter", "ring"): _ring_reduce_scatter,
    ("all_gather", "ring"): _ring_all_gather,
    ("all_reduce", "ring"): lambda n, r: _join(_ring_reduce_scatter(n, r), _ring_all_gather(n, r)),
    ("reduce_scatter", "direct"): lambda n, r: _direct(n, r, "reduce_scatter"),
    ("all_gather", "direct"): lambda n, r: _direct(n, r, "all_gather"),
    ("all_reduce", "direct"): lambda n, r: _join(_direct(n, r, "reduce_scatter"), _direct(n, r, "all_gather")),
    ("all_to_all", "direct"): lambda n, r: _direct(n, r, "all_to_all"),
    ("all_reduce", "double_binary_tree"): lambda n, r: _double_binary_tree(n),
    ("reduce_scatter", "halving_doubling"): _halving_reduce_scatter,
    ("all_gather", "halving_doubling"): _doubling_all_gather,
    ("all_reduce", "halving_doubling"): lambda n, r: _join(_halving_reduce_scatter(n, r), _doubling_all_gather(n, r)),
    ("broadcast", "ring"): lambda n, r: _chain(n, False),
    ("reduce", "ring"): lambda n, r: _chain(n, True),
    ("broadcast", "direct"): lambda n, r: _star(n, False),
    ("reduce", "direct"): lambda n, r: _star(n, True),
}
"""(operation, algorithm) -> builder(n, ranks) of the steps of `ranks` (the symmetric ones may build
rank 0's alone; the others build every rank's)."""

OPERATIONS = tuple(dict.fromkeys(op for op, _ in BUILDERS))
ALGORITHMS = tuple(dict.fromkeys(name for _, name in BUILDERS))


SYMMETRY = {"ring": "cyclic", "direct": "cyclic", "halving_doubling": "xor"}
"""How rank p's steps follow from rank 0's: shifted by p (cyclic) or XOR-ed with p, peers and blocks alike.
The double binary tree and the rooted operations (broadcast, reduce) have no such symmetry."""


def counterpart(algorithm: str, n: int, p: int) -> int:
    """The peer to which rank 0 sends what rank p sends to rank 0, in a symmetric plan."""
    return (-p) % n if SYMMETRY[algorithm] == "cyclic" else p


def symmetric(p: Plan) -> bool:
    return p.algorithm in SYMMETRY and p.op not in ("broadcast", "reduce")


@functools.lru_cache(maxsize=256)
def plan(op: str, algorithm: str, n: int, only_rank_0: bool = False) -> Plan:
    """The steps of collective `op` by `algorithm` on n ranks (`only_rank_0`: rank 0's alone, for
    symmetric mode); a CollectiveError says what is allowed. Plans are cached: they do not change."""
    if op not in OPERATIONS:
        raise CollectiveError(f"unknown collective {op!r}; one of {', '.join(OPERATIONS)}")
    build = BUILDERS.get((op, algorithm))
    if build is None:
        known = [name for o, name in BUILDERS if o == op]
        raise CollectiveError(f"unknown algorithm {algorithm!r} for {op}; one of {', '.join(known)}")
    if n < 1:
        raise CollectiveError(f"a collective needs at least one NPU; got {n}")
    if algorithm == "halving_doubling":
        _power_of_two(n, algorithm)
    steps = build(n, range(1) if only_rank_0 else range(n)) if n > 1 else [[]]
    blocks = 2 if algorithm == "double_binary_tree" else n
    return Plan(op, algorithm, n, blocks, tuple(tuple(s) for s in steps))
