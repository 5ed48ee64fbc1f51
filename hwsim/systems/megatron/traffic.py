"""What a symmetric 3D run sends, on every link of the fabric.

The run simulates one tensor rank of one data-parallel replica per pipeline position; the
other ranks of its groups do the same work at the same time. `Traffic` counts, per
simulated device, the bytes its rank sends in each kind of communication; `link_bytes`
then puts every rank's bytes on the links of the routes it uses: a ring collective sends
each rank's share to its successor in the group (`costs.ring_wire_bytes`), a pipeline send
goes from each rank to the same rank of the next stage. Loads are worked out, not
simulated: what each link carries, not when.

A group with r > 1 ranks on each of several nodes runs its ring collectives as NCCL does, on r
channels (`channels`): each a ring over the whole group carrying 1/r of the buffer, its order
inside every node turned by one rank more than the last channel's, so each channel leaves a node
through another rank's NIC and the node's r NICs all carry inter-node traffic. (NCCL builds its
rings one per channel and spreads the channels over the node's NICs: Hu et al. 2025,
"Demystifying NCCL", arXiv 2507.04786, section 4 on channels and ring topology search.)
"""

from __future__ import annotations

from collections import Counter

import numpy as np

from hwsim.network.topology import Topology


class Traffic:
    """Bytes the simulated rank of each of `p` pipeline devices has sent, by kind."""

    def __init__(self, p: int):
        self.tensor = [0.0] * p  # tensor-parallel rings (within its tensor group)
        self.context = [0.0] * p  # context-parallel rings (within its context group)
        self.expert = [0.0] * p  # all-to-alls within its expert group (to each other rank, an equal share)
        self.expert_across = [0.0] * p  # two-level all-to-alls: to the ranks of its index on the group's other nodes
        self.expert_local = [0.0] * p  # ... and within the group's part of its node
        self.expert_tensor = [0.0] * p  # rings within its expert-tensor group
        self.data = [0.0] * p  # data-parallel rings (within its data group)
        self.local = [0.0] * p  # rings within the node's part of its data group (hierarchical partitioning)
        self.sends: list[Counter] = [Counter() for _ in range(p)]  # bytes sent to each other pipeline device
        self.tied = 0.0  # the tied embedding's all-reduce between the first and the last device

    def link_bytes(
        self,
        topology: Topology,
        place: dict[tuple[int, int, int], int],
        t: int,
        d: int,
        c: int = 1,
        experts: tuple[int, int] = (1, 1),
    ) -> np.ndarray:
        """Bytes on each link of `topology` once every rank of every group (tensor rank i, pipeline
        position j, data rank k on NPU place[(i, j, k)]: d of them, c context ranks each; `experts`: (e, et)
        expert and expert-tensor ranks regrouping them, `checks.expert_groups`) has sent what its simulated
        rank sent."""
        from hwsim.systems.megatron.checks import expert_groups

        loads = np.zeros(topology.links)
        p = len(self.tensor)

        def pairs(group: list[int], nbytes: float) -> None:  # an all-to-all: an equal share to each other member
            if nbytes > 0 and len(group) > 1:
                for a in group:
                    for b in group:
                        if a != b:
                            loads[list(topology.route(a, b))] += nbytes / (len(group) - 1)

        def ring(group: list[int], nbytes: float) -> None:
            if nbytes > 0 and len(group) > 1:
                rings = channels(topology, group)
                for order in rings:
                    for a, b in zip(order, order[1:] + order[:1], strict=True):
                        loads[list(topology.route(a, b))] += nbytes / len(rings)

        for j in range(p):
            for k in range(d):
                ring([place[(i, j, k)] for i in range(t)], self.tensor[j])
            if c > 1:
                for i in range(t):
                    for first in range(0, d, c):
                        ring([place[(i, j, first + r)] for r in range(c)], self.context[j])
            e, et = experts
            for members in expert_groups("expert tensor", t * d, et, e) if et > 1 else ():
                ring([place[(q % t, j, q // t)] for q in members], self.expert_tensor[j])
            for members in expert_groups("expert", t * d, et, e) if e > 1 else ():
                group = [place[(q % t, j, q // t)] for q in members]
                parts = node_parts(topology, group)
                across = [[part[x] for part in parts if x < len(part)] for x in range(len(parts[0]))]
                for ranks, nbytes in (
                    ((group, self.expert[j]),)
                    + tuple((m, self.expert_local[j]) for m in parts)
                    + tuple((m, self.expert_across[j]) for m in across)
                ):
                    pairs(ranks, nbytes)
            for i in range(t):
                group = [place[(i, j, k)] for k in range(d)]
                ring(group, self.data[j])
                if self.local[j]:
                    for part in node_parts(topology, group):
                        ring(part, self.local[j])
            for dest, nbytes in self.sends[j].items():
                for i in range(t):
                    for k in range(d):
                        loads[list(topology.route(place[(i, j, k)], place[(i, dest, k)]))] += nbytes
        if p > 1:
            for i in range(t):
                for k in range(d):
                    ring([place[(i, 0, k)], place[(i, p - 1, k)]], self.tied)
        return loads

    def sent_bytes(self, t: int, d: int) -> float:
        """Bytes every NPU of the layout has sent, summed."""
        p = len(self.tensor)
        per_rank = (
            sum(self.tensor)
            + sum(self.context)
            + sum(self.expert)
            + sum(self.expert_across)
            + sum(self.expert_local)
            + sum(self.expert_tensor)
            + sum(self.data)
            + sum(self.local)
            + sum(sum(c.values()) for c in self.sends)
        )
        return t * d * (per_rank + (2 * self.tied if p > 1 else 0.0))


def node_parts(topology: Topology, group: list[int]) -> list[list[int]]:
    """`group` split by node: the NPUs that share every coordinate but the first (the fabric's first dimension
    is a node's NVSwitch); a fabric without dimensions is one node."""
    if not topology.coords:
        return [list(group)]
    parts: dict[tuple, list[int]] = {}
    for npu in group:
        parts.setdefault(topology.coords[npu][1:], []).append(npu)
    return list(parts.values())


def channels(topology: Topology, group: list[int] | tuple[int, ...]) -> list[list[int]]:
    """The rings of `group`'s ring collectives: one over the group as it is, unless the group has the same
    number r > 1 of ranks on each of two or more nodes; then r rings, ring c taking each node's ranks turned
    by c, so ring c leaves every node from its (c - 1)-th rank: every rank's NIC carries one ring."""
    parts = node_parts(topology, list(group))
    r = len(parts[0])
    if len(parts) < 2 or r < 2 or any(len(part) != r for part in parts):
        return [list(group)]
    return [[npu for part in parts for npu in part[c:] + part[:c]] for c in range(r)]
