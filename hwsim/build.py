"""From a checked scenario to a finished run: build hardware, model, data and system; simulate."""

from __future__ import annotations

import time
from collections.abc import Callable

import numpy as np
import simpy

from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError, SimulatedFailure
from hwsim.hardware import Device
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


def simulate(scenario: Scenario, progress: Progress | None = None) -> Outcome:
    """Run `scenario` to its end (or to a simulated failure) and return what was recorded."""
    check(scenario)
    wall_start = time.perf_counter()
    data_seed, model_seed = np.random.SeedSequence(scenario.seed).spawn(2)
    env = simpy.Environment()
    recorder = Recorder()
    device = Device(env, "dev0", scenario.hardware)
    recorder.attach_device(device)
    model = make_model(scenario.model)
    data = None
    if scenario.run.mode == "full":
        data = load_dataset(scenario.model.dataset, scenario.run.test_fraction, np.random.default_rng(data_seed))
        if scenario.system.batch > len(data.y_train):
            raise ConfigError(
                "scenario", "system.batch", scenario.system.batch, f"at most {len(data.y_train)} (training samples)"
            )
    system = SYSTEMS[scenario.system.kind](
        scenario, device, model, data, np.random.default_rng(model_seed), recorder.metric, progress
    )
    status, diagnosis = "ok", ""
    try:
        env.run(until=env.process(system.run()))
    except SimulatedFailure as failure:
        status, diagnosis = failure.kind, str(failure)
    return Outcome(recorder.trace(), status, diagnosis, env.now, time.perf_counter() - wall_start, system)
