"""Max-min fair rates of flows over links: progressive filling, one link at a time, with a heap.

Flows share links of given capacities. Row f of `hops` lists the links flow f crosses, padded
with -1 (a row of -1 is no flow); row l of `on_link` lists the flows on link l, its first
`degree[l]` entries. The max-min fair rates: every flow has a bottleneck, a full link on which
no flow gets more. Progressive filling finds them: repeatedly take the link whose fair share
(capacity left / flows on it not yet fixed) is the smallest, fix its flows at that share, and
take their rate off the other links they cross. A link's share never falls as flows are fixed
(what the fixed flows take is at most its share), so a min-heap of shares, in which a link
whose share has risen since it was pushed goes back in, gives the links in order:
O(P log L) for P (flow, link) pairs and L links.

`max_min_update` keeps the rates of a changing flow set without solving it whole each time. `update`, its
kernel, also takes rows that stand for several flows on the same links (a weight per row), as the compiled
engine's routes do.
`tests/network/test_sharing.py` checks both against a textbook version on random flow sets.
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def _push(heap_key, heap_link, size, key, link):
    i = size
    heap_key[i] = key
    heap_link[i] = link
    while i > 0:
        parent = (i - 1) // 2
        if heap_key[parent] <= heap_key[i]:
            break
        heap_key[i], heap_key[parent] = heap_key[parent], heap_key[i]
        heap_link[i], heap_link[parent] = heap_link[parent], heap_link[i]
        i = parent
    return size + 1


@njit(cache=True)
def _pop(heap_key, heap_link, size):
    key, link = heap_key[0], heap_link[0]
    size -= 1
    heap_key[0], heap_link[0] = heap_key[size], heap_link[size]
    i = 0
    while True:
        left = 2 * i + 1
        if left >= size:
            break
        child = left
        if left + 1 < size and heap_key[left + 1] < heap_key[left]:
            child = left + 1
        if heap_key[i] <= heap_key[child]:
            break
        heap_key[i], heap_key[child] = heap_key[child], heap_key[i]
        heap_link[i], heap_link[child] = heap_link[child], heap_link[i]
        i = child
    return key, link, size


@njit(cache=True)
def _width(hops, f):
    """How many links flow f crosses (its row of `hops` up to the first -1). The kernels go through a flow's
    links by index, so they allocate nothing and return no array: the compiled engine's loop runs them without
    reference counting (`kernels.transfers`)."""
    n = 0
    while n < hops.shape[1] and hops[f, n] >= 0:
        n += 1
    return n


@njit(cache=True)
def attach(hops, on_link, degree, f):
    """Enter flow f (its row of `hops` set) on its links; False (and nothing entered) if a link's row
    of `on_link` is full."""
    for q_link in range(_width(hops, f)):
        link = hops[f, q_link]
        if degree[link] == on_link.shape[1]:
            return False
    for q_link in range(_width(hops, f)):
        link = hops[f, q_link]
        on_link[link, degree[link]] = f
        degree[link] += 1
    return True


@njit(cache=True)
def detach(hops, on_link, degree, f):
    """Take flow f off its links (the last flow of a link's row fills its place)."""
    for q_link in range(_width(hops, f)):
        link = hops[f, q_link]
        for q in range(degree[link]):
            if on_link[link, q] == f:
                degree[link] -= 1
                on_link[link, q] = on_link[link, degree[link]]
                break


@njit(cache=True)
def scratch(n_flows, n_links):
    """The work arrays of `_fill` and `update` for up to `n_flows` flow slots and `n_links` links: each call
    leaves them as it found them (or, for the marks, stamped older than the next call's), so a caller that
    solves again and again allocates them once. The last holds the stamp."""
    count = np.zeros(n_links, np.int64)
    heap_key = np.empty(n_links + 1)
    heap_link = np.empty(n_links + 1, np.int64)
    fixed = np.zeros(n_flows, np.bool_)
    chosen = np.zeros(n_flows, np.bool_)
    members = np.empty(n_flows, np.int64)
    left = np.empty(n_links)
    mark = np.zeros(n_links, np.int64)
    checked = np.zeros(n_flows, np.int64)
    links = np.empty(n_links, np.int64)
    stamp = np.zeros(1, np.int64)
    return count, heap_key, heap_link, fixed, chosen, members, left, mark, checked, links, stamp


@njit(cache=True)
def _fill(hops, on_link, degree, left, chosen, members, rate, work, weight):
    """Progressive filling of the flows `members` (marked in `chosen`) on the capacities `left` (what the
    other flows leave); writes their rates into `rate`. Only the links they cross take part. `work`:
    `scratch`'s arrays; `weight`: how many flows each row stands for (`update`)."""
    count, heap_key, heap_link, fixed = work[0], work[1], work[2], work[3]
    n = 0
    for f in members:
        for q_link in range(_width(hops, f)):
            link = hops[f, q_link]
            if count[link] == 0:
                heap_link[n] = link
                n += 1
            count[link] += weight[f]
    size = 0
    for i in range(n):
        link = heap_link[i]
        size = _push(heap_key, heap_link, size, max(left[link], 0.0) / count[link], link)
    while size > 0:
        key, link, size = _pop(heap_key, heap_link, size)
        if count[link] == 0:
            continue  # every flow on it is fixed
        share = max(left[link], 0.0) / count[link]
        if share != key:  # risen since pushed
            size = _push(heap_key, heap_link, size, share, link)
            continue
        for f in on_link[link, : degree[link]]:
            if not chosen[f] or fixed[f]:
                continue
            fixed[f] = True
            rate[f] = share
            for q_other in range(_width(hops, f)):
                other = hops[f, q_other]
                left[other] -= share * weight[f]
                count[other] -= weight[f]
    for f in members:
        fixed[f] = False


@njit(cache=True)
def max_min_rates(hops, capacity):
    """Rates (float64, one per row of `hops`) of the flows whose links the rows list."""
    n_flows = hops.shape[0]
    degree = np.zeros(capacity.size, np.int64)
    for f in range(n_flows):
        for q_link in range(_width(hops, f)):
            link = hops[f, q_link]
            degree[link] += 1
    on_link = np.empty((capacity.size, max(degree.max(), 1)), np.int64)
    degree[:] = 0
    members = np.empty(n_flows, np.int64)
    live = np.zeros(n_flows, np.bool_)
    m = 0
    for f in range(n_flows):
        if _width(hops, f):
            attach(hops, on_link, degree, f)
            live[f] = True
            members[m] = f
            m += 1
    rate = np.zeros(n_flows)
    work = scratch(n_flows, capacity.size)
    _fill(hops, on_link, degree, capacity.astype(np.float64).copy(), live, members[:m], rate, work, np.ones(n_flows, np.int64))
    return rate


SLACK = 1e-9
"""Relative tolerance of "full" and "the most on its link" in the bottleneck check."""

GIVE_UP = 0.25, 32
"""The local update gives way to solving whole components when it has more than this share of the
flows and more than this many."""


@njit(cache=True)
def max_min_update(hops, on_link, degree, capacity, rate, load, most, touched, flows):
    """Bring `rate` to the max-min fair rates after flows were attached or detached on the links
    `touched` (a new flow has rate 0; a detached one is not looked at); `flows` are attached now.
    `load` and `most` (per link: the sum and the largest of its flows' rates) are kept with it.

    A feasible allocation in which every flow has a bottleneck (a full link on which no flow gets
    more) is the max-min fair one. So: solve the set S of flows on the touched links again, on what
    the other flows leave them; then check the flows that share a link with S (no other flow's
    links changed). A flow without a bottleneck brings in itself and the flows that get more than
    it on its full links, and S is solved again, until every flow has one. A start or an end usually
    moves a handful of rates. If S grows past `GIVE_UP`, the connected components of
    the flow-link graph that hold a touched link are solved whole instead (their rates do not depend
    on the other components; SimGrid's lazy max-min update works by component too)."""
    work = scratch(rate.size, capacity.size)
    update(hops, on_link, degree, capacity, rate, load, most, touched, flows, work, np.ones(rate.size, np.int64))


@njit(cache=True)
def update(hops, on_link, degree, capacity, rate, load, most, touched, flows, work, weight):
    """`max_min_update` with its work arrays given (`scratch`); returns how many flows it solved again,
    which it leaves first in `work[5]` (no other flow's rate changed). A row of `hops` may stand for
    `weight` of its flows (flows that cross the same links: their max-min rates are equal, since swapping
    two of them changes nothing); `rate` is then the rate of each, and `flows` counts rows."""
    chosen, members, left, mark, checked, links, stamps = work[4], work[5], work[6], work[7], work[8], work[9], work[10]
    for link in touched:
        _measure(link, on_link, degree, rate, load, most, weight)
    m = 0
    for link in touched:
        for f in on_link[link, : degree[link]]:
            if not chosen[f]:
                chosen[f] = True
                members[m] = f
                m += 1
    while m > 0:
        if m > GIVE_UP[0] * flows and m > GIVE_UP[1]:
            for f in members[:m]:
                chosen[f] = False
            return _solve_components(hops, on_link, degree, capacity, rate, load, most, touched, work, weight)
        stamps[0] += 1
        stamp = stamps[0]
        k = 0
        for f in members[:m]:
            for q_link in range(_width(hops, f)):
                link = hops[f, q_link]
                if mark[link] != stamp:
                    mark[link] = stamp
                    links[k] = link
                    k += 1
                    left[link] = capacity[link] - load[link]
                left[link] += rate[f] * weight[f]
        for f in members[:m]:
            rate[f] = 0.0
        _fill(hops, on_link, degree, left, chosen, members[:m], rate, work, weight)
        for link in links[:k]:
            _measure(link, on_link, degree, rate, load, most, weight)
        grown = m
        for link in links[:k]:  # the flows on the links of S: each needs a bottleneck
            for f in on_link[link, : degree[link]]:
                if checked[f] == stamp:
                    continue
                checked[f] = stamp
                if _bottlenecked(f, hops, capacity, rate, load, most):
                    continue
                if not chosen[f]:
                    chosen[f] = True
                    members[grown] = f
                    grown += 1
                for q_full in range(_width(hops, f)):
                    full = hops[f, q_full]
                    if load[full] < capacity[full] * (1 - SLACK):
                        continue
                    over = load[full] > capacity[full] * (1 + SLACK)
                    for g in on_link[full, : degree[full]]:
                        if not chosen[g] and (over or rate[g] > rate[f]):
                            chosen[g] = True
                            members[grown] = g
                            grown += 1
        if grown == m:
            break
        m = grown
    for f in members[:m]:
        chosen[f] = False
    return m


@njit(cache=True)
def _measure(link, on_link, degree, rate, load, most, weight):
    """The total and the largest rate of the flows on `link`."""
    total = top = 0.0
    for f in on_link[link, : degree[link]]:
        total += rate[f] * weight[f]
        top = max(top, rate[f])
    load[link], most[link] = total, top


@njit(cache=True)
def _bottlenecked(f, hops, capacity, rate, load, most):
    """Whether flow f has a full link on which no flow gets more, and no link of f is over capacity."""
    found = False
    for q_link in range(_width(hops, f)):
        link = hops[f, q_link]
        if load[link] > capacity[link] * (1 + SLACK):
            return False
        if load[link] >= capacity[link] * (1 - SLACK) and rate[f] >= most[link] * (1 - SLACK):
            found = True
    return found


@njit(cache=True)
def _solve_components(hops, on_link, degree, capacity, rate, load, most, touched, work, weight):
    """Progressive filling of the connected components of the flow-link graph that hold a touched link,
    on the links' whole capacities; returns how many flows it solved (first in `work[5]`)."""
    chosen, members, left, mark, queue, stamps = work[4], work[5], work[6], work[7], work[9], work[10]
    stamps[0] += 1
    seen = stamps[0]  # mark[link] == seen: the link is queued
    m = head = tail = 0
    for link in touched:
        if mark[link] != seen:
            mark[link] = seen
            queue[tail] = link
            tail += 1
    while head < tail:  # breadth first over links, through the flows that cross them
        for f in on_link[queue[head], : degree[queue[head]]]:
            if chosen[f]:
                continue
            chosen[f] = True
            members[m] = f
            m += 1
            for q_link in range(_width(hops, f)):
                link = hops[f, q_link]
                if mark[link] != seen:
                    mark[link] = seen
                    queue[tail] = link
                    tail += 1
        head += 1
    for link in queue[:tail]:
        left[link] = capacity[link]
    _fill(hops, on_link, degree, left, chosen, members[:m], rate, work, weight)
    for link in queue[:tail]:
        _measure(link, on_link, degree, rate, load, most, weight)
    for f in members[:m]:
        chosen[f] = False
    return m


@njit(cache=True)
def resolve(hops, on_link, degree, capacity, rate, load, most, touched, flows, left, seconds):
    """The flow model's step when flows started or ended: `seconds` at the old rates off the bytes
    `left`, the rates updated (`max_min_update`), and the wait until the next flow's last byte."""
    _advance(left, rate, seconds)
    max_min_update(hops, on_link, degree, capacity, rate, load, most, touched, flows)
    return next_end(left, rate)


@njit(cache=True)
def finished(left, rate, seconds, now):
    """The flow model's step at a flow's scheduled last byte: `seconds` at the rates off the bytes
    `left`, and the flows done (`ended`)."""
    _advance(left, rate, seconds)
    return ended(left, rate, now)


@njit(cache=True)
def _advance(left, rate, seconds):
    if seconds > 0:
        for f in range(rate.size):
            left[f] -= rate[f] * seconds


@njit(cache=True)
def next_end(left, rate):
    """Seconds until the first flow with a rate has sent its last byte (inf if none)."""
    wait = np.inf
    for f in range(rate.size):
        if rate[f] > 0:
            wait = min(wait, left[f] / rate[f])
    return wait


@njit(cache=True)
def ended(left, rate, now):
    """The flows with a rate and (to the clock's resolution at `now`) nothing left to send."""
    out = []
    for f in range(rate.size):
        if rate[f] > 0 and left[f] <= rate[f] * now * 1e-14:
            out.append(f)
    return np.array(out, np.int64) if out else np.empty(0, np.int64)
