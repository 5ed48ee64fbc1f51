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

A flow's bytes left are brought up to date only when its rate changes (its end time is `stamp + left /
rate`), so an instant costs the flows it re-solves, not every flow. Events at one time are taken in the
order they were scheduled (a sequence number breaks ties, as SimPy's event ids do).

`run(s, until)` plays events up to time `until` and returns `REACHED` (nothing left at or before it),
`COMPLETED` (collectives ended at `s.clock[0]`: their ids are `s.done[:s.n[DONE]]`) or `GROW` (an array
is too small: `s.n[NEED]` says which; the caller grows it and calls again).
"""

from __future__ import annotations

from collections import namedtuple

from numba import njit

from hwsim.kernels.maxmin import attach, detach, update

IDEAL, FLOW, STORE = 0, 1, 2  # sharing models
SEND = 0
WAKE, RELEASE, START, END, ARRIVE, HOP_DONE, HOP_NEXT = 0, 1, 2, 3, 4, 5, 6  # event kinds
REACHED, COMPLETED, GROW = 0, 1, 2

# counters in `State.n`
(
    HEAP,
    SEQ,
    FLOWS,
    TOUCHED,
    PENDING,
    DONE,
    RECORDS,
    FREE,
    MODEL,
    WATCH,
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

State = namedtuple(
    "State",
    [
        "n",  # counters (above)
        "clock",  # [now]
        # links
        "cap",
        "lat",
        "on_link",
        "degree",
        "load",
        "most",
        "active",
        "since",
        "busy",
        "nbytes",
        "free_at",
        # routes (CSR of links), their latency and slowest bandwidth; NIC overhead per NPU
        "route_ptr",
        "route_links",
        "route_lat",
        "route_bw",
        "overhead",
        # plan steps (global index): kind, peer rank, lane, reduce, blocks (CSR), a send's pair, a recv's match
        "st_kind",
        "st_peer",
        "st_lane",
        "st_reduce",
        "st_bptr",
        "st_blocks",
        "st_pair",
        "st_match",
        # plans: first step, first entry of `rank_ptr` (a plan of n ranks has n + 1), ranks, blocks, lanes
        "pl_base",
        "pl_rank",
        "pl_n",
        "pl_blocks",
        "pl_lanes",
        "rank_ptr",
        # tasks
        "tk_plan",
        "tk_group",
        "tk_bytes",
        "tk_routes",
        "tk_mail",
        "tk_cursor",
        "tk_wait",
        "tk_left",
        "tk_slot",
        "tk_prio",
        "tk_coll",
        "tk_succ",
        "tk_nsucc",
        "tk_next",
        "tk_req",
        "tk_rate",
        "npus",
        "task_routes",
        "succ",
        "mailbox",
        # slots: capacity, in use, queue head
        "sl_cap",
        "sl_used",
        "sl_head",
        # collectives: tasks left, end
        "co_left",
        "co_end",
        "done",
        # cursors: task, rank, lane, next step (global), reductions' end, waiting for a message
        "cu_task",
        "cu_rank",
        "cu_lane",
        "cu_pos",
        "cu_reduced",
        "cu_blocked",
        # messages (and their flows, one slot each)
        "ms_task",
        "ms_step",
        "ms_route",
        "ms_size",
        "ms_sent",
        "ms_hop",
        "ms_version",
        "ms_src",
        "ms_dst",
        "ms_free",
        "hops",
        "left",
        "rate",
        "lazy",
        "stamp",
        # the event heap
        "hp_time",
        "hp_seq",
        "hp_kind",
        "hp_id",
        "hp_aux",
        "touched",
        "work",
        # delivered messages: src, dst, bytes, sent, delivered
        "rc_src",
        "rc_dst",
        "rc_size",
        "rc_sent",
        "rc_arrived",
    ],
)


@njit(cache=True)
def _before(time, seq, i, j):
    return time[i] < time[j] or (time[i] == time[j] and seq[i] < seq[j])


@njit(cache=True)
def _swap(time, seq, kind, ident, aux, i, j):
    time[i], time[j] = time[j], time[i]
    seq[i], seq[j] = seq[j], seq[i]
    kind[i], kind[j] = kind[j], kind[i]
    ident[i], ident[j] = ident[j], ident[i]
    aux[i], aux[j] = aux[j], aux[i]


@njit(cache=True)
def _sift_up(time, seq, kind, ident, aux, i):
    while i > 0:
        parent = (i - 1) // 2
        if not _before(time, seq, i, parent):
            break
        _swap(time, seq, kind, ident, aux, i, parent)
        i = parent


@njit(cache=True)
def _sift_down(time, seq, kind, ident, aux, size):
    i = 0
    while True:
        child = 2 * i + 1
        if child >= size:
            break
        if child + 1 < size and _before(time, seq, child + 1, child):
            child += 1
        if not _before(time, seq, child, i):
            break
        _swap(time, seq, kind, ident, aux, i, child)
        i = child


@njit(cache=True, inline="always")
def push(s, time, kind, ident, aux):
    """Schedule event `kind` of `ident` at `time`."""
    i = s.n[HEAP]
    s.hp_time[i], s.hp_seq[i], s.hp_kind[i], s.hp_id[i], s.hp_aux[i] = time, s.n[SEQ], kind, ident, aux
    s.n[SEQ] += 1
    s.n[HEAP] += 1
    _sift_up(s.hp_time, s.hp_seq, s.hp_kind, s.hp_id, s.hp_aux, i)


@njit(cache=True, inline="always")
def _pop(s):
    last = s.n[HEAP] - 1
    _swap(s.hp_time, s.hp_seq, s.hp_kind, s.hp_id, s.hp_aux, 0, last)
    s.n[HEAP] = last
    _sift_down(s.hp_time, s.hp_seq, s.hp_kind, s.hp_id, s.hp_aux, last)
    return s.hp_kind[last], s.hp_id[last], s.hp_aux[last]


@njit(cache=True)
def release(s, first, last, time):
    """Tasks first..last-1 released at `time` (a collective launched)."""
    for t in range(first, last):
        push(s, time, RELEASE, t, 0)


# --- tasks and slots --------------------------------------------------------------


@njit(cache=True, inline="always")
def _request(s, t, now):
    """Task t asks its slot; it runs at once if one is free, else it queues."""
    slot = s.tk_slot[t]
    if s.sl_used[slot] < s.sl_cap[slot]:
        s.sl_used[slot] += 1
        _grant(s, t, now)
        return
    s.tk_req[t] = s.n[REQUESTS]
    s.n[REQUESTS] += 1
    s.tk_next[t] = s.sl_head[slot]
    s.sl_head[slot] = t


@njit(cache=True, inline="always")
def _grant(s, t, now):
    """Task t has its slot: each of its cursors takes its first steps now."""
    p = s.tk_plan[t]
    for c in range(s.tk_cursor[t], s.tk_cursor[t] + s.pl_n[p] * s.pl_lanes[p]):
        push(s, now, WAKE, c, 0)


@njit(cache=True, inline="always")
def _task_done(s, t, now):
    slot = s.tk_slot[t]
    s.sl_used[slot] -= 1
    best, best_before = -1, -1  # the queued task first by (priority, request order)
    prev, q = -1, s.sl_head[slot]
    while q >= 0:
        if best < 0 or s.tk_prio[q] < s.tk_prio[best] or (s.tk_prio[q] == s.tk_prio[best] and s.tk_req[q] < s.tk_req[best]):
            best, best_before = q, prev
        prev, q = q, s.tk_next[q]
    if best >= 0:
        if best_before < 0:
            s.sl_head[slot] = s.tk_next[best]
        else:
            s.tk_next[best_before] = s.tk_next[best]
        s.sl_used[slot] += 1
        _grant(s, best, now)
    for i in range(s.tk_succ[t], s.tk_succ[t] + s.tk_nsucc[t]):
        u = s.succ[i]
        s.tk_wait[u] -= 1
        if s.tk_wait[u] == 0:
            _request(s, u, now)
    c = s.tk_coll[t]
    s.co_left[c] -= 1
    if s.co_left[c] == 0:
        s.co_end[c] = now
        s.done[s.n[DONE]] = c
        s.n[DONE] += 1


# --- cursors ----------------------------------------------------------------------


@njit(cache=True, inline="always")
def _size(s, k, nbytes, blocks):
    """Bytes of step k on a buffer of `nbytes` cut into `blocks` blocks (`executor.bounds`)."""
    total = 0
    for i in range(s.st_bptr[k], s.st_bptr[k + 1]):
        b = s.st_blocks[i]
        total += ((b + 1) * nbytes) // blocks - (b * nbytes) // blocks
    return total


@njit(cache=True, inline="always")
def _step(s, c, now):
    """Cursor c takes its steps until it must wait (a message, its reductions) or has none left."""
    t = s.cu_task[c]
    p, r, lane = s.tk_plan[t], s.cu_rank[c], s.cu_lane[c]
    end = s.rank_ptr[s.pl_rank[p] + r + 1]
    k = s.cu_pos[c]
    while k < end:
        if s.st_lane[k] != lane:
            k += 1
            continue
        size = _size(s, k, s.tk_bytes[t], s.pl_blocks[p])
        if s.st_kind[k] == SEND:
            if s.cu_reduced[c] > now:  # what it sends may hold what it is still adding
                s.cu_pos[c] = k
                push(s, s.cu_reduced[c], WAKE, c, 0)
                return
            _send(s, t, k, r, size, now)
            k += 1
            continue
        if s.mailbox[s.tk_mail[t] + s.st_match[k]] == 0:
            s.cu_pos[c] = k
            s.cu_blocked[c] = 1
            return
        if s.st_reduce[k] and s.tk_rate[t] > 0:
            s.cu_reduced[c] = max(s.cu_reduced[c], now + 3.0 * size / s.tk_rate[t])
        k += 1
    s.cu_pos[c] = end
    if s.cu_reduced[c] > now:
        push(s, s.cu_reduced[c], WAKE, c, 0)
        return
    t = s.cu_task[c]
    s.tk_left[t] -= 1
    if s.tk_left[t] == 0:
        _task_done(s, t, now)


# --- messages ---------------------------------------------------------------------


@njit(cache=True, inline="always")
def _send(s, t, k, r, size, now):
    p = s.tk_plan[t]
    g = s.tk_group[t]
    src, dst = s.npus[g + r], s.npus[g + s.st_peer[k]]
    route = s.task_routes[s.tk_routes[t] + s.st_pair[k]]
    s.n[FREE] -= 1
    m = s.ms_free[s.n[FREE]]
    s.ms_task[m], s.ms_step[m], s.ms_route[m], s.ms_size[m] = t, k - s.pl_base[p], route, size
    s.ms_sent[m], s.ms_hop[m], s.ms_src[m], s.ms_dst[m] = now, 0, src, dst
    lo, hi = s.route_ptr[route], s.route_ptr[route + 1]
    if lo == hi:  # to itself: nothing moves
        push(s, now, ARRIVE, m, 0)
        return
    model = s.n[MODEL]
    if model == IDEAL:
        for i in range(lo, hi):
            s.nbytes[s.route_links[i]] += size
        push(s, now + s.overhead[src] + size / s.route_bw[route] + s.route_lat[route], ARRIVE, m, 0)
    elif model == FLOW:
        if s.overhead[src] > 0:
            push(s, now + s.overhead[src], START, m, 0)
        else:  # as `Flow.transfer`: no overhead, the flow starts at once
            _start_flow(s, m, now)
    else:
        _hop(s, m, now, s.overhead[src])


@njit(cache=True, inline="always")
def _hop(s, m, now, extra):
    """Store and forward: message m asks for its next link (FIFO: it holds it once the messages before
    it have), for `extra` + its bytes at the link's rate."""
    link = s.route_links[s.route_ptr[s.ms_route[m]] + s.ms_hop[m]]
    start = max(now, s.free_at[link])
    hold = extra + s.ms_size[m] / s.cap[link]
    s.free_at[link] = start + hold
    s.busy[link] += hold
    push(s, start + hold, HOP_DONE, m, 0)


@njit(cache=True, inline="always")
def _start_flow(s, m, now):
    size = s.ms_size[m]
    route = s.ms_route[m]
    lo, hi = s.route_ptr[route], s.route_ptr[route + 1]
    if size <= 0:
        push(s, now + s.route_lat[route], ARRIVE, m, 0)
        return
    s.left[m], s.rate[m], s.lazy[m], s.stamp[m] = size, 0.0, 0.0, now
    for i in range(lo, hi):
        link = s.route_links[i]
        s.hops[m, i - lo] = link
        s.touched[s.n[TOUCHED]] = link
        s.n[TOUCHED] += 1
        s.nbytes[link] += size
        if s.active[link] == 0:
            s.since[link] = now
        s.active[link] += 1
    attach(s.hops, s.on_link, s.degree, m)
    for i in range(lo, hi):
        s.n[MOST] = max(s.n[MOST], s.degree[s.route_links[i]])
    s.n[FLOWS] += 1
    s.n[PENDING] = 1


@njit(cache=True, inline="always")
def _end_flow(s, m, now):
    route = s.ms_route[m]
    lo, hi = s.route_ptr[route], s.route_ptr[route + 1]
    detach(s.hops, s.on_link, s.degree, m)
    for i in range(lo, hi):
        link = s.route_links[i]
        s.hops[m, i - lo] = -1
        s.touched[s.n[TOUCHED]] = link
        s.n[TOUCHED] += 1
        s.active[link] -= 1
        if s.active[link] == 0:
            s.busy[link] += now - s.since[link]
    s.rate[m] = s.lazy[m] = 0.0
    s.ms_version[m] += 1
    s.n[FLOWS] -= 1
    s.n[PENDING] = 1
    push(s, now + s.route_lat[route], ARRIVE, m, 0)


@njit(cache=True, inline="always")
def _arrive(s, m, now):
    t = s.ms_task[m]
    p = s.tk_plan[t]
    k = s.pl_base[p] + s.ms_step[m]
    s.mailbox[s.tk_mail[t] + s.ms_step[m]] = 1
    watch = s.n[WATCH]
    if watch == -2 or (watch >= 0 and (s.ms_src[m] == watch or s.ms_dst[m] == watch)):
        i = s.n[RECORDS]
        s.rc_src[i], s.rc_dst[i], s.rc_size[i] = s.ms_src[m], s.ms_dst[m], s.ms_size[m]
        s.rc_sent[i], s.rc_arrived[i] = s.ms_sent[m], now
        s.n[RECORDS] += 1
    c = s.tk_cursor[t] + s.st_peer[k] * s.pl_lanes[p] + s.st_lane[k]
    if s.cu_blocked[c] and s.st_match[s.cu_pos[c]] == s.ms_step[m]:
        s.cu_blocked[c] = 0
        push(s, now, WAKE, c, 0)
    s.ms_free[s.n[FREE]] = m
    s.n[FREE] += 1


@njit(cache=True, inline="always")
def _solve(s, now):
    """The flows' max-min rates after this instant's starts and ends; a new end event for each flow whose
    rate changed (its bytes left brought up to date first)."""
    touched = s.touched[: s.n[TOUCHED]]
    m = update(s.hops, s.on_link, s.degree, s.cap, s.rate, s.load, s.most, touched, s.n[FLOWS], s.work)
    s.n[TOUCHED] = 0
    s.n[PENDING] = 0
    s.n[SOLVES] += 1
    s.n[SOLVED] += m
    members = s.work[5]
    for i in range(m):
        f = members[i]
        s.left[f] -= s.lazy[f] * (now - s.stamp[f])
        s.stamp[f] = now
        if s.rate[f] != s.lazy[f]:
            s.lazy[f] = s.rate[f]
            s.ms_version[f] += 1
            if s.rate[f] > 0:
                push(s, now + max(s.left[f], 0.0) / s.rate[f], END, f, s.ms_version[f])


# --- the loop ---------------------------------------------------------------------


@njit(cache=True, inline="always")
def _needs(s):
    """What must grow before the next event may be taken (bits of NEED), or 0. One event pushes at most
    `BURST` events (a task's end: the cursors of the tasks it lets start) and sends at most `WIDE` messages
    (a cursor's sends in a row)."""
    need = 0
    wide = s.n[WIDE]
    if s.n[FREE] < wide:
        need |= NEED_MESSAGES
    if s.n[HEAP] + s.n[FLOWS] + s.n[BURST] + wide + 16 > s.hp_time.size:
        need |= NEED_HEAP
    if s.n[TOUCHED] + (wide + 2) * s.hops.shape[1] > s.touched.size:
        need |= NEED_TOUCHED
    if s.n[WATCH] != -1 and s.n[RECORDS] + 1 > s.rc_src.size:
        need |= NEED_RECORDS
    if s.n[MOST] + wide >= s.on_link.shape[1]:
        need |= NEED_WIDTH
    return need


@njit(cache=True)
def run(s, until):
    """Play events up to `until` (the module docstring)."""
    s.n[DONE] = 0
    while s.n[HEAP] > 0:
        now = s.hp_time[0]
        if now > until:
            return REACHED
        need = _needs(s)
        if need:
            s.n[NEED] = need
            return GROW
        s.clock[0] = now
        kind, ident, aux = _pop(s)
        s.n[EVENTS] += 1
        if kind == WAKE:
            _step(s, ident, now)
        elif kind == RELEASE:
            s.tk_wait[ident] -= 1
            if s.tk_wait[ident] == 0:
                _request(s, ident, now)
        elif kind == START:
            _start_flow(s, ident, now)
        elif kind == END:
            if s.ms_version[ident] == aux:
                _end_flow(s, ident, now)
        elif kind == ARRIVE:
            _arrive(s, ident, now)
        elif kind == HOP_DONE:
            link = s.route_links[s.route_ptr[s.ms_route[ident]] + s.ms_hop[ident]]
            s.nbytes[link] += s.ms_size[ident]
            push(s, now + s.lat[link], HOP_NEXT, ident, 0)
        else:  # HOP_NEXT
            s.ms_hop[ident] += 1
            route = s.ms_route[ident]
            if s.ms_hop[ident] < s.route_ptr[route + 1] - s.route_ptr[route]:
                _hop(s, ident, now, 0.0)
            else:
                _arrive(s, ident, now)
        if s.n[HEAP] == 0 or s.hp_time[0] > now:  # the instant is over
            if s.n[PENDING]:
                _solve(s, now)
            if s.n[DONE] and (s.n[HEAP] == 0 or s.hp_time[0] > now):
                return COMPLETED
    return REACHED
