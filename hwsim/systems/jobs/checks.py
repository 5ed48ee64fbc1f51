"""The jobs system's checks: jobs it can place, each a scenario its own system accepts."""

from __future__ import annotations

import dataclasses
import re

from hwsim.errors import ConfigError
from hwsim.network.cluster import build_topology
from hwsim.policies.placement import PlacementError, resolve_placement
from hwsim.systems.megatron.export import check_megatron_exportable
from hwsim.workloads import RECORDED, recorded

NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")
PLACED = ("data_parallel", "pipeline", "replay", "megatron")
"""The system kinds a job may have (a Megatron job runs as the replay of its export: `systems.jobs.system`)."""


def job_scenario(scenario, job):
    """The scenario job `job` would be on its own: the cluster's hardware, its model and system."""
    return dataclasses.replace(scenario, model=job.model, system=job.system)


def megatron_scenario(scenario, job, where: str = "scenario"):
    """A Megatron job's own scenario: its 3D system takes a fabric of exactly its GPUs, so it gets a switch of them
    with the cluster's NPU link (NPU 0's first link: its bandwidth and latency) under the cluster's sharing model.
    That switch times only what the export folds into compute nodes (the embedding's and the head's
    tensor-parallel collectives); every other collective and message of the job plays on the shared fabric."""
    from hwsim.config.schema.network import SwitchNet

    size = job_size(job)
    topology = build_topology(scenario.hardware, max(size, 2), where)
    link = topology.route(0, 1)[0]
    switch = SwitchNet(
        model=scenario.hardware.network.model, npus=size, bandwidth=topology.bandwidth[link], latency=topology.latency[link]
    )
    hardware = dataclasses.replace(scenario.hardware, network=switch)
    return dataclasses.replace(scenario, hardware=hardware, model=job.model, system=job.system)


def job_size(job) -> int:
    """The NPUs a job runs on: a data-parallel job's replicas, a pipeline's devices x replicas, a replay's traces,
    a Megatron job's t x p x d GPUs (1 for a kind `check_jobs` refuses)."""
    system = job.system
    if system.kind == "data_parallel":
        return system.replicas
    if system.kind == "pipeline":
        return system.devices * system.data_parallel
    if system.kind == "replay" and job.model.kind in RECORDED:
        return recorded(job.model).npus
    if system.kind == "megatron":
        return system.parallel.tensor * system.parallel.pipeline * system.parallel.data
    return 1


def check_jobs(scenario, where: str) -> None:
    """Named jobs of kinds that can be placed, each a scenario its system accepts; explicit places of the right
    size that do not overlap; a placement policy that loads; jobs that fit the fabric."""
    from hwsim.systems import SYSTEMS
    from hwsim.systems.jobs.system import Jobs

    spec = scenario.system
    if not spec.jobs:
        raise ConfigError(where, "system.jobs", [], "at least one job")
    npus = build_topology(scenario.hardware, len(Jobs.npu_names(spec, scenario.hardware.network)), where).npus
    seen: dict[str, int] = {}
    for i, job in enumerate(spec.jobs):
        key = f"system.jobs[{i}]"
        if not NAME.fullmatch(job.name):
            raise ConfigError(where, f"{key}.name", job.name, "1 to 40 letters, digits, _ or - (it prefixes the job's devices)")
        if job.name in seen:
            raise ConfigError(where, f"{key}.name", job.name, f"a name of its own (system.jobs[{seen[job.name]}] has it)")
        seen[job.name] = i
        kind = job.system.kind
        if kind not in PLACED:
            raise ConfigError(where, f"{key}.system.kind", kind, f"{', '.join(PLACED)} (jobs of other kinds are not placed yet)")
        _check_placed(job, key, where)
        if job_size(job) > npus:
            raise ConfigError(where, f"{key}.system", f"{job_size(job)} NPUs", f"at most the fabric's {npus} NPUs")
        try:
            if kind == "megatron":  # it runs as its export's replay
                SYSTEMS[kind].check(megatron_scenario(scenario, job, where), where)
                check_megatron_exportable(job_scenario(scenario, job), where)
            else:
                SYSTEMS[kind].check(job_scenario(scenario, job), where)
        except ConfigError as err:
            raise ConfigError(err.where, _job_key(key, err.key), err.got, err.expected) from None
    _check_places(spec, npus, where)
    compiled = [job.name for job in spec.jobs if getattr(job.system, "mode", None) == "compiled"]
    if compiled and len(compiled) < len(spec.jobs):
        raise ConfigError(
            where,
            "system.jobs",
            f"{', '.join(compiled)} compiled",
            "every job a compiled data_parallel job, or none (the compiled engine's flows and SimPy's share no links)",
        )
    if spec.scheduler == "none" and sum(map(job_size, spec.jobs)) > npus:
        raise ConfigError(
            where,
            "system.scheduler",
            "none",
            f"fifo or backfill: the jobs need {sum(map(job_size, spec.jobs))} NPUs at once and the fabric has {npus}",
        )
    try:
        resolve_placement(spec.placement)
    except PlacementError as err:
        raise ConfigError(where, "system.placement", spec.placement, str(err)) from None


def _check_placed(job, key: str, where: str) -> None:
    """What a placed job cannot do: mirror ranks it does not simulate, run a collective dimension by dimension
    of a fabric it holds only part of, or (a pipeline) fill its bubbles with a second job."""
    system = job.system
    if system.kind == "megatron":
        return  # its export's replay runs every GPU's trace, collectives over the job's NPUs
    mirrored = {
        "data_parallel": ("mode", ("exact", "compiled")),
        "replay": ("mode", ("exact",)),
        "pipeline": ("replicas", ("all",)),
    }
    field, needed = mirrored[system.kind]
    if getattr(system, field) not in needed:
        raise ConfigError(
            where,
            f"{key}.system.{field}",
            getattr(system, field),
            f"{' or '.join(needed)} (a placed job's ranks are not mirrored)",
        )
    collective = getattr(system, "collective", None)
    if collective is not None and collective.hierarchical:
        raise ConfigError(
            where, f"{key}.system.collective.hierarchical", True, "false (a placed job's collectives run over its NPUs)"
        )
    if system.kind == "pipeline" and system.fill is not None:
        raise ConfigError(where, f"{key}.system.fill", "set", "null (a placed pipeline runs alone on its NPUs)")


def _check_places(spec, npus: int, where: str) -> None:
    taken: dict[int, str] = {}
    for i, job in enumerate(spec.jobs):
        key, size = f"system.jobs[{i}]", job_size(job)
        if job.place is None:
            continue
        place = list(job.place)
        if len(place) != size or len(set(place)) != size or not all(0 <= n < npus for n in place):
            raise ConfigError(where, f"{key}.place", place, f"{size} distinct NPUs of the fabric, 0 to {npus - 1}")
        for n in place:
            if n in taken:
                raise ConfigError(where, f"{key}.place", place, f"NPUs no other job is placed on (job {taken[n]} has NPU {n})")
            taken[n] = job.name


def _job_key(prefix: str, key: str) -> str:
    """A job's own scenario key (system.replicas, model.layers) as the jobs scenario names it."""
    if key.startswith(("system", "model")):
        return f"{prefix}.{key}"
    return key
