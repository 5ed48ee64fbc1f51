"""Megatron's cross-field checks (`Megatron.check`) and its layout of ranks onto NPUs."""

from __future__ import annotations

from hwsim.config.schema import ParallelSpec, Scenario
from hwsim.errors import ConfigError
from hwsim.network.cluster import build_topology, fabric_npus
from hwsim.policies import ScheduleError, Shape, build_schedule
from hwsim.systems.checks import check_bank


def layout(par: ParallelSpec) -> dict[tuple[int, int, int], int]:
    """The NPU of (tensor rank i, pipeline device j, data replica k): `par.order` names the axes from the
    fastest-varying NPU index to the slowest (tpd: i + t (j + p k))."""
    sizes = {"t": par.tensor, "p": par.pipeline, "d": par.data}
    out = {}
    for i in range(par.tensor):
        for j in range(par.pipeline):
            for k in range(par.data):
                at = {"t": i, "p": j, "d": k}
                npu, stride = 0, 1
                for axis in par.order:
                    npu += at[axis] * stride
                    stride *= sizes[axis]
                out[(i, j, k)] = npu
    return out


def roles(layers: int) -> list[str]:
    """How an mlp's layers split over the tensor ranks: col and row in pairs, a last unpaired layer whole (rep)."""
    return ["col" if i % 2 == 0 else "row" for i in range(layers - layers % 2)] + (["rep"] if layers % 2 else [])


def check_megatron(scenario: Scenario, where: str) -> None:
    """A transformer, timing-only, a layout that fits the fabric, the model and the batch."""
    system, model = scenario.system, scenario.model
    par = system.parallel
    t, p, d, v = par.tensor, par.pipeline, par.data, par.virtual
    if model.kind == "mlp":
        _check_mlp(scenario, where)
        return
    if model.kind != "transformer":
        raise ConfigError(where, "model.kind", model.kind, "transformer (timing-only) or mlp (the real math)")
    if scenario.run.mode != "timing-only":
        raise ConfigError(where, "run.mode", scenario.run.mode, "timing-only (a transformer has shapes, not math)")
    check_bank(scenario.hardware.memory, "bank", system.bank, False, where)
    npus = fabric_npus(scenario.hardware.network, t * p * d)
    build_topology(scenario.hardware, min(npus, t * p * d), where)  # the fabric's own mistakes first
    if npus != t * p * d:
        raise ConfigError(
            where, "system.parallel", f"tensor {t} x pipeline {p} x data {d} = {t * p * d}", f"the fabric's {npus} NPUs"
        )
    for key, value in (("heads", model.heads), ("d_model", model.d_model), ("d_ff", model.d_ff), ("vocab", model.vocab)):
        if value % t:
            raise ConfigError(where, f"model.{key}", value, f"a multiple of system.parallel.tensor ({t})")
    if model.layers % (p * v):
        raise ConfigError(
            where, "model.layers", model.layers, f"a multiple of pipeline x virtual ({p} x {v} = {p * v} model chunks)"
        )
    if system.batch % (d * system.microbatch):
        raise ConfigError(
            where,
            "system.batch",
            system.batch,
            f"a multiple of data x microbatch ({d} x {system.microbatch} = {d * system.microbatch})",
        )
    m = system.batch // (d * system.microbatch)
    try:
        build_schedule("interleaved" if v > 1 else "1f1b", Shape(p, v, m, "looping" if v > 1 else "contiguous"))
    except ScheduleError as err:
        raise ConfigError(where, "system.parallel.virtual", v, f"a layout Megatron's interleaved 1F1B can run: {err}") from None


def _check_mlp(scenario: Scenario, where: str) -> None:
    """An mlp: tensor and data parallelism only, widths the tensor ranks split evenly, a batch the replicas split."""
    system, model = scenario.system, scenario.model
    par = system.parallel
    check_bank(scenario.hardware.memory, "bank", system.bank, scenario.run.mode == "full", where)
    for key, value, expected in (
        ("pipeline", par.pipeline, 1),
        ("virtual", par.virtual, 1),
        ("sequence", par.sequence, False),
    ):
        if value != expected:
            raise ConfigError(
                where,
                f"system.parallel.{key}",
                value,
                f"{expected} for an mlp (tensor and data parallelism; pipelines: kind pipeline)",
            )
    if system.recompute != "none":
        raise ConfigError(where, "system.recompute", system.recompute, "none for an mlp")
    npus = fabric_npus(scenario.hardware.network, par.tensor * par.data)
    if npus != par.tensor * par.data:
        raise ConfigError(where, "system.parallel", f"tensor {par.tensor} x data {par.data}", f"the fabric's {npus} NPUs")
    widths = (*model.hidden, model.classes)
    for li, role in enumerate(roles(len(widths))):
        if role == "col" and widths[li] % par.tensor:
            raise ConfigError(where, f"model.hidden[{li}]", widths[li], f"a multiple of system.parallel.tensor ({par.tensor})")
    if system.batch % par.data:
        raise ConfigError(where, "system.batch", system.batch, f"a multiple of system.parallel.data ({par.data})")
