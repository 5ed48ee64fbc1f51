"""Federated learning's cross-field checks (`Federated.check`, `Federated.check_samples`)."""

from __future__ import annotations

from hwsim.codecs import CodecError, codec_from_setting
from hwsim.config.fields import to_plain
from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError
from hwsim.policies.federated import FederatedError, resolve_policy
from hwsim.systems.checks import check_bank
from hwsim.workloads import make_model


def check_scenario(scenario: Scenario, where: str) -> None:
    """Federated learning's cross-field checks."""
    system = scenario.system
    if scenario.run.mode != "full" or scenario.model.kind != "mlp":
        raise ConfigError(
            where, "run.mode", scenario.run.mode, "full, with an MLP (federated runs are scored by the global model's accuracy)"
        )
    if system.per_round > system.clients:
        raise ConfigError(where, "system.per_round", system.per_round, f"at most the {system.clients} clients (system.clients)")
    client_hw = system.client_hardware.hardware or scenario.hardware
    hw_key = "system.client_hardware.hardware" if system.client_hardware.hardware else "hardware"
    check_bank(client_hw.memory, "param_bank", system.param_bank, False, where, hw_key)
    check_bank(client_hw.memory, "work_bank", system.work_bank, True, where, hw_key)
    server_hw = system.server_hardware or scenario.hardware
    check_bank(
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


def check_samples(system, train: int) -> None:
    """Every client gets at least one training sample (and every shard one)."""
    if system.partition.how == "shards" and system.clients * system.partition.shards > train:
        need = system.clients * system.partition.shards
        raise ConfigError(
            "scenario", "system.partition.shards", system.partition.shards,
            f"clients x shards ({need}) at most the {train} training samples",
        )  # fmt: skip
    if system.clients > train:
        raise ConfigError("scenario", "system.clients", system.clients, f"at most the {train} training samples (one each)")
