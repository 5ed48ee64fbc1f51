"""Megatron's cross-field checks (`Megatron.check`) and its layout of ranks onto NPUs."""

from __future__ import annotations

from hwsim.codecs import CodecError, codec_from_setting
from hwsim.config.fields import to_plain
from hwsim.config.schema import ParallelSpec, Scenario
from hwsim.errors import ConfigError
from hwsim.network.cluster import build_topology, fabric_npus
from hwsim.policies import ScheduleError, Shape, build_schedule, resolve_schedule
from hwsim.policies.filling import FillError, resolve_filler
from hwsim.systems.checks import check_bank


def layout(par: ParallelSpec) -> dict[tuple[int, int, int], int]:
    """The NPU of (tensor rank i, pipeline device j, data rank k): `par.order` names the axes from the
    fastest-varying NPU index to the slowest (tpd: i + t (j + p k)). With c context ranks the data index k
    runs over c d ranks, context rank k % c of replica k // c; the context axis sits where the order puts c,
    or right after t (Megatron-core's tp-cp-dp-pp)."""
    c = par.context
    order = par.order if "c" in par.order or c == 1 else par.order.replace("t", "tc")
    sizes = {"t": par.tensor, "p": par.pipeline, "c": c, "d": par.data}
    out = {}
    for i in range(par.tensor):
        for j in range(par.pipeline):
            for k in range(c * par.data):
                at = {"t": i, "p": j, "c": k % c, "d": k // c}
                npu, stride = 0, 1
                for axis in order:
                    npu += at[axis] * stride
                    stride *= sizes[axis]
                out[(i, j, k)] = npu
    return out


def expert_tensor(par: ParallelSpec) -> int:
    """The expert-tensor ranks: `par.expert_tensor`, or the tensor ranks (Megatron-core's default)."""
    return par.expert_tensor or par.tensor


def expert_group(axis: str, q: int, ranks: int, et: int, e: int) -> list[int]:
    """The ranks of rank q's `axis` group (expert tensor, expert, expert data) among a stage's `ranks` = t c d,
    numbered q = i + t k (tensor rank i, data rank k), as Megatron-core regroups them for the MoE layers
    (`initialize_model_parallel`'s expert rank generator, order tp-ep-dp): et expert-tensor ranks fastest, then
    e expert ranks, then the ranks / (et e) that hold the same expert shards."""
    a, b, g = q % et, q // et % e, q // (et * e)
    if axis == "expert tensor":
        return [x + et * (b + e * g) for x in range(et)]
    if axis == "expert":
        return [a + et * (x + e * g) for x in range(e)]
    return [a + et * (b + e * x) for x in range(ranks // (et * e))]


def expert_groups(axis: str, ranks: int, et: int, e: int) -> list[list[int]]:
    """Every `axis` group of a stage's ranks once (`expert_group`), each from its rank of index 0 on the axis."""
    index = {"expert tensor": lambda q: q % et, "expert": lambda q: q // et % e, "expert data": lambda q: q // (et * e)}[axis]
    return [expert_group(axis, q, ranks, et, e) for q in range(ranks) if index(q) == 0]


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
    for unit in ("systolic", "vector"):
        if getattr(scenario.hardware, unit).launch > 0:
            raise ConfigError(
                where,
                f"hardware.{unit}.launch",
                getattr(scenario.hardware, unit).launch,
                "0 for a transformer (the 3D cost model times kernels from cycles; a per-op launch time is modelled "
                "where ops run one by one: the MLP systems)",
            )
    if scenario.run.mode != "timing-only":
        raise ConfigError(where, "run.mode", scenario.run.mode, "timing-only (a transformer has shapes, not math)")
    check_bank(scenario.hardware.memory, "bank", system.bank, False, where)
    if system.precision == "fp8" and scenario.hardware.systolic.macs_per_cycle.fp8 is None:
        raise ConfigError(
            where,
            "system.precision",
            "fp8",
            f"bf16 or fp16: {scenario.hardware.name}'s arrays have no fp8 rate (hardware.systolic.macs_per_cycle.fp8; "
            "an H100 or H800 has, an A100 has not)",
        )
    c = par.context
    needed = t * p * c * d
    npus = fabric_npus(scenario.hardware.network, needed)
    build_topology(scenario.hardware, min(npus, needed), where)  # the fabric's own mistakes first
    if npus != needed:
        axes = f"tensor {t} x pipeline {p} x " + (f"context {c} x " if c > 1 else "") + f"data {d} = {needed}"
        raise ConfigError(where, "system.parallel", axes, f"the fabric's {npus} NPUs")
    _check_framework(scenario, where)
    if c > 1:
        _check_context(scenario, where)
    _check_experts(scenario, where)
    for key, value in (("heads", model.heads), ("d_model", model.d_model), ("d_ff", model.d_ff), ("vocab", model.vocab)):
        if value % t:
            raise ConfigError(where, f"model.{key}", value, f"a multiple of system.parallel.tensor ({t})")
    if model.kv % t and t % model.kv:
        raise ConfigError(
            where,
            "model.kv_heads",
            model.kv,
            f"a multiple of system.parallel.tensor ({t}), or a divisor of it (each rank then holds one key/value head, "
            "replicated)",
        )
    if system.batch % (d * system.microbatch):
        raise ConfigError(
            where,
            "system.batch",
            system.batch,
            f"a multiple of data x microbatch ({d} x {system.microbatch} = {d * system.microbatch})",
        )
    _check_compression(system, where)
    if system.straggler is not None:
        if system.straggler.npu >= needed:
            raise ConfigError(where, "system.straggler.npu", system.straggler.npu, f"an NPU of the job, 0 to {needed - 1}")
        if system.fill is not None:
            raise ConfigError(where, "system.straggler", "set", "null with a fill job (a straggler is for one job alone)")
    if system.fill is not None:
        if system.fill.model.kind != "transformer":
            raise ConfigError(where, "system.fill.model", system.fill.model.kind, "a transformer (the fill job is timing-only)")
        if not system.fill.resident and system.fill.mode != "inference":
            raise ConfigError(where, "system.fill.resident", False, "true for a training fill job (its state stays in the bank)")
        try:
            resolve_filler(system.fill.policy)
        except FillError as err:
            raise ConfigError(where, "system.fill.policy", system.fill.policy, str(err)) from None
    name, shape = megatron_schedule(system, where)
    chunks = f"pipeline x virtual ({p} x {v} = {p * v} model chunks)" if shape.placement != "dual" else f"pipeline ({p})"
    given = system.layers_per_stage
    if given is not None:
        if len(given) != shape.model_stages:
            raise ConfigError(where, "system.layers_per_stage", list(given), f"one count per model chunk: {chunks}")
        if sum(given) != model.layers:
            raise ConfigError(
                where, "system.layers_per_stage", list(given), f"counts that add up to model.layers ({model.layers})"
            )
        if 0 in given[1:-1]:
            raise ConfigError(
                where,
                "system.layers_per_stage",
                list(given),
                "at least one block in every chunk but the first and the last (which may hold the embedding or the "
                "output layer alone)",
            )
    elif model.layers % shape.model_stages:
        raise ConfigError(where, "model.layers", model.layers, f"a multiple of {chunks}, or system.layers_per_stage")
    try:
        build_schedule(name, shape)
    except ScheduleError as err:
        if system.schedule is None:  # Megatron's own: what does not fit is the interleaving
            raise ConfigError(
                where, "system.parallel.virtual", v, f"a layout Megatron's interleaved 1F1B can run: {err}"
            ) from None
        raise ConfigError(where, "system.schedule", name, f"a schedule this layout can run: {err}") from None


def _check_compression(system, where: str) -> None:
    """Each codec a valid one; hierarchical partitioning only with the sharded optimizer."""
    spec = system.compression
    for key in ("weights", "gradients", "pipeline", "storage"):
        setting = getattr(spec, key)
        if setting is not None:
            try:
                codec_from_setting(setting)
            except CodecError as err:
                raise ConfigError(where, f"system.compression.{key}", to_plain(setting), f"a valid codec: {err}") from None
    if spec.storage is not None and system.optimizer == "sharded":
        raise ConfigError(
            where,
            "system.compression.storage",
            to_plain(spec.storage),
            "null with the sharded optimizer (its gathers carry the weights: compress them with compression.weights)",
        )
    if spec.hierarchical and system.optimizer != "sharded":
        raise ConfigError(
            where,
            "system.compression.hierarchical",
            True,
            "false unless system.optimizer is sharded (hpZ partitions its weights)",
        )


def megatron_schedule(system, where: str = "scenario") -> tuple[str, Shape]:
    """The schedule's name and shape of a megatron system: `schedule` (default Megatron's own: 1f1b, or
    interleaved with virtual > 1), p devices, v chunks each, the micro-batches per replica, the placement
    (`placement`, else what the schedule needs, else looping with v > 1), `group`, `reverse_backward`."""
    par = system.parallel
    name = system.schedule or ("interleaved" if par.virtual > 1 else "1f1b")
    try:
        kind = resolve_schedule(name)
    except ScheduleError as err:
        raise ConfigError(where, "system.schedule", name, f"a schedule of the library or 'file.py:function' ({err})") from None
    if system.placement is not None and kind.placement is not None and system.placement != kind.placement:
        raise ConfigError(where, "system.placement", system.placement, f"{kind.placement} (what {name} runs on), or null")
    placement = system.placement or kind.placement or ("looping" if par.virtual > 1 else "contiguous")
    m = system.batch // (par.data * system.microbatch)
    try:
        shape = Shape(par.pipeline, par.virtual, max(m, 1), placement, system.group, system.reverse_backward)
    except ScheduleError as err:
        key, value = (
            ("system.parallel.virtual", par.virtual) if "stages per device" in str(err) else ("system.placement", placement)
        )
        raise ConfigError(where, key, value, f"a layout {name} can run ({err})") from None
    if system.group and m % system.group and name in ("hybrid",):
        raise ConfigError(where, "system.group", system.group, f"a divisor of the {m} micro-batches per replica")
    return name, shape


def _check_mlp(scenario: Scenario, where: str) -> None:
    """An mlp: widths the tensor ranks split evenly, a batch the replicas (and with a pipeline, the
    micro-batches) split; with a pipeline, stages of whole column/row pairs under a contiguous or looping
    placement."""
    if scenario.system.parallel.context > 1:
        raise ConfigError(where, "system.parallel.context", scenario.system.parallel.context, "1 for an mlp (it has no sequence)")
    if scenario.system.straggler is not None:
        raise ConfigError(where, "system.straggler", "set", "null for an mlp (a straggler slows a transformer's kernels)")
    if scenario.model.moe is not None:
        _check_moe_mlp(scenario, where)
        return
    if scenario.system.parallel.expert > 1:
        raise ConfigError(where, "system.parallel.expert", scenario.system.parallel.expert, "1 for an mlp without model.moe")
    if scenario.system.parallel.expert_tensor is not None:
        raise ConfigError(
            where, "system.parallel.expert_tensor", scenario.system.parallel.expert_tensor, "null for an mlp without model.moe"
        )
    system, model = scenario.system, scenario.model
    par = system.parallel
    check_bank(scenario.hardware.memory, "bank", system.bank, scenario.run.mode == "full", where)
    if par.sequence:
        raise ConfigError(where, "system.parallel.sequence", True, "false for an mlp (no sequence to split)")
    if par.pipeline == 1 and par.virtual != 1:
        raise ConfigError(where, "system.parallel.virtual", par.virtual, "1 for an mlp without a pipeline")
    if system.recompute != "none":
        raise ConfigError(where, "system.recompute", system.recompute, "none for an mlp")
    if system.layers_per_stage is not None:
        raise ConfigError(
            where, "system.layers_per_stage", list(system.layers_per_stage), "null for an mlp (stages of whole pairs)"
        )
    if system.fill is not None:
        _check_mlp_fill(scenario, where)
    for key in ("weights", "pipeline", "storage", "hierarchical"):  # an mlp has no weight gathers or pipeline
        if getattr(system.compression, key):
            raise ConfigError(
                where, f"system.compression.{key}", to_plain(getattr(system.compression, key)), "null for an mlp (timing-only)"
            )
    _check_compression(system, where)
    if system.optimizer == "sharded" and par.pipeline == 1:
        raise ConfigError(where, "system.optimizer", system.optimizer, "allreduce or distributed for an mlp without a pipeline")
    t, p, d = par.tensor, par.pipeline, par.data
    npus = fabric_npus(scenario.hardware.network, t * p * d)
    if npus != t * p * d:
        raise ConfigError(where, "system.parallel", f"tensor {t} x pipeline {p} x data {d}", f"the fabric's {npus} NPUs")
    widths = (*model.hidden, model.classes)
    for li, role in enumerate(roles(len(widths))):
        if role == "col" and widths[li] % par.tensor:
            raise ConfigError(where, f"model.hidden[{li}]", widths[li], f"a multiple of system.parallel.tensor ({par.tensor})")
    if system.batch % par.data:
        raise ConfigError(where, "system.batch", system.batch, f"a multiple of system.parallel.data ({par.data})")
    if p > 1:
        _check_mlp_pipeline(system, model, where)


def _check_context(scenario: Scenario, where: str) -> None:
    """Context parallelism: a sequence that splits into 2c equal chunks, fused attention (no rank could hold
    the s x s scores the plain attention makes), and the order's axes."""
    system, model = scenario.system, scenario.model
    c = system.parallel.context
    if model.seq_len % (2 * c):
        raise ConfigError(
            where,
            "model.seq_len",
            model.seq_len,
            f"a multiple of 2 x system.parallel.context ({2 * c}): chunks for the causal balance",
        )
    if not system.framework.flash_attention:
        raise ConfigError(
            where,
            "system.framework.flash_attention",
            False,
            "true with context parallelism (its attention runs block by block on chip; a framework such as megatron-core)",
        )
    if system.fill is not None or system.optimizer == "sharded":
        key, value = ("system.fill", "a fill job") if system.fill is not None else ("system.optimizer", "sharded")
        raise ConfigError(where, key, value, "none with context parallelism (not modelled together)")


def _check_framework(scenario: Scenario, where: str) -> None:
    """Switches that need others: userbuffers' overlap needs the backward's (tp_overlap) and, with tensor ranks,
    sequence parallelism (Megatron-core asserts it); the weights' overlapped all-gather the distributed
    optimizer's all-gather."""
    system = scenario.system
    fw = system.framework
    if fw.tp_comm_overlap and not fw.tp_overlap:
        raise ConfigError(where, "system.framework.tp_comm_overlap", True, "false unless system.framework.tp_overlap is true")
    if fw.tp_comm_overlap and system.parallel.tensor > 1 and not system.parallel.sequence:
        raise ConfigError(
            where, "system.framework.tp_comm_overlap", True, "false without sequence parallelism (system.parallel.sequence)"
        )
    if fw.overlap_param_gather and system.optimizer != "distributed":
        raise ConfigError(
            where,
            "system.framework.overlap_param_gather",
            True,
            f"false with optimizer {system.optimizer} (it overlaps the distributed optimizer's all-gather)",
        )


def _check_experts(scenario: Scenario, where: str) -> None:
    """Mixture of experts and latent attention: experts that split over the expert ranks; expert-tensor and
    expert ranks that regroup a stage's tensor, context and data ranks; expert widths that split over the
    expert-tensor ranks; top_k within the experts; measured loads one per expert; tensor parallelism with
    sequence parallelism (each tensor rank routes its own tokens); latent attention with its widths and the
    fused attention kernel."""
    system, model = scenario.system, scenario.model
    par = system.parallel
    e, moe = par.expert, model.moe
    if model.attention == "mla":
        if model.mla is None:
            raise ConfigError(
                where, "model.mla", None, "the latent widths {q_rank, kv_rank, nope_dim, rope_dim, v_dim} with attention: mla"
            )
        if not system.framework.flash_attention:
            raise ConfigError(where, "system.framework.flash_attention", False, "true with attention: mla (hwsim runs it fused)")
    if moe is None:
        if e > 1:
            raise ConfigError(where, "system.parallel.expert", e, "1 for a model without model.moe")
        if par.expert_tensor is not None:
            raise ConfigError(where, "system.parallel.expert_tensor", par.expert_tensor, "null for a model without model.moe")
        return
    if moe.top_k > moe.experts:
        raise ConfigError(where, "model.moe.top_k", moe.top_k, f"at most model.moe.experts ({moe.experts})")
    if moe.experts % e:
        raise ConfigError(where, "model.moe.experts", moe.experts, f"a multiple of system.parallel.expert ({e})")
    et = expert_tensor(par)
    ranks = par.tensor * par.context * par.data
    if ranks % (et * e):
        raise ConfigError(
            where,
            "system.parallel.expert",
            e,
            f"a divisor of tensor x context x data / expert_tensor ({par.tensor} x {par.context} x {par.data} / {et}): "
            "a stage's ranks regroup as expert_tensor x expert x expert data",
        )
    if moe.d_ff_expert % et:
        raise ConfigError(where, "model.moe.d_ff_expert", moe.d_ff_expert, f"a multiple of system.parallel.expert_tensor ({et})")
    if moe.load == "measured" and (moe.fractions is None or len(moe.fractions) != moe.experts):
        got = None if moe.fractions is None else f"{len(moe.fractions)} fractions"
        raise ConfigError(where, "model.moe.fractions", got, f"one share per expert ({moe.experts}) with load: measured")
    if par.tensor > 1 and not par.sequence:
        raise ConfigError(
            where,
            "system.parallel.sequence",
            False,
            "true with tensor parallelism and MoE (each tensor rank routes its s / t tokens)",
        )
    if system.optimizer == "sharded" or system.fill is not None:
        key, value = ("system.fill", "a fill job") if system.fill is not None else ("system.optimizer", "sharded")
        raise ConfigError(where, key, value, "none with MoE (not modelled together)")


def _check_moe_mlp(scenario: Scenario, where: str) -> None:
    """A MoE mlp: one hidden layer, expert ranks that are the data ranks and split the experts and the batch, no
    tensor or pipeline ranks, top_k within the experts."""
    system, model = scenario.system, scenario.model
    par, moe = system.parallel, model.moe
    check_bank(scenario.hardware.memory, "bank", system.bank, scenario.run.mode == "full", where)
    for key, value in (("tensor", par.tensor), ("pipeline", par.pipeline)):
        if value != 1:
            raise ConfigError(where, f"system.parallel.{key}", value, "1 for a MoE mlp (expert ranks only)")
    if par.expert_tensor not in (None, 1):
        raise ConfigError(where, "system.parallel.expert_tensor", par.expert_tensor, "null or 1 for a MoE mlp")
    if par.expert != par.data:
        raise ConfigError(
            where, "system.parallel.expert", par.expert, f"system.parallel.data ({par.data}): every data rank holds experts"
        )
    if len(model.hidden) != 1:
        raise ConfigError(where, "model.hidden", list(model.hidden), "one hidden layer before the MoE layer")
    if moe.top_k > moe.experts:
        raise ConfigError(where, "model.moe.top_k", moe.top_k, f"at most model.moe.experts ({moe.experts})")
    if moe.experts % par.expert:
        raise ConfigError(where, "model.moe.experts", moe.experts, f"a multiple of system.parallel.expert ({par.expert})")
    if system.batch % par.data:
        raise ConfigError(where, "system.batch", system.batch, f"a multiple of system.parallel.data ({par.data})")
    for key in ("weights", "gradients", "pipeline", "storage", "hierarchical"):
        if getattr(system.compression, key):
            raise ConfigError(
                where, f"system.compression.{key}", to_plain(getattr(system.compression, key)), "null for a MoE mlp"
            )
    npus = fabric_npus(scenario.hardware.network, par.data)
    if npus != par.data:
        raise ConfigError(where, "system.parallel", f"data {par.data}", f"the fabric's {npus} NPUs")


def _check_mlp_pipeline(system, model, where: str) -> None:
    """An mlp's pipeline: micro-batches that split each replica's share, a contiguous or looping placement,
    model stages of whole column/row pairs, no compressed all-reduce."""
    par = system.parallel
    if system.batch % (par.data * system.microbatch):
        raise ConfigError(
            where, "system.batch", system.batch, f"a multiple of data x microbatch ({par.data} x {system.microbatch})"
        )
    name, shape = megatron_schedule(system, where)
    layers = len(model.hidden) + 1
    if layers % shape.model_stages:
        raise ConfigError(
            where, "model.hidden", list(model.hidden), f"{shape.model_stages} x k - 1 widths: stages of equal layers"
        )
    per, kinds = layers // shape.model_stages, roles(layers)
    for start in range(per, layers, per):
        if kinds[start] == "row":
            raise ConfigError(
                where,
                "model.hidden",
                list(model.hidden),
                f"stages of whole column/row pairs ({per} layers a stage splits a pair)",
            )
    try:
        build_schedule(name, shape)
    except ScheduleError as err:
        raise ConfigError(where, "system.schedule", name, f"a schedule this layout can run: {err}") from None


def _check_mlp_fill(scenario: Scenario, where: str) -> None:
    """An mlp's fill job: with a pipeline (its bubbles), the real math, an mlp on the same data."""
    system, model, fill = scenario.system, scenario.model, scenario.system.fill
    if system.parallel.pipeline == 1:
        raise ConfigError(where, "system.fill", "a fill job", "null for an mlp without a pipeline (no bubbles to fill)")
    if fill.model.kind != "mlp":
        raise ConfigError(where, "system.fill.model", fill.model.kind, "an mlp (the main job is one)")
    if (fill.model.inputs, fill.model.classes) != (model.inputs, model.classes):
        raise ConfigError(
            where,
            "system.fill.model",
            f"{fill.model.inputs} inputs, {fill.model.classes} classes",
            f"the data's {model.inputs} inputs and {model.classes} classes",
        )
    if scenario.run.mode != "full":
        raise ConfigError(where, "run.mode", scenario.run.mode, "full for an mlp's fill job (it trains on the data)")
    if not fill.resident:
        raise ConfigError(where, "system.fill.resident", False, "true for an mlp's fill job")
    try:
        resolve_filler(fill.policy)
    except FillError as err:
        raise ConfigError(where, "system.fill.policy", fill.policy, str(err)) from None
