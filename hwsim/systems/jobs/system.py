"""Several jobs on one cluster: each its own system on NPUs of its own, all sharing one fabric.

A job arrives at its `start` time and joins the queue; the scheduler starts queued jobs while the placement
policy (`hwsim.policies.placement`, or the job's own `place`) finds them NPUs among the free ones: `fifo` in
arrival order (a job that does not fit holds up those behind it), `backfill` any queued job that fits (a later
job may start ahead of one that waits). A started job's system runs on a view of the cluster (`JobView`): its
rank r on its r-th NPU, its devices, metrics and collectives under its name. Jobs share the fabric's links under
its sharing model and nothing else; when a job's last step ends its NPUs are free for the queue. An explicit
`place` is held for its job from the start of the run.

A Megatron job (timing-only) runs as the replay of its export (`systems.megatron.export`: every GPU's kernels
with the 3D system's times, its collectives and pipeline messages over its process groups), each collective on
the shared fabric, one stream per process group (`streams: group`, as NCCL's communicators). Alone with unshared
links the replay takes the 3D system's step to 0.2 % on its own dims fabric (`tests/commands/test_export_megatron.py`)
and on a fat tree (`tests/systems/jobs/test_jobs.py`; measured equal there to 1e-14).

With `alone`, each job is then run by itself on the same NPUs (a fresh simulation with nothing else on the
fabric): its slowdown in the mix is its mean step time there over its mean step time alone. What each job sent
over each link comes from the delivered messages and their routes (`link_shares`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import simpy

from hwsim.config.schema.systems import ReplaySpec
from hwsim.network import Cluster
from hwsim.network.cluster import fabric_npus
from hwsim.policies.placement import check_placement, fabric_nodes, resolve_placement
from hwsim.systems.data_parallel import DataParallel
from hwsim.systems.jobs.checks import check_jobs, job_scenario, job_size, megatron_scenario
from hwsim.systems.jobs.view import JobView
from hwsim.systems.megatron import Megatron
from hwsim.systems.megatron.export import megatron_step
from hwsim.systems.pipeline import Pipeline
from hwsim.systems.replay import Replay
from hwsim.trace.recorder import Recorder
from hwsim.workloads import make_model
from hwsim.workloads.chakra import TraceSet

Progress = Callable[[int, int], None]
KINDS = {"data_parallel": DataParallel, "pipeline": Pipeline, "replay": Replay}
"""The systems a job runs (a Megatron job: the replay of its export; `check_jobs` refuses the others by name)."""
SAMPLES = {**KINDS, "megatron": Megatron}
"""Whose `check_samples` a job's system kind takes."""


@dataclass
class Job:
    """A job of the run: its spec, its own scenario and model, where and when it ran, its step times."""

    index: int
    spec: object
    scenario: object
    model: object
    rng_seed: tuple[int, int]
    npus: list[int] = field(default_factory=list)
    start_s: float | None = None
    end_s: float | None = None
    steps: list[float] = field(default_factory=list)
    alone: list[float] = field(default_factory=list)

    @property
    def name(self) -> str:
        return self.spec.name


def _runnable(scenario, job) -> tuple[object, object]:
    """The scenario and model job `job` runs: its own, or a Megatron job's export replayed (`system.steps`
    iterations, a stream per process group)."""
    own = job_scenario(scenario, job)
    if job.system.kind != "megatron":
        return own, make_model(job.model)
    ranks, groups = megatron_step(megatron_scenario(scenario, job))
    replay = ReplaySpec(iterations=job.system.steps, streams="group")
    return dataclasses.replace(own, system=replay), TraceSet.built(ranks, groups)


class StepRecorder:
    """A recorder that keeps a job's step times aside (and passes everything on)."""

    def __init__(self, recorder, steps: list[float]):
        self._recorder, self._steps = recorder, steps

    def metric(self, time_s: float, step: int, name: str, value: float) -> None:
        if name == "step_time_s":
            self._steps.append(float(value))
        self._recorder.metric(time_s, step, name, value)

    def __getattr__(self, name: str):
        return getattr(self._recorder, name)


class Jobs:
    """The jobs of `system.jobs` on one cluster; `run()` is the SimPy process."""

    check = staticmethod(check_jobs)
    takes_layers = True
    takes_fabric = True  # npu_names needs the fabric's size

    @staticmethod
    def npu_names(spec, network=None) -> list[str]:
        """The cluster's NPUs, named by index (a job's devices are `job.r<k>`): every job's at once, or as many
        as a fabric of fixed size has (a switch, ring or fully connected one without `npus` grows to fit)."""
        total = max(sum(map(job_size, spec.jobs)), max((max(job.place) + 1 for job in spec.jobs if job.place), default=0))
        return [f"npu{i}" for i in range(max(min(total, fabric_npus(network, total)), 1))]

    @staticmethod
    def check_samples(spec, train: int) -> None:
        for job in spec.jobs:
            SAMPLES[job.system.kind].check_samples(job.system, train)

    def __init__(self, scenario, cluster: Cluster, model, data, rng: np.random.Generator, progress: Progress | None = None):
        self.spec, self.scenario = scenario.system, scenario
        self.env, self.cluster, self.data, self.progress = cluster.env, cluster, data, progress
        self.nodes = fabric_nodes(cluster.topology)
        self.policy = resolve_placement(self.spec.placement)
        self.jobs = [Job(i, job, *_runnable(scenario, job), (scenario.seed, i)) for i, job in enumerate(self.spec.jobs)]
        reserved = {n for job in self.spec.jobs if job.place for n in job.place}
        self.free = [n for n in range(cluster.topology.npus) if n not in reserved]  # for the policy
        self.queue: list[Job] = []
        self.running = 0
        self.done = self.env.event()
        self.samples_per_step = 0  # per job: in its own section
        self.holds_memory = any(job.model.kind != "layers" for job in self.spec.jobs)
        self._shares: pd.DataFrame | None = None  # `link_shares`, once the run is over

    def run(self) -> Generator:
        for job in sorted(self.jobs, key=lambda j: (j.spec.start, j.index)):
            self.env.process(self._arrive(job))
        yield self.done
        if self.spec.alone:
            for job in self.jobs:
                job.alone = self._alone(job)
                if self.progress:
                    self.progress(job.index + 1, len(self.jobs))

    def _arrive(self, job: Job) -> Generator:
        yield self.env.timeout(job.spec.start)
        self.queue.append(job)
        self._schedule()

    def _schedule(self) -> None:
        """Start queued jobs while they fit (fifo: in order, the first that does not fit stops the rest)."""
        for job in list(self.queue):
            npus = self._place(job)
            if npus is None:
                if self.spec.scheduler == "backfill":
                    continue
                break
            self.queue.remove(job)
            self._start(job, npus)

    def _place(self, job: Job) -> list[int] | None:
        size = job_size(job.spec)
        if job.spec.place is not None:
            return list(job.spec.place)  # held for it from the start
        return check_placement(self.policy(list(self.free), size, self.nodes), self.free, size, self.spec.placement)

    def _start(self, job: Job, npus: list[int]) -> None:
        if job.spec.place is None:
            taken = set(npus)
            self.free = [n for n in self.free if n not in taken]
        job.npus, job.start_s = npus, self.env.now
        view = JobView(self.cluster, job.name, npus, account=job.index + 1)
        view.recorder = StepRecorder(view.recorder, job.steps)
        system = KINDS[job.scenario.system.kind](job.scenario, view, job.model, self.data, np.random.default_rng(job.rng_seed))
        self.running += 1
        self.env.process(self._finish(job, system))

    def _finish(self, job: Job, system) -> Generator:
        yield self.env.process(system.run())
        job.end_s = self.env.now
        for npu in job.npus:
            self.cluster.release(npu)
        if job.spec.place is None:
            self.free = sorted(self.free + job.npus)
        self.running -= 1
        self._schedule()
        if not self.running and not self.queue and all(j.end_s is not None for j in self.jobs):
            self.done.succeed()

    def _alone(self, job: Job) -> list[float]:
        """The job's step times with nothing else on the fabric: a fresh simulation on the same NPUs."""
        env = simpy.Environment()
        cluster = Cluster(env, self.scenario.hardware, self.cluster.names, Recorder(), precision=self.cluster.precision)
        steps: list[float] = []
        view = JobView(cluster, job.name, job.npus)
        view.recorder = StepRecorder(view.recorder, steps)
        system = KINDS[job.scenario.system.kind](job.scenario, view, job.model, self.data, np.random.default_rng(job.rng_seed))
        env.run(env.process(system.run()))
        return steps

    # --- what the report shows ------------------------------------------------------

    def link_shares(self, trace) -> pd.DataFrame:
        """Bytes each job sent over each link (rows: link, job, bytes), from the delivered messages' routes
        (worked out once: the summary and job_links.csv both ask)."""
        if self._shares is None:
            self._shares = self._link_shares(trace)
        return self._shares

    def _link_shares(self, trace) -> pd.DataFrame:
        names = [unit.name for unit in self.cluster.fabric.units]
        engine = self.cluster.shared.get("compiled")
        if engine is not None:  # compiled jobs: the engine counted each job's bytes on each link
            shares = {
                (link, job.name): float(nbytes)
                for job in self.jobs
                for link, nbytes in enumerate(engine.link_bytes(job.index + 1))
                if nbytes > 0
            }
            return pd.DataFrame(
                [(names[link], job, b) for (link, job), b in sorted(shares.items())], columns=["link", "job", "bytes"]
            )
        npu, route = self.cluster.npu, self.cluster.topology.route
        totals: dict[tuple[str, int, int], float] = {}
        for chunk in trace.chunks("messages", ["src", "dst", "bytes"]):
            grouped = chunk.groupby(["src", "dst"], sort=False).bytes.sum()
            for (src, dst), nbytes in grouped.items():
                key = (src.split(".", 1)[0], npu[src], npu[dst])
                totals[key] = totals.get(key, 0.0) + float(nbytes)
        rows: dict[tuple[int, str], float] = {}
        for (job, a, b), nbytes in totals.items():
            for link in route(a, b):
                rows[link, job] = rows.get((link, job), 0.0) + nbytes
        return pd.DataFrame(
            [(names[link], job, nbytes) for (link, job), nbytes in sorted(rows.items())], columns=["link", "job", "bytes"]
        )

    def summary(self, trace) -> dict:
        """The `jobs` section of summary.json: per job where and when it ran, its step time in the mix and alone,
        and its share of the busiest link it used."""
        shares = self.link_shares(trace)
        total = shares.groupby("link").bytes.sum()
        out = {}
        for job in self.jobs:
            mine = shares[shares.job == job.name].set_index("link").bytes
            hot = (total[mine.index].sort_values(ascending=False).index[0]) if len(mine) else None
            mix = float(np.mean(job.steps)) if job.steps else None
            alone = float(np.mean(job.alone)) if job.alone else None
            out[job.name] = {
                "kind": job.spec.system.kind,
                "npus": job.npus,
                "nodes": len({self.nodes[n] for n in job.npus}),
                "node_ids": sorted({self.nodes[n] for n in job.npus}),
                "arrival_s": job.spec.start,
                "start_s": job.start_s,
                "queued_s": job.start_s - job.spec.start if job.start_s is not None else None,
                "end_s": job.end_s,
                "steps": len(job.steps),
                "step_time_s": mix,
                "alone_step_time_s": alone,
                "slowdown": mix / alone if mix and alone else None,
                "hot_link": hot,
                "hot_link_share": float(mine[hot] / total[hot]) if hot is not None else None,
            }
        return {"jobs": {"placement": self.spec.placement, "scheduler": self.spec.scheduler, "jobs": out}}
