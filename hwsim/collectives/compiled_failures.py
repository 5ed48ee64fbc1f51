"""Cables that fail mid-run for the compiled engine's flows (`compiled.Engine`, the flow model): what
`hwsim.network.failures.FlowFailures` does to SimPy's flows, done to the engine's routes.

`FlowFailures` keeps which cables are down and which the routes go round, and tells this watcher of each change
at its instant; the watcher brings the engine's arrays along and solves the rates at that instant:

- a failure: the links' capacity is 0 in the max-min solve, so the flows on them stall, and each route that
  crosses them is `cut`: its flows stall from then on (those on it now, and those that start on it while it is
  cut);
- a reroute: each cut route with flows and a way round moves them, with the bytes they have left, to a route
  along the detour (`transfers.move`); each route across a cable the routes go round sends its new flows along
  the detour round every cable down (`redirect`), as `FlowFailures.around` does for SimPy's;
- a cable back: its capacity returns, routes that cross no cable down any more are no longer cut (their flows
  go on), and the redirects are worked out again.

The stalled flows' count and seconds go to the records the summary reads (`FailureRecord`), each flow's to the
failure that stalled it, as SimPy's: those on a route when a cable fails, that failure's; one that starts on a
cut route, the failure of the first cable down along it. A route counts its stall per flow: `stall_n` flows have
stalled on it for its failure (`why`) since it was cut, `stall_t` is the sum of the times each began, so when they
move or go on at T they have stalled `stall_n * T - stall_t` seconds in all. When the first cable down along a
cut route changes (another fails, or one comes back), the flows stalled so far are set aside (`held`) with
theirs, and the counts start again for the new one.
"""

from __future__ import annotations

import numpy as np

from hwsim.kernels import transfers as k
from hwsim.network.failures import FailureRecord, detour


class EngineFailures:
    """The failures of `failures` (a `FlowFailures`) on `engine`'s routes (the module's docstring)."""

    def __init__(self, engine, failures):
        self.engine, self.failures = engine, failures
        self.why: dict[int, FailureRecord] = {}  # a cut route -> the failure its new flows stall for
        self.held: dict[int, list[tuple[FailureRecord, int, float]]] = {}  # a cut route's earlier stalls: why, n, t
        self.detours: dict[tuple[int, ...], int] = {}  # a detour's links -> its route
        failures.watchers.append(self)

    # --- what FlowFailures tells ---------------------------------------------------------

    def failed(self, record: FailureRecord, links: tuple[int, ...]) -> None:
        s, now = self.engine.s, self.engine.env.now
        self._capacity(links, down=True)
        for r in self._crossing(links).tolist():
            if not s.cut[r]:  # the flows on it stall for this failure
                s.cut[r], self.why[r] = 1, record
                s.stall_n[r], s.stall_t[r] = s.weight[r], s.weight[r] * now
            else:
                self._recut(r)
        self._redirect()
        k.settle(self.engine.s, now)

    def rerouted(self) -> None:
        """Every cut route's flows round the cables down now, where there is a way."""
        e, now = self.engine, self.engine.env.now
        t, down = e.fabric.topology, set(self.failures.down)
        for r in sorted(self.why):
            if e.s.weight[r] == 0:
                continue
            path = self._path(r)
            new = detour(t, t.src[path[0]], t.dst[path[-1]], down)
            if new is None:
                continue  # no way round: its flows wait for a cable to come back
            for why, n, _ in self._stalls(r):
                why.rerouted += n
            self._unstall(r, now)
            r2 = self._route(new)
            self._room(len(path) + len(new))
            k.move(e.s, r, r2, now)
        self._redirect()
        k.settle(e.s, now)

    def restored(self, links: tuple[int, ...]) -> None:
        s, now = self.engine.s, self.engine.env.now
        self._capacity(links, down=False)
        for r in sorted(self.why):
            if self._first_down(r) is None:
                self._unstall(r, now)
                s.cut[r] = 0
                del self.why[r]
            else:
                self._recut(r)
        self._redirect()
        k.settle(self.engine.s, now)

    def stuck(self, record: FailureRecord) -> tuple[int, float]:
        """The flows `record` has stalled that still wait, and the seconds they have lost so far."""
        now = self.engine.env.now
        stalls = [(n, t) for r in self.why for why, n, t in self._stalls(r) if why is record]
        return sum(n for n, _ in stalls), sum(n * now - t for n, t in stalls)

    def pending(self, now: float) -> list[tuple[FailureRecord, int, float]]:
        """Per cut route with stalled flows: its failure, the flows and the seconds they have stalled so far."""
        return [(why, n, n * now - t) for r in self.why for why, n, t in self._stalls(r)]

    # --- what the engine tells ------------------------------------------------------------

    def added(self, first: int) -> None:
        """Routes `first`.. are new: cut if they cross a cable down, redirected if the routes go round one."""
        s = self.engine.s
        down = self.failures.down
        if down:
            for r in self._crossing(tuple(down), first).tolist():
                s.cut[r] = 1
                self.why[r] = self._first_down(r)
        self._redirect(first)

    # --- helpers --------------------------------------------------------------------------

    def _capacity(self, links: tuple[int, ...], down: bool) -> None:
        """The links' capacity 0 (down) or their bandwidth again, touched for the next solve."""
        self._room(len(links))
        s = self.engine.s
        for link in links:
            s.cap[link] = 0.0 if down else float(self.engine.fabric.bandwidth[link])
            s.touched[s.n[k.TOUCHED]] = link
            s.n[k.TOUCHED] += 1
        s.n[k.PENDING] = 1

    def _room(self, more: int) -> None:
        """Room in `touched` for `more` links."""
        s = self.engine.s
        want = int(s.n[k.TOUCHED]) + more
        if want > s.touched.size:
            self.engine.s = s._replace(touched=np.concatenate([s.touched, np.empty(want, np.int64)]))

    def _stalls(self, r: int) -> list[tuple[FailureRecord, int, float]]:
        """Route r's stalled flows by the failure each stalls for: (failure, flows, sum of their stall starts)."""
        s = self.engine.s
        now = [(self.why[r], int(s.stall_n[r]), float(s.stall_t[r]))] if s.stall_n[r] else []
        return self.held.get(r, []) + now

    def _unstall(self, r: int, now: float) -> None:
        """Route r's stalled flows go on (or move) at `now`: their flows and seconds to their failures."""
        for record, n, t in self._stalls(r):
            record.stalled += n
            record.stalled_s += n * now - t
        s = self.engine.s
        s.stall_n[r], s.stall_t[r] = 0, 0.0
        self.held.pop(r, None)

    def _first_down(self, r: int) -> FailureRecord | None:
        """The failure of the first cable down along route r (None: none is)."""
        down = self.failures.down
        return next((down[link] for link in self._path(r) if link in down), None)

    def _recut(self, r: int) -> None:
        """Route r is still cut: its new flows stall for the first cable down along it (as SimPy's `started`
        says); those stalled so far keep their failure."""
        new = self._first_down(r)
        if new is self.why[r]:
            return
        s = self.engine.s
        if s.stall_n[r]:
            self.held.setdefault(r, []).append((self.why[r], int(s.stall_n[r]), float(s.stall_t[r])))
            s.stall_n[r], s.stall_t[r] = 0, 0.0
        self.why[r] = new

    def _path(self, r: int) -> tuple[int, ...]:
        s = self.engine.s
        return tuple(s.route_links[s.route_ptr[r] : s.route_ptr[r + 1]].tolist())

    def _crossing(self, links: tuple[int, ...], first: int = 0) -> np.ndarray:
        """The routes from `first` on (NPU pairs' and detours') that cross any of `links`."""
        s = self.engine.s
        ptr = s.route_ptr[first:]
        owner = np.repeat(np.arange(first, first + ptr.size - 1), np.diff(ptr))
        return np.unique(owner[np.isin(s.route_links[ptr[0] :], links)])

    def _route(self, path: tuple[int, ...]) -> int:
        """The route along a detour (made once)."""
        r = self.detours.get(path)
        if r is None:
            r = self.detours[path] = self.engine.append_routes([path])
        return r

    def _redirect(self, first: int = 0) -> None:
        """Each NPU pair's route from `first` on that crosses a cable the routes go round: its new flows take the
        detour round every cable down (none: they stay, and stall)."""
        s, t = self.engine.s, self.engine.fabric.topology
        pairs = np.array(sorted(r for r in self.engine.routes.values() if r >= first), np.int64)
        s.redirect[pairs] = -1
        routed, down = self.failures.routed, set(self.failures.down)
        if not routed:
            return
        for r in np.intersect1d(self._crossing(tuple(routed), first), pairs).tolist():
            path = self._path(r)
            new = detour(t, t.src[path[0]], t.dst[path[-1]], down)
            if new is not None:
                self.engine.s.redirect[r] = self._route(new)
