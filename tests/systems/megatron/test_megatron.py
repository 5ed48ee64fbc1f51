"""Megatron 3D parallelism: GEMM shapes, Korthikanti's memory and FLOPs, layout, timing against closed forms,
memory from the schedule, bad input."""

from __future__ import annotations

import dataclasses

import numpy as np
import pytest

from hwsim.build import check, simulate
from hwsim.commands.published import BASE, KORTHIKANTI_2022
from hwsim.config.load import load_scenario
from hwsim.config.schema import TransformerSpec
from hwsim.errors import ConfigError
from hwsim.hardware import array_cycles, gemm_cycles, tile_waves, tiled_gemm_cycles
from hwsim.policies import SCHEDULES
from hwsim.systems.megatron.checks import layout
from hwsim.systems.megatron.costs import ADAM_BYTES, GRAD_BYTES, WEIGHT_BYTES, gemm_seconds, optimizer_bytes
from hwsim.workloads.megatron import activation_bytes, block_work, model_flops
from hwsim.workloads.ops import Gemm
from tests.systems.megatron.layouts import SMALL, run, small

GIB = 2**30
GPT3 = TransformerSpec(layers=96, d_model=12288, heads=96, d_ff=49152, vocab=51200, seq_len=2048)

# --- the model -----------------------------------------------------------------------


def test_gpt3_gemm_shapes_per_rank_at_t8_match_hand_counts():
    """GPT-3 175B, t = 8, one sequence: QKV 3h/t = 4608 columns, 96/8 = 12 heads of 128, projection and FC2
    over h/t = 1536 and f/t = 6144 rows."""
    work = block_work(GPT3, 8, 1, False, "none")
    gemms = {k.name: k.gemm for k in work.forward if k.kind == "gemm"}
    assert gemms == {
        "qkv": Gemm(2048, 4608, 12288),
        "scores": Gemm(2048, 2048, 128, 12),
        "context": Gemm(2048, 128, 2048, 12),
        "proj": Gemm(2048, 12288, 1536),
        "fc1": Gemm(2048, 6144, 12288),
        "fc2": Gemm(2048, 12288, 6144),
    }
    # every rank's share times t is the whole block's forward: 24 s h^2 + 4 s^2 h FLOPs
    assert 8 * sum(g.flops for g in gemms.values()) == 2 * (12 * 2048 * 12288**2 + 2 * 2048**2 * 12288)
    weights = {k.name: k.gemm for k in work.weight_grad}
    assert weights["qkv dw"] == Gemm(12288, 4608, 2048) and weights["fc2 dw"] == Gemm(6144, 12288, 2048)


def test_collectives_per_block_tensor_and_sequence_parallel():
    """Tensor parallel: 2 all-reduces forward, 2 backward. Sequence parallel: all-gather + reduce-scatter
    pairs forward, and in backward the conjugates plus the gathers again for the weight gradients."""

    def kinds(work, part):
        return [k.kind for k in getattr(work, part) if k.kind not in ("gemm", "memory")]

    tp = block_work(GPT3, 8, 1, False, "none")
    assert kinds(tp, "forward") == ["all_reduce", "all_reduce"] and kinds(tp, "input_grad") == ["all_reduce", "all_reduce"]
    sp = block_work(GPT3, 8, 1, True, "none")
    assert sorted(kinds(sp, "forward")) == ["all_gather"] * 2 + ["reduce_scatter"] * 2
    assert sorted(kinds(sp, "input_grad")) == ["all_gather"] * 4 + ["reduce_scatter"] * 2
    assert kinds(block_work(GPT3, 1, 1, False, "none"), "forward") == []
    full = block_work(GPT3, 8, 1, True, "full")
    assert full.recompute == full.forward
    selective = [k.name for k in block_work(GPT3, 8, 1, True, "selective").recompute]
    assert selective == ["scores", "softmax", "attention dropout", "context", "context permute"]


@pytest.mark.parametrize("row", KORTHIKANTI_2022, ids=lambda r: r.model)
def test_korthikanti_activation_formulas_reproduce_figure_1(row):
    """Per-block bytes x blocks x the interleaved schedule's 1 + (p - 1)/(p v) reproduce Figure 1 to its
    two decimals."""
    m = load_scenario(BASE, [f"model={row.model}"]).model
    factor = 1 + (row.pipeline - 1) / (row.pipeline * row.virtual) if row.virtual > 1 else 1
    none = activation_bytes(m, 8, 1 if row.microbatch == 1 else row.microbatch, False, "none") * m.layers * factor / GIB
    selective = activation_bytes(m, 8, row.microbatch, True, "selective") * m.layers * factor / GIB
    assert none == pytest.approx(row.activations_gib, abs=0.006)
    assert selective == pytest.approx(row.selective_gib, abs=0.006)
    states = 12 * m.layers * m.d_model**2 / (row.tensor * row.pipeline) * (WEIGHT_BYTES + GRAD_BYTES + ADAM_BYTES) / GIB
    assert states == pytest.approx(row.states_gib, abs=0.006)


def test_activation_bytes_cases():
    s, b, h, a = 2048, 2, 12288, 96
    sbh = s * b * h
    assert activation_bytes(GPT3, 1, b, False, "none") == pytest.approx(sbh * (34 + 5 * a * s / h))
    assert activation_bytes(GPT3, 8, b, False, "none") == pytest.approx(sbh * (10 + 24 / 8 + 5 * a * s / (h * 8)))
    assert activation_bytes(GPT3, 8, b, True, "none") == pytest.approx(sbh * (34 + 5 * a * s / h) / 8)
    assert activation_bytes(GPT3, 8, b, True, "selective") == pytest.approx(sbh * 34 / 8)
    assert activation_bytes(GPT3, 8, b, False, "full") == 2 * sbh
    assert activation_bytes(GPT3, 8, b, True, "full") == 2 * sbh / 8


def test_model_flops_is_korthikantis_formula():
    """72 B s l h^2 (1 + s/(6h) + V/(12 l h)) with f = 4h (their §6)."""
    batch, s, layers, h, vocab = 64, 2048, 96, 12288, 51200
    expected = 72 * batch * s * layers * h * h * (1 + s / (6 * h) + vocab / (12 * layers * h))
    assert model_flops(GPT3, batch) == pytest.approx(expected, rel=1e-12)


# --- the tensor-core cycle model -----------------------------------------------------


def test_tiled_gemm_is_waves_of_tiles():
    # 4 tiles on 4 groups: one wave, each a (128, 128/4, k) output-stationary GEMM on a 16 x 8 array
    one = gemm_cycles(128, 32, 1024, 16, 8, "output_stationary", 2)
    assert tiled_gemm_cycles(256, 256, 1024, 1, 16, 8, 2, 16, 4, (128, 128)) == one
    # a fifth tile (one row more) is a second wave; a partial tile costs a whole one
    assert tiled_gemm_cycles(257, 256, 1024, 1, 16, 8, 2, 16, 4, (128, 128)) == 2 * one
    assert tiled_gemm_cycles(128, 128, 1024, 5, 16, 8, 2, 16, 4, (128, 128)) == 2 * one
    # the fold model inside: (128/16) x (32/8) folds of R + C + k/2 - 2 cycles
    assert one == 8 * 4 * (16 + 8 + 512 - 2)


def test_gpu_presets_peaks_are_the_datasheets():
    s = load_scenario(BASE).hardware.systolic
    peak = 2 * s.rows * s.cols * s.arrays * s.macs_per_cycle.fp16 * s.boost_clock
    assert peak == pytest.approx(312e12, rel=0.001)
    h = load_scenario(BASE, ["hardware=h100_sxm"]).hardware.systolic
    assert 2 * h.rows * h.cols * h.arrays * h.macs_per_cycle.bf16 * h.clock == pytest.approx(989.4e12, rel=0.001)


@pytest.mark.parametrize(
    "hardware, mamf, shape",
    [("a100_80gb", 271.2e12, (1024, 10240, 5120)), ("h100_sxm", 794.5e12, (2048, 2048, 13312))],
)
def test_gpu_presets_reach_the_measured_matmul_peak(hardware, mamf, shape):
    """Each preset's tensor-core efficiency makes hwsim's GEMM time give the measured maximum achievable
    matmul FLOPS (Bekman, ml-engineering: A100 SXM 271.2, H100 SXM 794.5 TFLOP/s bf16) at the measurement's
    best shape."""
    hw = load_scenario(BASE, [f"hardware={hardware}"]).hardware
    m, n, k = shape
    seconds = gemm_seconds(hw.systolic, hw.memory["hbm"], Gemm(m, n, k), "bf16")
    assert 2 * m * n * k / seconds == pytest.approx(mamf, rel=0.01)


def test_gemm_time_is_cycles_plus_each_waves_prologue_and_epilogue():
    """A GEMM on a GPU's tensor cores: its cycles, plus one bank latency per wave and its outputs stored at
    the bank's rate (out_bytes per element: 8 for a weight gradient added into the fp32 main_grad). The
    attention's scores (k = h/a = 128) spend more on their s x s outputs than on their MACs."""
    hw = load_scenario(BASE).hardware
    array, bank = hw.systolic, hw.memory["hbm"]
    fc1, scores = Gemm(2048, 6144, 12288), Gemm(2048, 2048, 128, 12)  # 175B at t = 8
    assert tile_waves(array, fc1.m, fc1.n) == 8  # 16 x 48 tiles on 108 SMs
    assert tile_waves(array, scores.m, scores.n, scores.count) == 29  # 12 x 16 x 16 tiles
    for g, waves, out in ((fc1, 8, 2), (fc1, 8, 8), (scores, 29, 2)):
        cycles = array_cycles(array, g.m, g.n, g.k, "fp16", g.count) / array.clock
        stores = g.count * g.m * g.n * out / bank.rate
        assert gemm_seconds(array, bank, g, "fp16", out) == pytest.approx(cycles + waves * bank.latency + stores, rel=1e-12)
    score_cycles = array_cycles(array, 2048, 2048, 128, "fp16", 12) / array.clock
    assert gemm_seconds(array, bank, scores, "fp16") > 1.9 * score_cycles
    weight_grads = block_work(GPT3, 8, 1, True, "selective").weight_grad
    assert [k.out_bytes for k in weight_grads] == [8, 8, 8, 8]


def test_measured_efficiencies_scale_the_rates(write_yaml):
    """The arrays issue on `efficiency` of their cycles; a bank moves bandwidth x efficiency; a fabric
    dimension's links run at bandwidth x efficiency (the ring all-gather's closed form at half the rate)."""
    hw = load_scenario(BASE).hardware
    ideal = dataclasses.replace(hw.systolic, efficiency=1.0)
    half = dataclasses.replace(hw.systolic, efficiency=0.5)
    assert array_cycles(half, 4096, 4096, 4096, "fp16") == 2 * array_cycles(ideal, 4096, 4096, 4096, "fp16")
    assert hw.memory["hbm"].rate == pytest.approx(hw.memory["hbm"].efficiency * 2039e9)
    outcome, _ = run(small(write_yaml, t=8, sp="true", eff=0.5))
    nbytes = 256 * 512 * 2
    got = outcome.system.timer.seconds("all_gather", tuple(range(8)), nbytes)
    assert got == pytest.approx(7 * (2e-6 + nbytes / 8 / 150e9), rel=1e-9)


# --- layout and placement ------------------------------------------------------------


@pytest.mark.parametrize("order", ["tpd", "tdp", "ptd", "pdt", "dtp", "dpt"])
def test_layout_is_a_bijection_with_the_first_axis_fastest(order):
    from hwsim.config.schema import ParallelSpec

    par = ParallelSpec(tensor=2, pipeline=3, data=4, order=order)
    place = layout(par)
    assert sorted(place.values()) == list(range(24))
    first = {"t": (1, 0, 0), "p": (0, 1, 0), "d": (0, 0, 1)}[order[0]]
    assert place[first] == 1


def test_tensor_groups_sit_in_the_first_dimension_by_default(write_yaml):
    _, out = run(small(write_yaml, t=8, p=2, d=2, batch=8))
    assert out["placement"]["tensor"].endswith("(dimension 1)")
    assert out["placement"]["pipeline"].endswith("(dimension 2)")


# --- timing against closed forms -----------------------------------------------------


def test_one_stage_step_is_the_sum_of_its_parts(write_yaml):
    """p = d = 1: the step is L (F + B) per micro-batch plus the optimizer, and the breakdown sums to it."""
    outcome, out = run(small(write_yaml, t=8, batch=4, recompute="full"))
    system = outcome.system
    f, b = system.ops["F"][0], system.ops["B"][0]
    per_mb = f["work"].total_s + b["work"].total_s + b["recompute"].total_s
    assert out["step_s"] == pytest.approx(4 * per_mb + out["breakdown"]["optimizer_s"], rel=1e-12)
    assert sum(out["breakdown"].values()) == pytest.approx(out["step_s"], rel=1e-12)
    assert out["breakdown"]["bubble_s"] == pytest.approx(0.0, abs=1e-12)
    assert out["breakdown"]["recompute_s"] > 0


def test_tensor_all_gather_is_the_ring_closed_form(write_yaml):
    """Sequence parallel all-gather of B bytes over t ranks on one switch, ideal links: (t - 1) steps of
    2 hops' latency + (B/t) / bandwidth."""
    outcome, _ = run(small(write_yaml, t=8, sp="true"))
    nbytes = 256 * 512 * 2
    got = outcome.system.timer.seconds("all_gather", tuple(range(8)), nbytes)
    assert got == pytest.approx(7 * (2e-6 + nbytes / 8 / 300e9), rel=1e-9)


@pytest.mark.parametrize("optimizer", ["allreduce", "distributed"])
def test_data_parallel_reduction_is_the_ring_closed_form(write_yaml, optimizer):
    """d = 4 replicas across the scale-out switch (t = 8 fills a node): a ring all-reduce of the fp32
    gradients, 2 (d - 1) steps; distributed: a reduce-scatter and an all-gather of the 16-bit weights."""
    outcome, out = run(small(write_yaml, t=8, d=4, batch=8, optimizer=optimizer))
    params = outcome.system.params[0]
    step = 2 * 2e-6  # two InfiniBand hops

    def ring(steps, nbytes):
        return steps * (step + nbytes / 4 / 25e9)

    if optimizer == "allreduce":
        expected = ring(6, params * GRAD_BYTES)
    else:
        expected = ring(3, params * GRAD_BYTES) + ring(3, params * WEIGHT_BYTES)
    assert out["breakdown"]["data_comm_s"] == pytest.approx(expected, rel=1e-9)
    assert out["placement"]["data"].endswith("(dimension 2)")


@pytest.mark.parametrize("sp", ["true", "false"])
def test_pipeline_sends_block_the_sender(write_yaml, sp):
    """p = 2, m = 4: each device sends 4 activations (or gradients), each rank 1/t of the tensor over the
    scale-out switch (Megatron's scatter-gather; without sequence parallelism the receiver all-gathers), and
    waits for each as Megatron's synchronised point-to-point calls do."""
    outcome, out = run(small(write_yaml, t=8, p=2, batch=4, sp=sp))
    system = outcome.system
    nbytes = 256 * 512 * 2  # s b h 16-bit
    a, b = system.place[(0, 0, 0)], system.place[(0, 1, 0)]
    gather = 0.0 if sp == "true" else system.timer.seconds("all_gather", system.group("tensor", 0, 0), nbytes)
    transfer = system.cluster.unloaded(a, b, nbytes / 8) + gather
    assert transfer > 2 * 2e-6
    for device in out["devices"]:
        assert device["pipeline_comm_s"] == pytest.approx(4 * transfer, rel=1e-12)


def test_first_and_last_stage_all_reduce_the_tied_embedding(write_yaml):
    """p = 2: after the backward the two stages all-reduce the word embedding's fp32 gradient (V/t rows of h)
    across the scale-out switch, a 2-NPU ring: 2 steps of two hops' latency + half the bytes / bandwidth; the
    stage that gets there first waits for the other, and the breakdown still sums to the step."""
    outcome, out = run(small(write_yaml, t=8, p=2, batch=4))
    nbytes = 1024 / 8 * 512 * 4
    assert outcome.system.tied_s == pytest.approx(2 * (2 * 2e-6 + nbytes / 2 / 25e9), rel=1e-9)
    first, last = out["devices"]
    assert min(first["data_comm_s"], last["data_comm_s"]) == pytest.approx(outcome.system.tied_s, rel=1e-9)
    for device in out["devices"]:
        parts = sum(device[k] for k in out["breakdown"])
        assert parts == pytest.approx(device["end_s"], rel=1e-9)


@pytest.mark.parametrize("precision, per_param", [("fp16", 4 + 8 + 4 + 28 + 6), ("bf16", 4 + 4 + 28 + 6)])
def test_optimizer_step_moves_megatrons_bytes(write_yaml, precision, per_param):
    """The optimizer step at the bank's achieved rate: zero the fp32 gradients, (fp16) unscale and check them,
    the gradient norm, Adam, the copy into the 16-bit weights."""
    assert sum(optimizer_bytes(precision)) == per_param
    outcome, out = run(small(write_yaml, t=8, batch=4, more=[f"system.precision={precision}"]))
    rate = outcome.system.hardware.memory["hbm"].rate
    assert out["breakdown"]["optimizer_s"] == pytest.approx(outcome.system.params[0] * per_param / rate, rel=1e-12)


def test_pipeline_bubble_and_interleaved_activation_peak(write_yaml):
    """p = 4, v = 2, m = 8: device 0 holds Megatron's interleaved peak, (v - 1) p + 2 (p - 1) + 1 chunks
    of micro-batches, = L (1 + (p - 1)/(p v)) blocks' worth (Korthikanti et al.)."""
    outcome, out = run(small(write_yaml, t=8, p=4, v=2, batch=8))
    per_block = activation_bytes(outcome.system.model, 8, 1, False, "none")
    peak = out["memory"][0]["activations_bytes"]
    assert peak == pytest.approx(16 * (1 + 3 / 8) * per_block, rel=1e-9)
    assert out["breakdown"]["bubble_s"] > 0
    plain, _ = run(small(write_yaml, t=8, p=4, v=1, batch=8))
    assert plain.system.summary(plain.trace)["megatron"]["memory"][0]["activations_bytes"] == pytest.approx(
        16 * per_block, rel=1e-9
    )


def test_recompute_and_sequence_parallelism_trade_time_for_memory(write_yaml):
    results = {}
    for recompute, sp in (("none", "false"), ("selective", "true"), ("full", "false")):
        _, out = run(small(write_yaml, t=8, p=2, batch=8, recompute=recompute, sp=sp))
        results[recompute] = (out["step_s"], out["memory"][0]["activations_bytes"], out["hfu"] - out["mfu"])
    assert results["full"][0] > results["none"][0]
    assert results["full"][1] < results["selective"][1] < results["none"][1]
    assert results["none"][2] == pytest.approx(0.0, abs=1e-12) and results["full"][2] > results["selective"][2] > 0


def test_deterministic(write_yaml):
    a = run(small(write_yaml, t=8, p=2, d=2, batch=8))[1]
    b = run(small(write_yaml, t=8, p=2, d=2, batch=8))[1]
    assert a["step_s"] == b["step_s"] and a["memory"] == b["memory"]


def test_out_of_memory_names_the_breakdown(write_yaml):
    scenario = small(write_yaml, t=8, p=1, batch=64)
    from dataclasses import replace

    bank = replace(scenario.hardware.memory["hbm"], capacity=60e6)
    scenario = replace(scenario, hardware=replace(scenario.hardware, memory={"hbm": bank}))
    outcome = simulate(scenario)
    assert outcome.status == "out_of_memory"
    for word in ("weights", "gradients", "optimizer", "activations"):
        assert word in outcome.diagnosis


@pytest.mark.parametrize(
    ("capacity", "says"),
    [
        (1e6, "allocating weights ({w}) with nothing else held"),  # the first buffer does not fit
        ("weights + 1", "allocating gradients ({g}) on top of weights {w}, activations 0 B"),  # not of gradients too
    ],
)
def test_out_of_memory_counts_each_buffer_once(write_yaml, capacity, says):
    from dataclasses import replace

    from hwsim.config.units import format_quantity

    scenario = small(write_yaml, t=8, p=1, batch=64)
    first = simulate(scenario).system.static[0]
    if capacity == "weights + 1":
        capacity = first.weights + 1
    bank = replace(scenario.hardware.memory["hbm"], capacity=capacity)
    outcome = simulate(replace(scenario, hardware=replace(scenario.hardware, memory={"hbm": bank})))
    assert outcome.status == "out_of_memory"
    q = lambda x: format_quantity(x, "size")  # noqa: E731
    assert says.format(w=q(first.weights), g=q(first.gradients)) in outcome.diagnosis
    assert outcome.diagnosis.count("weights") == 1 and "optimizer" not in outcome.diagnosis  # only what is held


# --- bad input ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kw", "key"),
    [
        ({"t": 16}, "model.heads"),
        ({"t": 8, "p": 3}, "model.layers"),
        ({"t": 8, "d": 2, "batch": 3}, "system.batch"),
        ({"t": 8, "d": 2, "mb": 2, "batch": 6}, "system.batch"),
    ],
)
def test_bad_layouts_get_one_clear_error(write_yaml, kw, key):
    with pytest.raises(ConfigError) as err:
        small(write_yaml, **kw)
    assert err.value.key == key


def _fabric_error(write_yaml, old: str, new: str) -> ConfigError:
    """The error of the small 8-NPU layout on a fabric edited by replacing `old` with `new`."""
    text = SMALL.format(
        model="ideal", t=8, p=1, d=1, v=1, sp="false", batch=8, mb=1, recompute="none", optimizer="allreduce", eff=1
    )
    path = write_yaml(text.replace(old, new))
    with pytest.raises(ConfigError) as err:
        check(load_scenario(path), str(path))
    return err.value


def test_layout_must_fill_the_fabric(write_yaml):
    err = _fabric_error(write_yaml, "size: 0", "size: 2")
    assert err.key == "system.parallel" and "16 NPUs" in str(err)


def test_interleaving_needs_microbatches_in_multiples_of_p(write_yaml):
    with pytest.raises(ConfigError) as err:
        small(write_yaml, t=8, p=4, v=2, batch=6)
    assert err.value.key == "system.parallel.virtual"


def test_size_zero_only_in_the_last_dimension(write_yaml):
    assert _fabric_error(write_yaml, "size: 8", "size: 0").key == "hardware.network.dims[0].size"


# --- real math: tensor and data parallelism on an MLP ----------------------------------

MLP = """
name: megatron_mlp_test
seed: 3
hardware:
  base: datacenter_npu
  network: {{kind: switch, bandwidth: 100 Gb/s, latency: 1 us}}
model: {{kind: mlp, inputs: 64, hidden: [{hidden}], classes: 10}}
system: {system}
run: {{mode: full, eval_every: 10}}
report: {{plots: false, trace: false, html: false}}
"""


def _mlp_run(write_yaml, system: str, hidden: str = "32, 16"):
    path = write_yaml(MLP.format(system=system, hidden=hidden))
    scenario = load_scenario(path)
    check(scenario, str(path))
    outcome = simulate(scenario)
    assert outcome.status == "ok", outcome.diagnosis
    return outcome.system.final_params()


@pytest.mark.parametrize("hidden", ["32, 16", "32, 16, 8"])  # a last layer held whole; two split pairs
@pytest.mark.parametrize(("t", "d"), [(2, 2), (4, 1), (1, 4)])
def test_tensor_and_data_parallel_mlp_trains_as_one_device(write_yaml, t, d, hidden):
    """Column- and row-split layers with real all-reduces, data-parallel gradient all-reduces: after 12 steps of
    SGD + momentum the gathered weights equal one device's with the whole batch, to float32 rounding."""
    common = "batch: 32, steps: 12, lr: 0.1, momentum: 0.9, bank: working"
    one = _mlp_run(write_yaml, f"{{kind: data_parallel, replicas: 1, {common}}}", hidden)
    split = _mlp_run(write_yaml, f"{{kind: megatron, parallel: {{tensor: {t}, data: {d}}}, {common}}}", hidden)
    assert len(split) == len(one)
    for (w, b), (w1, b1) in zip(split, one, strict=True):
        assert w.shape == w1.shape and b.shape == b1.shape
        np.testing.assert_allclose(w, w1, rtol=1e-5, atol=1e-6)  # measured: at most 6e-8 apart
        np.testing.assert_allclose(b, b1, rtol=1e-5, atol=1e-6)
    start = _mlp_run(write_yaml, "{kind: data_parallel, replicas: 1, batch: 32, steps: 1, lr: 1.0e-9, bank: working}", hidden)
    assert max(float(np.abs(w - w0).max()) for (w, _), (w0, _) in zip(split, start, strict=True)) > 1e-3  # it trained


def test_mlp_widths_must_split_evenly(write_yaml):
    path = write_yaml(MLP.format(system="{kind: megatron, parallel: {tensor: 3}, batch: 30, bank: working}", hidden="32, 16"))
    with pytest.raises(ConfigError) as err:
        check(load_scenario(path), str(path))
    assert err.value.key == "model.hidden[0]"


def test_published_suite_compares_predicted_with_published(tmp_path):
    """The 22B rows of Korthikanti's table and BLOOM's row of `hwsim validate published`: times and memory with
    errors computed against the published numbers, the per-table summary, the trend with scale and the goals."""
    from hwsim.commands.published import BLOOM_2022, goals_met, published, report, trends

    times, memory = published(rows=KORTHIKANTI_2022[:1], measured=BLOOM_2022)
    assert list(times.row) == ["megatron_22b, full recompute", "megatron_22b, sequence + selective", "384 GPUs, batch 2048"]
    assert (times.published_s == [1.42, 1.10, 105.22]).all() and list(times.gpus) == [8, 8, 384]
    assert list(times.layout) == ["t8 p1 v1 d1", "t8 p1 v1 d1", "t4 p12 v1 d8"]
    assert times.error.tolist() == pytest.approx((times.predicted_s / times.published_s - 1).tolist())
    assert (times.predicted_s > 0).all() and times.mfu.between(0, 1).all() and (times.hfu >= times.mfu).all()
    assert (memory.error.abs() <= 0.05).all(), memory
    trend = trends(times)
    assert trend["gpus"] == pytest.approx(np.corrcoef(np.log2(times.gpus), times.error)[0, 1])
    text = report(times, memory, tmp_path)
    worst = 100 * times.error.abs().max()
    assert f"time: worst |error| {worst:.1f} % (goal 5 %: {'met' if worst <= 5 else 'NOT met'})" in text
    assert "trend with scale: correlation of the error with log2 GPUs" in text and "Per table" in text
    assert goals_met(times, memory) == (worst <= 5 and times.error.abs().mean() <= 0.025)
    assert (tmp_path / "published_times.csv").is_file() and (tmp_path / "published.md").is_file()


def test_published_rows_stay_where_they_were_measured():
    """Every Korthikanti row, MegaScale's smallest and largest, and BLOOM (16 timing-only runs): what
    `hwsim validate published` measured when this test was written (README), held so a change that moves
    them shows: Korthikanti within 6 % each and 3 % on average (measured: worst 5.4 %, mean 2.6 %),
    MegaScale within 7 % (6.0 %, 4.7 %), BLOOM within 16 % (14.5 % fast), memory within 5 %. The issue's
    goals (5 % each, 2.5 % mean over every row) are not met: the command says so and exits 1."""
    from hwsim.commands.published import BLOOM_2022, MEGASCALE_2024, published

    times, memory = published(measured=(MEGASCALE_2024[0], MEGASCALE_2024[-1], *BLOOM_2022))
    errors = times.set_index("row").error
    korthikanti = times[times.table.str.startswith("Korthikanti")].error.abs()
    assert len(korthikanti) == 8 and korthikanti.max() <= 0.06 and korthikanti.mean() <= 0.03, times[["row", "error"]]
    assert errors[["256 GPUs, batch 768", "12,288 GPUs, batch 6144"]].abs().max() <= 0.07, errors
    assert -0.16 <= errors["384 GPUs, batch 2048"] < 0, errors
    assert memory.error.abs().max() <= 0.05, memory


def test_trace_shows_every_tensor_rank_of_a_stage_side_by_side(write_yaml, tmp_path):
    """With report.trace, ranks 1..t-1 of each stage get tracks (kind mirror) that repeat rank 0's first step,
    so Perfetto shows a stage's tensor ranks on adjacent tracks; they stay out of the FLOP totals."""
    from dataclasses import replace

    from hwsim.trace.chrome import to_chrome

    scenario = small(write_yaml, t=4, p=2, batch=4)
    scenario = replace(scenario, report=replace(scenario.report, trace=True))
    outcome, out = run(scenario)
    units = outcome.trace.units
    assert sorted(units[units.kind == "mirror"].device.unique()) == [f"t{i}.p{j}.d0" for i in range(1, 4) for j in range(2)]
    busy = outcome.trace.busy
    own = busy[busy.unit == "t0.p1.d0.systolic"][["label", "start_s", "end_s"]].reset_index(drop=True)
    mirrored = busy[busy.unit == "t3.p1.d0.systolic"][["label", "start_s", "end_s"]].reset_index(drop=True)
    assert own.equals(mirrored) and len(own) == 2 * 4 * 1  # F and B of 4 micro-batches on its one stage
    names = [e["args"]["name"] for e in to_chrome(outcome.trace)["traceEvents"] if e.get("name") == "process_name"]
    assert {"t0.p0.d0", "t1.p0.d0", "t2.p0.d0", "t3.p0.d0"} <= set(names)
    plain = small(write_yaml, t=4, p=2, batch=4)
    assert run(plain)[1]["mfu"] == out["mfu"]


# --- what the report shows -------------------------------------------------------------


def test_every_link_carries_what_every_rank_of_its_groups_sends(write_yaml):
    """One rank per group is simulated; the links get every rank's traffic. t = 4 ranks in a ring on the
    node's switch: each uplink carries its rank's tensor-parallel bytes plus its data-parallel ring's; the
    sum over all NPUs' uplinks is what `bytes_moved.network` says they sent; each communication track
    reports the bytes its rank sent, within the bandwidth of its path."""
    import hwsim

    sc = small(write_yaml, model="flow", t=4, p=2, d=2, sp="true", batch=8, mb=1, optimizer="distributed")
    sc = dataclasses.replace(sc, system=dataclasses.replace(sc.system, precision="fp16"))
    r = hwsim.run(sc)
    assert r.status == "ok", r.diagnosis
    links, units = r.links, r.utilization.set_index("unit")
    system = r.outcome.system
    up = links[links.src.str.fullmatch(r"t\d\.p\d\.d\d") & links.link.str.contains("nic0")]
    assert len(up) == 16 and (up.bytes > 0).all() and links.mirrored.any()
    every = links[links.link.str.endswith(".up") & links.src.isin(up.src)]  # each byte leaves an NPU once
    assert every.bytes.sum() == pytest.approx(r.summary["bytes_moved"]["network"], rel=1e-9)
    # the tensor ranks of stage 0 of replica 1 (not simulated) carry what stage 0 of replica 0 does on its node
    ranks = up.set_index("src").bytes
    assert ranks["t1.p0.d1"] == pytest.approx(ranks["t1.p0.d0"], rel=1e-12)
    tensor = units.loc["t0.p0.d0.tensor_comm"]
    assert tensor.work == pytest.approx(system.traffic.tensor[0], rel=1e-12) and tensor.work > 0
    assert 0 < tensor.achieved_fraction <= 1
    assert units.loc["t0.p0.d0.hbm"].work > 0 and units.loc["t0.p0.d0.data_comm"].work > 0
    assert r.banks.set_index("bank").precision["t0.p0.d0.hbm"] == "fp16"  # the run's precision, not the preset's
    assert (units[units.kind == "systolic"].achieved_fraction <= 1).all()
    assert r.plot_fabric() is not None


def test_with_one_replica_the_data_track_is_rated_by_the_tied_embeddings_path(write_yaml):
    """One replica: the first and last stage's data tracks carry the tied embedding's all-reduce, against the
    bandwidth of the path between them (a rate, never an infinite share of a zero peak)."""
    import hwsim

    r = hwsim.run(small(write_yaml, model="flow", t=4, p=2, d=1, batch=4))
    data = r.utilization[r.utilization.unit.str.endswith("data_comm")]
    assert (data.work > 0).all() and (data.peak_per_s > 0).all() and (data.achieved_fraction <= 1).all()


# --- every schedule of the library on the 3D system ---------------------------------------


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_every_schedule_runs_on_a_3d_layout_and_passes_validate(write_yaml, schedule):
    """t = 2, p = 4, d = 1 (8 NPUs: one node), 8 micro-batches: each schedule of the library runs as the 3D
    system's pipeline (two chunks per device where its placement needs them), every op once, in the
    schedule's order, after its inputs, with the peak of micro-batches its formula gives."""
    from hwsim.commands.validate import validate

    v = 2 if SCHEDULES[schedule].placement in ("looping", "vshape", "dual") else 1
    sc = small(write_yaml, t=2, p=4, d=1, v=v, batch=8, more=[f"system.schedule={schedule}"])
    checks = validate(sc)
    failed = [c for c in checks if c.result == "FAIL"]
    assert not failed, failed
    passed = {c.name for c in checks if c.result == "PASS"}
    assert "simulation: devices ran the schedule's order" in passed and "schedule: runs without deadlock" in passed


def test_the_default_schedule_is_megatrons_own(write_yaml):
    outcome, m = run(small(write_yaml, t=2, p=4, d=1, v=2, batch=8))
    assert m["schedule"] == "interleaved" and outcome.system.shape.placement == "looping"
    explicit, e = run(small(write_yaml, t=2, p=4, d=1, v=2, batch=8, more=["system.schedule=interleaved"]))
    assert e["step_s"] == m["step_s"]


def test_a_split_backward_moves_the_weight_gradients_into_w_ops(write_yaml):
    """ZB-H1's B + W do the fused backward's work (the same GEMM time per micro-batch and stage), and the
    W ops hold what they need from B to W in the bank."""
    serial = ["system.framework.tp_overlap=false"]  # overlapped, a fused backward's dW GEMMs run slowed
    fused, _ = run(small(write_yaml, t=2, p=4, d=1, batch=8, more=["system.schedule=1f1b", *serial]))
    split, _ = run(small(write_yaml, t=2, p=4, d=1, batch=8, more=["system.schedule=zb_h1", *serial]))

    def gemm(o):  # each device's seconds on its arrays
        busy = o.trace.busy[o.trace.busy.kind == "systolic"]
        return (busy.end_s - busy.start_s).groupby(busy.unit).sum()

    assert gemm(split).to_numpy() == pytest.approx(gemm(fused).to_numpy(), rel=1e-12)
    ops = split.trace.ops
    assert set(ops.op) == {"forward", "backward", "weight"} and (ops.op == "weight").sum() == 4 * 8
    assert split.trace.memory.event.str.startswith("alloc wact").sum() == 4 * 8  # each B's W buffer, until its W


def test_dual_placement_holds_each_devices_two_model_chunks(write_yaml):
    """DualPipe: each device holds two model stages' parameters (its own and the mirror's)."""
    one, m1 = run(small(write_yaml, t=2, p=4, d=1, v=2, batch=8, more=["system.schedule=zb_v"]))
    two, m2 = run(small(write_yaml, t=2, p=4, d=1, v=2, batch=8, more=["system.schedule=dualpipe"]))
    assert m2["memory"][1]["weights_bytes"] == pytest.approx(2 * m1["memory"][1]["weights_bytes"], rel=0.05)


@pytest.mark.parametrize(
    ("more", "v", "p", "key"),
    [
        (["system.schedule=zb_v"], 1, 4, "system.parallel.virtual"),  # V-shape needs 2 chunks per device
        (["system.schedule=dualpipe", "model.layers=12"], 2, 3, "system.schedule"),  # DualPipe needs an even p
        (["system.schedule=zb_v", "system.placement=looping"], 2, 4, "system.placement"),
        (["system.schedule=nosuch"], 1, 4, "system.schedule"),
        (["system.schedule=hybrid", "system.group=3"], 2, 4, "system.group"),
    ],
)
def test_a_schedule_the_layout_cannot_run_is_one_clear_error(write_yaml, more, v, p, key):
    with pytest.raises(ConfigError) as err:
        small(write_yaml, t=8 if p % 2 else 2, p=p, d=1, v=v, batch=8, more=more)
    assert err.value.key == key


def test_overlapped_gradient_reduction_starts_when_a_chunks_last_backward_ends(write_yaml):
    """Layered gradient accumulation: with two chunks per device the first chunk's reduction runs while the
    second computes, so less of it is exposed and the step is shorter; the same bytes cross the data
    track (in two reductions, each paying the ring's latency). With one chunk per device its last backward
    is the device's last op: nothing to overlap."""
    base = dict(t=2, p=2, d=2, batch=16)
    plain, m0 = run(small(write_yaml, v=2, **base))
    over, m1 = run(small(write_yaml, v=2, more=["system.overlap_grad_reduce=true"], **base))
    assert m1["breakdown"]["data_comm_s"] < m0["breakdown"]["data_comm_s"] and m1["step_s"] < m0["step_s"]

    def data_track(o):
        busy = o.trace.busy[o.trace.busy.unit.str.endswith("data_comm")]
        return busy.work.sum(), (busy.end_s - busy.start_s).sum()

    (sent, seconds), (sent0, seconds0) = data_track(over), data_track(plain)
    assert sent == pytest.approx(sent0, rel=1e-12) and seconds >= seconds0  # two reductions: each pays the ring's latency
    starts = over.trace.busy[over.trace.busy.label.str.startswith("chunk")].groupby("unit").start_s.min()
    last_op = over.trace.ops.groupby("device").end_s.max()
    assert (starts.to_numpy() < last_op.to_numpy()).all()  # each device's first chunk reduced before its last op ended
    one, _ = run(small(write_yaml, v=1, **base))
    one_over, _ = run(small(write_yaml, v=1, more=["system.overlap_grad_reduce=true"], **base))
    assert one_over.sim_time_s == pytest.approx(one.sim_time_s, rel=1e-12)
