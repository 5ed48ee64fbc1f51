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

from hwsim.codecs import NonFiniteInput
from hwsim.config.schema import HardwareSpec, Scenario
from hwsim.config.units import format_quantity
from hwsim.errors import ConfigError, Diverged, SimulatedFailure
from hwsim.network import Cluster, build_topology
from hwsim.network.failures import failure_links
from hwsim.systems import SYSTEMS
from hwsim.trace import Recorder, Trace
from hwsim.workloads import RECORDED, make_model
from hwsim.workloads.data import load_dataset
from hwsim.workloads.layers import check_layers

Progress = Callable[[int, int], None]


class Outcome:
    """What `simulate` returns: the trace, how the run ended, its clocks, and the system (its final state)."""

    def __init__(
        self, trace: Trace, status: str, diagnosis: str, sim_time_s: float, wall_time_s: float, system=None, cluster=None
    ):
        self.system = system
        self.cluster = cluster
        self.trace = trace
        self.status = status
        self.diagnosis = diagnosis
        self.sim_time_s = sim_time_s
        self.wall_time_s = wall_time_s


def check(scenario: Scenario, where: str = "scenario") -> None:
    """Cross-field checks the schema cannot express; raises ConfigError. The system's own are its
    class's `check`; the fabric must hold the system's NPUs."""
    system = scenario.system
    _check_name(scenario.name, where)
    if len(scenario.description) > DESCRIPTION_LENGTH:
        raise ConfigError(
            where,
            "description",
            scenario.description,
            f"at most {DESCRIPTION_LENGTH:,} characters (it is copied into summary.json and report.html); "
            f"this one has {len(scenario.description):,}",
        )
    _check_model(scenario.model, "model", where)
    fill = getattr(system, "fill", None)
    if fill is not None:
        _check_model(fill.model, "system.fill.model", where)
    kind = SYSTEMS[system.kind]
    model = scenario.model
    if model.kind == "transformer" and system.kind != "megatron":
        for key, value, default in (("moe", model.moe, None), ("attention", model.attention, "mha")):
            if value != default:
                raise ConfigError(
                    where,
                    f"model.{key}",
                    "set" if key == "moe" else value,
                    f"{default or 'null'} for system.kind {system.kind} (megatron runs it)",
                )
    if (model.kind in RECORDED) != getattr(kind, "takes_traces", False):
        if model.kind in RECORDED:
            raise ConfigError(where, "system.kind", system.kind, f"replay for a {model.kind} model (a recorded trace)")
        raise ConfigError(where, "model.kind", model.kind, "chakra or torch_trace (a recorded trace) for system.kind replay")
    if scenario.model.kind == "layers" and not getattr(kind, "takes_layers", False):
        raise ConfigError(
            where, "model.kind", "layers", f"an mlp or a transformer for system.kind {system.kind} (layers: data_parallel)"
        )
    kind.check(scenario, where)
    for key, hardware in _hardware_specs(scenario):
        _check_energy(hardware, key, where)
    names = npu_names(scenario)
    t = build_topology(scenario.hardware, len(names), where)
    if scenario.hardware.network is not None:  # the cables that fail mid-run name links of this fabric
        failure_links(t, names + t.nodes[len(names) :], scenario.hardware.network, where)


def npu_names(scenario: Scenario) -> list[str]:
    """The device on each NPU of the scenario's cluster: its system's, from its model for a replay, from the
    fabric's size for jobs."""
    kind = SYSTEMS[scenario.system.kind]
    if getattr(kind, "takes_traces", False):
        return kind.npu_names(scenario.system, scenario.model)
    if getattr(kind, "takes_fabric", False):
        return kind.npu_names(scenario.system, scenario.hardware.network)
    return kind.npu_names(scenario.system)


def _hardware_specs(scenario: Scenario) -> list[tuple[str, HardwareSpec]]:
    """The scenario's hardware and every device-specific one of its system, with their keys."""
    system, out = scenario.system, [("hardware", scenario.hardware)]
    for key in ("server_hardware", "prediction_hardware", "training_hardware"):
        if getattr(system, key, None) is not None:
            out.append((f"system.{key}", getattr(system, key)))
    for name, hardware in (getattr(system, "worker_hardware", None) or {}).items():
        out.append((f"system.worker_hardware.{name}", hardware))
    clients = getattr(system, "client_hardware", None)
    if clients is not None and getattr(clients, "hardware", None) is not None:
        out.append(("system.client_hardware.hardware", clients.hardware))
    return out


def _check_energy(hardware: HardwareSpec, key: str, where: str) -> None:
    """An energy model names each of the hardware's banks once, and no other."""
    if hardware.energy is None:
        return
    given, banks = set(hardware.energy.memory), set(hardware.memory)
    if given != banks:
        raise ConfigError(
            where,
            f"{key}.energy.memory",
            sorted(given),
            f"the energy per byte of each bank of {key}.memory: {', '.join(sorted(banks))}",
        )


NAME_LENGTH = 100
DESCRIPTION_LENGTH = 10_000


def _check_name(name: str, where: str) -> None:
    """The scenario's name names its report folder."""
    if not name or len(name) > NAME_LENGTH or any(c in name for c in "/\\\0") or name in (".", ".."):
        raise ConfigError(
            where, "name", name, f"a folder name (it names the report folder): 1 to {NAME_LENGTH} characters, no / or \\"
        )


def _check_model(model, key: str, where: str) -> None:
    if model.kind == "transformer" and model.d_model % model.heads:
        raise ConfigError(where, f"{key}.heads", model.heads, f"a divisor of d_model ({model.d_model})")
    if model.kind == "transformer" and model.heads % model.kv:
        raise ConfigError(
            where, f"{key}.kv_heads", model.kv_heads, f"a divisor of heads ({model.heads}): each key/value head serves a group"
        )
    if model.kind == "layers":
        for sub, value, expected in check_layers(model):
            raise ConfigError(where, f"{key}.{sub}", value, expected)
    if model.kind == "mlp" and model.init == "zeros" and model.hidden:
        raise ConfigError(
            where, f"{key}.init", "zeros", "he, xavier or normal with hidden layers (zero weights keep every hidden unit alike)"
        )


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
    kind = SYSTEMS[scenario.system.kind]
    if data is not None:
        kind.check_samples(scenario.system, len(data.y_train))
    cluster = Cluster(env, scenario.hardware, npu_names(scenario), recorder, precision=compute_precision(scenario))
    status, diagnosis, system = "ok", "", None
    with interruptible() as stop:
        try:  # building the system allocates its banks at time 0, which may already not fit
            system = kind(scenario, cluster, model, data, np.random.default_rng(model_seed), progress)
            run_until_done(env, env.process(system.run()), stop)
        except SimulatedFailure as failure:
            status, diagnosis = failure.kind, str(failure)
        except NonFiniteInput as err:
            status, diagnosis = Diverged.kind, f"the training diverged: {err}"
        if status == Diverged.kind:
            diagnosis += f" (at simulated time {format_quantity(env.now, 'time')})"
        if stop.requested:
            status, diagnosis = "interrupted", f"interrupted (Ctrl-C) at simulated time {format_quantity(env.now, 'time')}"
    return Outcome(recorder.trace(), status, diagnosis, env.now, time.perf_counter() - wall_start, system, cluster)


def compute_precision(scenario: Scenario) -> str:
    """The precision of the system's GEMMs (`compute_precision`, or a 3D system's `precision`)."""
    system = scenario.system
    return getattr(system, "compute_precision", None) or getattr(system, "precision", None) or "fp32"


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
