"""Topologies: NPUs and switches joined by links, and the route a message takes between two NPUs.

A `Topology` is a graph of nodes (the NPUs first, index i = NPU i, then the switches)
and directed links (a full-duplex cable is two links, one each way), each with its own
bandwidth and latency. `build(spec, npus, npu_links)` makes one from a scenario's
`hardware.network`:

| kind              | nodes and links                                                          | route                                       |
|-------------------|--------------------------------------------------------------------------|---------------------------------------------|
| `switch`          | n NPUs, one switch, a cable from each NPU to it                          | up, down (2 hops)                           |
| `ring`            | n NPUs, a cable between neighbours (wrap-around)                         | the shorter way round (ties: upwards)       |
| `fully_connected` | n NPUs, a cable between every two                                        | 1 hop                                       |
| `torus`           | k0 x k1 (x k2) NPUs, a ring along every dimension                        | dimension by dimension, each the shorter way |
| `fat_tree`        | leaves of k NPUs; every leaf cabled to every spine; spine cables carry k x bandwidth / (spines x oversubscription) | same leaf: up, down; else up, to spine (s + d) mod spines, down, down |
| `dims`            | NPU i has coordinates c_j = (i // (s_0 ... s_{j-1})) mod s_j; along each dimension the NPUs that differ only there form a group joined by a switch, a ring or all-to-all | dimension by dimension, in order |

Routes are computed once per pair (`route`, cached). With NPUs taken down
(`overrides: [{npu: i, down: true}]`) their links are gone, and routes are shortest
paths by breadth-first search over what is left (ties by link order).
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field


class FabricError(ValueError):
    """A fabric that cannot carry the system: the message says what and names the setting."""


@dataclass
class Topology:
    """Nodes (NPUs 0..npus-1, then switches) and directed links; `route(a, b)` is the list of link ids."""

    kind: str
    npus: int
    nodes: list[str]
    src: list[int] = field(default_factory=list)
    dst: list[int] = field(default_factory=list)
    bandwidth: list[float] = field(default_factory=list)
    latency: list[float] = field(default_factory=list)
    level: list[str] = field(default_factory=list)  # what a link is: "npu" (to or from an NPU's switch), "spine", "dim1", ...
    port: list[str] = field(default_factory=list)  # an NPU-switch link's port name ("" when the NPU has one port)
    coords: list[tuple[int, ...]] = field(default_factory=list)  # NPU coordinates (torus, dims)
    shape: tuple[int, ...] = ()
    router: Callable[[int, int], list[int]] | None = None
    reachable: Callable[[int], set[int]] | None = None  # NPUs reachable from an NPU (set when some are down)
    _by_ends: dict[tuple[int, int], int] = field(default_factory=dict)
    _routes: dict[tuple[int, int], tuple[int, ...]] = field(default_factory=dict)
    _costs: dict[tuple[int, ...], tuple[float, float]] = field(default_factory=dict)
    _by_npu: dict[int, list[int]] = field(default_factory=dict)
    _out: dict[int, list[int]] = field(default_factory=dict)

    def node(self, name: str) -> int:
        self.nodes.append(name)
        return len(self.nodes) - 1

    def cable(self, a: int, b: int, bandwidth: float, latency: float, level: str, port: str = "") -> None:
        """A full-duplex cable between nodes a and b: a link each way."""
        for u, v in ((a, b), (b, a)):
            self._by_ends[u, v] = len(self.src)
            self.src.append(u)
            self.dst.append(v)
            self.bandwidth.append(bandwidth)
            self.latency.append(latency)
            self.level.append(level)
            self.port.append(port)

    def link(self, a: int, b: int) -> int:
        return self._by_ends[a, b]

    @property
    def links(self) -> int:
        return len(self.src)

    def route(self, a: int, b: int) -> tuple[int, ...]:
        """The links a message from NPU a to NPU b crosses, in order (none when a == b)."""
        key = (a, b)
        path = self._routes.get(key)
        if path is None:
            path = self._routes[key] = () if a == b else tuple(self.router(a, b))
        return path

    def loopback(self, a: int, b: int) -> tuple[int, int]:
        """NPU a's link to the switch that joins it to NPU b (or, for a b beyond the fabric, to the
        first switch), and that switch's link back to a: the path that stands in for b's message to a
        when a mirrors an identical partner. FabricError unless a and b are one switch apart."""
        if b >= self.npus:
            if self.kind != "switch":
                raise FabricError(f"a mirrored partner beyond the fabric needs a single switch; this fabric is a {self.kind}")
            return self.link(a, self.npus), self.link(self.npus, a)
        there, back = self.route(a, b), self.route(b, a)
        if len(there) != 2 or len(back) != 2 or self.dst[there[0]] != self.src[back[1]]:
            raise FabricError(
                f"symmetric mode needs every transfer to cross one switch (NPU, switch, NPU); NPU {a} to {b} is {len(there)} hops on this {self.kind}"
            )
        return there[0], back[1]

    def cost(self, path: tuple[int, ...]) -> tuple[float, float]:
        """A path's (latency, bandwidth): the sum of its links' latencies and its slowest link's
        bandwidth, worked out once (`set_link` forgets them)."""
        cost = self._costs.get(path)
        if cost is None:
            cost = self._costs[path] = (sum(map(self.latency.__getitem__, path)), min(map(self.bandwidth.__getitem__, path)))
        return cost

    def set_link(self, i: int, bandwidth: float, latency: float) -> None:
        self.bandwidth[i], self.latency[i] = bandwidth, latency
        self._costs.clear()

    def hops(self, a: int, b: int) -> int:
        return len(self.route(a, b))

    def out_links(self, node: int) -> list[int]:
        """The links that start at `node`, in link order."""
        if not self._out:
            for i, u in enumerate(self.src):
                self._out.setdefault(u, []).append(i)
        return self._out.get(node, [])

    def npu_links(self, npu: int) -> list[int]:
        """The links that start or end at NPU `npu`."""
        if not self._by_npu:
            for i, (u, v) in enumerate(zip(self.src, self.dst, strict=True)):
                for end in (u, v):
                    if end < self.npus:
                        self._by_npu.setdefault(end, []).append(i)
        return self._by_npu.get(npu, [])

    def link_name(self, i: int, names: list[str]) -> str:
        """A link's name from its nodes' names: `<npu>.nic.up` / `.down` between an NPU and its switch
        (`nic<port>` when the NPU has a port per dimension), else `<from>-><to>`."""
        u, v = self.src[i], self.dst[i]
        if (u < self.npus) != (v < self.npus):  # an NPU and a switch
            npu, way = (u, "up") if u < self.npus else (v, "down")
            return f"{names[npu]}.nic{self.port[i]}.{way}"
        return f"{names[u]}->{names[v]}"


# --- builders --------------------------------------------------------------------------


def star(npus: int, bandwidth: list[float], latency: list[float]) -> Topology:
    t = Topology("switch", npus, [f"npu{i}" for i in range(npus)])
    sw = t.node("sw")
    for i in range(npus):
        t.cable(i, sw, bandwidth[i], latency[i], "npu")
    t.router = lambda a, b: [t.link(a, sw), t.link(sw, b)]
    return t


def ring(npus: int, bandwidth: float, latency: float) -> Topology:
    t = Topology("ring", npus, [f"npu{i}" for i in range(npus)])
    _ring_cables(t, list(range(npus)), bandwidth, latency, "ring")
    t.router = lambda a, b: _ring_route(t, list(range(npus)), a, b)
    return t


def fully_connected(npus: int, bandwidth: float, latency: float) -> Topology:
    t = Topology("fully_connected", npus, [f"npu{i}" for i in range(npus)])
    for a in range(npus):
        for b in range(a + 1, npus):
            t.cable(a, b, bandwidth, latency, "all")
    t.router = lambda a, b: [t.link(a, b)]
    return t


def torus(shape: tuple[int, ...], bandwidth: float, latency: float) -> Topology:
    n = math.prod(shape)
    t = Topology("torus", n, [f"npu{i}" for i in range(n)], shape=tuple(shape))
    t.coords = [_coords(i, shape) for i in range(n)]
    for dim in range(len(shape)):
        for group in _groups(shape, dim):
            _ring_cables(t, group, bandwidth, latency, f"dim{dim}")
    t.router = lambda a, b: _dimension_ordered(t, [("ring", None)] * len(shape), a, b)
    return t


def fat_tree(
    leaves: int, per_leaf: int, spines: int, bandwidth: float, latency: float, spine_latency: float, oversubscription: float
) -> Topology:
    n = leaves * per_leaf
    t = Topology("fat_tree", n, [f"npu{i}" for i in range(n)])
    leaf = [t.node(f"leaf{j}") for j in range(leaves)]
    spine = [t.node(f"spine{s}") for s in range(spines)]
    for i in range(n):
        t.cable(i, leaf[i // per_leaf], bandwidth, latency, "npu")
    uplink = per_leaf * bandwidth / (spines * oversubscription)
    for lf in leaf:
        for sp in spine:
            t.cable(lf, sp, uplink, spine_latency, "spine")

    def route(a: int, b: int) -> list[int]:
        la, lb = leaf[a // per_leaf], leaf[b // per_leaf]
        if la == lb:
            return [t.link(a, la), t.link(la, b)]
        sp = spine[(a + b) % spines]  # ECMP: a fixed spine per pair, spread over pairs
        return [t.link(a, la), t.link(la, sp), t.link(sp, lb), t.link(lb, b)]

    t.router = route
    return t


def dims(dimensions: list[tuple[str, int, float, float]]) -> Topology:
    """`dimensions`: (kind, size, bandwidth, latency) per dimension, innermost first."""
    shape = tuple(size for _, size, _, _ in dimensions)
    n = math.prod(shape)
    t = Topology("dims", n, [f"npu{i}" for i in range(n)], shape=shape)
    t.coords = [_coords(i, shape) for i in range(n)]
    switches: list[dict[tuple, int] | None] = []
    several = len(dimensions) > 1
    for dim, (kind, _, bandwidth, latency) in enumerate(dimensions):
        level, port = f"dim{dim}", str(dim) if several else ""
        per_group = {}
        for g, group in enumerate(_groups(shape, dim)):
            if kind == "switch" and len(group) > 1:
                sw = t.node(f"dim{dim}.sw{g}")
                per_group[_group_key(t.coords[group[0]], dim)] = sw
                for npu in group:
                    t.cable(npu, sw, bandwidth, latency, level, port)
            elif kind == "ring":
                _ring_cables(t, group, bandwidth, latency, level)
            elif kind == "fully_connected":
                for i, a in enumerate(group):
                    for b in group[i + 1 :]:
                        t.cable(a, b, bandwidth, latency, level)
        switches.append(per_group if kind == "switch" else None)
    t.router = lambda a, b: _dimension_ordered(t, [(k, sw) for (k, _, _, _), sw in zip(dimensions, switches, strict=True)], a, b)
    return t


# --- routing helpers -------------------------------------------------------------------


def _coords(i: int, shape: tuple[int, ...]) -> tuple[int, ...]:
    out = []
    for size in shape:
        out.append(i % size)
        i //= size
    return tuple(out)


def _index(coords: tuple[int, ...], shape: tuple[int, ...]) -> int:
    i, stride = 0, 1
    for c, size in zip(coords, shape, strict=True):
        i += c * stride
        stride *= size
    return i


def dimension_groups(t: Topology) -> list[list[list[int]]]:
    """Per dimension of a `dims` or `torus` fabric, its groups: the NPUs (in coordinate order) that differ
    only along it. Any other fabric has one dimension, one group of every NPU."""
    if t.kind in ("dims", "torus"):
        return [_groups(t.shape, dim) for dim in range(len(t.shape))]
    return [[list(range(t.npus))]]


def _groups(shape: tuple[int, ...], dim: int) -> list[list[int]]:
    """The NPUs (in coordinate order along `dim`) of every group that differs only along `dim`."""
    groups: dict[tuple, list[int]] = {}
    for i in range(math.prod(shape)):
        c = _coords(i, shape)
        groups.setdefault(_group_key(c, dim), []).append(i)
    return list(groups.values())


def _group_key(coords: tuple[int, ...], dim: int) -> tuple:
    return coords[:dim] + coords[dim + 1 :]


def _ring_cables(t: Topology, members: list[int], bandwidth: float, latency: float, level: str) -> None:
    k = len(members)
    for j in range(k if k > 2 else k - 1):
        t.cable(members[j], members[(j + 1) % k], bandwidth, latency, level)


def _ring_route(t: Topology, members: list[int], a: int, b: int) -> list[int]:
    k = len(members)
    ia, ib = members.index(a), members.index(b)
    forward = (ib - ia) % k
    step = 1 if forward <= k - forward else -1
    path, at = [], ia
    while at != ib:
        nxt = (at + step) % k
        path.append(t.link(members[at], members[nxt]))
        at = nxt
    return path


def _dimension_ordered(t: Topology, dims_: list[tuple[str, dict | None]], a: int, b: int) -> list[int]:
    """Correct one coordinate at a time, innermost dimension first."""
    path, at = [], a
    target = t.coords[b]
    for dim, (kind, switches) in enumerate(dims_):
        here = t.coords[at]
        if here[dim] == target[dim]:
            continue
        nxt = _index(here[:dim] + (target[dim],) + here[dim + 1 :], t.shape)
        if kind == "switch":
            sw = switches[_group_key(here, dim)]
            path += [t.link(at, sw), t.link(sw, nxt)]
        elif kind == "fully_connected":
            path.append(t.link(at, nxt))
        else:
            group = [_index(here[:dim] + (c,) + here[dim + 1 :], t.shape) for c in range(t.shape[dim])]
            path += _ring_route(t, group, at, nxt)
        at = nxt
    return path


def without(t: Topology, down: set[int]) -> None:
    """Take the NPUs in `down` out: their links carry nothing, and every route is a shortest path
    (breadth-first, ties by link order) over the links that are left."""
    dead = {i for i in range(t.links) if t.src[i] in down or t.dst[i] in down}
    out: dict[int, list[int]] = {}
    for i in range(t.links):
        if i not in dead:
            out.setdefault(t.src[i], []).append(i)
    trees: dict[int, dict[int, int]] = {}

    def tree(a: int) -> dict[int, int]:
        """The link each node is reached by on a breadth-first search from NPU a."""
        if a not in trees:
            via, queue = {a: -1}, deque([a])
            while queue:
                u = queue.popleft()
                for i in out.get(u, ()):
                    v = t.dst[i]
                    if v not in via and (v >= t.npus or v not in down):
                        via[v] = i
                        queue.append(v)
            trees[a] = via
        return trees[a]

    def route(a: int, b: int) -> list[int]:
        via = tree(a)
        if b not in via:
            raise FabricError(f"no route from NPU {a} to NPU {b}")
        path, at = [], b
        while at != a:
            path.append(via[at])
            at = t.src[via[at]]
        return path[::-1]

    t.router = route
    t._routes.clear()
    t.reachable = lambda a: {v for v in tree(a) if v < t.npus}


def cut_off(t: Topology, used: list[int]) -> tuple[int, int] | None:
    """A pair of `used` NPUs with no route between them (only NPUs taken down can cause one), or None."""
    if t.reachable is None or not used:
        return None
    first = t.reachable(used[0])
    return next(((used[0], b) for b in used[1:] if b not in first), None)
