"""Cross-field checks that several systems share; each system's own are in its module (`check`)."""

from __future__ import annotations

from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError


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
