"""Megatron-core's communication overlaps beyond the backward's: Transformer Engine's userbuffers
(`tp_comm_overlap`), the gradient buckets of `overlap_grad_reduce`, and `overlap_param_gather`."""

from __future__ import annotations

import pytest

from hwsim.build import check, simulate
from hwsim.config.load import PROJECT_ROOT, load_scenario
from hwsim.errors import ConfigError
from hwsim.systems.megatron.system import DDP_BUCKET, DDP_BUCKET_PER_RANK
from hwsim.workloads.megatron import block_work

CORE = PROJECT_ROOT / "scenarios" / "megatron_core_h100.yaml"
# a 16-layer, 2,048-wide GPT on 2 x 4 H100s (p 1): 101M parameters per rank, two 40M buckets
SMALL = (
    "model.layers=16",
    "model.d_model=2048",
    "model.heads=16",
    "model.d_ff=8192",
    "model.vocab=32768",
    "system.parallel.tensor=2",
    "system.parallel.pipeline=1",
    "system.parallel.data=4",
    "system.batch=16",
    "report.plots=false",
    "report.trace=true",
)


def _run(*overrides):
    scenario = load_scenario(CORE, [*SMALL, *overrides])
    check(scenario, str(CORE))
    return simulate(scenario)


def test_userbuffers_put_every_forward_collective_beside_its_gemm():
    """With comm_overlap (and sequence parallelism) the forward's all-gathers sit beside QKV and FC1, its
    reduce-scatters beside the projection and FC2, and the backward's output-gradient all-gathers beside the
    projection's and FC2's input gradients (TE's ring-exchange and pipeline methods); without it, none of
    the forward's; the backward's re-gathers and reductions beside their GEMMs either way (tp_overlap)."""
    m = load_scenario(CORE, list(SMALL)).model

    def beside(work, part):
        return [
            (k.kind, k.beside) for k in getattr(work, part) if k.group == "tensor" and k.kind != "gemm" and k.kind != "memory"
        ]

    on = block_work(m, 2, 1, True, "none", flash=True, comm_overlap=True)
    off = block_work(m, 2, 1, True, "none", flash=True)
    assert beside(on, "forward") == [
        ("all_gather", "qkv"),
        ("reduce_scatter", "proj"),
        ("all_gather", "fc1"),
        ("reduce_scatter", "fc2"),
    ]
    assert all(b == "" for _, b in beside(off, "forward"))
    assert ("all_gather", "proj dx") in beside(on, "input_grad") and ("all_gather", "fc2 dx") in beside(on, "input_grad")
    assert ("all_gather", "qkv dx") in beside(off, "input_grad")  # tp_overlap's re-gather
    assert not any(b == "proj dx" for _, b in beside(off, "input_grad"))
    # without sequence parallelism the switch changes nothing (an all-reduce has no userbuffers overlap)
    assert block_work(m, 2, 1, False, "none", flash=True, comm_overlap=True) == block_work(m, 2, 1, False, "none", flash=True)


def test_userbuffers_hide_the_forwards_collectives():
    """The same job with and without tp_comm_overlap: the forward's exposed tensor communication drops, the
    hidden part grows, and the GEMMs slow by the framework's comm_slowdown while they share the SMs."""
    on = _run("system.framework.tp_comm_overlap=true").system.costs.block["forward"]
    off = _run("system.framework.tp_comm_overlap=false").system.costs.block["forward"]
    assert on.tensor_s < 0.5 * off.tensor_s and on.hidden_s > off.hidden_s and on.gemm_s > off.gemm_s
    assert on.tensor_bytes == off.tensor_bytes


def _spans(outcome, what):
    busy = outcome.trace.busy
    rows = busy[busy.unit.str.endswith("data_comm") & busy.label.str.contains(what)]
    return sorted(zip(rows.start_s, rows.end_s, strict=True))


def _ops(outcome, op):
    ops = outcome.trace.ops
    rows = ops[(ops.op == op) & (ops.device == "d0")]
    return sorted(zip(rows.start_s, rows.end_s, strict=True))


def test_gradient_buckets_reduce_during_the_last_backward():
    """overlap_grad_reduce on one stage: the chunk's gradients go in max(40M, 1M x d) buckets, the first
    reduced while the last backward still runs, each once the backward has done its share; the same bytes as
    one reduction after it."""
    outcome = _run("system.framework.overlap_param_gather=false")
    system = outcome.system
    n = int(system.stage_params[0] // max(DDP_BUCKET, DDP_BUCKET_PER_RANK * 4))
    buckets = _spans(outcome, "chunk 0 bucket")
    assert n >= 2 and len(buckets) == n
    start, end = _ops(outcome, "backward")[-1]
    assert buckets[0][0] == pytest.approx(start + (end - start) / n) and buckets[0][0] < end
    unbucketed = _run("system.framework.overlap_param_gather=false", "system.overlap_grad_reduce=false").system
    assert sum(system.traffic.data) == pytest.approx(sum(unbucketed.traffic.data))


def test_the_weights_all_gather_overlaps_the_next_forwards():
    """overlap_param_gather: the all-gather runs at the step's start (the previous step's, in buckets) beside the
    first forward, which waits for the first bucket to start; the step is shorter than with the gather after the
    optimizer, the bytes the same; with the allreduce optimizer the switch is an error naming it."""
    on, off = _run("system.framework.overlap_param_gather=true"), _run("system.framework.overlap_param_gather=false")
    gathers = _spans(on, "parameter all-gather")
    start, _ = _ops(on, "forward")[0]
    assert len(gathers) >= 2 and gathers[0][0] == 0.0 and start == pytest.approx(gathers[0][1])
    assert gathers[-1][1] > start  # the rest beside the forward
    assert on.sim_time_s < off.sim_time_s
    assert sum(on.system.traffic.data) == pytest.approx(sum(off.system.traffic.data))
    with pytest.raises(ConfigError) as err:
        check(load_scenario(CORE, [*SMALL, "system.optimizer=allreduce"]), str(CORE))
    assert err.value.key == "system.framework.overlap_param_gather"


@pytest.mark.parametrize(
    ("overrides", "expected"),
    [
        (("system.framework.tp_overlap=false",), "tp_overlap"),
        (("system.parallel.sequence=false",), "sequence parallelism"),
    ],
)
def test_userbuffers_need_the_backwards_overlap_and_sequence_parallelism(overrides, expected):
    with pytest.raises(ConfigError) as err:
        check(load_scenario(CORE, [*SMALL, *overrides]), str(CORE))
    assert err.value.key == "system.framework.tp_comm_overlap" and expected in err.value.expected
