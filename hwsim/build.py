"""From a checked scenario to a finished run: build hardware, model, data and system; simulate."""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import numpy as np
import simpy
from simpy.core import EmptySchedule, StopSimulation

from hwsim.codecs import CodecError, NonFiniteInput, codec_from_setting
from hwsim.config.fields import to_plain
from hwsim.config.schema import Scenario
from hwsim.config.units import format_quantity
from hwsim.errors import ConfigError, Diverged, SimulatedFailure
from hwsim.models import make_model
from hwsim.models.data import load_dataset
from hwsim.policies import ScheduleError, build_schedule, resolve_schedule
from hwsim.policies.federated import FederatedError, resolve_policy
from hwsim.policies.filling import FillError, resolve_filler
from hwsim.policies.updates import UpdateError, resolve_rule
from hwsim.systems import SYSTEMS
from hwsim.systems.filling import fill_stages
from hwsim.systems.pipeline import pipeline_shape
from hwsim.systems.stages import split_layers
from hwsim.systems.stream import read_arrivals
from hwsim.trace import Recorder, Trace

Progress = Callable[[int, int], None]


class Outcome:
    """What `simulate` returns: the trace, how the run ended, its clocks, and the system (its final state)."""

    def __init__(self, trace: Trace, status: str, diagnosis: str, sim_time_s: float, wall_time_s: float, system=None):
        self.system = system
        self.trace = trace
        self.status = status
        self.diagnosis = diagnosis
        self.sim_time_s = sim_time_s
        self.wall_time_s = wall_time_s


def check(scenario: Scenario, where: str = "scenario") -> None:
    """Cross-field checks the schema cannot express; raises ConfigError."""
    system, memory = scenario.system, scenario.hardware.memory
    _check_name(scenario.name, where)
    _check_model(scenario.model, "model", where)
    fill = getattr(system, "fill", None)
    if fill is not None:
        _check_model(fill.model, "system.fill.model", where)
    if system.kind == "pipeline":
        _check_pipeline(scenario, where)
        return
    if system.kind == "online":
        _check_online(scenario, where)
        return
    if system.kind == "federated":
        _check_federated(scenario, where)
        return
    for key in ("param_bank", "work_bank"):
        _check_bank(memory, key, getattr(system, key), False, where)
    full = _check_mode(scenario, where)
    if system.block % 8:
        raise ConfigError(
            where, "system.block", system.block, "a multiple of 8 elements (quantized blocks start on byte boundaries)"
        )
    _check_bank(memory, "work_bank", system.work_bank, full, where)
    if system.kind == "compressed_ps":
        _check_compressed_ps(system, where)


NAME_LENGTH = 100


def _check_name(name: str, where: str) -> None:
    """The scenario's name names its report folder."""
    if not name or len(name) > NAME_LENGTH or any(c in name for c in "/\\\0") or name in (".", ".."):
        raise ConfigError(
            where, "name", name, f"a folder name (it names the report folder): 1 to {NAME_LENGTH} characters, no / or \\"
        )


def _check_model(model, key: str, where: str) -> None:
    if model.kind == "transformer" and model.d_model % model.heads:
        raise ConfigError(where, f"{key}.heads", model.heads, f"a divisor of d_model ({model.d_model})")
    if model.kind == "mlp" and model.init == "zeros" and model.hidden:
        raise ConfigError(
            where, f"{key}.init", "zeros", "he, xavier or normal with hidden layers (zero weights keep every hidden unit alike)"
        )


def _check_bank(memory, key: str, bank: str, fp32: bool, where: str, hardware: str = "hardware") -> None:
    """`bank` (the setting system.`key`) must be a bank of `hardware`.memory, and store fp32 if `fp32`."""
    if bank not in memory:
        raise ConfigError(where, f"system.{key}", bank, f"a bank of {hardware}.memory ({', '.join(memory)})")
    if fp32 and memory[bank].precision != "fp32":
        raise ConfigError(
            where, f"{hardware}.memory.{bank}.precision", memory[bank].precision, "fp32 (full mode computes in fp32)"
        )


def _check_mode(scenario: Scenario, where: str) -> bool:
    """Whether the run computes the math; a transformer has shapes only."""
    full = scenario.run.mode == "full"
    if full and scenario.model.kind == "transformer":
        raise ConfigError(where, "run.mode", "full", "'timing-only' for a transformer (it has shapes, not math)")
    return full


def _check_pipeline(scenario: Scenario, where: str) -> None:
    system, memory = scenario.system, scenario.hardware.memory
    full = _check_mode(scenario, where)
    _check_bank(memory, "bank", system.bank, full, where)
    if full and system.replicas == "one" and system.data_parallel > 1:
        raise ConfigError(
            where,
            "system.replicas",
            "one",
            "'all' in full mode (each replica's math needs its own devices), or run.mode: timing-only",
        )
    try:
        resolve_schedule(system.schedule)
        shape = pipeline_shape(system)
    except ScheduleError as err:
        key = "system.placement" if "placement must" in str(err) else "system.schedule"
        raise ConfigError(where, key, getattr(system, key.split(".")[1]), str(err)) from None
    try:
        build_schedule(system.schedule, shape)
    except ScheduleError as err:
        raise ConfigError(where, "system.schedule", system.schedule, f"a schedule that fits this pipeline: {err}") from None
    try:
        split_layers(make_model(scenario.model), shape.stages, system.layers_per_stage)
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
        _check_fill(scenario, full, where)


def _check_fill(scenario: Scenario, full: bool, where: str) -> None:
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


def _check_online(scenario: Scenario, where: str) -> None:
    system = scenario.system
    if scenario.run.mode != "full" or scenario.model.kind != "mlp":
        raise ConfigError(
            where, "run.mode", scenario.run.mode, "full, with an MLP (online training is scored by its predictions)"
        )
    for key in ("hardware", "system.prediction_hardware", "system.training_hardware", "system.server_hardware"):
        hardware = scenario.hardware if key == "hardware" else getattr(system, key.split(".")[1])
        if hardware is not None:
            _check_bank(hardware.memory, "bank", system.bank, True, where, key)
    rt, stream = system.realtime, system.stream
    if rt is not None and rt.period > system.full.period and not rt.allow_slower:
        raise ConfigError(
            where,
            "system.realtime.period",
            format_quantity(rt.period, "time"),
            f"at most the full period ({format_quantity(system.full.period, 'time')}); real-time updates are the frequent "
            "ones (set system.realtime.allow_slower: true if you mean it)",
        )
    for key, setting in [("delta", system.delta), *([("realtime", rt)] if rt else [])]:
        try:
            resolve_rule(setting.select)
        except UpdateError as err:
            raise ConfigError(where, f"system.{key}.select", setting.select, str(err)) from None
    for key, setting in [("delta", system.delta), ("realtime", rt), ("full", system.full)]:
        if setting is None:
            continue
        try:
            codec_from_setting(setting.codec)
        except CodecError as err:
            raise ConfigError(where, f"system.{key}.codec", to_plain(setting.codec), f"a valid codec: {err}") from None
    names = [f"p{i}" for i in range(system.prediction_workers)] + [f"t{i}" for i in range(system.training_workers)]
    for i, window in enumerate(system.link_down):
        if window.worker not in names:
            raise ConfigError(where, f"system.link_down[{i}].worker", window.worker, f"one of the workers {', '.join(names)}")
        if window.end <= window.start:
            raise ConfigError(where, f"system.link_down[{i}].end", format_quantity(window.end, "time"), "a time after its start")
    if stream.arrivals == "trace":
        if stream.trace is None:
            raise ConfigError(where, "system.stream.trace", None, "a CSV file of arrival times (arrivals: trace)")
        try:
            read_arrivals(stream.trace)
        except ValueError as err:
            raise ConfigError(where, "system.stream.trace", stream.trace, str(err)) from None


def _check_federated(scenario: Scenario, where: str) -> None:
    system = scenario.system
    if scenario.run.mode != "full" or scenario.model.kind != "mlp":
        raise ConfigError(
            where, "run.mode", scenario.run.mode, "full, with an MLP (federated runs are scored by the global model's accuracy)"
        )
    if system.per_round > system.clients:
        raise ConfigError(where, "system.per_round", system.per_round, f"at most the {system.clients} clients (system.clients)")
    client_hw = system.client_hardware.hardware or scenario.hardware
    hw_key = "system.client_hardware.hardware" if system.client_hardware.hardware else "hardware"
    _check_bank(client_hw.memory, "param_bank", system.param_bank, False, where, hw_key)
    _check_bank(client_hw.memory, "work_bank", system.work_bank, True, where, hw_key)
    server_hw = system.server_hardware or scenario.hardware
    _check_bank(
        server_hw.memory,
        "work_bank",
        system.work_bank,
        False,
        where,
        "system.server_hardware" if system.server_hardware else "hardware",
    )
    for key, setting in [("reduction.codec", system.reduction.codec), ("uplink", system.uplink)]:
        try:
            codec_from_setting(setting)
        except CodecError as err:
            raise ConfigError(where, f"system.{key}", to_plain(setting), f"a valid codec: {err}") from None
    if system.error_feedback and system.uplink is None:
        raise ConfigError(where, "system.error_feedback", True, "false without an uplink codec (system.uplink)")
    for key, kind, name in [
        ("selection.policy", "selection", system.selection.policy),
        ("reduction.policy", "reduction", system.reduction.policy),
        ("aggregation", "aggregation", system.aggregation),
        ("deadline.policy", "deadline", system.deadline.policy),
    ]:
        try:
            resolve_policy(kind, name)
        except FederatedError as err:
            raise ConfigError(where, f"system.{key}", name, str(err)) from None
    names = make_model(scenario.model).layer_names
    train = system.reduction.train
    if train is not None:
        for i, name in enumerate(train):
            if name not in names:
                raise ConfigError(where, f"system.reduction.train[{i}]", name, f"a layer of the model ({', '.join(names)})")
        if not train:
            raise ConfigError(where, "system.reduction.train", [], "at least one layer (null: every layer)")
    if system.reduction.frozen == "seed" and system.reduction.policy != "subset":
        raise ConfigError(
            where,
            "system.reduction.frozen",
            "seed",
            "send with a reduction policy other than subset (layers that ever train change, so clients cannot rebuild them)",
        )
    ch = system.client_hardware
    for key, dist in [
        ("speed", ch.speed),
        ("memory", ch.memory),
        ("bandwidth", ch.bandwidth),
        ("availability.online", ch.availability.online),
    ]:
        if dist.dist == "uniform" and dist.low > dist.high:
            raise ConfigError(where, f"system.client_hardware.{key}.low", dist.low, f"at most high ({dist.high})")


def _check_compressed_ps(system, where: str) -> None:
    for key in ("uplink", "downlink"):
        try:
            codec_from_setting(getattr(system, key))
        except CodecError as err:
            raise ConfigError(where, f"system.{key}", to_plain(getattr(system, key)), f"a valid codec: {err}") from None
    if system.server == "async" and system.update != "delta":
        raise ConfigError(
            where,
            "system.update",
            system.update,
            "delta with server: async (an asynchronous server applies each change as it arrives)",
        )
    if system.overlap and system.server != "sync":
        raise ConfigError(where, "system.overlap", True, "false with server: async (async workers never wait for a round)")
    for key in system.worker_hardware or {}:
        if not (key.isdigit() and int(key) < system.workers):
            raise ConfigError(where, f"system.worker_hardware.{key}", key, f"a worker index from 0 to {system.workers - 1}")
    for name, hardware in [
        ("server_hardware", system.server_hardware),
        *((f"worker_hardware.{k}", h) for k, h in (system.worker_hardware or {}).items()),
    ]:
        if hardware is None:
            continue
        for key in ("param_bank", "work_bank"):
            bank = getattr(system, key)
            if bank not in hardware.memory:
                raise ConfigError(where, f"system.{name}.memory", bank, f"a bank named {bank} (system.{key})")


def _check_samples(system, train: int) -> None:
    """A step's batches must fit in the training set (without repeating a sample within a step)."""
    if system.kind == "pipeline":
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
        return
    if system.kind == "online":
        return
    if system.kind == "federated":
        if system.partition.how == "shards" and system.clients * system.partition.shards > train:
            need = system.clients * system.partition.shards
            raise ConfigError(
                "scenario", "system.partition.shards", system.partition.shards,
                f"clients x shards ({need}) at most the {train} training samples",
            )  # fmt: skip
        if system.clients > train:
            raise ConfigError("scenario", "system.clients", system.clients, f"at most the {train} training samples (one each)")
        return
    per_device = train // getattr(system, "workers", 1)
    if system.batch > per_device:
        raise ConfigError("scenario", "system.batch", system.batch, f"at most {per_device} (training samples per device)")


def simulate(scenario: Scenario, progress: Progress | None = None) -> Outcome:
    """Run `scenario` to its end (or to a simulated failure, or until Ctrl-C) and return what was recorded.

    Ctrl-C (SIGINT, in the main thread, unless it is ignored) stops the run after the event in
    progress: the outcome has status "interrupted" and everything simulated so far. A second
    Ctrl-C raises KeyboardInterrupt at once.
    """
    check(scenario)
    wall_start = time.perf_counter()
    data_seed, model_seed = np.random.SeedSequence(scenario.seed).spawn(2)
    env = simpy.Environment()
    recorder = Recorder()
    model = make_model(scenario.model)
    data = None
    if scenario.run.mode == "full":
        data = load_dataset(scenario.model.dataset, scenario.run.test_fraction, np.random.default_rng(data_seed))
        _check_samples(scenario.system, len(data.y_train))
    status, diagnosis, system = "ok", "", None
    with interruptible() as stop:
        try:  # building the system allocates its banks at time 0, which may already not fit
            system = SYSTEMS[scenario.system.kind](
                scenario, env, model, data, np.random.default_rng(model_seed), recorder, progress
            )
            run_until_done(env, env.process(system.run()), stop)
        except SimulatedFailure as failure:
            status, diagnosis = failure.kind, str(failure)
        except NonFiniteInput as err:
            status, diagnosis = Diverged.kind, f"the training diverged: {err}"
        if status == Diverged.kind:
            diagnosis += f" (at simulated time {format_quantity(env.now, 'time')})"
        if stop.requested:
            status, diagnosis = "interrupted", f"interrupted (Ctrl-C) at simulated time {format_quantity(env.now, 'time')}"
    return Outcome(recorder.trace(), status, diagnosis, env.now, time.perf_counter() - wall_start, system)


class Stop:
    """Set when the user asked the run to stop (Ctrl-C)."""

    requested = False


@contextmanager
def interruptible() -> Iterator[Stop]:
    """While inside, the first SIGINT sets `Stop.requested` instead of raising KeyboardInterrupt (in the
    main thread, when SIGINT is not ignored, as it is in a sweep's workers)."""
    stop = Stop()
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        yield stop
        return

    def handler(signum, frame):
        if stop.requested:
            raise KeyboardInterrupt
        stop.requested = True

    previous = signal.signal(signal.SIGINT, handler)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)


def run_until_done(env: simpy.Environment, done: simpy.Event, stop: Stop) -> None:
    """`env.run(until=done)`, checking `stop` between events."""
    done.callbacks.append(StopSimulation.callback)
    step = env.step
    try:
        while not stop.requested:
            step()
    except StopSimulation:
        return
    except EmptySchedule:
        raise RuntimeError(f'no scheduled events left but "until" event was not triggered: {done}') from None
