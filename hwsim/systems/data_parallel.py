"""Data parallelism over the fabric: R replicas, a gradient all-reduce per layer overlapped with backward.

Replica r sits on NPU r (device `r<r>`). Every step each replica runs the forward of
every layer, then the backward from the last layer to the first, on its systolic unit
for the layer's given times (`model.kind: layers`). A layer's gradient all-reduce
(`system.collective`: algorithm, chunks, hierarchical; `hwsim.collectives`) starts as
soon as every replica has finished that layer's backward, and runs while the backward
of the layers before it goes on; concurrent all-reduces share the fabric's links under
its sharing model. The optimizer runs after the last all-reduce. Timing-only.

`mode: symmetric` simulates replica 0 alone: its compute, and its part in each
all-reduce with its partners mirrored (`hwsim.collectives.executor`, `mirror`); exact for
identical replicas on a symmetric switch fabric (a test holds it to `exact` on 16 NPUs and
on 4 x 4 in every link-sharing model), refused otherwise.

`collectives` holds one row per all-reduce: step, layer, bytes, start, end, and its
exposed time (the part after the step's last backward).
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
import pandas as pd
import simpy

from hwsim.collectives import CollectiveError, plan
from hwsim.collectives.algorithms import SYMMETRY
from hwsim.collectives.executor import loopbacks
from hwsim.collectives.schedule import collective
from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError
from hwsim.network import Cluster, build_topology
from hwsim.network.topology import dimension_groups

Progress = Callable[[int, int], None]


def check_scenario(scenario: Scenario, where: str) -> None:
    """A layers model, timing-only, and a collective the fabric can run."""
    system, model = scenario.system, scenario.model
    if model.kind != "layers":
        raise ConfigError(where, "model.kind", model.kind, "layers (data_parallel runs a workload of timed layers)")
    if scenario.run.mode != "timing-only":
        raise ConfigError(where, "run.mode", scenario.run.mode, "timing-only (a layers model has times, not math)")
    spec = system.collective
    names = spec.algorithm if isinstance(spec.algorithm, (list, tuple)) else [spec.algorithm]
    if not names or not all(isinstance(name, str) for name in names):
        raise ConfigError(where, "system.collective.algorithm", spec.algorithm, "an algorithm name, or a list of names")
    if len(names) > 1 and not spec.hierarchical:
        raise ConfigError(
            where, "system.collective.algorithm", list(names), "one name (a list is one per dimension, hierarchical: true)"
        )
    t = build_topology(scenario.hardware, system.replicas, where)
    groups = dimension_groups(t)
    if spec.hierarchical and (len(groups) < 2 or t.npus != system.replicas):
        raise ConfigError(
            where,
            "system.collective.hierarchical",
            True,
            f"a dims or torus fabric whose every NPU is a replica (this one: {t.kind}, {t.npus} NPUs, {system.replicas} replicas)",
        )
    if spec.hierarchical and len(names) not in (1, len(groups)):
        raise ConfigError(where, "system.collective.algorithm", list(names), f"one name, or one per dimension ({len(groups)})")
    sizes = [len(g[0]) for g in groups] if spec.hierarchical else [system.replicas]
    for i, size in enumerate(sizes):
        name = names[i] if len(names) > 1 else names[0]
        try:
            plan("reduce_scatter" if spec.hierarchical else "all_reduce", name, size, name in SYMMETRY)  # errors only
        except CollectiveError as err:
            key = "system.collective.algorithm" + (f"[{i}]" if len(names) > 1 else "")
            raise ConfigError(where, key, name, str(err)) from None
    if system.mode == "symmetric":
        _check_symmetric(scenario, t, groups, names, where)


def _check_symmetric(scenario: Scenario, t, groups, names, where: str) -> None:
    """Symmetric mode is exact only for identical replicas on a symmetric fabric: refuse the rest."""
    network = scenario.hardware.network
    if network is not None and network.overrides:
        raise ConfigError(
            where, "system.mode", "symmetric", "exact (hardware.network.overrides make the replicas differ: a slow or down link)"
        )
    for name in names:
        if name not in SYMMETRY:
            raise ConfigError(where, "system.mode", "symmetric", f"exact for {name} (symmetric: {', '.join(SYMMETRY)})")
    spec = scenario.system.collective
    for per_dim in groups if spec.hierarchical else [[list(range(scenario.system.replicas))]]:
        group = next(g for g in per_dim if 0 in g)
        try:
            loopbacks(t, group)
        except CollectiveError as err:
            raise ConfigError(where, "system.mode", "symmetric", f"exact here: {err}") from None


class DataParallel:
    """R replicas and their per-layer gradient all-reduces; `run()` is the SimPy process."""

    check = staticmethod(check_scenario)
    takes_layers = True

    @staticmethod
    def npu_names(spec) -> list[str]:
        return [f"r{r}" for r in range(spec.replicas)]

    @staticmethod
    def check_samples(spec, train: int) -> None:
        """Timing-only: no data."""

    def __init__(
        self, scenario: Scenario, cluster: Cluster, model, data, rng: np.random.Generator, progress: Progress | None = None
    ):
        self.spec = spec = scenario.system
        self.env, self.cluster, self.model, self.progress = cluster.env, cluster, model, progress
        self.metric = cluster.recorder.metric
        simulated = 1 if spec.mode == "symmetric" else spec.replicas  # symmetric: replica 0 stands for all
        self.devices = [cluster.add(r, name, scenario.hardware) for r, name in enumerate(self.npu_names(spec)[:simulated])]
        self.samples_per_step = spec.batch * spec.replicas
        self.rows: list[list] = []
        self.exposed: list[float] = []  # per step: the last all-reduce's end - the last backward's

    def run(self) -> Generator:
        layers = self.model.layers
        for step in range(1, self.spec.steps + 1):
            start = self.env.now
            ready = [self.env.event() for _ in layers]  # every replica has layer l's gradient
            waiting = [len(self.devices)] * len(layers)
            computing = [self.env.process(self._replica(d, ready, waiting)) for d in self.devices]
            reduces = [self.env.process(self._reduce(step, li, ready[li])) for li in reversed(range(len(layers)))]
            yield simpy.AllOf(self.env, computing)
            computed = self.env.now
            yield simpy.AllOf(self.env, reduces)
            self.exposed.append(self.env.now - computed)
            for row in self.rows:
                if row[0] == step:
                    row[-1] = max(0.0, row[5] - max(row[4], computed))
            yield simpy.AllOf(self.env, [self.env.process(d.vector.busy(self.spec.optimizer, "optimizer")) for d in self.devices])
            self.metric(self.env.now, step, "step_time_s", self.env.now - start)
            if self.progress:
                self.progress(step, self.spec.steps)

    def _replica(self, device, ready: list[simpy.Event], waiting: list[int]) -> Generator:
        """One replica's forward and backward; the last replica to finish a layer's backward releases its
        all-reduce."""
        layers = self.model.layers
        for layer in layers:
            yield from device.systolic.busy(layer.forward_s, f"forward {layer.name}")
        for li in reversed(range(len(layers))):
            yield from device.systolic.busy(layers[li].backward_s, f"backward {layers[li].name}")
            waiting[li] -= 1
            if waiting[li] == 0:
                ready[li].succeed()

    def _reduce(self, step: int, li: int, ready: simpy.Event) -> Generator:
        yield ready
        layer, c = self.model.layers[li], self.spec.collective
        names = [c.algorithm] if isinstance(c.algorithm, str) else list(c.algorithm)
        start = self.env.now
        yield from collective(
            self.env,
            self.cluster.fabric,
            "all_reduce",
            names[0] if len(names) == 1 else names,
            layer.param_bytes,
            chunks=c.chunks,
            in_flight=c.in_flight,
            hierarchical=c.hierarchical,
            npus=self.spec.replicas,
            symmetric=self.spec.mode == "symmetric",
        )
        self.rows.append([step, layer.name, layer.param_bytes, str(c.algorithm), start, self.env.now, 0.0])

    @property
    def collectives(self) -> pd.DataFrame:
        """One row per all-reduce: step, layer, bytes, algorithm, start, end, exposed seconds."""
        return pd.DataFrame(self.rows, columns=["step", "layer", "bytes", "algorithm", "start_s", "end_s", "exposed_s"])

    def summary(self, trace) -> dict:
        """The `data_parallel` section of summary.json (per step: compute, all-reduce time summed over
        layers, the exposed part after the last backward)."""
        table = self.collectives
        steps = max(len(self.exposed), 1)
        section = {
            "replicas": self.spec.replicas,
            "compute_s": sum(x.forward_s + x.backward_s for x in self.model.layers),
            "allreduce_s": float((table.end_s - table.start_s).sum()) / steps,
            "exposed_allreduce_s": float(np.mean(self.exposed)) if self.exposed else 0.0,
            "optimizer_s": self.spec.optimizer,
            "gradient_bytes": self.model.param_bytes,
            "collective": {"algorithm": self.spec.collective.algorithm, "hierarchical": self.spec.collective.hierarchical},
        }
        return {"data_parallel": section}
