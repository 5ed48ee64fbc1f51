"""Cables that fail mid-run (`hardware.network.failures`; the flow model, and the ideal one, whose messages are
then flows that share nothing, `sharing.Unshared`): what a flow on them does.

At a failure's `at` both directions of the cable lose their capacity: every flow crossing them stalls (the
max-min rates give it nothing). Then `on_failure` decides:

- `reroute`: `reroute_delay` later each stalled flow moves, with the bytes it has left, to the shortest path
  that avoids every cable down then (breadth-first over the links left, ties by link order); flows that start
  from then on take such a path too, until the cable is back. A flow with no path left waits for the cable.
- `abort` (NCCL-like: a collective hangs on a dead link until the process group's watchdog gives up): a
  stalled flow waits; if its cable is still down `timeout` after the failure, the run fails
  (`NetworkTimeout`), with the time lost in its diagnosis.

When a cable comes back its capacity returns and flows still on it go on. Every stalled flow's time counts
as lost (`FlowFailures.summary`: per failure, the flows it stalled and rerouted, and their seconds stalled).
The compiled engine's flows follow the same failures: it watches them (`watchers`) and is told of each change
(`hwsim.collectives.compiled_failures`).
"""

from __future__ import annotations

from collections import deque
from dataclasses import dataclass

from hwsim.errors import ConfigError, SimulatedFailure
from hwsim.network.topology import Topology


class NetworkTimeout(SimulatedFailure):
    """A flow stalled on a failed cable past the timeout (`on_failure: abort`)."""

    kind = "network_timeout"


def failure_links(t: Topology, names: list[str], network, where: str) -> list[tuple[int, ...]]:
    """Per failure of `network.failures`, the links it takes down (the one named and its reverse); a clear error
    for a name the fabric does not have or a sharing model that does not cut flows."""
    if not network.failures:
        return []
    if network.model not in ("flow", "ideal"):
        raise ConfigError(
            where,
            "hardware.network.failures",
            "set",
            f"model flow or ideal (the {network.model} model's hop-by-hop messages are not cut yet)",
        )
    by_name = {t.link_name(i, names): i for i in range(t.links)}
    out = []
    for k, failure in enumerate(network.failures):
        link = by_name.get(failure.link)
        if link is None:
            close = sorted(name for name in by_name if "->" in name)[:4] or sorted(by_name)[:4]
            raise ConfigError(
                where,
                f"hardware.network.failures[{k}].link",
                failure.link,
                f"a link of the fabric, as links.csv names it: {', '.join(close)}, ...",
            )
        back = [i for i in range(t.links) if t.src[i] == t.dst[link] and t.dst[i] == t.src[link]]
        out.append((link, *back))
    return out


def detour(t: Topology, a: int, b: int, down: set[int]) -> tuple[int, ...] | None:
    """The shortest path from NPU a to NPU b over the links not in `down` (breadth first, ties by link order;
    through switches only), or None."""
    if a == b:
        return ()
    via, queue = {a: -1}, deque([a])
    while queue:
        u = queue.popleft()
        for i in t.out_links(u):
            v = t.dst[i]
            if i in down or v in via or (v < t.npus and v != b):
                continue
            via[v] = i
            if v == b:
                path, at = [], b
                while at != a:
                    path.append(via[at])
                    at = t.src[via[at]]
                return tuple(path[::-1])
            queue.append(v)
    return None


@dataclass
class FailureRecord:
    """What one failure did: the flows it stalled and rerouted, and their seconds stalled."""

    link: str
    at: float
    until: float | None
    stalled: int = 0
    rerouted: int = 0
    stalled_s: float = 0.0


class FlowFailures:
    """The failures of one run on the flow model `flow` (`hwsim.network.sharing.Flow`): each scheduled at its
    time, the flows it stalls followed until they move, end or the run fails (the module's docstring)."""

    def __init__(self, env, flow, t: Topology, network, links: list[tuple[int, ...]]):
        self.env, self.flow, self.t = env, flow, t
        self.policy, self.delay, self.timeout = network.on_failure, network.reroute_delay, network.timeout
        self.down: dict[int, FailureRecord] = {}  # a link down now -> its failure
        self.routed: set[int] = set()  # down links the routes go round (reroute, once the delay has passed)
        self.stalled: dict[int, tuple[float, FailureRecord]] = {}  # a stalled flow's slot -> since when, and why
        self.records: list[FailureRecord] = []
        self.watchers: list = []  # others whose flows the failures cut (the compiled engine): told of each change
        for failure, down in zip(network.failures, links, strict=True):
            until = failure.at + failure.duration if failure.duration is not None else None
            record = FailureRecord(failure.link, failure.at, until)
            self.records.append(record)
            env.timeout(failure.at).callbacks.append(lambda _e, r=record, d=down: self._fail(r, d))

    # --- what the flow model asks ------------------------------------------------------

    def around(self, path: tuple[int, ...]) -> tuple[int, ...]:
        """A new flow's path: round the failed cables the routes avoid by now, if there is a way."""
        if not self.routed or self.routed.isdisjoint(path):
            return path
        return detour(self.t, self.t.src[path[0]], self.t.dst[path[-1]], set(self.down)) or path

    def started(self, slot: int, path: tuple[int, ...], label: str) -> None:
        """A flow began: on a cable that is down, it stalls at once."""
        cut = next((link for link in path if link in self.down), None)
        if cut is not None:
            self._stall(slot, self.down[cut])

    def ended(self, slot: int) -> None:
        self.stalled.pop(slot, None)

    # --- failures over time ------------------------------------------------------------

    def _fail(self, record: FailureRecord, links: tuple[int, ...]) -> None:
        for link in links:
            self.down[link] = record
        self.flow.set_down(links, True)
        for watcher in self.watchers:
            watcher.failed(record, links)
        for slot, path in enumerate(self.flow.paths):
            if path and not set(links).isdisjoint(path):
                self._stall(slot, record)
        wait = self.delay if self.policy == "reroute" else self.timeout
        after = self._reroute if self.policy == "reroute" else self._watchdog
        self.env.timeout(wait).callbacks.append(lambda _e: after(record, links))
        if record.until is not None:
            self.env.timeout(record.until - record.at).callbacks.append(lambda _e: self._restore(record, links))

    def _stall(self, slot: int, record: FailureRecord) -> None:
        if slot not in self.stalled:
            self.stalled[slot] = (self.env.now, record)
            record.stalled += 1

    def _unstall(self, slot: int) -> None:
        since, record = self.stalled.pop(slot)
        record.stalled_s += self.env.now - since

    def _reroute(self, record: FailureRecord, links: tuple[int, ...]) -> None:
        """Move every stalled flow round the cables down now (those with a way round)."""
        if not any(link in self.down for link in links):
            return  # back before the routes changed
        self.routed.update(links)
        for watcher in self.watchers:
            watcher.rerouted()
        down = set(self.down)
        for slot in sorted(self.stalled):
            path = self.flow.paths[slot]
            new = detour(self.t, self.t.src[path[0]], self.t.dst[path[-1]], down)
            if new is None:
                continue  # no way round: it waits for a cable to come back
            self.stalled[slot][1].rerouted += 1
            self._unstall(slot)
            self.flow.move(slot, new)

    def _watchdog(self, record: FailureRecord, links: tuple[int, ...]) -> None:
        """NCCL-like: flows still stalled on this failure's cables a timeout after it: the run fails."""
        if not any(link in self.down for link in links):
            return
        stuck = [slot for slot, (_, why) in self.stalled.items() if why is record]
        count, lost = len(stuck), sum(self.env.now - self.stalled[slot][0] for slot in stuck)
        for watcher in self.watchers:
            more, more_lost = watcher.stuck(record)
            count, lost = count + more, lost + more_lost
        if not count:
            return
        raise NetworkTimeout(
            f"cable {record.link} down at {record.at:.6g} s: {count} flow(s) stalled on it until the timeout "
            f"({self.timeout:.6g} s), so the run stops at {self.env.now:.6g} s (on_failure: abort, NCCL-like); "
            f"{lost:.6g} s of flow time lost"
        )

    def _restore(self, record: FailureRecord, links: tuple[int, ...]) -> None:
        for link in links:
            self.down.pop(link, None)
        self.routed.difference_update(links)
        self.flow.set_down(links, False)
        for watcher in self.watchers:
            watcher.restored(links)
        for slot in sorted(self.stalled):
            if set(self.down).isdisjoint(self.flow.paths[slot]):
                self._unstall(slot)

    def summary(self, now: float) -> dict:
        """The `network_failures` section of summary.json: the policy, and per failure the flows it stalled and
        rerouted and their seconds stalled (those still stalled counted to `now`)."""
        pending: dict[int, float] = {}
        for since, record in self.stalled.values():
            pending[id(record)] = pending.get(id(record), 0.0) + now - since
        waiting: dict[int, int] = {}  # a watcher's flows still stalled: counted when they go on
        for watcher in self.watchers:
            for record, count, seconds in watcher.pending(now):
                waiting[id(record)] = waiting.get(id(record), 0) + count
                pending[id(record)] = pending.get(id(record), 0.0) + seconds
        return {
            "on_failure": self.policy,
            "reroute_delay_s": self.delay,
            "timeout_s": self.timeout,
            "failures": [
                {
                    "link": r.link,
                    "at_s": r.at,
                    "until_s": r.until,
                    "flows_stalled": r.stalled + waiting.get(id(r), 0),
                    "flows_rerouted": r.rerouted,
                    "stalled_s": r.stalled_s + pending.get(id(r), 0.0),
                }
                for r in self.records
            ],
        }
