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

With a `codec` (`hwsim.codecs`: int8, QSGD, EDEN, ...) every message is the encoded
buffer of its blocks, and its bytes on the wire are that buffer's. A sender encodes what
it holds and keeps the decoded values itself (so a rank that sends its reduced block
holds what its receivers get); a rank that forwards blocks it received as they were
sends the received buffer again, without re-encoding. An all-reduce therefore ends with
the same values on every rank, to the bit, with any codec, deterministic or random (a
random codec's stream is keyed by `stream`, the lane, the step's index and its blocks,
which the ranks that send the same blocks at the same step share). Timing-only, a
buffer of nbytes holds nbytes / `element_bytes` elements (4 by default): the elements a
reduction adds and a codec encodes. With `devices`, encoding
holds the vector unit for ENCODE_OPS and decoding for DECODE_OPS element operations per
element.
"""

from __future__ import annotations

import itertools
from collections.abc import Generator, Sequence
from dataclasses import dataclass, field

import numpy as np
import simpy

from hwsim.codecs import Codec, stream_of
from hwsim.collectives.algorithms import CollectiveError, Plan, Send, counterpart, symmetric
from hwsim.network.topology import FabricError

ENCODE_OPS = 3  # vector-unit operations per element: block max, scale, round
DECODE_OPS = 1  # code x scale
REDUCTION_PASSES = 3
"""A reduction through local memory reads the received block and the rank's own and writes their sum: three
passes over its bytes (ASTRA-sim's `PacketBundle::call`, astra-sim/system/PacketBundle.cc at 5f07824)."""


class FabricTransport:
    """How a collective's messages move: on the fabric, each paying `overhead` (seconds) first, nothing
    recorded. A system passes its cluster's (`Cluster.transport`), which also charges each sender's NIC
    overhead and records every message in messages.csv."""

    def __init__(self, fabric, overhead: float = 0.0):
        self.fabric, self.overhead = fabric, overhead

    def move(self, src: int, dst: int, nbytes: int, label: str) -> Generator:
        """Process: `nbytes` from NPU `src` to NPU `dst`."""
        yield from self.fabric.transfer(src, dst, nbytes, label, self.overhead)

    def mirror(self, me: int, partner: int, nbytes: int, label: str) -> Generator:
        """Process: symmetric mode's stand-in for `partner`'s message to NPU `me`: `nbytes` out on me's
        link to the switch that joins them and back on that switch's link to me (`Topology.loopback`)."""
        yield from self.fabric.model.transfer(self.fabric.topology.loopback(me, partner), nbytes, label, self.overhead)

    def move_group(self, moves: list[tuple[int, int, int]], label: str) -> Generator:
        """Process: messages (src, dst, nbytes) that leave together, done when the last has landed."""
        yield from self.fabric.transfer_group(moves, label, self.overhead)


class InstantTransport:
    """Messages that take no time (a pipeline's `network: free`)."""

    def move(self, src: int, dst: int, nbytes: int, label: str) -> Generator:
        return
        yield

    def mirror(self, me: int, partner: int, nbytes: int, label: str) -> Generator:
        return
        yield

    def move_group(self, moves, label: str) -> Generator:
        return
        yield


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
    codec: Codec | None = None,
    seed: int = 0,
    stream: int = 0,
    transport=None,
    element_bytes: int = 4,
    finished=None,
    lockstep: bool = False,
    reduction_rate: float = 0.0,
) -> Generator:
    """Process: the collective `plan` over the fabric NPUs `group` (rank r on NPU group[r]), `nbytes` per
    rank; returns an `Outcome`. `data`, when given, is changed in place (its bytes are `nbytes`).

    `mirror` (symmetric mode): only rank 0 runs. Each of its sends crosses its own uplink and comes back
    on its own downlink through the switch (NPU, switch, NPU routes only), standing in for the identical
    message its counterpart sends it; its receive from rank p matches its own send to the rank that
    plays p's part (`counterpart`). Exact when the fabric and the ranks are symmetric and the blocks
    are equal (nbytes a multiple of the ranks); timing only.

    `codec`: messages are encoded buffers (the module docstring); `seed` and `stream` key a random
    codec's draws. `transport` moves the messages (default: `FabricTransport(fabric, overhead)`). Timing-only,
    `element_bytes` is the size of an element (what a reduction adds, a codec encodes). `finished(rank)`,
    if given, is called when a rank has taken all its steps (a broadcast's receiver has its data).
    `reduction_rate` (bytes/s; 0: none): adding a received block takes REDUCTION_PASSES x its bytes at this rate
    (a reduction streamed through local memory: ASTRA-sim's local-mem-bw) from its arrival; a rank's reductions
    overlap each other and its receives, as ASTRA-sim's delays do (astra-sim/system/PacketBundle.cc), and its next
    send, and its end, wait for those under way."""
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
    length = data[0].size if data is not None else nbytes  # elements, or bytes when timing-only
    edge = bounds(length, plan.blocks)
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

    carrier = transport if transport is not None else FabricTransport(fabric, overhead)
    if lockstep:
        rounds = lockstep_rounds(plan)
        if (
            rounds is None
            or data is not None
            or codec is not None
            or devices is not None
            or mirror
            or finished is not None
            or reduction_rate
        ):
            raise CollectiveError(
                f"lockstep: timing only, without a codec, devices, mirroring or a reduction rate, and a plan whose ranks take their steps in rounds (ring, direct, halving_doubling); got {plan.algorithm} {plan.op}"
            )
        sizes, sent = [hi - lo for lo, hi in itertools.pairwise(edge)], outcome.bytes_sent  # bytes: timing only
        for sends in rounds:
            moves = []
            for i, p, blocks in sends:
                size = sizes[blocks[0]] if len(blocks) == 1 else sum(sizes[b] for b in blocks)
                sent[i] += size
                moves.append((group[i], group[p], size))
            yield from carrier.move_group(moves, f"{name} lockstep")
        outcome.end_s = [env.now] * n
        return outcome

    def transfer(src: int, dst: int, size: int, payload, done: simpy.Event) -> Generator:
        label = f"{name} r{src}->r{dst}"
        if mirror:  # rank 0's message to dst stands in for the one it receives from dst's counterpart
            yield from carrier.mirror(group[0], group[counterpart(plan.algorithm, n, dst)], size, label)
        else:
            yield from carrier.move(group[src], group[dst], size, label)
        done.succeed(payload)

    def rank(i: int, lane: int) -> Generator:
        received = [0] * n
        reduced = env.now  # when the reductions under way end
        held: dict[tuple[int, ...], object] = {}  # blocks -> the buffer that carries exactly their values now
        for k, step in enumerate(plan.steps[i]):
            if step.lane != lane:
                continue
            spans = [(edge[b], edge[b + 1]) for b in step.blocks]
            size = sum(hi - lo for lo, hi in spans) * width
            elements = -(-size // (4 if data is not None else element_bytes))
            if isinstance(step, Send):
                if reduced > env.now:  # what it sends may hold what it is still adding
                    yield env.timeout(reduced - env.now)
                seq = sent_count.get((i, step.peer, lane), 0)
                sent_count[i, step.peer, lane] = seq + 1
                if codec is not None:
                    key = stream_of(stream, lane, k, step.blocks[0], len(step.blocks))
                    payload, size, encoded = _encode(
                        codec, held, step.blocks, spans, data[i] if data is not None else None, seed, key, elements
                    )
                    if encoded and devices is not None:
                        yield from devices[i].vector.elementwise(elements, ENCODE_OPS, f"{name} encode")
                else:
                    payload = [data[i][lo:hi].copy() for lo, hi in spans] if data is not None else None
                outcome.bytes_sent[i] += size
                env.process(transfer(i, step.peer, size, payload, channel(i, step.peer, lane, seq)))
                continue
            if mirror:  # what p sends rank 0 is what rank 0 sends the rank in p's part
                payload = yield channel(i, counterpart(plan.algorithm, n, step.peer), lane, received[step.peer])
            else:
                payload = yield channel(step.peer, i, lane, received[step.peer])
            received[step.peer] += 1
            if codec is not None:
                _forget(held, step.blocks)
                if not step.reduce:
                    held[step.blocks] = payload
                if devices is not None:
                    yield from devices[i].vector.elementwise(elements, DECODE_OPS, f"{name} decode")
                if data is not None:
                    payload = _split(codec.decode(payload), spans)
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
                yield from devices[i].vector.elementwise(elements, 1, f"{name} add")
            if step.reduce and reduction_rate:
                reduced = max(reduced, env.now + REDUCTION_PASSES * size / reduction_rate)
        if reduced > env.now:
            yield env.timeout(reduced - env.now)
        outcome.end_s[i] = max(outcome.end_s[i], env.now)
        lanes_left[i] -= 1
        if finished is not None and lanes_left[i] == 0:
            finished(i)

    ranks = [0] if mirror else range(n)
    lanes = {i: sorted({step.lane for step in plan.steps[i]} or {0}) for i in ranks}
    lanes_left = {i: len(lanes[i]) for i in ranks}
    yield simpy.AllOf(env, [env.process(rank(i, lane)) for i in ranks for lane in lanes[i]])
    if mirror:  # every rank as rank 0
        outcome.end_s = [outcome.end_s[0]] * n
        outcome.bytes_sent = [outcome.bytes_sent[0]] * n
    return outcome


_ROUNDS: dict[int, tuple[Plan, list | None]] = {}


def lockstep_rounds(plan: Plan) -> list[list[tuple[int, int, tuple[int, ...]]]] | None:
    """The plan as rounds every rank takes together: per round, every (rank, peer, blocks) sent; None
    unless each rank's steps are (sends, then receives) repeated the same number of times, one lane,
    and the messages each round receives are the ones it sends. Cached per plan (plans are cached)."""
    cached = _ROUNDS.get(id(plan))
    if cached is not None and cached[0] is plan:
        return cached[1]
    rounds = _rounds(plan)
    _ROUNDS[id(plan)] = (plan, rounds)
    return rounds


def _rounds(plan: Plan):
    per_rank = []
    for steps in plan.steps:
        if any(step.lane for step in steps) or not steps or not isinstance(steps[0], Send):
            return None
        mine, at = [], 0
        while at < len(steps):
            sends = []
            while at < len(steps) and isinstance(steps[at], Send):
                sends.append(steps[at])
                at += 1
            recvs = []
            while at < len(steps) and not isinstance(steps[at], Send):
                recvs.append(steps[at])
                at += 1
            mine.append((sends, recvs))
        per_rank.append(mine)
    if len({len(mine) for mine in per_rank}) != 1:
        return None
    rounds = []
    for r in range(len(per_rank[0])):
        sent = sorted((i, s.peer) for i, mine in enumerate(per_rank) for s in mine[r][0])
        got = sorted((s.peer, i) for i, mine in enumerate(per_rank) for s in mine[r][1])
        if sent != got:
            return None
        rounds.append([(i, s.peer, s.blocks) for i, mine in enumerate(per_rank) for s in mine[r][0]])
    return rounds


def _encode(codec: Codec, held: dict, blocks: tuple[int, ...], spans, array, seed: int, key: int, elements: int):
    """(payload, wire bytes, whether it was encoded now) of a send of `blocks`: the buffer they arrived in
    if they are unchanged since, else a fresh encoding, whose decoded values the sender keeps."""
    if blocks in held:
        buf = held[blocks]
        return buf, (buf.size if array is not None else codec.wire_bytes(elements)), False
    if array is None:
        held[blocks] = None
        return None, codec.wire_bytes(elements), True
    buf = codec.encode(np.concatenate([array[lo:hi] for lo, hi in spans]), seed=seed, stream=key)
    for (lo, hi), part in zip(spans, _split(codec.decode(buf), spans), strict=True):
        array[lo:hi] = part
    _forget(held, blocks)
    held[blocks] = buf
    return buf, int(buf.size), True


def _split(flat: np.ndarray, spans) -> list[np.ndarray]:
    """`flat` cut into the lengths of `spans`."""
    cuts = np.cumsum([hi - lo for lo, hi in spans])[:-1]
    return np.split(flat, cuts)


def _forget(held: dict, blocks: tuple[int, ...]) -> None:
    """Drop every held buffer that carries any of `blocks` (they are about to change)."""
    changed = set(blocks)
    for key in [key for key in held if changed.intersection(key)]:
        del held[key]


def loopbacks(t, group: Sequence[int]) -> None:
    """Raise a CollectiveError unless symmetric mode can run on `group` of topology `t`: every NPU of it one
    switch away from the first (`Topology.loopback`)."""
    for npu in group[1:]:
        try:
            t.loopback(group[0], npu)
        except FabricError as err:
            raise CollectiveError(str(err)) from None
