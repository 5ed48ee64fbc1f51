"""The compiled exact engine: every message of every collective, as `exact` plays them, in a Numba event loop.

`exact` mode plays each rank's steps as SimPy processes, about 18,000 transfers a second. This engine plays
the same collectives (`schedule.collective`: chunks, hierarchical phases, `in_flight` slots shared or
not, `executor.run`: each rank's steps, reductions at a rate) with the same sharing models
(`hwsim.network.sharing`) on arrays (`hwsim.kernels.transfers`). A system launches a collective at a
SimPy time and gets an event that succeeds when it ends. The engine plays its events up to the next
SimPy event (`env.peek()`): nothing the rest of the simulation does can reach the fabric before then, so
both timelines stay one. Tests hold it to `exact` to float rounding on 16 to 64 NPUs, with stragglers and
slow links, in every sharing model.

Cables that fail mid-run (`hardware.network.failures`, the flow model) cut its flows as they cut SimPy's
(`compiled_failures`). What it leaves out: the data (timing only), codecs, devices' vector units (reductions at
a rate only), and links' busy spans in the timeline (links.csv has each link's bytes and busy time). messages.csv
gets every message up to `MESSAGES` of them in a run, beyond that those of the first NPU of each collective
(`watch`).
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Sequence

import numpy as np
import simpy

from hwsim.collectives.algorithms import Plan, Send
from hwsim.collectives.compiled_failures import EngineFailures
from hwsim.collectives.executor import bounds
from hwsim.collectives.schedule import layout, piece
from hwsim.kernels import transfers as k
from hwsim.kernels.maxmin import scratch
from hwsim.network.sharing import Unshared

MODELS = {"ideal": k.IDEAL, "flow": k.FLOW, "store_and_forward": k.STORE}
PER_ROUTE = ("weight", "rate", "lazy", "stamp", "sent", "dirty", "fh_time", "fh_seq", "fh_route", "cut", "stall_n", "stall_t")
"""The loop's per-route arrays that start at 0 (`head`, `fh_pos` and `redirect` start at -1)."""
MESSAGES = 1_000_000
"""The most messages a run records one by one (about 100 MB of table); beyond, the watched NPU's."""


class PlanArrays:
    """A plan's steps as the arrays the loop reads (rank-major): kind, peer, lane, reduce, blocks (CSR),
    a send's pair (its index in `pairs`), a receive's match (the plan-relative index of its send)."""

    def __init__(self, p: Plan):
        self.n, self.blocks = p.n, p.blocks
        self.lanes = 1 + max((s.lane for steps in p.steps for s in steps), default=0)
        kind, peer, lane, reduce, bptr, blocks, pair, match = [], [], [], [], [0], [], [], []
        pairs: dict[tuple[int, int], int] = {}
        sends: dict[tuple[int, int, int], list[int]] = {}
        self.rank_ptr = [0]
        for i, steps in enumerate(p.steps):
            for j, s in enumerate(steps):
                if isinstance(s, Send):
                    sends.setdefault((i, s.peer, s.lane), []).append(self.rank_ptr[-1] + j)
            self.rank_ptr.append(self.rank_ptr[-1] + len(steps))
            kind += [k.SEND if isinstance(s, Send) else 1 for s in steps]
            peer += [s.peer for s in steps]
            lane += [s.lane for s in steps]
            reduce += [not isinstance(s, Send) and s.reduce for s in steps]
            for s in steps:
                blocks += s.blocks
                bptr.append(len(blocks))
        seen: dict[tuple[int, int, int], int] = {}
        for i, steps in enumerate(p.steps):
            for s in steps:
                if isinstance(s, Send):
                    pair.append(pairs.setdefault((i, s.peer), len(pairs)))
                    match.append(-1)
                else:  # the j-th receive from a peer in a lane matches its j-th send to this rank there
                    j = seen.get((i, s.peer, s.lane), 0)
                    seen[i, s.peer, s.lane] = j + 1
                    match.append(sends[s.peer, i, s.lane][j])
                    pair.append(-1)
        self.pairs = list(pairs)
        self.arrays = [
            np.array(a, t) for a, t in zip((kind, peer, lane, reduce, bptr, blocks, pair, match), _STEP_TYPES, strict=True)
        ]
        self.steps = len(kind)
        self.sends = [[j for j in range(self.rank_ptr[i], self.rank_ptr[i + 1]) if kind[j] == k.SEND] for i in range(p.n)]


_STEP_TYPES = (np.int8, np.int64, np.int64, np.bool_, np.int64, np.int64, np.int64, np.int64)
_PLANS: dict[int, tuple[Plan, PlanArrays]] = {}


def plan_arrays(p: Plan) -> PlanArrays:
    """Cached per plan (plans are cached and do not change)."""
    cached = _PLANS.get(id(p))
    if cached is None or cached[0] is not p:
        cached = _PLANS[id(p)] = (p, PlanArrays(p))
    return cached[1]


def _grown(a: np.ndarray, size: int, fill=0) -> np.ndarray:
    """`a` with at least `size` entries along its first axis (doubling), the new ones `fill`."""
    if a.shape[0] >= size:
        return a
    new = max(size, 2 * a.shape[0], 16)
    out = np.full((new, *a.shape[1:]), fill, a.dtype)
    out[: a.shape[0]] = a
    return out


class Engine:
    """The compiled exact engine on one fabric (`fabric.model`'s sharing). `overhead_of(npu)`: a sender's NIC
    overhead."""

    def __init__(self, env: simpy.Environment, fabric, overhead_of: Callable[[int], float]):
        if fabric.model.name not in MODELS:
            raise ValueError(f"the compiled engine runs {', '.join(MODELS)}; got {fabric.model.name}")
        self.env, self.fabric, self.overhead_of = env, fabric, overhead_of
        t = fabric.topology
        n_links = t.links
        self.routes: dict[tuple[int, int], int] = {}
        self.route_blocks: dict[tuple[int, tuple[int, ...]], int] = {}
        self.plan_ids: dict[int, int] = {}
        self.events: dict[int, simpy.Event] = {}  # live collective -> its event
        self.recorders: dict[int, Callable | None] = {}  # collective -> what takes its messages
        self.driving = False
        self.slot_ids: dict[tuple, int] = {}
        self.tickets = 0
        i64, f64 = np.int64, np.float64
        e = np.empty
        n = np.zeros(k.WIDE + 1, i64)
        n[k.MODEL] = k.UNSHARED if isinstance(fabric.model, Unshared) else MODELS[fabric.model.name]
        self.s = k.State(
            n=n, clock=np.zeros(1),
            cap=np.array(getattr(fabric.model, "capacity", fabric.bandwidth), f64), lat=np.array(fabric.latency, f64),
            on_link=np.zeros((n_links, 8), i64), degree=np.zeros(n_links, i64), load=np.zeros(n_links), most=np.zeros(n_links),
            active=np.zeros(n_links, i64), since=np.zeros(n_links), busy=np.zeros(n_links), nbytes=np.zeros(n_links),
            acct_bytes=np.zeros((1, n_links)),
            free_at=np.zeros(n_links),
            route_ptr=np.zeros(1, i64), route_links=e(0, i64), route_lat=e(0), route_bw=e(0), overhead=np.zeros(t.npus),
            st_kind=e(0, np.int8), st_peer=e(0, i64), st_lane=e(0, i64), st_reduce=e(0, np.bool_), st_bptr=e(0, i64),
            st_blocks=e(0, i64), st_pair=e(0, i64), st_match=e(0, i64),
            pl_base=e(0, i64), pl_rank=e(0, i64), pl_n=e(0, i64), pl_blocks=e(0, i64), pl_lanes=e(0, i64), rank_ptr=e(0, i64),
            tk_plan=e(0, i64), tk_group=e(0, i64), tk_bytes=e(0, i64), tk_routes=e(0, i64), tk_mail=e(0, i64),
            tk_cursor=e(0, i64), tk_wait=e(0, i64), tk_left=e(0, i64), tk_slot=e(0, i64), tk_prio=e(0, i64),
            tk_coll=e(0, i64), tk_succ=e(0, i64), tk_nsucc=e(0, i64), tk_next=e(0, i64), tk_req=e(0, i64), tk_rate=e(0),
            tk_acct=e(0, i64),
            npus=e(0, i64), task_routes=e(0, i64), succ=e(0, i64), mailbox=e(0, np.int8),
            sl_cap=e(0, i64), sl_used=e(0, i64), sl_head=e(0, i64),
            co_left=e(0, i64), co_end=e(0), co_watch=e(0, i64), done=e(0, i64),
            cu_task=e(0, i64), cu_rank=e(0, i64), cu_lane=e(0, i64), cu_pos=e(0, i64), cu_reduced=e(0), cu_blocked=e(0, np.int8),
            ms_task=e(0, i64), ms_step=e(0, i64), ms_route=e(0, i64), ms_size=e(0, i64), ms_sent=e(0), ms_hop=e(0, i64),
            ms_src=e(0, i64), ms_dst=e(0, i64), ms_free=e(0, i64),
            hops=np.full((0, 4), -1, i64), weight=e(0, i64), rate=e(0), lazy=e(0), stamp=e(0), sent=e(0), head=e(0, i64),
            dirty=e(0, np.int8), fh_pos=e(0, i64), fh_time=e(0), fh_seq=e(0, i64), fh_route=e(0, i64),
            cut=e(0, np.int8), stall_n=e(0, i64), stall_t=e(0), redirect=e(0, i64),
            key=e(0), after=e(0, i64),
            hp_time=e(64), hp_seq=e(64, i64), hp_kind=e(64, i64), hp_id=e(64, i64),
            touched=e(64, i64), work=scratch(0, n_links),
            rc_src=e(0, i64), rc_dst=e(0, i64), rc_size=e(0, i64), rc_sent=e(0), rc_arrived=e(0), rc_coll=e(0, i64),
        )  # fmt: skip
        self.counts = {"tasks": 0, "cursors": 0, "mail": 0, "succ": 0, "npus": 0, "slots": 0, "collectives": 0}
        failures = getattr(fabric.model, "failures", None)  # cables that fail mid-run: the engine's flows see them
        self.failures = None if failures is None else EngineFailures(self, failures)

    # --- launching ------------------------------------------------------------------

    def launch(
        self,
        op: str,
        algorithm: str | Sequence[str],
        nbytes: int,
        everyone: Sequence[int],
        *,
        chunks: int = 1,
        in_flight: int = 1,
        hierarchical: bool = False,
        order: str = "none",
        reduction_rate: float = 0.0,
        record: Callable | None = None,
        watch: int | None = None,
        account: int = 0,
    ) -> tuple[simpy.Event, int]:
        """`op` over the NPUs `everyone` (rank order), now: (an event that succeeds with the end time when
        it ends, the bytes its first NPU sends). `order`: none (its own `in_flight` slots per group and
        dimension) or fifo / lifo (slots shared with every collective launched so, oldest or newest first:
        `schedule.Slots`). `record(src, dst, bytes, sent, delivered)` takes its delivered messages (arrays): all, or with
        `watch` those from or to that NPU. `account`: whose bytes its messages are on each link (`link_bytes`)."""
        t = self.fabric.topology
        everyone = list(everyone)
        groups, steps, plans = layout(t, op, algorithm, everyone, hierarchical)
        group_of = [{npu: g for g in per_dim for npu in g} for per_dim in groups]
        edges = bounds(nbytes, chunks)
        self.tickets += 1
        priority = 0 if order == "none" else (self.tickets if order == "fifo" else -self.tickets)
        c = self._next("collectives", 1)
        self.recorders[c] = record
        self.s.co_watch[c] = -1 if record is None else (-2 if watch is None else watch)
        if account >= self.s.acct_bytes.shape[0]:
            self.s = self.s._replace(acct_bytes=_grown(self.s.acct_bytes, account + 1))
        first = self.counts["tasks"]
        index: dict[tuple[int, int, tuple[int, ...]], int] = {}
        preds: list[list[int]] = []
        wire = 0
        for chunk in range(chunks):
            for phase, (o, j) in enumerate(steps):
                arrays = plan_arrays(plans[o, j])
                for group in groups[j]:
                    lo, hi = piece(edges, group_of, chunk, j, group[0])
                    key = (j, tuple(group)) if order != "none" else (c, j, tuple(group))
                    task = self._task(arrays, group, hi - lo, key, in_flight, priority, c, reduction_rate)
                    self.s.tk_acct[task] = account
                    index[chunk, phase, tuple(group)] = task
                    before = {tuple(group_of[steps[phase - 1][1]][npu]) for npu in group} if phase else set()
                    preds.append(sorted(index[chunk, phase - 1, g] for g in before))
                    if everyone[0] in group:
                        wire += self._sent(arrays, group.index(everyone[0]), hi - lo)
        last = self.counts["tasks"]
        self._successors(first, preds)
        s = self.s
        s.co_left[c] = last - first
        cursors = int(s.tk_left[first:last].sum())
        s.n[k.BURST] = max(s.n[k.BURST], cursors)  # a task's end starts at most every other task of its collective
        self._ensure_heap(last - first)
        k.release(self.s, first, last, self.env.now)
        event = self.events[c] = self.env.event()
        if not self.driving:
            self.driving = True
            self.env.process(self._drive())
        return event, wire

    def _next(self, what: str, count: int) -> int:
        """The first of `count` new entries of `what`, the arrays grown for them."""
        first = self.counts[what]
        self.counts[what] = end = first + count
        s = self.s
        fields = {
            "tasks": ("tk_plan", "tk_group", "tk_bytes", "tk_routes", "tk_mail", "tk_cursor", "tk_wait", "tk_left",
                      "tk_slot", "tk_prio", "tk_coll", "tk_succ", "tk_nsucc", "tk_next", "tk_req", "tk_rate", "tk_acct"),
            "cursors": ("cu_task", "cu_rank", "cu_lane", "cu_pos", "cu_reduced", "cu_blocked"),
            "mail": ("mailbox",), "succ": ("succ",), "npus": ("npus",),
            "slots": ("sl_cap", "sl_used", "sl_head"), "collectives": ("co_left", "co_end", "co_watch", "done"),
        }[what]  # fmt: skip
        if getattr(s, fields[0]).shape[0] < end:
            self.s = s._replace(**{f: _grown(getattr(s, f), end) for f in fields})
        return first

    def _task(
        self, arrays: PlanArrays, group: list[int], nbytes: int, key: tuple, in_flight: int, priority: int, c: int, rate: float
    ) -> int:
        s0 = self._next("tasks", 1)
        p = self._plan(arrays)
        routes = self._route_block(arrays, group)
        g = self._next("npus", len(group))
        cursors = self._next("cursors", arrays.n * arrays.lanes)
        mail = self._next("mail", arrays.steps)
        slot = self.slot_ids.get(key)
        if slot is None:
            slot = self.slot_ids[key] = self._next("slots", 1)
            s = self.s
            s.sl_cap[slot], s.sl_used[slot], s.sl_head[slot] = in_flight, 0, -1
        s = self.s
        s.npus[g : g + len(group)] = group
        for npu in set(group):
            s.overhead[npu] = self.overhead_of(npu)
        s.mailbox[mail : mail + arrays.steps] = 0
        base = s.pl_base[p]
        ranks = np.repeat(np.arange(arrays.n), arrays.lanes)
        end = cursors + arrays.n * arrays.lanes
        s.cu_task[cursors:end], s.cu_rank[cursors:end] = s0, ranks
        s.cu_lane[cursors:end] = np.tile(np.arange(arrays.lanes), arrays.n)
        s.cu_pos[cursors:end] = base + np.asarray(arrays.rank_ptr[:-1])[ranks]
        s.cu_reduced[cursors:end], s.cu_blocked[cursors:end] = 0.0, 0
        s.tk_plan[s0], s.tk_group[s0], s.tk_bytes[s0], s.tk_routes[s0], s.tk_mail[s0] = p, g, nbytes, routes, mail
        s.tk_cursor[s0], s.tk_left[s0], s.tk_slot[s0], s.tk_prio[s0], s.tk_coll[s0] = cursors, end - cursors, slot, priority, c
        s.tk_next[s0], s.tk_req[s0], s.tk_rate[s0] = -1, 0, rate
        s.n[k.WIDE] = max(s.n[k.WIDE], arrays.n)
        return s0

    def _successors(self, first: int, preds: list[list[int]]) -> None:
        """Each task's successors (CSR in `succ`) and how many it waits for (its release, its predecessors)."""
        after: list[list[int]] = [[] for _ in preds]
        for i, before in enumerate(preds):
            for task in before:
                after[task - first].append(first + i)
        at = self._next("succ", sum(map(len, after)))
        s = self.s
        for i, (before, later) in enumerate(zip(preds, after, strict=True)):
            s.tk_wait[first + i] = 1 + len(before)
            s.tk_succ[first + i], s.tk_nsucc[first + i] = at, len(later)
            s.succ[at : at + len(later)] = later
            at += len(later)

    def _sent(self, arrays: PlanArrays, rank: int, nbytes: int) -> int:
        """Bytes rank `rank` sends in a plan on `nbytes`."""
        bptr, blocks = arrays.arrays[4], arrays.arrays[5]
        edge = bounds(nbytes, arrays.blocks)
        return sum(edge[b + 1] - edge[b] for j in arrays.sends[rank] for b in blocks[bptr[j] : bptr[j + 1]])

    def _plan(self, arrays: PlanArrays) -> int:
        p = self.plan_ids.get(id(arrays))
        if p is not None:
            return p
        s = self.s
        p = self.plan_ids[id(arrays)] = len(self.plan_ids)
        base, blocks_base, rank_base = s.st_kind.size, s.st_blocks.size, s.rank_ptr.size
        kind, peer, lane, reduce, bptr, blocks, pair, match = arrays.arrays
        self.s = s._replace(
            st_kind=np.concatenate([s.st_kind, kind]), st_peer=np.concatenate([s.st_peer, peer]),
            st_lane=np.concatenate([s.st_lane, lane]), st_reduce=np.concatenate([s.st_reduce, reduce]),
            st_bptr=np.concatenate([s.st_bptr[:-1] if s.st_bptr.size else s.st_bptr, bptr + blocks_base]),
            st_blocks=np.concatenate([s.st_blocks, blocks]), st_pair=np.concatenate([s.st_pair, pair]),
            st_match=np.concatenate([s.st_match, match]),
            pl_base=np.append(s.pl_base, base), pl_rank=np.append(s.pl_rank, rank_base), pl_n=np.append(s.pl_n, arrays.n),
            pl_blocks=np.append(s.pl_blocks, arrays.blocks), pl_lanes=np.append(s.pl_lanes, arrays.lanes),
            rank_ptr=np.concatenate([s.rank_ptr, base + np.asarray(arrays.rank_ptr, np.int64)]),
        )  # fmt: skip
        return p

    def _route_block(self, arrays: PlanArrays, group: list[int]) -> int:
        """Where the routes of a plan's pairs on `group` start in `task_routes` (added once per plan and group)."""
        key = (id(arrays), tuple(group))
        at = self.route_blocks.get(key)
        if at is not None:
            return at
        pairs = [(group[i], group[j]) for i, j in arrays.pairs]
        self._add_routes([pair for pair in dict.fromkeys(pairs) if pair not in self.routes])
        s = self.s
        at = self.route_blocks[key] = s.task_routes.size
        ids = np.array([self.routes[pair] for pair in pairs], np.int64)
        self.s = s._replace(task_routes=np.concatenate([s.task_routes, ids]))
        return at

    def _add_routes(self, pairs: list[tuple[int, int]]) -> None:
        """The routes between NPU pairs not seen before, appended at once (a direct all-reduce on n NPUs has n^2)."""
        if not pairs:
            return
        t = self.fabric.topology
        first = self.append_routes([t.route(a, b) if a != b else () for a, b in pairs])
        for r, pair in enumerate(pairs, start=first):
            self.routes[pair] = r
        if self.failures is not None:
            self.failures.added(first)

    def append_routes(self, paths: list[tuple[int, ...]]) -> int:
        """Routes along `paths` (lists of links) appended; returns the first's id."""
        t, s = self.fabric.topology, self.s
        costs = [t.cost(path) if path else (0.0, np.inf) for path in paths]
        first = s.route_lat.size
        width = max(s.hops.shape[1], *map(len, paths))
        hops = np.full((len(paths), width), -1, np.int64)
        for r, path in enumerate(paths):
            hops[r, : len(path)] = path
        new = s.route_lat.size + len(paths)
        self.s = s._replace(
            hops=np.concatenate([np.pad(s.hops, ((0, 0), (0, width - s.hops.shape[1])), constant_values=-1), hops]),
            **{f: _grown(getattr(s, f), new) for f in PER_ROUTE},
            head=_grown(s.head, new, -1),
            fh_pos=_grown(s.fh_pos, new, -1),
            redirect=_grown(s.redirect, new, -1),
            work=scratch(new, s.cap.size),
            route_ptr=np.concatenate([s.route_ptr, s.route_ptr[-1] + np.cumsum([len(path) for path in paths])]),
            route_links=np.concatenate([s.route_links, np.fromiter((i for path in paths for i in path), np.int64)]),
            route_lat=np.concatenate([s.route_lat, [latency for latency, _ in costs]]),
            route_bw=np.concatenate([s.route_bw, [bandwidth for _, bandwidth in costs]]),
        )
        return first

    # --- playing --------------------------------------------------------------------

    def _drive(self):
        """Process: play the engine up to each next SimPy event; succeed each collective's event at its end."""
        env = self.env
        while self.events:
            until = env.peek()
            status = self._run(until)
            now = float(self.s.clock[0])
            if status == k.COMPLETED:
                if now > env.now:
                    yield env.timeout(now - env.now)
                for c in self.s.done[: self.s.n[k.DONE]].tolist():
                    self.events.pop(c).succeed(now)
                continue
            if until == np.inf:
                raise RuntimeError(f"the compiled engine stalled with {len(self.events)} collectives under way")
            yield env.timeout(until - env.now)
        self.driving = False
        self._idle()

    def _run(self, until: float) -> int:
        while True:
            status = k.run(self.s, until)
            self._take_records()
            if status != k.GROW:
                return status
            self._grow(int(self.s.n[k.NEED]))

    def _grow(self, need: int) -> None:
        s = self.s
        if need & k.NEED_MESSAGES:
            old = s.ms_task.size
            new = max(2 * old, 256, int(s.n[k.WIDE]) * 2)
            fields = ("ms_task", "ms_step", "ms_route", "ms_size", "ms_sent", "ms_hop", "ms_src", "ms_dst", "key", "after")
            grown = {f: _grown(getattr(s, f), new) for f in fields}
            free = _grown(s.ms_free, new)
            count = int(s.n[k.FREE])
            free[count : count + new - old] = np.arange(old, new)
            s.n[k.FREE] = count + new - old
            grown["ms_free"] = free
            s = s._replace(**grown)
        if need & k.NEED_HEAP:
            want = 2 * s.hp_time.size + int(s.n[k.FLOWS]) + 2 * int(s.n[k.BURST] + s.n[k.WIDE])
            s = s._replace(**{f: _grown(getattr(s, f), want) for f in ("hp_time", "hp_seq", "hp_kind", "hp_id")})
        if need & k.NEED_TOUCHED:
            s = s._replace(touched=_grown(s.touched, s.touched.size + 1))
        if need & k.NEED_RECORDS:
            s = s._replace(
                **{
                    f: _grown(getattr(s, f), s.rc_src.size + 1)
                    for f in ("rc_src", "rc_dst", "rc_size", "rc_sent", "rc_arrived", "rc_coll")
                }
            )
        if need & k.NEED_WIDTH:
            width = max(2 * s.on_link.shape[1], int(s.n[k.MOST] + s.n[k.WIDE]) + 1)
            s = s._replace(on_link=np.pad(s.on_link, ((0, 0), (0, width - s.on_link.shape[1]))))
        self.s = s

    def _ensure_heap(self, more: int) -> None:
        s = self.s
        if s.n[k.HEAP] + more + 16 > s.hp_time.size:
            want = s.n[k.HEAP] + more + 16
            self.s = s._replace(**{f: _grown(getattr(s, f), want) for f in ("hp_time", "hp_seq", "hp_kind", "hp_id")})

    def _take_records(self) -> None:
        """Hand the messages delivered since the last call to their collectives' `record`."""
        s = self.s
        count = int(s.n[k.RECORDS])
        if not count:
            return
        s.n[k.RECORDS] = 0
        coll = s.rc_coll[:count]
        for c in np.unique(coll).tolist():
            record = self.recorders[c]
            if record is not None:
                i = np.flatnonzero(coll == c)
                record(s.rc_src[i], s.rc_dst[i], s.rc_size[i], s.rc_sent[i], s.rc_arrived[i])

    def _idle(self) -> None:
        """No collective under way: the links' totals go to the fabric, the per-launch arrays start over."""
        s, f = self.s, self.fabric
        used = np.flatnonzero(s.nbytes)
        for i in used.tolist():
            f.touch(i)
        f._bytes = (np.array(f._bytes) + s.nbytes).tolist()
        if s.n[k.MODEL] in (k.FLOW, k.UNSHARED):
            f._busy = (np.array(f._busy) + s.busy).tolist()
        elif s.n[k.MODEL] == k.STORE:
            for i in used.tolist():
                f.units[i].busy_total += float(s.busy[i])
        s.nbytes[:] = 0.0
        s.busy[:] = 0.0
        self.slot_ids.clear()
        for what in self.counts:
            self.counts[what] = 0

    def link_bytes(self, account: int) -> np.ndarray:
        """Bytes each link has carried of the collectives launched with `account`."""
        a = self.s.acct_bytes
        return a[account].copy() if account < a.shape[0] else np.zeros(a.shape[1])


def engine_of(cluster) -> Engine:
    """The cluster's compiled engine (one per cluster: the jobs on it share the fabric)."""
    engine = cluster.shared.get("compiled")
    if engine is None:
        overhead = cluster.transport("").overhead
        engine = cluster.shared["compiled"] = Engine(cluster.env, cluster.fabric, overhead)
    return engine


def recorder(cluster, transport) -> Callable:
    """A `launch`'s `record` that puts its messages in messages.csv as `transport` names and tags them
    (`ClusterTransport`)."""
    names: list[str] = []  # NPU -> its NIC's name, filled as NPUs appear

    def record(src, dst, size, sent, arrived) -> None:
        top = int(max(src.max(), dst.max()))
        names.extend(transport.nic_name(npu) for npu in range(len(names), top + 1))
        table = np.array(names, object)
        rows = zip(table[src], table[dst], itertools.repeat(transport.tag), size.tolist(), sent.tolist(), arrived.tolist())
        cluster.recorder.messages(list(rows))

    return record
