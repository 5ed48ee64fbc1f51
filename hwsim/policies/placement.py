"""Where a job of a shared cluster runs: placement policies over the free NPUs and the fabric's nodes.

A policy is `policy(free, size, nodes) -> NPUs or None`: `free` the free NPUs in increasing order, `size` how
many the job needs, `nodes[i]` the node of NPU i (`fabric_nodes`); it returns the job's NPUs in rank order
(`size` distinct free NPUs), or None when it will not place the job now. Built in:

| policy     | the job's NPUs                                                                                       |
|------------|------------------------------------------------------------------------------------------------------|
| `packed`   | the lowest free NPUs                                                                                 |
| `spread`   | round robin over the nodes (in node order), the lowest free NPU of each in turn                     |
| `topology` | the fewest nodes: the node with the fewest free NPUs that still holds the whole job; else the nodes with the most free NPUs, whole, first |

`file.py:function` (or `module:function`) names your own.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

from hwsim.network.topology import Topology
from hwsim.policies.plugins import resolve

Placement = Callable[[list[int], int, Sequence[int]], list[int] | None]
PLACEMENTS: dict[str, Placement] = {}


class PlacementError(ValueError):
    """A placement policy that cannot be found or loaded, or that returned a wrong placement."""


def placement(name: str) -> Callable[[Placement], Placement]:
    def add(policy: Placement) -> Placement:
        PLACEMENTS[name] = policy
        return policy

    return add


def resolve_placement(name: str) -> Placement:
    """The built-in policy `name`, or the function `file.py:function` names."""
    return resolve(name, PLACEMENTS, "placement policy", PlacementError)


def fabric_nodes(t: Topology) -> list[int]:
    """Each NPU's node: on a dims or torus fabric the NPUs that share every coordinate but the first (the first
    dimension joins a node's NPUs); else the switch the NPU's first link reaches (a fat tree's leaf, a single
    switch); an NPU cabled only to NPUs (ring, fully connected) is a node of its own."""
    if t.coords:
        keys: dict[tuple, int] = {}
        return [keys.setdefault(t.coords[i][1:], len(keys)) for i in range(t.npus)]
    out = []
    for i in range(t.npus):
        reached = [t.dst[link] for link in t.npu_links(i) if t.src[link] == i]
        switch = min((node for node in reached if node >= t.npus), default=None)
        out.append(switch if switch is not None else -1 - i)
    ids: dict[int, int] = {}
    return [ids.setdefault(node, len(ids)) for node in out]


def check_placement(npus: list[int] | None, free: list[int], size: int, name: str) -> list[int] | None:
    """A policy's answer checked: None, or `size` distinct free NPUs."""
    if npus is None:
        return None
    npus = list(npus)
    if len(npus) != size or len(set(npus)) != size or not set(npus) <= set(free):
        raise PlacementError(f"placement policy {name!r} returned {npus[:8]}: expected {size} distinct free NPUs")
    return npus


@placement("packed")
def packed(free: list[int], size: int, nodes: Sequence[int]) -> list[int] | None:
    return free[:size] if len(free) >= size else None


@placement("spread")
def spread(free: list[int], size: int, nodes: Sequence[int]) -> list[int] | None:
    if len(free) < size:
        return None
    by_node = _by_node(free, nodes)
    out: list[int] = []
    turn = 0
    while len(out) < size:
        for npus in by_node.values():
            if turn < len(npus) and len(out) < size:
                out.append(npus[turn])
        turn += 1
    return out


@placement("topology")
def topology_aware(free: list[int], size: int, nodes: Sequence[int]) -> list[int] | None:
    if len(free) < size:
        return None
    by_node = _by_node(free, nodes)
    fits = [node for node, npus in by_node.items() if len(npus) >= size]
    if fits:
        best = min(fits, key=lambda node: (len(by_node[node]), node))
        return by_node[best][:size]
    out: list[int] = []
    for node in sorted(by_node, key=lambda node: (-len(by_node[node]), node)):
        out += by_node[node][: size - len(out)]
        if len(out) == size:
            break
    return out


def _by_node(free: list[int], nodes: Sequence[int]) -> dict[int, list[int]]:
    """The free NPUs of each node, nodes in increasing order, NPUs in increasing order."""
    out: dict[int, list[int]] = {}
    for npu in free:
        out.setdefault(nodes[npu], []).append(npu)
    return dict(sorted(out.items()))
