"""Cross-field checks that several systems share; each system's own are in its module (`check`)."""

from __future__ import annotations

import dataclasses

import numpy as np

from hwsim.collectives import CollectiveError, plan
from hwsim.collectives.algorithms import SYMMETRY
from hwsim.collectives.executor import loopbacks
from hwsim.collectives.schedule import HIERARCHICAL
from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError
from hwsim.network import build_topology
from hwsim.network.topology import dimension_groups


def check_bank(memory, key: str, bank: str, fp32: bool, where: str, hardware: str = "hardware") -> None:
    """`bank` (the setting system.`key`) must be a bank of `hardware`.memory, and store fp32 if `fp32`."""
    if bank not in memory:
        raise ConfigError(where, f"system.{key}", bank, f"a bank of {hardware}.memory ({', '.join(memory)})")
    if fp32 and memory[bank].precision != "fp32":
        raise ConfigError(
            where, f"{hardware}.memory.{bank}.precision", memory[bank].precision, "fp32 (full mode computes in fp32)"
        )


def check_mode(scenario: Scenario, where: str) -> bool:
    """Whether the run computes the math; a transformer has shapes only."""
    full = scenario.run.mode == "full"
    if full and scenario.model.kind == "transformer":
        raise ConfigError(where, "run.mode", "full", "'timing-only' for a transformer (it has shapes, not math)")
    return full


def check_local_training(scenario: Scenario, where: str) -> None:
    """Systems whose devices train from a parameter bank (`LocalTrainingSpec`)."""
    system, memory = scenario.system, scenario.hardware.memory
    for key in ("param_bank", "work_bank"):
        check_bank(memory, key, getattr(system, key), False, where)
    full = check_mode(scenario, where)
    if system.block % 8:
        raise ConfigError(
            where, "system.block", system.block, "a multiple of 8 elements (quantized blocks start on byte boundaries)"
        )
    check_bank(memory, "work_bank", system.work_bank, full, where)


def check_batch(system, train: int, devices: int = 1) -> None:
    """A device's batch must fit in its share of the training set."""
    per_device = train // devices
    if system.batch > per_device:
        raise ConfigError("scenario", "system.batch", system.batch, f"at most {per_device} (training samples per device)")


def check_collective(scenario: Scenario, npus: int, ops: tuple[str, ...], where: str):
    """`system.collective` can run each of `ops` on the scenario's fabric over `npus` NPUs; returns the topology,
    its dimension groups, the sizes the algorithms run on (per dimension, or all NPUs) and the algorithm names."""
    spec = scenario.system.collective
    names = spec.algorithm if isinstance(spec.algorithm, (list, tuple)) else [spec.algorithm]
    if not names or not all(isinstance(name, str) for name in names):
        raise ConfigError(where, "system.collective.algorithm", spec.algorithm, "an algorithm name, or a list of names")
    if len(names) > 1 and not spec.hierarchical:
        raise ConfigError(
            where, "system.collective.algorithm", list(names), "one name (a list is one per dimension, hierarchical: true)"
        )
    t = build_topology(scenario.hardware, npus, where)
    groups = dimension_groups(t)
    if spec.hierarchical and (len(groups) < 2 or t.npus != npus):
        raise ConfigError(
            where,
            "system.collective.hierarchical",
            True,
            f"a dims or torus fabric of 2 or more dimensions whose every NPU takes part (this one: {t.kind} of "
            f"{len(groups)} dimension{'s' if len(groups) != 1 else ''}, {t.npus} NPUs; {npus} take part)",
        )
    if spec.hierarchical and len(names) not in (1, len(groups)):
        raise ConfigError(where, "system.collective.algorithm", list(names), f"one name, or one per dimension ({len(groups)})")
    sizes = [len(g[0]) for g in groups] if spec.hierarchical else [npus]
    for op in ops:
        if spec.hierarchical and op not in HIERARCHICAL:
            raise ConfigError(
                where,
                "system.collective.hierarchical",
                True,
                f"false: the workload runs {op}, which hwsim runs on all NPUs at once",
            )
        for i, size in enumerate(sizes):
            name = names[i] if len(names) > 1 else names[0]
            try:
                plan("reduce_scatter" if spec.hierarchical else op, name, size, name in SYMMETRY)  # errors only
            except CollectiveError as err:
                key = "system.collective.algorithm" + (f"[{i}]" if len(names) > 1 else "")
                raise ConfigError(where, key, name, str(err)) from None
    return t, groups, sizes, names


def check_symmetric(scenario: Scenario, t, groups, names, npus: int, where: str) -> None:
    """Symmetric and lockstep modes are exact only for identical replicas (NPUs 0..npus-1) on a symmetric fabric,
    with algorithms whose ranks step in rounds: refuse the rest (`check_collective` gives t, groups and names). (Lockstep on a slow link would make every
    round wait for it: measured 23 % short under `flow` and 66 % long under `ideal` on 16 NPUs.)"""
    mode = scenario.system.mode
    network = scenario.hardware.network
    if network is not None and network.overrides:
        raise ConfigError(
            where, "system.mode", mode, "exact (hardware.network.overrides make the replicas differ: a slow or down link)"
        )
    for name in names:
        if name not in SYMMETRY:
            raise ConfigError(
                where, "system.mode", mode, f"exact for {name} ({mode}: {', '.join(SYMMETRY)}, whose ranks step in rounds)"
            )
    if mode == "lockstep":
        return
    spec = scenario.system.collective
    for per_dim in groups if spec.hierarchical else [[list(range(npus))]]:
        group = next(g for g in per_dim if 0 in g)
        try:
            loopbacks(t, group)
        except CollectiveError as err:
            raise ConfigError(where, "system.mode", "symmetric", f"exact here: {err}") from None


def stragglers(spec, seed: int) -> set[int]:
    """The replicas `spec.stragglers` slows: those named, or `fraction` of them (at least one) drawn with the
    scenario's seed."""
    given = spec.stragglers
    if given is None:
        return set()
    if given.replicas:
        return set(given.replicas)
    if given.fraction <= 0:
        return set()
    count = max(1, round(given.fraction * spec.replicas))
    return {int(r) for r in np.random.default_rng([seed, 0x57A6]).choice(spec.replicas, count, replace=False)}


def slowed_compute(hardware, slowdown: float):
    """`hardware` whose arithmetic and vector units run at 1/slowdown of their clock (a straggler's)."""
    systolic = dataclasses.replace(hardware.systolic, clock=hardware.systolic.clock / slowdown)
    vector = dataclasses.replace(hardware.vector, clock=hardware.vector.clock / slowdown)
    return dataclasses.replace(hardware, systolic=systolic, vector=vector)


def check_stragglers(spec, where: str) -> None:
    """Stragglers named among the replicas, or a fraction, not both."""
    given = spec.stragglers
    if given is None:
        return
    bad = [r for r in given.replicas if not 0 <= r < spec.replicas]
    if bad:
        raise ConfigError(where, "system.stragglers.replicas", list(given.replicas), f"replicas 0 to {spec.replicas - 1}")
    if given.replicas and given.fraction:
        raise ConfigError(where, "system.stragglers", "replicas and fraction", "one of them (the replicas, or a fraction)")
