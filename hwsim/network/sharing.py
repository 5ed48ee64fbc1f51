"""Link-sharing models: how long a message takes on a path, given what else is on its links.

A path is a list of links, each with a bandwidth b_l and a latency a_l. A message of B
bytes leaves after its sender's NIC overhead o, then:

- `ideal` (no contention; ASTRA-sim's congestion-unaware analytical model):
      T = o + sum_l a_l + B / min_l b_l
  computed at once, without per-link events.
- `flow` (congestion-aware, the default): the message is a flow that crosses every link
  of its path at one rate (cut-through: serialized once, not once per hop). Concurrent
  flows share links max-min fairly, by progressive filling (as SimGrid's flow model and
  ASTRA-sim's congestion-aware backend do): every flow's rate rises together until a link
  is full; the flows on it keep that rate, and the rest rise on. Rates are recomputed
  whenever a flow starts or ends (all starts and ends at one instant together). The
  message arrives sum_l a_l after its last byte leaves: T = o + sum_l a_l + the time
  its B bytes take at the rates it gets; alone on its path, as `ideal`.
- `store_and_forward` (the model hwsim had before, kept to reproduce older results):
  whole messages, FIFO per link, hop by hop: each link is held for B / b_l (the first
  also for o), then the message crosses it in a_l: alone, T = o + sum_l (B / b_l + a_l).

With no contention the three agree where their definitions agree: on a one-hop path,
and `ideal` = `flow` on any path (tests/network/test_sharing.py).

Messages between two NICs arrive in the order they were sent (one connection per pair):
under `ideal` and `flow` a message starts when the pair's previous one has left the
sender (`Cluster.send`); store-and-forward keeps the order by itself (FIFO links, one
route per pair).

`max_min(paths, capacity)` is the rate solver (`kernels.maxmin`); `tests/network/test_sharing.py`
checks it against a one-flow-at-a-time progressive filling on random flow sets. The flow model
does not solve every flow again at each start or end: it re-solves the flows on the links that
changed, then widens the set only where a flow lost its bottleneck (`max_min_update`), so a
start or an end among 1,000 flows usually moves a handful of rates. A test holds the finishing
times to a fluid simulation that solves the whole flow set from scratch at every event.
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import simpy

from hwsim.kernels.maxmin import attach, detach, finished, max_min_rates, next_end, resolve


def max_min(paths: list[list[int]], capacity: np.ndarray) -> np.ndarray:
    """Max-min fair rates of flows crossing the links `paths[f]` of the given capacities."""
    hops = np.full((len(paths), max(map(len, paths), default=0)), -1, np.int64)
    for f, path in enumerate(paths):
        hops[f, : len(path)] = path
    return max_min_rates(hops, np.asarray(capacity, float))


class Sharing:
    """Base: moves B bytes over a path of links of a `fabric` (its bandwidth, latency, link stats)."""

    name = "sharing"
    ordered = False  # whether messages between one pair arrive in order without help

    def __init__(self, env: simpy.Environment, fabric):
        self.env = env
        self.fabric = fabric

    def transfer(
        self, path: tuple[int, ...], nbytes: int, label: str, overhead: float, sent: simpy.Event | None = None
    ) -> Generator:
        """Process: from the sender's NIC to the receiver's, including the overhead and latencies;
        `sent` succeeds when the last byte has left the sender."""
        raise NotImplementedError

    def transfer_group(self, paths: list[tuple[int, ...]], sizes: list[int], label: str, overhead: float) -> Generator:
        """Process: messages that leave together (`paths[k]`, `sizes[k]` bytes each), done when the last
        has landed. Here: each its own transfer; `Flow` and `Ideal` do it in one go."""
        moves = [self.env.process(self.transfer(path, n, label, overhead)) for path, n in zip(paths, sizes, strict=True)]
        yield simpy.AllOf(self.env, moves)

    def unloaded(self, path: tuple[int, ...], nbytes: float, overhead: float) -> float:
        """The time of a message alone on `path`."""
        if not path:
            return 0.0
        return overhead + self.fabric.path_latency(path) + nbytes / self.fabric.path_bandwidth(path)


class Ideal(Sharing):
    """One timeout per message. A link reports the span it would take to serialize the message
    alone; concurrent messages' spans may overlap (there is no contention to keep them apart)."""

    name = "ideal"

    def transfer(self, path, nbytes, label, overhead, sent=None):
        if not path:
            _succeed(sent)
            return
        f = self.fabric
        latency, bandwidth = f.topology.cost(path)
        serialized = overhead + nbytes / bandwidth
        f.carried(path, nbytes, label, self.env.now + overhead)
        if sent is not None:
            self.env.timeout(serialized).callbacks.append(lambda _e: sent.succeed())
        yield self.env.timeout(serialized + latency)

    def transfer_group(self, paths, sizes, label, overhead):
        f, longest = self.fabric, 0.0
        for path, nbytes in zip(paths, sizes, strict=True):
            if path:
                latency, bandwidth = f.topology.cost(path)
                f.carried(path, nbytes, label, self.env.now + overhead)
                longest = max(longest, overhead + nbytes / bandwidth + latency)
        yield self.env.timeout(longest)


class StoreAndForward(Sharing):
    name = "store_and_forward"
    ordered = True

    def transfer(self, path, nbytes, label, overhead, sent=None):
        f = self.fabric
        for hop, i in enumerate(path):
            f.touch(i)
            rate, latency = float(f.bandwidth[i]), float(f.latency[i])
            yield from f.units[i].busy((overhead if hop == 0 else 0.0) + nbytes / rate, label, float(nbytes))
            f.add_bytes((i,), nbytes)
            if hop == 0:
                _succeed(sent)
            yield self.env.timeout(latency)
        if not path:
            _succeed(sent)

    def unloaded(self, path, nbytes, overhead):
        if not path:
            return 0.0
        f = self.fabric
        return overhead + sum(nbytes / float(f.bandwidth[i]) + float(f.latency[i]) for i in path)


class Flow(Sharing):
    """Max-min fair flows. Per flow slot: bytes left, rate (0 when the slot is free), its links (a row of
    `hops`, padded with -1) and its completion event; per link: its flows (a row of `on_link`, the
    first `degree` entries), the sum and the largest of their rates (`load`, `most`)."""

    name = "flow"

    def __init__(self, env, fabric):
        super().__init__(env, fabric)
        self.capacity = np.array(fabric.bandwidth, float)  # a copy: a failed link is 0 here, not in the fabric
        self.left = np.zeros(0)
        self.rate = np.zeros(0)
        self.done: list[simpy.Event | None] = []
        self.paths: list[tuple[int, ...]] = []
        self.free: list[int] = []
        self.hops = np.full((0, 4), -1, np.int64)
        n_links = len(self.capacity)
        self.on_link = np.zeros((n_links, 8), np.int64)
        self.degree = np.zeros(n_links, np.int64)
        self.load, self.most = np.zeros(n_links), np.zeros(n_links)
        self.flows = 0
        self.touched: list[int] = []  # links where flows started or ended since the last solve
        self._grow()
        self.failures = None  # cables that fail mid-run (`FlowFailures`), when the scenario has any
        self.moved: dict[simpy.Event, tuple[int, ...]] = {}  # a rerouted flow's completion -> its new path
        self.clock = 0.0  # when `left` was last brought up to date
        self.pending = False  # a solve is scheduled for this instant
        self.version = 0  # of the scheduled next completion; an older one is void
        self.solves = 0

    def transfer(self, path, nbytes, label, overhead, sent=None):
        if path:
            f = self.fabric
            if overhead:
                yield self.env.timeout(overhead)
            if self.failures is not None:  # round the failed cables the routes already avoid
                path = self.failures.around(path)
            if nbytes > 0:
                done = self._start(path, float(nbytes), label)
                f.started(path, nbytes, label)
                yield done
                path = self.moved.pop(done, path)  # rerouted on the way (`_reroute`)
                f.ended(path)
        _succeed(sent)
        if path:
            yield self.env.timeout(self.fabric.path_latency(path))

    def transfer_group(self, paths, sizes, label, overhead):
        if self.failures is not None:  # each message a flow of its own, so each can be rerouted
            yield from super().transfer_group(paths, sizes, label, overhead)
            return
        yield from self._merged_group(paths, sizes, label, overhead)

    def _merged_group(self, paths, sizes, label, overhead):
        """Messages that leave together, as few flows as can carry them exactly alike: messages of one
        size whose paths share no link become one flow over the union of their links (each link then
        carries one of them, at the flow's rate, as it would carry the message alone). A ring step on
        a switch is one flow; a direct all-reduce round (n - 1 messages per uplink) n - 1 flows. The
        group lands when every flow has, plus the longest latency among its messages."""
        f = self.fabric
        if overhead:
            yield self.env.timeout(overhead)
        flows: list[list] = []  # [size, links (set), path (list), latency]
        cost = f.topology.cost
        for path, nbytes in zip(paths, sizes, strict=True):
            if not path or nbytes <= 0:
                continue
            for flow in flows:
                if flow[0] == nbytes and flow[1].isdisjoint(path):
                    break
            else:
                flow = [nbytes, set(), [], 0.0]
                flows.append(flow)
            flow[1].update(path)
            flow[2].extend(path)
            latency = cost(path)[0]
            if latency > flow[3]:
                flow[3] = latency
        landed = [self.env.now]

        def land(path: tuple[int, ...], latency: float):
            def ended(_event) -> None:
                f.ended(path)
                landed[0] = max(landed[0], self.env.now + latency)

            return ended

        events = []
        for nbytes, _, links, latency in flows:
            path = tuple(links)
            event = self._start(path, float(nbytes))
            f.started(path, nbytes, label)
            event.callbacks.append(land(path, latency))
            events.append(event)
        if events:
            yield simpy.AllOf(self.env, events)
        yield self.env.timeout(landed[0] - self.env.now)

    # --- flows ------------------------------------------------------------------

    def _grow(self) -> None:
        n = len(self.left)
        more = max(n, 256)
        self.left, self.rate = np.concatenate([self.left, np.zeros(more)]), np.concatenate([self.rate, np.zeros(more)])
        self.hops = np.concatenate([self.hops, np.full((more, self.hops.shape[1]), -1, np.int64)])
        self.done += [None] * more
        self.paths += [()] * more
        self.free = list(range(n + more - 1, n - 1, -1)) + self.free

    def _start(self, path: tuple[int, ...], nbytes: float, label: str = "") -> simpy.Event:
        if not self.free:
            self._grow()
        slot = self.free.pop()
        if self.failures is not None:
            self.failures.started(slot, path, label)
        self.left[slot], self.rate[slot] = nbytes, 0.0
        self.paths[slot] = path
        if len(path) > self.hops.shape[1]:
            self.hops = np.pad(self.hops, ((0, 0), (0, len(path) - self.hops.shape[1])), constant_values=-1)
        self.hops[slot, : len(path)] = path
        while not attach(self.hops, self.on_link, self.degree, slot):
            self.on_link = np.pad(self.on_link, ((0, 0), (0, self.on_link.shape[1])))
        self.flows += 1
        self.touched += path
        event = self.done[slot] = self.env.event()
        self._soon()
        return event

    def _elapsed(self) -> float:
        """Seconds since `left` was last brought up to date (the kernels do it at the current rates; a
        new flow's rate is 0 until the next solve)."""
        now, before = self.env.now, self.clock
        self.clock = now
        return now - before

    def _soon(self) -> None:
        """Solve once every start and end of this instant is in."""
        if not self.pending:
            self.pending = True
            self.env.timeout(0).callbacks.append(self._solve)

    def _solve(self, _event=None) -> None:
        self.pending = False
        touched = np.asarray(self.touched, np.int64)
        args = self.hops, self.on_link, self.degree, self.capacity, self.rate, self.load, self.most
        wait = resolve(*args, touched, self.flows, self.left, self._elapsed())
        self.touched = []
        self.solves += 1
        self._schedule(wait)

    def _schedule(self, wait: float) -> None:
        """A timeout to the next flow's last byte, `wait` from now (replacing the one scheduled before)."""
        self.version += 1
        if wait == np.inf:
            return
        version = self.version
        self.env.timeout(max(wait, 0.0)).callbacks.append(lambda _e: self._finish(version))

    def _finish(self, version: int) -> None:
        if version != self.version:
            return
        # done: nothing left within what the clock can resolve at this time
        slots = finished(self.left, self.rate, self._elapsed(), max(self.env.now, 1e-300))
        if len(slots) == 0:  # rounding put the first end a hair later
            self._schedule(next_end(self.left, self.rate))
            return
        for slot in slots.tolist():
            if self.failures is not None:
                self.failures.ended(slot)
            self.left[slot] = self.rate[slot] = 0.0
            self.touched += self.paths[slot]
            detach(self.hops, self.on_link, self.degree, slot)
            self.flows -= 1
            self.hops[slot] = -1
            self.paths[slot] = ()
            event, self.done[slot] = self.done[slot], None
            self.free.append(slot)
            event.succeed()
        if not self.pending:  # (a flow that starts later at this instant solves again)
            self._solve()

    def move(self, slot: int, path: tuple[int, ...]) -> None:
        """Put flow `slot` on `path` with the bytes it has left (a reroute)."""
        old, left = self.paths[slot], float(self.left[slot])
        detach(self.hops, self.on_link, self.degree, slot)
        self.hops[slot] = -1
        if len(path) > self.hops.shape[1]:
            self.hops = np.pad(self.hops, ((0, 0), (0, len(path) - self.hops.shape[1])), constant_values=-1)
        self.hops[slot, : len(path)] = path
        while not attach(self.hops, self.on_link, self.degree, slot):
            self.on_link = np.pad(self.on_link, ((0, 0), (0, self.on_link.shape[1])))
        self.paths[slot] = path
        self.moved[self.done[slot]] = path
        self.fabric.add_bytes(old, -left)  # the old links carried what was sent before
        self.fabric.ended(old)
        self.fabric.started(path, left, "rerouted")
        self.touched += old + path
        self._soon()

    def set_down(self, links, down: bool) -> None:
        """Links down (capacity 0: the flows on them stall) or back (their bandwidth): the rates are solved
        again at this instant."""
        for link in links:
            self.capacity[link] = 0.0 if down else float(self.fabric.bandwidth[link])
        self.touched += list(links)
        self._soon()


class Unshared(Flow):
    """`ideal` links with cables that fail mid-run: each message is a flow at its path's slowest bandwidth, shared
    with nothing (alone it takes what `Ideal` gives it: overhead, bytes over the bandwidth, latency), so a failure
    can stall it mid-transfer and `FlowFailures` can move it, as under `flow`. The cluster puts it in `Ideal`'s
    place when the scenario has failures."""

    name = "ideal"

    def _solve(self, _event=None) -> None:
        self.pending = False
        self.left -= self.rate * self._elapsed()
        links = self.hops >= 0
        slowest = np.where(links, self.capacity[np.maximum(self.hops, 0)], np.inf).min(axis=1)
        self.rate = np.where(links.any(axis=1), slowest, 0.0)
        self.touched = []
        self.solves += 1
        self._schedule(next_end(self.left, self.rate))


def _succeed(event: simpy.Event | None) -> None:
    if event is not None:
        event.succeed()


MODELS = {"ideal": Ideal, "flow": Flow, "store_and_forward": StoreAndForward}
