"""A recorded workload replayed on the cluster: each NPU's Chakra trace, node by node.

Each NPU takes the nodes of its trace as ASTRA-sim's `Workload` does (astra-sim/workload/Workload.cc and
HardwareResource.cc, 518bd51): a node is ready once every node it depends on has finished; ready nodes are
issued in the order of their ids, each when its resource is free. An NPU runs one GPU compute node at a time
(on its arithmetic unit), one CPU node at a time (on its host), and one collective or send at a time; a receive
waits beside them. With `streams: group` it runs one collective at a time per process group and one send at a
time beside them (NCCL's communicators, each on a CUDA stream of its own). A compute node takes its recorded duration, or with `compute: roofline` its num_ops at the
arrays' peak or its tensor_size at the bank's rate, whichever is longer. A memory node moves its bytes through
the bank.

The k-th collective issued on every NPU of a process group (a node's `pg_name`; none: every NPU) is one
collective: it starts when the group's last NPU has issued it and ends for all of them at once (`hwsim.collectives.schedule.collective`, with the scenario's algorithm, chunks, in-flight chunks
and dimensions). Its `comm_size` means what ASTRA-sim takes it for (astra-sim/system/collective/Ring.cc,
5f07824): an all-reduce's buffer, a reduce-scatter's input, an all-to-all's buffer, and an all-gather's *input*
(its output is that times the group's NPUs). A send moves its bytes from its NPU to the peer over the fabric; the
receive with the same source, destination and tag (in order, when several share them) finishes when they have
arrived. A `delay` node (a torch trace's recorded gap) waits its time on no resource; with `compute:
cycle_model`, a GEMM a torch trace identified takes the arrays' cycles (and their launch), other nodes their
recorded time.

Symmetric mode simulates NPU 0 alone when every NPU's trace is the same: its collectives mirror their partners'
messages (`collective(symmetric=True)`), as the data-parallel system does.
"""

from __future__ import annotations

import heapq
from collections import defaultdict
from collections.abc import Generator

import simpy

from hwsim.collectives.schedule import Slots, collective
from hwsim.hardware.unit import Unit
from hwsim.network import Cluster
from hwsim.workloads import recorded
from hwsim.workloads.chakra import EtNode, TraceSet


class HostTrack(Unit):
    """An NPU's host CPU: the trace's CPU nodes, one at a time."""

    kind = "host"


class Replay:
    """Every NPU's trace of a `TraceSet` run as the module's docstring says; `run()` is the SimPy process."""

    takes_traces = True

    @staticmethod
    def npu_names(spec, model=None) -> list[str]:
        npus = recorded(model).npus if model is not None else 1
        return [f"npu{r}" for r in range(npus)]

    @staticmethod
    def check(scenario, where: str) -> None:
        from hwsim.systems.replay.checks import check_replay

        check_replay(scenario, where)

    @staticmethod
    def check_samples(spec, train: int) -> None:
        return None

    def __init__(self, scenario, cluster: Cluster, model: TraceSet, data=None, rng=None, progress=None):
        self.spec = spec = scenario.system
        self.env, self.cluster, self.traces, self.progress = cluster.env, cluster, model, progress
        self.npus = model.npus
        simulated = 1 if spec.mode == "symmetric" else self.npus
        self.represented = lambda device: self.npus // simulated  # NPUs a simulated device stands for
        self.devices = [cluster.add(r, f"npu{r}", scenario.hardware) for r in range(simulated)]
        self.bank_name = spec.bank or next(iter(scenario.hardware.memory))
        self.hosts = []
        for device in self.devices:
            host = HostTrack(self.env, f"{device.name}.host", device.systolic.clock_hz)
            cluster.recorder.attach_unit(host, device.name)
            self.hosts.append(host)
        self.transport = cluster.transport("replay", lambda npu: f"npu{npu}")
        order = spec.collective.order
        self.slots = None if order == "none" else Slots(self.env, spec.collective.in_flight, order)
        self.samples_per_step = 0
        self.holds_memory = False  # a trace's memory nodes say what moves, not what is held
        self.rows: list[list] = []  # one per collective: iteration, index, operation, bytes, start, end

    def run(self) -> Generator:
        for iteration in range(1, self.spec.iterations + 1):
            start = self.env.now
            self._arrivals: dict[tuple[int, int, int], list[simpy.Event]] = defaultdict(list)
            self._taken: dict[tuple[int, int, int, bool], int] = {}
            self._collectives: dict[int, dict] = {}
            ranks = [self.env.process(self._rank(r, iteration)) for r in range(len(self.devices))]
            yield simpy.AllOf(self.env, ranks)
            self.cluster.recorder.metric(self.env.now, iteration, "step_time_s", self.env.now - start)
            if self.progress:
                self.progress(iteration, self.spec.iterations)

    def _rank(self, r: int, iteration: int) -> Generator:
        """NPU r's trace: issue ready nodes by id as their resources free up, until every node has run."""
        env, nodes = self.env, {n.id: n for n in self.traces.ranks[r]}
        waiting = {n.id: len(n.deps) for n in nodes.values()}
        children: dict[int, list[int]] = defaultdict(list)
        for n in nodes.values():
            for d in n.deps:
                children[d].append(n.id)
        ready = [i for i, count in waiting.items() if count == 0]
        heapq.heapify(ready)
        busy: dict[str, bool] = defaultdict(bool)  # a resource is busy
        streams = self.spec.streams == "group"
        changed = env.event()
        left = len(nodes)
        collectives: dict[str, int] = defaultdict(int)  # issued so far per group: the k-th of its NPUs meet

        def resource(n: EtNode) -> str | None:
            if n.kind == "compute":
                return "cpu" if n.cpu else "compute"
            if n.kind not in ("collective", "send"):
                return None
            if not streams:
                return "comm"
            return f"comm {n.group}" if n.kind == "collective" else "p2p"

        def finish(n: EtNode, unit: str | None, k: int) -> Generator:
            nonlocal changed, left
            yield from self._node(r, n, iteration, k)
            if unit is not None:
                busy[unit] = False
            for child in children[n.id]:
                waiting[child] -= 1
                if waiting[child] == 0:
                    heapq.heappush(ready, child)
            left -= 1
            if not changed.triggered:
                changed.succeed()

        while left:
            held = []
            while ready:
                i = heapq.heappop(ready)
                n = nodes[i]
                unit = resource(n)
                if unit is not None and busy[unit]:
                    held.append(i)
                    continue
                if unit is not None:
                    busy[unit] = True
                if n.kind == "collective":
                    collectives[n.group] += 1
                env.process(finish(n, unit, collectives[n.group]))
            for i in held:
                heapq.heappush(ready, i)
            if left:
                yield changed
                changed = env.event()

    def _node(self, r: int, n: EtNode, iteration: int, k: int) -> Generator:
        """Run node n of NPU r (k: the collectives of n's group NPU r has issued, this one included)."""
        device, label = self.devices[r], f"{n.name or n.kind} ({n.id})"
        if n.kind == "compute":
            if n.cpu:
                yield from self.hosts[r].busy(n.seconds, label)
            else:
                yield from device.systolic.busy(self._compute_s(r, n), label, n.flops)
        elif n.kind == "delay":
            yield self.env.timeout(n.seconds)
        elif n.kind in ("load", "store"):
            bank = device.bank(self.bank_name)
            yield from (bank.read if n.kind == "load" else bank.write)(n.bytes, label)
        elif n.kind == "collective":
            yield from self._collective(r, n, iteration, k)
        elif n.kind == "send":
            yield from self.transport.move(self._npu(r), self._npu(n.peer), n.bytes, label)
            self._arrival(r, n.peer, n.tag).succeed()
        elif n.kind == "recv":
            yield self._arrival(n.peer, r, n.tag, receive=True)

    def _npu(self, r: int) -> int:
        """The fabric's NPU of trace rank r."""
        return r if self.cluster.placement is None else self.cluster.placement[r]

    def _arrival(self, src: int, dst: int, tag: int, receive: bool = False) -> simpy.Event:
        """The next message from src to dst with `tag`: a send takes the first event no send has taken, a receive
        the first no receive has."""
        events, key = self._arrivals[src, dst, tag], (src, dst, tag, receive)
        taken = self._taken.get(key, 0)
        self._taken[key] = taken + 1
        while len(events) <= taken:
            events.append(self.env.event())
        return events[taken]

    def _compute_s(self, r: int, n: EtNode) -> float:
        """A GPU compute node's time: recorded, the roofline of the NPU's arrays and bank, or a GEMM's cycles."""
        device = self.devices[r]
        if self.spec.compute == "cycle_model":
            if n.gemm is None:
                return n.seconds
            rows, cols, depth, count, precision = n.gemm  # (m, n, k): the GEMM's shape
            return device.systolic.seconds(rows, cols, depth, precision, count)
        if self.spec.compute == "recorded":
            return n.seconds
        if n.flops <= 0 or n.bytes <= 0:
            return n.seconds  # nothing to put on the roofline: as recorded
        return max(n.flops / device.systolic.peak_per_s, n.bytes / device.bank(self.bank_name).rate)

    def _collective(self, r: int, n: EtNode, iteration: int, k: int) -> Generator:
        """NPU r's k-th collective of its group: wait for the group's NPUs' k-th, run it once, end together."""
        meet = self._collectives.setdefault((n.group, k), {"nodes": {}, "done": self.env.event()})
        meet["nodes"][r] = n
        members = self.traces.groups[n.group] if n.group else None
        if len(meet["nodes"]) == (len(self.devices) if members is None else len(members)):
            placement = self.cluster.placement  # a placed job's NPUs are elsewhere on the fabric
            if placement is not None:
                members = [placement[m] for m in (members or range(self.npus))]
            self.env.process(self._run_collective(meet, iteration, k, members))
        yield meet["done"]

    def _run_collective(self, meet: dict, iteration: int, k: int, members: tuple[int, ...] | None) -> Generator:
        first = next(iter(meet["nodes"].values()))  # the group's k-th collectives are alike (`check_replay`)
        size = self.npus if members is None else len(members)
        c = self.spec.collective
        names = [c.algorithm] if isinstance(c.algorithm, str) else list(c.algorithm)
        start = self.env.now
        yield from collective(
            self.env,
            self.cluster.fabric,
            first.collective,
            names[0] if len(names) == 1 else names,
            first.bytes * (size if first.collective == "all_gather" else 1),
            chunks=c.chunks,
            in_flight=c.in_flight,
            hierarchical=c.hierarchical,
            npus=self.npus,
            symmetric=self.spec.mode == "symmetric",
            slots=self.slots,
            transport=self.transport,
            reduction_rate=c.reduction_rate,
            members=members,
        )
        self.rows.append([iteration, k, first.collective, first.bytes, start, self.env.now])
        self.cluster.recorder.collective(
            f"{first.name or first.collective} ({first.group + ' ' if first.group else ''}{k})",
            first.collective,
            str(c.algorithm),
            first.bytes,
            start,
            self.env.now,
        )
        meet["done"].succeed()

    def summary(self, trace) -> dict:
        """The `replay` section of summary.json: the trace set, its NPUs, the collectives' count and time."""
        iterations = max(self.spec.iterations, 1)
        seconds = sum(end - start for *_, start, end in self.rows)
        spec = self.traces.spec
        return {
            "replay": {
                "traces": None if spec is None else getattr(spec, "traces", None) or spec.path,  # None: built in memory
                "npus": self.npus,
                "nodes": sum(len(nodes) for nodes in self.traces.ranks),
                "collectives_per_iteration": len(self.rows) // iterations,
                "collective_s": seconds / iterations,
                "compute": self.spec.compute,
                "mode": self.spec.mode,
            }
        }
