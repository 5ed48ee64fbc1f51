"""A pipeline's cross-field checks (`Pipeline.check`, `Pipeline.check_samples`)."""

from __future__ import annotations

from dataclasses import dataclass

from hwsim.config.fields import to_plain
from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError
from hwsim.policies import SCHEDULES, ScheduleError, Shape, build_schedule, is_split, resolve_schedule
from hwsim.policies.filling import FillError, resolve_filler
from hwsim.systems.checks import check_bank, check_mode
from hwsim.systems.pipeline.filling import fill_stages
from hwsim.systems.stages import StageCost, split_layers, stage_costs
from hwsim.workloads import make_model


def pipeline_shape(spec) -> Shape:
    """The schedule shape of a `PipelineSpec` (the placement defaults to what the schedule needs)."""
    placement = spec.placement or resolve_schedule(spec.schedule).placement or "contiguous"
    return Shape(spec.devices, spec.stages_per_device, spec.microbatches, placement, spec.group, spec.reverse_backward)


@dataclass(frozen=True)
class StagePlan:
    """What a pipeline scenario runs, before any simulation: its shape, its schedule, each stage's layers and
    each stage's cost per micro-batch on the scenario's hardware (`stage_costs`)."""

    shape: Shape
    schedule: tuple
    split: bool
    stage_layers: list
    costs: list[StageCost]


def stage_plan(scenario: Scenario, model=None) -> StagePlan:
    """The `StagePlan` of a pipeline scenario (`model`: its workload, made from the scenario when not given)."""
    spec = scenario.system
    model = make_model(scenario.model) if model is None else model
    shape = pipeline_shape(spec)
    schedule = build_schedule(spec.schedule, shape)
    model_stages = split_layers(model, shape.model_stages, spec.layers_per_stage)
    layers = [model_stages[shape.model_stage(u)] for u in range(shape.stages)]
    costs = stage_costs(model.layer_ops(spec.microbatch), layers, scenario.hardware, spec.compute_precision)
    return StagePlan(shape, schedule, is_split(schedule), layers, costs)


def check_pipeline(scenario: Scenario, where: str) -> None:
    """A pipeline's cross-field checks: bank, mode, schedule, stages, the fabric, the second instance."""
    system, memory = scenario.system, scenario.hardware.memory
    full = check_mode(scenario, where)
    check_bank(memory, "bank", system.bank, full, where)
    if full and system.replicas == "one" and system.data_parallel > 1:
        raise ConfigError(
            where,
            "system.replicas",
            "one",
            "'all' in full mode (each replica's math needs its own devices), or run.mode: timing-only",
        )
    network = scenario.hardware.network
    if system.replicas == "one" and system.data_parallel > 1 and network is not None and network.kind != "switch":
        raise ConfigError(
            where,
            "system.replicas",
            "one",
            f"'all' on a {network.kind} fabric: mirrored ring partners time exactly only on a single switch, where "
            "no other replica's message shares a link with the ones simulated",
        )
    try:
        kind = resolve_schedule(system.schedule)
        shape = pipeline_shape(system)
    except ScheduleError as err:
        key = "system.placement" if "placement must" in str(err) else "system.schedule"
        raise ConfigError(where, key, getattr(system, key.split(".")[1]), str(err)) from None
    if system.reverse_backward and not kind.reverse:
        takes = ", ".join(name for name, k in SCHEDULES.items() if k.reverse)
        raise ConfigError(where, "system.reverse_backward", True, f"false: {system.schedule} has no reverse order (only {takes})")
    try:
        build_schedule(system.schedule, shape)
    except ScheduleError as err:
        raise ConfigError(where, "system.schedule", system.schedule, f"a schedule that fits this pipeline: {err}") from None
    try:
        split_layers(make_model(scenario.model), shape.model_stages, system.layers_per_stage)
    except ValueError as err:
        key = "system.layers_per_stage" if system.layers_per_stage else "system.stages_per_device"
        value = to_plain(system.layers_per_stage) if system.layers_per_stage else system.stages_per_device
        raise ConfigError(
            where,
            key,
            value,
            f"stages (devices {shape.devices} x stages_per_device {shape.stages_per_device}) that fit the model: {err}",
        ) from None
    if system.fill is not None:
        check_fill(scenario, full, where)


def check_fill(scenario: Scenario, full: bool, where: str) -> None:
    """The second instance of a filled pipeline."""
    fill, model = scenario.system.fill, scenario.model
    try:
        resolve_filler(fill.policy)
    except FillError as err:
        raise ConfigError(where, "system.fill.policy", fill.policy, str(err)) from None
    if full and fill.model.kind == "transformer":
        raise ConfigError(where, "system.fill.model", fill.model.name, "an MLP in full mode (a transformer has shapes, not math)")
    if full and fill.model.dataset != model.dataset:
        raise ConfigError(where, "system.fill.model", fill.model.name, f"a model of the pipeline's dataset ({model.dataset})")
    fill_model = make_model(fill.model)
    stages = fill_stages(fill, fill_model, scenario.system.devices)
    try:
        split_layers(fill_model, stages, fill.layers_per_stage)
    except ValueError as err:
        key = "system.fill.layers_per_stage" if fill.layers_per_stage else "system.fill.stages"
        value = to_plain(fill.layers_per_stage) if fill.layers_per_stage else stages
        raise ConfigError(where, key, value, f"stages that fit the second instance's model: {err}") from None


def check_samples(system, train: int) -> None:
    """A step's micro-batches (every replica's, and the second instance's) must fit in the training set."""
    need = system.data_parallel * system.microbatches * system.microbatch
    if need > train:
        raise ConfigError(
            "scenario",
            "system.microbatch",
            system.microbatch,
            f"data_parallel x microbatches x microbatch ({need}) at most the {train} training samples",
        )
    fill = system.fill
    if fill is not None and fill.microbatches * fill.microbatch > train:
        need = fill.microbatches * fill.microbatch
        raise ConfigError(
            "scenario",
            "system.fill.microbatch",
            fill.microbatch,
            f"microbatches x microbatch ({need}) at most the {train} training samples",
        )
