"""From a checked scenario to a finished run: build hardware, model, data and system; simulate."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import simpy

from hwsim.codecs import CodecError, codec_from_setting
from hwsim.config.fields import to_plain
from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError, SimulatedFailure
from hwsim.models import make_model
from hwsim.models.data import load_dataset
from hwsim.systems import SYSTEMS
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
    for key in ("param_bank", "work_bank"):
        bank = getattr(system, key)
        if bank not in memory:
            raise ConfigError(where, f"system.{key}", bank, f"a bank of hardware.memory ({', '.join(memory)})")
    full = scenario.run.mode == "full"
    if full and scenario.model.kind == "transformer":
        raise ConfigError(where, "run.mode", "full", "'timing-only' for a transformer (it has shapes, not math)")
    if system.block % 8:
        raise ConfigError(
            where, "system.block", system.block, "a multiple of 8 elements (quantized blocks start on byte boundaries)"
        )
    if full:
        if memory[system.work_bank].precision != "fp32":
            raise ConfigError(
                where,
                f"hardware.memory.{system.work_bank}.precision",
                memory[system.work_bank].precision,
                "fp32 (full mode computes in fp32)",
            )
    if scenario.model.kind == "transformer" and scenario.model.d_model % scenario.model.heads:
        raise ConfigError(where, "model.heads", scenario.model.heads, f"a divisor of d_model ({scenario.model.d_model})")
    if system.kind == "compressed_ps":
        _check_compressed_ps(system, where)


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


def simulate(scenario: Scenario, progress: Progress | None = None) -> Outcome:
    """Run `scenario` to its end (or to a simulated failure) and return what was recorded."""
    check(scenario)
    wall_start = time.perf_counter()
    data_seed, model_seed = np.random.SeedSequence(scenario.seed).spawn(2)
    env = simpy.Environment()
    recorder = Recorder()
    model = make_model(scenario.model)
    data = None
    if scenario.run.mode == "full":
        data = load_dataset(scenario.model.dataset, scenario.run.test_fraction, np.random.default_rng(data_seed))
        per_device = len(data.y_train) // getattr(scenario.system, "workers", 1)
        if scenario.system.batch > per_device:
            raise ConfigError(
                "scenario", "system.batch", scenario.system.batch, f"at most {per_device} (training samples per device)"
            )
    system = SYSTEMS[scenario.system.kind](scenario, env, model, data, np.random.default_rng(model_seed), recorder, progress)
    status, diagnosis = "ok", ""
    try:
        env.run(until=env.process(system.run()))
    except SimulatedFailure as failure:
        status, diagnosis = failure.kind, str(failure)
    return Outcome(recorder.trace(), status, diagnosis, env.now, time.perf_counter() - wall_start, system)
