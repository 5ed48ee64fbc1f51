"""The event loop of the compiled exact engine (`hwsim.collectives.compiled`): collectives' every message
on a fabric, played in Numba.

It plays what `hwsim.collectives.schedule.collective` and `executor.run` play in SimPy, on arrays:

- a **task** is one plan on one group (a phase of a chunk of a collective on one group of NPUs): it waits
  for its release and for its predecessor tasks, then for a slot of its `slot` (capacity `in_flight`,
  served by (priority, request order)), then runs its ranks' steps;
- a **cursor** is one rank's lane of a task: it takes its steps in order; a send leaves at once (after the
  reductions under way, with a reduction rate), a receive waits for the matching send's message
  (`match`: the plan-relative index of that send);
- a **message** moves under the fabric's sharing model, as `hwsim.network.sharing` moves it: `ideal` (its
  unloaded time), `flow` (after the sender's NIC overhead, a flow at its max-min fair rate, re-solved at
  the end of every instant by `maxmin.update`, then the path's latency), `store_and_forward` (hop by hop,
  FIFO per link).

The flows of one route (one NPU pair's path) cross the same links, so their max-min rates are equal: the
solver takes a route once, weighted by its flows, and the route counts `sent`, the bytes each of its flows has
sent. A flow ends when `sent` has grown by its bytes, so a route's flows end in the order of the `sent` they end
at, and only its first is in the heap of ends: one entry per route, moved when the route's rate changes. An
instant costs the routes it re-solves, not every flow. (Eight 128-NPU jobs on a 1,024-NPU fat tree, placed by
topology, about four gradient buckets in flight on each ring pair, `hwsim bench engine`'s case run by itself:
12.6 s, 99 routes a solve, against 40 s and 2,750 flows a solve when each flow was solved.)

Events at one time are taken in the order they were scheduled (a sequence number breaks ties, as SimPy's event
ids do). Under `ideal` and `flow` a receiver whose message arrives takes its next steps at once (no rate or time
depends on the order within an instant: flows are solved once it is over); under `store_and_forward` it waits
for an event of its own, as in SimPy, since a FIFO link serves an instant's requests in order.

Speed (measured here, `hwsim bench`'s compiled rows): the loop holds the state as a few small tuples of arrays
(a single tuple of ~100 arrays made heap operations 3.5x slower) and `run` is compiled without reference
counting (2.8x faster heap operations in a micro-benchmark): about 0.4 us an event, 3 events a transfer.

`run(s, until)` plays events up to time `until` and returns `REACHED` (nothing left at or before it),
`COMPLETED` (collectives ended at `s.clock[0]`: their ids are `s.done[:s.n[DONE]]`) or `GROW` (an array
is too small: `s.n[NEED]` says which; the caller grows it and calls again).
"""

from __future__ import annotations

from collections import namedtuple

import numpy as np
from numba import njit

from hwsim.kernels.maxmin import attach, detach, update

IDEAL, FLOW, STORE, UNSHARED = 0, 1, 2, 3  # sharing models (UNSHARED: ideal with failing cables, `sharing.Unshared`)
SEND = 0
WAKE, RELEASE, START, ARRIVE, HOP_DONE, HOP_NEXT = 0, 1, 2, 3, 4, 5  # event kinds (a flow's end: the flow heap)
REACHED, COMPLETED, GROW = 0, 1, 2

# counters in `State.n`
(
    HEAP,
    FHEAP,
    SEQ,
    FLOWS,
    TOUCHED,
    PENDING,
    DONE,
    RECORDS,
    FREE,
    MODEL,
    BURST,
    NEED,
    REQUESTS,
    EVENTS,
    SOLVES,
    SOLVED,
    MOST,
    WIDE,
) = range(18)
# what GROW asks for (bits of n[NEED])
NEED_MESSAGES, NEED_HEAP, NEED_TOUCHED, NEED_RECORDS, NEED_WIDTH = 1, 2, 4, 8, 16

# The state, in the groups the loop works on (a tuple of ~100 arrays is slow to work on in Numba: heap operations
# measured 3.5x slower); `State` is all of them at once, as the caller keeps and grows them.
Heap = namedtuple("Heap", "n clock hp_time hp_seq hp_kind hp_id")
"""Counters (above), [now], and the event heap: time, sequence, kind, id."""
Links = namedtuple(
    "Links",
    "cap lat on_link degree load most active since busy nbytes acct_bytes free_at "
    "hops weight rate lazy stamp sent head dirty fh_pos fh_time fh_seq fh_route cut stall_n stall_t redirect key after "
    "touched work",
)
"""Per link: capacity, latency, its routes (`maxmin`), what it carried (bytes, per account), a FIFO link's free
time. Per route (the flow model's rows: `maxmin` solves a route once for all its flows): links, flows on it, the
rate of each, the rate `sent` was counted at, when; `sent`: the bytes each of its flows has sent since the route
was last empty; its first flow to end; whether that changed since the last solve; the routes' next ends as an
indexed heap (per route its position, -1: none; end; sequence; per position its route); with failing cables
(`hwsim.collectives.compiled_failures`), whether the route crosses a cable that is down, the flows stalled on it
since and the sum of their stall starts, and the route its new flows take instead (-1: none). Per flow (message
slot): the route's `sent` at which it ends, the next flow of its route. The links touched this instant;
`maxmin.scratch`."""
RoutesPlans = namedtuple(
    "RoutesPlans",
    "route_ptr route_links route_lat route_bw overhead st_kind st_peer st_lane st_reduce st_bptr st_blocks "
    "st_pair st_match pl_base pl_rank pl_n pl_blocks pl_lanes rank_ptr",
)
"""Routes (CSR of links), their latency and slowest bandwidth; NIC overhead per NPU; plan steps (global index):
kind, peer rank, lane, reduce, blocks (CSR), a send's pair, a receive's match; plans: first step, first entry of
`rank_ptr` (a plan of n ranks has n + 1), ranks, blocks, lanes."""
Tasks = namedtuple(
    "Tasks",
    "tk_plan tk_group tk_bytes tk_routes tk_mail tk_cursor tk_wait tk_left tk_slot tk_prio tk_coll tk_succ "
    "tk_nsucc tk_next tk_req tk_rate tk_acct npus task_routes succ mailbox",
)
"""Per task: plan, group, bytes, routes, mailbox, first cursor, what it waits for, cursors left, slot, priority,
collective, successors, next in its slot's queue, request order, reduction rate, account; and the arrays these
point into."""
Cursors = namedtuple(
    "Cursors", "sl_cap sl_used sl_head co_left co_end co_watch done cu_task cu_rank cu_lane cu_pos cu_reduced cu_blocked"
)
"""Slots: capacity, in use, queue head; collectives: tasks left, end, whose messages to record (-2: all, -1: none,
else those of that NPU), the ones done; cursors: task, rank, lane, next step (global), reductions' end, waiting
for a message."""
Messages = namedtuple(
    "Messages",
    "ms_task ms_step ms_route ms_size ms_sent ms_hop ms_src ms_dst ms_free rc_src rc_dst rc_size rc_sent rc_arrived rc_coll",
)
"""Per message slot: task, send step, route, bytes, sent, hop, source and destination NPU; the free slots; the
delivered messages to record: source, destination, bytes, sent, delivered, collective."""
State = namedtuple(
    "State", Heap._fields + Links._fields + RoutesPlans._fields + Tasks._fields + Cursors._fields + Messages._fields
)


_H, _L, _R, _T, _C, _M = (
    sum(len(group._fields) for group in (Heap, Links, RoutesPlans, Tasks, Cursors, Messages)[:i]) for i in range(1, 7)
)
"""Where each group's fields end in `State`'s (constants, so Numba cuts the tuple at compile time)."""


@njit(cache=True, inline="always")
def _groups(s):
    """`State` cut into its groups (`Heap`, `Links`, ...)."""
    return (
        Heap(*s[:_H]),
        Links(*s[_H:_L]),
        RoutesPlans(*s[_L:_R]),
        Tasks(*s[_R:_T]),
        Cursors(*s[_T:_C]),
        Messages(*s[_C:_M]),
    )


@njit(cache=True, inline="always")
def _before(time, seq, i, j):
    return time[i] < time[j] or (time[i] == time[j] and seq[i] < seq[j])


@njit(cache=True, inline="always")
def _swap(time, seq, kind, ident, i, j):
    time[i], time[j] = time[j], time[i]
    seq[i], seq[j] = seq[j], seq[i]
    kind[i], kind[j] = kind[j], kind[i]
    ident[i], ident[j] = ident[j], ident[i]


@njit(cache=True, inline="always")
def _sift_up(time, seq, kind, ident, i):
    while i > 0:
        parent = (i - 1) // 2
        if not _before(time, seq, i, parent):
            break
        _swap(time, seq, kind, ident, i, parent)
        i = parent


@njit(cache=True, inline="always")
def _sift_down(time, seq, kind, ident, size):
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(time, seq, child + 1, child):
            child += 1
        if not _before(time, seq, child, i):
            break
        _swap(time, seq, kind, ident, i, child)
        i = child


@njit(cache=True, inline="always")
def push(h, time, kind, ident):
    """Schedule event `kind` of `ident` at `time`."""
    i = h.n[HEAP]
    h.hp_time[i], h.hp_seq[i], h.hp_kind[i], h.hp_id[i] = time, h.n[SEQ], kind, ident
    h.n[SEQ] += 1
    h.n[HEAP] += 1
    _sift_up(h.hp_time, h.hp_seq, h.hp_kind, h.hp_id, i)


@njit(cache=True, inline="always")
def _pop(h):
    last = h.n[HEAP] - 1
    _swap(h.hp_time, h.hp_seq, h.hp_kind, h.hp_id, 0, last)
    h.n[HEAP] = last
    _sift_down(h.hp_time, h.hp_seq, h.hp_kind, h.hp_id, last)
    return h.hp_kind[last], h.hp_id[last]


@njit(cache=True, inline="always")
def _flow_before(lk, a, b):
    """Whether route a's next flow ends before route b's (then by when their ends were set)."""
    return lk.fh_time[a] < lk.fh_time[b] or (lk.fh_time[a] == lk.fh_time[b] and lk.fh_seq[a] < lk.fh_seq[b])


@njit(cache=True, inline="always")
def _flow_place(lk, i, f):
    lk.fh_route[i] = f
    lk.fh_pos[f] = i


@njit(cache=True, inline="always")
def _flow_sift(lk, i, size):
    """Move the route at heap position i up or down to its place."""
    f = lk.fh_route[i]
    while i > 0:
        parent = (i - 1) // 2
        g = lk.fh_route[parent]
        if not _flow_before(lk, f, g):
            break
        _flow_place(lk, i, g)
        i = parent
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _flow_before(lk, lk.fh_route[child + 1], lk.fh_route[child]):
            child += 1
        g = lk.fh_route[child]
        if not _flow_before(lk, g, f):
            break
        _flow_place(lk, i, g)
        i = child
    _flow_place(lk, i, f)


@njit(cache=True, inline="always")
def _flow_ends_at(h, lk, f, time):
    """Route f's next flow sends its last byte at `time` (set, or moved: an indexed heap, so no stale
    events)."""
    lk.fh_time[f] = time
    lk.fh_seq[f] = h.n[SEQ]
    h.n[SEQ] += 1
    i = lk.fh_pos[f]
    if i < 0:
        i = h.n[FHEAP]
        h.n[FHEAP] += 1
        lk.fh_route[i] = f
    _flow_sift(lk, i, h.n[FHEAP])


@njit(cache=True, inline="always")
def _flow_pop(h, lk):
    """The route whose next flow ends first, out of the heap."""
    f = lk.fh_route[0]
    lk.fh_pos[f] = -1
    h.n[FHEAP] -= 1
    size = h.n[FHEAP]
    if size > 0:
        lk.fh_route[0] = lk.fh_route[size]
        _flow_sift(lk, 0, size)
    return f


@njit(cache=True, _nrt=False)
def settle(s, now):
    """The rates solved at `now` if links or flows changed (a cable failed or came back, flows moved)."""
    h, lk, rp, tk, cq, ms = _groups(s)
    if h.n[PENDING]:
        _solve(h, lk, rp, tk, cq, ms, now)


@njit(cache=True, _nrt=False)
def move(s, r, r2, now):
    """Every flow of route r moves to route r2 with the bytes it has left (a reroute round a failed cable): the
    links of r are credited with what crossed them, those of r2 with the rest. `settle` solves the rates."""
    h, lk, rp, tk, cq, ms = _groups(s)
    _catch_up(lk, r, now)
    _catch_up(lk, r2, now)
    m = lk.head[r]
    while m >= 0:
        following = lk.after[m]
        left = lk.key[m] - lk.sent[r]
        account = tk.tk_acct[ms.ms_task[m]]
        for i in range(rp.route_ptr[r], rp.route_ptr[r + 1]):
            link = rp.route_links[i]
            lk.nbytes[link] -= left
            lk.acct_bytes[account, link] -= left
            lk.active[link] -= 1
            if lk.active[link] == 0:
                lk.busy[link] += now - lk.since[link]
        for i in range(rp.route_ptr[r2], rp.route_ptr[r2 + 1]):
            link = rp.route_links[i]
            lk.nbytes[link] += left
            lk.acct_bytes[account, link] += left
            if lk.active[link] == 0:
                lk.since[link] = now
            lk.active[link] += 1
        _join(h, lk, rp, m, r2, lk.sent[r2] + left)
        ms.ms_route[m] = r2
        m = following
    for route in (r, r2):
        for i in range(rp.route_ptr[route], rp.route_ptr[route + 1]):
            lk.touched[h.n[TOUCHED]] = rp.route_links[i]
            h.n[TOUCHED] += 1
    lk.head[r] = -1
    lk.dirty[r2] = 1
    if lk.weight[r] > 0:
        detach(lk.hops, lk.on_link, lk.degree, r)
        h.n[FLOWS] -= 1
    lk.weight[r] = 0
    lk.rate[r] = lk.lazy[r] = lk.sent[r] = 0.0
    h.n[PENDING] = 1


@njit(cache=True, _nrt=False)
def release(s, first, last, time):
    """Tasks first..last-1 released at `time` (a collective launched)."""
    h = Heap(*s[:_H])
    for t in range(first, last):
        push(h, time, RELEASE, t)


# --- tasks and slots --------------------------------------------------------------


@njit(cache=True, inline="always")
def _request(h, lk, rp, tk, cq, ms, t, now):
    """Task t asks its slot; it runs at once if one is free, else it queues."""
    slot = tk.tk_slot[t]
    if cq.sl_used[slot] < cq.sl_cap[slot]:
        cq.sl_used[slot] += 1
        _grant(h, lk, rp, tk, cq, ms, t, now)
        return
    tk.tk_req[t] = h.n[REQUESTS]
    h.n[REQUESTS] += 1
    tk.tk_next[t] = cq.sl_head[slot]
    cq.sl_head[slot] = t


@njit(cache=True, inline="always")
def _grant(h, lk, rp, tk, cq, ms, t, now):
    """Task t has its slot: each of its cursors takes its first steps now."""
    p = tk.tk_plan[t]
    for c in range(tk.tk_cursor[t], tk.tk_cursor[t] + rp.pl_n[p] * rp.pl_lanes[p]):
        push(h, now, WAKE, c)


@njit(cache=True, inline="always")
def _task_done(h, lk, rp, tk, cq, ms, t, now):
    slot = tk.tk_slot[t]
    cq.sl_used[slot] -= 1
    best, best_before = -1, -1  # the queued task first by (priority, request order)
    prev, q = -1, cq.sl_head[slot]
    while q >= 0:
        if best < 0 or tk.tk_prio[q] < tk.tk_prio[best] or (tk.tk_prio[q] == tk.tk_prio[best] and tk.tk_req[q] < tk.tk_req[best]):
            best, best_before = q, prev
        prev, q = q, tk.tk_next[q]
    if best >= 0:
        if best_before < 0:
            cq.sl_head[slot] = tk.tk_next[best]
        else:
            tk.tk_next[best_before] = tk.tk_next[best]
        cq.sl_used[slot] += 1
        _grant(h, lk, rp, tk, cq, ms, best, now)
    for i in range(tk.tk_succ[t], tk.tk_succ[t] + tk.tk_nsucc[t]):
        u = tk.succ[i]
        tk.tk_wait[u] -= 1
        if tk.tk_wait[u] == 0:
            _request(h, lk, rp, tk, cq, ms, u, now)
    c = tk.tk_coll[t]
    cq.co_left[c] -= 1
    if cq.co_left[c] == 0:
        cq.co_end[c] = now
        cq.done[h.n[DONE]] = c
        h.n[DONE] += 1


# --- cursors ----------------------------------------------------------------------


@njit(cache=True, inline="always")
def _size(h, lk, rp, tk, cq, ms, k, nbytes, blocks):
    """Bytes of step k on a buffer of `nbytes` cut into `blocks` blocks (`executor.bounds`)."""
    total = 0
    for i in range(rp.st_bptr[k], rp.st_bptr[k + 1]):
        b = rp.st_blocks[i]
        total += ((b + 1) * nbytes) // blocks - (b * nbytes) // blocks
    return total


@njit(cache=True, inline="always")
def _step(h, lk, rp, tk, cq, ms, c, now):
    """Cursor c takes its steps until it must wait (a message, its reductions) or has none left."""
    t = cq.cu_task[c]
    p, r, lane = tk.tk_plan[t], cq.cu_rank[c], cq.cu_lane[c]
    end = rp.rank_ptr[rp.pl_rank[p] + r + 1]
    k = cq.cu_pos[c]
    while k < end:
        if rp.st_lane[k] != lane:
            k += 1
            continue
        size = _size(h, lk, rp, tk, cq, ms, k, tk.tk_bytes[t], rp.pl_blocks[p])
        if rp.st_kind[k] == SEND:
            if cq.cu_reduced[c] > now:  # what it sends may hold what it is still adding
                cq.cu_pos[c] = k
                push(h, cq.cu_reduced[c], WAKE, c)
                return
            _send(h, lk, rp, tk, cq, ms, t, k, r, size, now)
            k += 1
            continue
        if tk.mailbox[tk.tk_mail[t] + rp.st_match[k]] == 0:
            cq.cu_pos[c] = k
            cq.cu_blocked[c] = 1
            return
        if rp.st_reduce[k] and tk.tk_rate[t] > 0:
            cq.cu_reduced[c] = max(cq.cu_reduced[c], now + 3.0 * size / tk.tk_rate[t])
        k += 1
    cq.cu_pos[c] = end
    if cq.cu_reduced[c] > now:
        push(h, cq.cu_reduced[c], WAKE, c)
        return
    t = cq.cu_task[c]
    tk.tk_left[t] -= 1
    if tk.tk_left[t] == 0:
        _task_done(h, lk, rp, tk, cq, ms, t, now)


# --- messages ---------------------------------------------------------------------


@njit(cache=True, inline="always")
def _send(h, lk, rp, tk, cq, ms, t, k, r, size, now):
    p = tk.tk_plan[t]
    g = tk.tk_group[t]
    src, dst = tk.npus[g + r], tk.npus[g + rp.st_peer[k]]
    route = tk.task_routes[tk.tk_routes[t] + rp.st_pair[k]]
    h.n[FREE] -= 1
    m = ms.ms_free[h.n[FREE]]
    ms.ms_task[m], ms.ms_step[m], ms.ms_route[m], ms.ms_size[m] = t, k - rp.pl_base[p], route, size
    ms.ms_sent[m], ms.ms_hop[m], ms.ms_src[m], ms.ms_dst[m] = now, 0, src, dst
    lo, hi = rp.route_ptr[route], rp.route_ptr[route + 1]
    if lo == hi:  # to itself: nothing moves
        push(h, now, ARRIVE, m)
        return
    model = h.n[MODEL]
    if model == IDEAL:
        for i in range(lo, hi):
            lk.nbytes[rp.route_links[i]] += size
            lk.acct_bytes[tk.tk_acct[t], rp.route_links[i]] += size
        push(h, now + rp.overhead[src] + size / rp.route_bw[route] + rp.route_lat[route], ARRIVE, m)
    elif model == FLOW or model == UNSHARED:
        if rp.overhead[src] > 0:
            push(h, now + rp.overhead[src], START, m)
        else:  # as `Flow.transfer`: no overhead, the flow starts at once
            _start_flow(h, lk, rp, tk, cq, ms, m, now)
    else:
        _hop(h, lk, rp, tk, cq, ms, m, now, rp.overhead[src])


@njit(cache=True, inline="always")
def _hop(h, lk, rp, tk, cq, ms, m, now, extra):
    """Store and forward: message m asks for its next link (FIFO: it holds it once the messages before
    it have), for `extra` + its bytes at the link's rate."""
    link = rp.route_links[rp.route_ptr[ms.ms_route[m]] + ms.ms_hop[m]]
    start = max(now, lk.free_at[link])
    hold = extra + ms.ms_size[m] / lk.cap[link]
    lk.free_at[link] = start + hold
    lk.busy[link] += hold
    push(h, start + hold, HOP_DONE, m)


@njit(cache=True, inline="always")
def _catch_up(lk, r, now):
    """Route r's `sent` brought to `now` at the rate it was counted at."""
    lk.sent[r] += lk.lazy[r] * (now - lk.stamp[r])
    lk.stamp[r] = now


@njit(cache=True, inline="always")
def _start_flow(h, lk, rp, tk, cq, ms, m, now):
    """Message m's flow joins its route: it ends when the route's `sent` has grown by its bytes (the route's
    flows all move at one rate), so it goes into the route's list of flows in that order."""
    size = ms.ms_size[m]
    route = ms.ms_route[m]
    if lk.redirect[route] >= 0:  # round a failed cable
        route = ms.ms_route[m] = lk.redirect[route]
    lo, hi = rp.route_ptr[route], rp.route_ptr[route + 1]
    if size <= 0:
        push(h, now + rp.route_lat[route], ARRIVE, m)
        return
    if lk.cut[route]:  # on a cable that is down: it stalls from now
        lk.stall_n[route] += 1
        lk.stall_t[route] += now
    _catch_up(lk, route, now)
    if _join(h, lk, rp, m, route, lk.sent[route] + size):
        lk.dirty[route] = 1
    for i in range(lo, hi):
        link = rp.route_links[i]
        lk.touched[h.n[TOUCHED]] = link
        h.n[TOUCHED] += 1
        lk.nbytes[link] += size
        lk.acct_bytes[tk.tk_acct[ms.ms_task[m]], link] += size
        if lk.active[link] == 0:
            lk.since[link] = now
        lk.active[link] += 1
    h.n[PENDING] = 1


@njit(cache=True, inline="always")
def _join(h, lk, rp, m, route, key):
    """Flow m joins `route`, to end when the route's `sent` reaches `key`: into the route's list in that order
    (after flows that end at the same), the route onto its links if it had no flow. True if m is now first."""
    lk.key[m] = key
    before, q = -1, lk.head[route]
    while q >= 0 and lk.key[q] <= key:
        before, q = q, lk.after[q]
    lk.after[m] = q
    if before < 0:
        lk.head[route] = m
    else:
        lk.after[before] = m
    if lk.weight[route] == 0:
        attach(lk.hops, lk.on_link, lk.degree, route)
        for i in range(rp.route_ptr[route], rp.route_ptr[route + 1]):
            h.n[MOST] = max(h.n[MOST], lk.degree[rp.route_links[i]])
        h.n[FLOWS] += 1
    lk.weight[route] += 1
    return before < 0


@njit(cache=True, inline="always")
def _route_end(lk, r, now):
    """When route r's first flow sends its last byte, at the route's counted rate (inf: none, or no rate)."""
    if lk.head[r] < 0 or lk.lazy[r] <= 0:
        return np.inf
    return now + max(lk.key[lk.head[r]] - lk.sent[r], 0.0) / lk.lazy[r]


@njit(cache=True, inline="always")
def _end_flow(h, lk, rp, tk, cq, ms, route, now):
    """Route `route`'s first flow has sent its last byte: it leaves the route, and its message arrives after the
    route's latency."""
    m = lk.head[route]
    lk.head[route] = lk.after[m]
    lk.sent[route], lk.stamp[route] = lk.key[m], now
    lo, hi = rp.route_ptr[route], rp.route_ptr[route + 1]
    for i in range(lo, hi):
        link = rp.route_links[i]
        lk.touched[h.n[TOUCHED]] = link
        h.n[TOUCHED] += 1
        lk.active[link] -= 1
        if lk.active[link] == 0:
            lk.busy[link] += now - lk.since[link]
    lk.weight[route] -= 1
    if lk.weight[route] == 0:
        detach(lk.hops, lk.on_link, lk.degree, route)
        lk.rate[route] = lk.lazy[route] = lk.sent[route] = 0.0
        h.n[FLOWS] -= 1
    else:  # the next flow, at the route's rate until this instant's solve
        _flow_ends_at(h, lk, route, _route_end(lk, route, now))
    h.n[PENDING] = 1
    push(h, now + rp.route_lat[route], ARRIVE, m)


@njit(cache=True, inline="always")
def _arrive(h, lk, rp, tk, cq, ms, m, now):
    t = ms.ms_task[m]
    p = tk.tk_plan[t]
    k = rp.pl_base[p] + ms.ms_step[m]
    tk.mailbox[tk.tk_mail[t] + ms.ms_step[m]] = 1
    watch = cq.co_watch[tk.tk_coll[t]]
    if watch == -2 or (watch >= 0 and (ms.ms_src[m] == watch or ms.ms_dst[m] == watch)):
        i = h.n[RECORDS]
        ms.rc_src[i], ms.rc_dst[i], ms.rc_size[i] = ms.ms_src[m], ms.ms_dst[m], ms.ms_size[m]
        ms.rc_sent[i], ms.rc_arrived[i], ms.rc_coll[i] = ms.ms_sent[m], now, tk.tk_coll[t]
        h.n[RECORDS] += 1
    c = tk.tk_cursor[t] + rp.st_peer[k] * rp.pl_lanes[p] + rp.st_lane[k]
    ms.ms_free[h.n[FREE]] = m
    h.n[FREE] += 1
    if cq.cu_blocked[c] and rp.st_match[cq.cu_pos[c]] == ms.ms_step[m]:
        cq.cu_blocked[c] = 0
        if h.n[MODEL] == STORE:  # FIFO links: the receiver's next sends queue after this instant's others
            push(h, now, WAKE, c)
        else:  # its rate or time does not depend on the order within the instant: go on at once
            _step(h, lk, rp, tk, cq, ms, c, now)


@njit(cache=True, inline="always")
def _solve(h, lk, rp, tk, cq, ms, now):
    """The routes' max-min rates after this instant's starts and ends; a new end event for each route whose
    rate or first flow changed (its `sent` brought up to date first)."""
    if h.n[MODEL] == UNSHARED:
        _solve_unshared(h, lk, rp, now)
        return
    touched = lk.touched[: h.n[TOUCHED]]
    m = update(lk.hops, lk.on_link, lk.degree, lk.cap, lk.rate, lk.load, lk.most, touched, h.n[FLOWS], lk.work, lk.weight)
    h.n[TOUCHED] = 0
    h.n[PENDING] = 0
    h.n[SOLVES] += 1
    h.n[SOLVED] += m
    members = lk.work[5]
    for i in range(m):
        _rerate(h, lk, members[i], now)


@njit(cache=True, inline="always")
def _rerate(h, lk, r, now):
    """Route r at its newly solved rate: if that or its first flow changed, `sent` counted to `now` at the old
    rate and its next end moved."""
    if lk.rate[r] != lk.lazy[r] or lk.dirty[r]:
        _catch_up(lk, r, now)
        lk.lazy[r] = lk.rate[r]
        lk.dirty[r] = 0
        _flow_ends_at(h, lk, r, _route_end(lk, r, now))


@njit(cache=True, inline="always")
def _solve_unshared(h, lk, rp, now):
    """`ideal` with failing cables: each route on a touched link at its slowest link's capacity (0 while one is
    down), shared with nothing; a new end event for each whose rate or first flow changed."""
    for i in range(h.n[TOUCHED]):
        link = lk.touched[i]
        for q in range(lk.degree[link]):
            r = lk.on_link[link, q]
            rate = np.inf
            for j in range(rp.route_ptr[r], rp.route_ptr[r + 1]):
                rate = min(rate, lk.cap[rp.route_links[j]])
            lk.rate[r] = rate
            _rerate(h, lk, r, now)
    h.n[TOUCHED] = 0
    h.n[PENDING] = 0
    h.n[SOLVES] += 1


# --- the loop ---------------------------------------------------------------------


@njit(cache=True, inline="always")
def _needs(h, lk, rp, tk, cq, ms):
    """What must grow before the next event may be taken (bits of NEED), or 0. One event pushes at most
    `BURST` events (a task's end: the cursors of the tasks it lets start) and sends at most `WIDE` messages
    (a cursor's sends in a row)."""
    need = 0
    wide = h.n[WIDE]
    if h.n[FREE] < wide:
        need |= NEED_MESSAGES
    if h.n[HEAP] + h.n[BURST] + wide + 16 > h.hp_time.size:
        need |= NEED_HEAP
    if h.n[TOUCHED] + (wide + 2) * lk.hops.shape[1] > lk.touched.size:
        need |= NEED_TOUCHED
    if h.n[RECORDS] + 1 > ms.rc_src.size:
        need |= NEED_RECORDS
    if h.n[MOST] + wide >= lk.on_link.shape[1]:
        need |= NEED_WIDTH
    return need


@njit(cache=True, inline="always")
def _next(h, lk):
    """(when the next event is, whether it is a flow's end): the earlier of the two heaps' first, by (time,
    sequence); inf if none."""
    if h.n[FHEAP] == 0:
        return (h.hp_time[0] if h.n[HEAP] > 0 else np.inf), False
    f = lk.fh_route[0]
    if h.n[HEAP] == 0:
        return lk.fh_time[f], True
    if lk.fh_time[f] < h.hp_time[0] or (lk.fh_time[f] == h.hp_time[0] and lk.fh_seq[f] < h.hp_seq[0]):
        return lk.fh_time[f], True
    return h.hp_time[0], False


@njit(cache=True, _nrt=False)
def run(s, until):
    """Play events up to `until` (the module docstring)."""
    h, lk, rp, tk, cq, ms = _groups(s)
    h.n[DONE] = 0
    now, flow = _next(h, lk)
    while now < np.inf:
        if now > until:
            return REACHED
        need = _needs(h, lk, rp, tk, cq, ms)
        if need:
            h.n[NEED] = need
            return GROW
        h.clock[0] = now
        h.n[EVENTS] += 1
        if flow:
            _end_flow(h, lk, rp, tk, cq, ms, _flow_pop(h, lk), now)
        else:
            kind, ident = _pop(h)
            if kind == WAKE:
                _step(h, lk, rp, tk, cq, ms, ident, now)
            elif kind == RELEASE:
                tk.tk_wait[ident] -= 1
                if tk.tk_wait[ident] == 0:
                    _request(h, lk, rp, tk, cq, ms, ident, now)
            elif kind == START:
                _start_flow(h, lk, rp, tk, cq, ms, ident, now)
            elif kind == ARRIVE:
                _arrive(h, lk, rp, tk, cq, ms, ident, now)
            elif kind == HOP_DONE:
                link = rp.route_links[rp.route_ptr[ms.ms_route[ident]] + ms.ms_hop[ident]]
                lk.nbytes[link] += ms.ms_size[ident]
                lk.acct_bytes[tk.tk_acct[ms.ms_task[ident]], link] += ms.ms_size[ident]
                push(h, now + lk.lat[link], HOP_NEXT, ident)
            else:  # HOP_NEXT
                ms.ms_hop[ident] += 1
                route = ms.ms_route[ident]
                if ms.ms_hop[ident] < rp.route_ptr[route + 1] - rp.route_ptr[route]:
                    _hop(h, lk, rp, tk, cq, ms, ident, now, 0.0)
                else:
                    _arrive(h, lk, rp, tk, cq, ms, ident, now)
        later, flow = _next(h, lk)
        if later > now:  # the instant is over
            if h.n[PENDING]:
                _solve(h, lk, rp, tk, cq, ms, now)
                later, flow = _next(h, lk)
            if h.n[DONE] and later > now:
                return COMPLETED
        now = later
    return REACHED
