"""The jobs system's checks: jobs it can place, each a scenario its own system accepts."""

from __future__ import annotations

import dataclasses
import re

from hwsim.errors import ConfigError
from hwsim.network.cluster import build_topology
from hwsim.policies.placement import PlacementError, resolve_placement

NAME = re.compile(r"[A-Za-z0-9_-]{1,40}")


def job_scenario(scenario, job):
    """The scenario job `job` would be on its own: the cluster's hardware, its model and system."""
    return dataclasses.replace(scenario, model=job.model, system=job.system)


def job_size(job) -> int:
    """The NPUs a job runs on (a data-parallel job's replicas; 1 for a kind `check_jobs` refuses)."""
    return getattr(job.system, "replicas", 1)


def check_jobs(scenario, where: str) -> None:
    """Named jobs of kinds that can be placed, each a scenario its system accepts; explicit places of the right
    size that do not overlap; a placement policy that loads; jobs that fit the fabric."""
    from hwsim.systems.data_parallel import DataParallel
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
        if job.system.kind != "data_parallel":
            raise ConfigError(
                where, f"{key}.system.kind", job.system.kind, "data_parallel (jobs of other kinds are not placed yet)"
            )
        if job_size(job) > npus:
            raise ConfigError(where, f"{key}.system.replicas", job_size(job), f"at most the fabric's {npus} NPUs")
        if job.system.mode != "exact":
            raise ConfigError(where, f"{key}.system.mode", job.system.mode, "exact (a placed job's ranks are not mirrored)")
        if job.system.collective.hierarchical:
            raise ConfigError(
                where, f"{key}.system.collective.hierarchical", True, "false (a placed job's collectives run over its NPUs)"
            )
        try:
            DataParallel.check(job_scenario(scenario, job), where)
        except ConfigError as err:
            raise ConfigError(err.where, _job_key(key, err.key), err.got, err.expected) from None
    _check_places(spec, npus, where)
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
