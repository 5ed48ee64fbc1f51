"""The 3D cost model's fidelity parts: framework profiles (overlap, gradient fusion, SM sharing), NCCL's
channel rings, collective efficiency by size, GEMM efficiency, uneven stages, and the published tables."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from hwsim.collectives import plan
from hwsim.collectives.executor import run as run_plan
from hwsim.config.load import load_scenario
from hwsim.errors import ConfigError
from hwsim.network.cluster import build_topology, curve_at, size_curves
from hwsim.network.fabric import Fabric
from hwsim.systems.megatron.costs import CollectiveTimer, StageCosts
from hwsim.systems.megatron.traffic import Traffic, channels
from hwsim.workloads.megatron import ACT_BYTES, GRAD_BYTES
from tests.systems.megatron.layouts import run, small

# --- framework profiles ------------------------------------------------------------------------------


def test_a_megatron_scenario_runs_megatron_2022_unless_it_names_another(write_yaml):
    scenario = small(write_yaml)
    fw = scenario.system.framework
    assert (fw.name, fw.tp_overlap, fw.wgrad_fusion, fw.overlap_grad_reduce) == ("megatron-2022", True, True, False)
    old = small(write_yaml, more=["system.framework=megatron-2021"]).system.framework
    assert (old.name, old.tp_overlap, old.wgrad_fusion) == ("megatron-2021", False, False)
    changed = small(write_yaml, more=["system.framework.comm_slowdown=0", "system.framework.kernel_gap=2 us"]).system.framework
    assert changed.name == "megatron-2022" and changed.comm_slowdown == 0 and changed.kernel_gap == pytest.approx(2e-6)
    based = small(write_yaml, more=["system.framework={base: megatron-core, tp_overlap: false}"]).system.framework
    assert (based.name, based.tp_overlap, based.overlap_grad_reduce) == ("megatron-core", False, True)


def test_an_unknown_profile_is_an_error_naming_the_known_ones(write_yaml):
    with pytest.raises(ConfigError) as err:
        small(write_yaml, more=["system.framework=megatron-1999"])
    assert err.value.key == "system.framework" and "megatron-2021" in err.value.expected


def _costs(write_yaml, sequence: bool, **framework) -> StageCosts:
    more = [f"system.framework.{k}={str(v).lower() if isinstance(v, bool) else v}" for k, v in framework.items()]
    scenario = small(write_yaml, t=8, sp=str(sequence).lower(), more=more)
    hw = scenario.hardware
    timer = CollectiveTimer(build_topology(hw, 8), hw.network.model, hw.nic.overhead, size_curves(hw))
    return StageCosts(
        hw,
        "hbm",
        scenario.model,
        tuple(range(8)),
        timer,
        microbatch=1,
        sequence=sequence,
        recompute="none",
        precision="bf16",
        framework=scenario.system.framework,
    )


@pytest.mark.parametrize("sequence", [False, True])
@pytest.mark.parametrize("slowdown", [0.0, 0.189, 1.0])
def test_overlap_runs_each_collective_beside_its_gemm(write_yaml, sequence, slowdown):
    """With tp_overlap each column-parallel layer's re-gather and input-gradient reduction run beside their
    GEMMs: a fused backward takes, per pair, max(c, g + slowdown min(c, g)) instead of c + g; the forward
    and a split backward's reduction (its weight gradient is in W) stay serial."""
    serial = _costs(write_yaml, sequence, tp_overlap=False, comm_slowdown=slowdown)
    over = _costs(write_yaml, sequence, tp_overlap=True, comm_slowdown=slowdown)
    timer, group = serial.timer, serial.group
    gemm = {k.name: serial._gemm(k.gemm, k.out_bytes).gemm_s for k in serial.work.backward if k.kind == "gemm"}
    saved = 0.0
    pairs = [k for k in serial.work.backward if k.beside]
    assert len(pairs) == (4 if sequence else 2)  # qkv and fc1: (re-gather,) reduction
    for k in pairs:
        c, g = timer.seconds(k.kind, group, k.bytes), gemm[k.beside]
        saved += c + g - max(c, g + slowdown * min(c, g))
    assert over.block["backward"].total_s == pytest.approx(serial.block["backward"].total_s - saved, rel=1e-12)
    assert over.block["backward"].hidden_s > 0 and serial.block["backward"].hidden_s == 0
    assert over.block["forward"].total_s == pytest.approx(serial.block["forward"].total_s, rel=1e-12)
    assert over.block["backward"].tensor_bytes == pytest.approx(serial.block["backward"].tensor_bytes)
    regather = [k for k in pairs if k.name == "re-gather"]
    alone = sum(timer.seconds(k.kind, group, k.bytes) + gemm[k.beside] for k in regather)
    beside = sum(
        max(c, g + slowdown * min(c, g)) for c, g in ((timer.seconds(k.kind, group, k.bytes), gemm[k.beside]) for k in regather)
    )
    assert over.block["input_grad"].total_s == pytest.approx(serial.block["input_grad"].total_s - alone + beside, rel=1e-12)


def test_without_gradient_fusion_a_kernel_adds_each_weight_gradient_into_main_grad(write_yaml):
    fused = _costs(write_yaml, False, wgrad_fusion=True)
    apart = _costs(write_yaml, False, wgrad_fusion=False)
    weights = sum(k.gemm.m * k.gemm.n for k in fused.work.weight_grad)  # a dW GEMM's output: the weight
    extra = apart.block["weight_grad"].memory_bytes - fused.block["weight_grad"].memory_bytes
    assert extra == pytest.approx(weights * (ACT_BYTES + 2 * GRAD_BYTES))
    assert [k.out_bytes for k in apart.work.weight_grad if k.kind == "gemm"] == [ACT_BYTES] * 4


def test_kernel_gaps_add_per_kernel(write_yaml):
    none = _costs(write_yaml, True, kernel_gap="0 s")
    gaps = _costs(write_yaml, True, kernel_gap="3 us")
    n = len(none.work.forward)
    assert gaps.block["forward"].total_s - none.block["forward"].total_s == pytest.approx(n * 3e-6)


def test_profiles_change_the_step_as_their_switches_say(write_yaml):
    """On t=8 with sequence parallelism: overlap makes the 2022 step shorter than the same without it, and
    megatron-core reduces gradients during the backward (less exposed data-parallel time)."""
    base = ["system.framework.gemm_efficiency=1"]
    _, on = run(small(write_yaml, t=8, sp="true", more=base))
    _, off = run(small(write_yaml, t=8, sp="true", more=[*base, "system.framework.tp_overlap=false"]))
    assert on["step_s"] < off["step_s"] and on["breakdown"]["tensor_comm_s"] < off["breakdown"]["tensor_comm_s"]
    layout = dict(t=2, p=4, d=2, v=2, batch=16)
    _, late = run(small(write_yaml, **layout))
    _, core = run(small(write_yaml, **layout, more=["system.framework=megatron-core", "system.framework.gemm_efficiency=0.887"]))
    assert core["breakdown"]["data_comm_s"] < late["breakdown"]["data_comm_s"]
    _, forced = run(small(write_yaml, **layout, more=["system.framework=megatron-core", "system.overlap_grad_reduce=false"]))
    assert forced["breakdown"]["data_comm_s"] > core["breakdown"]["data_comm_s"]


# --- NCCL's channels -----------------------------------------------------------------------------------


def _topology(write_yaml, nodes: int):
    return build_topology(small(write_yaml, t=8, d=nodes, batch=8 * nodes).hardware, 8 * nodes)


def test_channels_leave_each_node_from_every_rank(write_yaml):
    topo = _topology(write_yaml, 4)
    group = [n * 8 + r for n in range(4) for r in (0, 2, 4, 6)]  # 4 ranks on each of 4 nodes
    rings = channels(topo, group)
    assert len(rings) == 4 and all(sorted(ring) == sorted(group) for ring in rings)
    exits = [ring[(i + 1) * 4 - 1] for ring in rings for i in range(4)]  # each node's last rank in each ring
    assert sorted(exits) == sorted(group)  # every rank's NIC carries one ring out of its node
    assert channels(topo, list(range(8))) == [list(range(8))]  # one node: one ring
    assert channels(topo, [0, 8, 16, 24]) == [[0, 8, 16, 24]]  # one rank per node: one ring
    assert channels(topo, [0, 1, 8]) == [[0, 1, 8]]  # uneven: one ring


@pytest.mark.parametrize("model", ["flow", "store_and_forward"])
@pytest.mark.parametrize("op", ["all_reduce", "all_gather", "reduce_scatter"])
def test_the_timer_equals_the_executors_lockstep_run_of_every_channel(write_yaml, model, op):
    """One round per ring step, counted 2(n-1) or n-1 times, is the collective executor's lockstep run of
    the same rings side by side, every round played."""
    topo = build_topology(small(write_yaml, model=model, t=8, d=2, batch=16).hardware, 16)
    group = tuple(n * 8 + r for n in range(2) for r in (0, 1, 2, 3))
    nbytes = 8 * 4 * 2**16
    timer = CollectiveTimer(topo, model, 1e-6)
    env = simpy.Environment()
    fabric = Fabric(env, topo, model, [f"npu{i}" for i in range(topo.npus)])
    rings = channels(topo, group)
    steps = plan(op, "ring", len(group))
    done = [env.process(run_plan(env, fabric, steps, ring, nbytes // len(rings), overhead=1e-6, lockstep=True)) for ring in rings]
    env.run(simpy.AllOf(env, done))
    assert timer.seconds(op, group, nbytes) == pytest.approx(env.now, rel=1e-9)


def test_two_dgx_nodes_all_reduce_at_nvidias_bus_bandwidth():
    """A 16-GPU all-reduce over two DGX A100s: channels use all 8 NICs of a node, so the bus bandwidth is
    near NVIDIA's 192 GB/s (NVIDIA/nccl issue 812), where one ring through one NIC would get 24 GB/s."""
    from hwsim.commands.nccl import DGX_A100_TWO_NODES, _timer

    timer = _timer("a100_80gb", 16)
    size = DGX_A100_TWO_NODES.sizes[0]
    busbw = size * 2 * 15 / 16 / timer.seconds("all_reduce", tuple(range(16)), size) / 1e9
    assert busbw == pytest.approx(192, rel=0.02)


def test_traffic_spreads_a_channel_collective_over_the_nodes_nics(write_yaml):
    topo = _topology(write_yaml, 2)
    traffic = Traffic(1)
    traffic.data = [1600.0]
    place = {(0, 0, k): k for k in range(16)}  # t=1: one data group of 16 ranks over 2 nodes
    loads = traffic.link_bytes(topo, place, 1, 16)
    inter = np.asarray(topo.level) == "dim1"
    used = loads[inter][loads[inter] > 0]
    assert len(used) == 32 and used == pytest.approx(np.full(32, 1600.0 / 8))  # each NIC's up and down link
    rings = channels(topo, list(range(16)))
    hops = sum(len(topo.route(a, b)) for ring in rings for a, b in zip(ring, ring[1:] + ring[:1], strict=True))
    assert loads.sum() == pytest.approx(1600.0 / 8 * hops)


# --- collective efficiency by size -------------------------------------------------------------------


def test_a_size_curve_interpolates_in_log_size_and_holds_beyond_its_ends():
    points = [(1e6, 0.5), (1e8, 0.9)]
    assert curve_at(points, 1e5) == 0.5 and curve_at(points, 1e9) == 0.9
    assert curve_at(points, 1e7) == pytest.approx(0.7)
    assert curve_at(points, 10**6.5) == pytest.approx(0.6)


def test_the_curve_sets_each_collectives_rate_by_its_size(write_yaml):
    """A dimension at efficiency 1 with a curve {1 MiB: 0.5, 1 GiB: 1}: a 1 MiB all-gather's bandwidth term
    is twice the line rate's; one beyond 1 GiB runs at the line rate."""
    curve = "{1 MiB: 0.5, 1 GiB: 1.0}"
    dims = f"[{{kind: switch, size: 8, bandwidth: 300 GB/s, latency: 0 s, efficiency: 1.0, efficiency_by_size: {curve}}}]"
    hw = small(write_yaml, more=[f"hardware.network.dims={dims}"]).hardware
    flat = small(write_yaml, more=["hardware.network.dims=[{kind: switch, size: 8, bandwidth: 300 GB/s, latency: 0 s}]"]).hardware
    curved = CollectiveTimer(build_topology(hw, 8), "flow", 0.0, size_curves(hw))
    line = CollectiveTimer(build_topology(flat, 8), "flow", 0.0)
    group = tuple(range(8))
    assert curved.seconds("all_gather", group, 2**20) == pytest.approx(2 * line.seconds("all_gather", group, 2**20))
    assert curved.seconds("all_gather", group, 2**31) == pytest.approx(line.seconds("all_gather", group, 2**31))
    mid = 2**25  # half way in log size: 0.75
    assert curved.seconds("all_gather", group, mid) == pytest.approx(line.seconds("all_gather", group, mid) / 0.75)


def test_a_curve_key_that_is_not_a_size_is_an_error(write_yaml):
    dims = "[{kind: switch, size: 8, bandwidth: 300 GB/s, latency: 1 us, efficiency_by_size: {1 parsec: 0.5}}]"
    with pytest.raises(ConfigError) as err:
        small(write_yaml, more=[f"hardware.network.dims={dims}"])
    assert err.value.key == "hardware.network.dims[0].efficiency_by_size" and err.value.got == "1 parsec"
    bad = "[{kind: switch, size: 8, bandwidth: 300 GB/s, latency: 1 us, efficiency_by_size: {1 MB: 1.5}}]"
    with pytest.raises(ConfigError) as err:
        small(write_yaml, more=[f"hardware.network.dims={bad}"])
    assert "efficiency_by_size" in err.value.key


def test_the_a100_curve_is_the_fit_of_its_nccl_tests_run():
    """The preset's efficiency_by_size re-derived from the Azure ND A100 v4 run (its first dimension at the
    line rate), to the preset's three decimals; the fitted run then matches to 0.1 %."""
    from hwsim.commands.nccl import AZURE_ND_A100_V4, collectives, fit_efficiency
    from hwsim.config.load import PROJECT_ROOT

    line = "hardware.network.dims=[{kind: switch, size: 8, bandwidth: 300 GB/s, latency: 1.5 us}, {kind: switch, size: 0, bandwidth: 200 Gb/s, latency: 2 us}]"
    fitted = fit_efficiency(AZURE_ND_A100_V4, (line,))
    hw = load_scenario(PROJECT_ROOT / "scenarios" / "megatron_gpt3_175b.yaml").hardware
    preset = dict(size_curves(hw)["dim0"])
    scale = hw.network.dims[0].efficiency
    assert scale == pytest.approx(round(fitted[max(fitted)], 2), abs=0.005)
    for size, value in fitted.items():
        assert preset[size] * scale == pytest.approx(value, abs=0.0005), size
    table = collectives()
    assert (table[table.fitted].error.abs() < 0.001).all()
    assert table.error.to_numpy() == pytest.approx((table.predicted_us / table.published_us - 1).to_numpy())
    assert set(table.run) >= {AZURE_ND_A100_V4.name} and (~table.fitted).sum() > 40


# --- GEMM efficiency -----------------------------------------------------------------------------------


def test_the_profiles_gemm_efficiency_is_the_fit_of_the_cookbook_runs():
    from hwsim.commands.gemms import fit_gemm_efficiency, gemms, summary
    from hwsim.config.load import FRAMEWORK_DIR, read_yaml

    fitted = fit_gemm_efficiency()
    for name in ("megatron-2021", "megatron-2022"):
        assert read_yaml(FRAMEWORK_DIR / f"{name}.yaml")["gemm_efficiency"] == pytest.approx(fitted, abs=0.0005)
    table = gemms()
    fit = table[table.use == "fit"]
    assert np.median(fit.tflops / fit.predicted_tflops) == pytest.approx(1.0, abs=0.001)
    kinds = set(summary(table).kind)
    assert {"qkv", "scores", "context", "proj", "fc1", "fc2"} <= kinds
    assert (table.error == table.tflops / table.predicted_tflops - 1).all()


# --- uneven stages -------------------------------------------------------------------------------------


def test_layers_per_stage_gives_each_stage_its_blocks(write_yaml):
    even, _ = run(small(write_yaml, t=2, p=4, batch=8))
    uneven, _ = run(small(write_yaml, t=2, p=4, batch=8, more=["system.layers_per_stage=[3, 5, 5, 3]"]))
    f_even, f_uneven = even.system.per_stage["F", 1][1], uneven.system.per_stage["F", 1][1]
    blocks = uneven.system.costs.block["forward"].total_s
    assert f_uneven - f_even == pytest.approx(blocks, rel=1e-9)  # stage 1: 5 blocks instead of 4
    assert uneven.system.params[0] < even.system.params[0] and uneven.system.params[1] > even.system.params[1]
    assert sum(uneven.system.chunk_blocks) == 16


@pytest.mark.parametrize(
    "value, expected", [("[4, 4, 4]", "one count per model chunk"), ("[4, 4, 4, 5]", "add up to model.layers")]
)
def test_layers_per_stage_must_match_the_chunks_and_layers(write_yaml, value, expected):
    with pytest.raises(ConfigError) as err:
        small(write_yaml, t=2, p=4, batch=8, more=[f"system.layers_per_stage={value}"])
    assert err.value.key == "system.layers_per_stage" and expected in err.value.expected


def test_layers_that_do_not_divide_need_layers_per_stage(write_yaml):
    with pytest.raises(ConfigError) as err:
        small(write_yaml, t=8, p=3, batch=6)
    assert err.value.key == "model.layers" and "layers_per_stage" in err.value.expected
    outcome, _ = run(small(write_yaml, t=8, p=3, batch=6, more=["system.layers_per_stage=[5, 6, 5]"]))
    assert outcome.system.chunk_blocks == [5, 6, 5]
