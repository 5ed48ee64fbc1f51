"""Data parallelism: the iteration's closed form, exposed communication, the report, and bad settings."""

import pandas as pd
import pytest

import hwsim
from hwsim.errors import ConfigError

F, B, OPT = 0.5e-3, 1e-3, 0.2e-3  # forward, backward per layer; optimizer
BW, LAT = 50e9, 1e-6


def scenario(root, *overrides, replicas=4, layers=6, params="4 MiB", model="ideal"):
    base = [
        "hardware=edge_npu",
        f"hardware.network={{kind: switch, bandwidth: {BW * 8 / 1e9:g} Gb/s, latency: 1 us, model: {model}}}",
        "hardware.nic.overhead=0 s",
        f"model={{kind: layers, name: toy, layers: [{{forward: 0.5 ms, backward: 1 ms, params: {params}}}], repeat: {layers}}}",
        f"system={{kind: data_parallel, replicas: {replicas}, steps: 2, optimizer: 0.2 ms}}",
        "run.mode=timing-only",
    ]
    return hwsim.load_scenario(root / "scenarios" / "quickstart.yaml", base + list(overrides))


@pytest.mark.parametrize("model, params", [("ideal", "4 MiB"), ("ideal", "64 MiB"), ("flow", "4 MiB")])
def test_an_iteration_is_compute_then_the_last_layers_all_reduce_then_the_optimizer(root, model, params):
    """Each layer's all-reduce (ring on a switch: A = 2(n-1)(2a + M/(n b))) starts after its backward; the
    first layer's starts after the last backward, so T = L (f + b) + A + o. Under `ideal` that holds even
    when A > b (the all-reduces overlap without contention); under `flow` it needs A < b."""
    r = hwsim.run(scenario(root, replicas=4, layers=6, params=params, model=model))
    assert r.status == "ok", r.diagnosis
    M = {"4 MiB": 4 << 20, "64 MiB": 64 << 20}[params]
    A = 2 * 3 * (2 * LAT + M / (4 * BW))
    assert (A > B) == (params == "64 MiB")
    assert r.summary["step_time_s"] == pytest.approx(6 * (F + B) + A + OPT, rel=1e-9)
    dp = r.summary["data_parallel"]
    assert dp["exposed_allreduce_s"] == pytest.approx(A, rel=1e-9)
    table = r.outcome.system.collectives
    assert len(table) == 12 and (table.bytes == M).all()
    assert (table.end_s - table.start_s).to_numpy() == pytest.approx(A, rel=1e-9)  # none waited for another


@pytest.mark.parametrize("algorithm", ["ring", "[ring]", "[ring, ring]"])
def test_a_hierarchical_all_reduce_on_two_dimensions_takes_its_closed_form(root, algorithm):
    """4 x 2 NPUs: reduce-scatter and all-gather along each dimension, ring in each (one name, or one per
    dimension)."""
    net = "{dims: [{kind: switch, size: 4, bandwidth: 400 GB/s, latency: 1 us}, {kind: switch, size: 2, bandwidth: 50 GB/s, latency: 2 us}]}"
    collective = f"system.collective={{algorithm: {algorithm}, hierarchical: true}}"
    r = hwsim.run(scenario(root, f"hardware.network={net}", collective, replicas=8))
    M = 4 << 20
    A = 2 * (3 * (2e-6 + M / (4 * 400e9)) + 1 * (4e-6 + M / (8 * 50e9)))
    assert r.summary["data_parallel"]["exposed_allreduce_s"] == pytest.approx(A, rel=1e-9)


def test_the_report_has_the_collectives_and_the_fabric(root, tmp_path):
    r = hwsim.run(scenario(root))
    folder = r.write(tmp_path)
    table = pd.read_csv(folder / "collectives.csv")
    assert list(table.columns) == ["step", "layer", "bytes", "wire_bytes", "algorithm", "start_s", "end_s", "exposed_s"]
    assert (table.wire_bytes == 2 * 3 / 4 * table.bytes).all()  # a ring on 4: 2 (n - 1) / n of the buffer
    assert (folder / "fabric.png").is_file() and (folder / "links.csv").is_file()


@pytest.mark.parametrize(
    "overrides, key, words",
    [
        (
            ["system.collective={algorithm: halving_doubling}"],
            "system.collective.algorithm",
            "power-of-two number of NPUs; got 6",
        ),
        (["system.collective={algorithm: tree}"], "system.collective.algorithm", "unknown algorithm 'tree'"),
        (["system.collective={algorithm: ring, hierarchical: true}"], "system.collective.hierarchical", "a dims or torus fabric"),
        (["system.collective={algorithm: [ring, direct]}"], "system.collective.algorithm", "one name"),
        (["run.mode=full"], "run.mode", "timing-only"),
    ],
)
def test_bad_settings_get_one_clear_error(root, overrides, key, words):
    with pytest.raises(ConfigError) as err:
        hwsim.run(scenario(root, *overrides, replicas=6))
    assert err.value.key == key and words in str(err.value)


def test_a_layers_model_runs_only_data_parallel(root):
    with pytest.raises(ConfigError) as err:
        hwsim.run(
            hwsim.load_scenario(
                root / "scenarios" / "quickstart.yaml",
                ["model={kind: layers, layers: [{forward: 1 ms, backward: 1 ms, params: 1 MiB}]}"],
            )
        )
    assert err.value.key == "model.kind" and "layers: data_parallel" in str(err.value)


DIMS = "{dims: [{kind: switch, size: 4, bandwidth: 400 GB/s, latency: 1 us}, {kind: switch, size: 4, bandwidth: 50 GB/s, latency: 2 us}], model: MODEL}"


@pytest.mark.parametrize("model", ["flow", "ideal", "store_and_forward"])
@pytest.mark.parametrize(
    "network, collective",
    [
        (None, "{algorithm: ring}"),
        (None, "{algorithm: direct, chunks: 3, in_flight: 2}"),
        (None, "{algorithm: halving_doubling}"),
        (DIMS, "{algorithm: [direct, ring], hierarchical: true, chunks: 2}"),
        (DIMS, "{algorithm: halving_doubling, hierarchical: true}"),
    ],
)
def test_symmetric_and_lockstep_modes_equal_exact_to_the_nanosecond(root, model, network, collective):
    """16 replicas on a switch, or 4 x 4 on two switch dimensions; A > b so the all-reduces overlap and
    contend (48 MiB a layer)."""
    overrides = [f"system.collective={collective}"] + ([f"hardware.network={network.replace('MODEL', model)}"] if network else [])
    times, loads = [], []
    for mode in ("exact", "symmetric", "lockstep"):
        r = hwsim.run(scenario(root, *overrides, f"system.mode={mode}", replicas=16, layers=3, params="48 MiB", model=model))
        assert r.status == "ok", r.diagnosis
        times.append((r.summary["step_time_s"], r.summary["data_parallel"]["exposed_allreduce_s"], r.sim_time_s))
        loads.append(r.links.bytes.to_numpy())
    assert times[1] == pytest.approx(times[0], abs=1e-9)
    assert times[2] == pytest.approx(times[0], abs=1e-9)
    assert (loads[1] == loads[0]).all() and (loads[2] == loads[0]).all()  # symmetric: replica 0's, mirrored


@pytest.mark.parametrize(
    "mode, overrides, words",
    [
        (mode, ["system.collective={algorithm: double_binary_tree}"], "exact for double_binary_tree")
        for mode in ("symmetric", "lockstep")
    ]
    + [
        (
            mode,
            ["hardware.network={kind: switch, bandwidth: 400 Gb/s, latency: 1 us, overrides: [{npu: 3, bandwidth: 1 Gb/s}]}"],
            "make the replicas differ",
        )
        for mode in ("symmetric", "lockstep")
    ]
    + [("symmetric", ["hardware.network={kind: ring, bandwidth: 400 Gb/s, latency: 1 us}"], "cross one switch")],
)
def test_symmetric_and_lockstep_modes_are_refused_where_they_would_not_be_exact(root, mode, overrides, words):
    with pytest.raises(ConfigError) as err:
        hwsim.run(scenario(root, *overrides, f"system.mode={mode}", replicas=8))
    assert err.value.key == "system.mode" and words in str(err.value)


def test_lockstep_equals_exact_on_a_ring_fabric(root):
    """Lockstep needs no switch: on a ring fabric the neighbours' messages of a round land together too."""
    times = []
    for mode in ("exact", "lockstep"):
        r = hwsim.run(
            scenario(
                root,
                "hardware.network={kind: ring, bandwidth: 400 Gb/s, latency: 1 us}",
                f"system.mode={mode}",
                replicas=8,
                layers=3,
                params="48 MiB",
                model="flow",
            )
        )
        times.append((r.summary["step_time_s"], r.summary["data_parallel"]["exposed_allreduce_s"]))
    assert times[1] == pytest.approx(times[0], abs=1e-9)


def test_a_gemm_layer_is_timed_by_the_systolic_arrays_cycle_model(root):
    """A layer given as gemm: [m, n, k] takes the cycle model's time for its forward GEMM and its two
    backward GEMMs; its gradient defaults to k n float32 weights. One replica: no all-reduce."""
    from hwsim.hardware import gemm_cycles

    r = hwsim.run(scenario(root, "model={kind: layers, layers: [{gemm: [256, 512, 1024]}], repeat: 3}", replicas=1))
    hw = r.scenario.hardware.systolic

    def seconds(m, n, k):
        return gemm_cycles(m, n, k, hw.rows, hw.cols, hw.dataflow, hw.macs_per_cycle.fp32, hw.edge_folds) / hw.clock

    layer = seconds(256, 512, 1024) + seconds(256, 1024, 512) + seconds(1024, 512, 256)
    dp = r.summary["data_parallel"]
    assert dp["compute_s"] == pytest.approx(3 * layer, rel=1e-12)
    assert dp["gradient_bytes"] == 3 * 1024 * 512 * 4
    assert r.summary["step_time_s"] == pytest.approx(3 * layer + OPT, rel=1e-9)


@pytest.mark.parametrize(
    "layer, key, words",
    [
        ("{forward: 1 ms, params: 1 MiB}", "model.layers[0].backward", "a backward time, or gemm"),
        ("{gemm: [8, 8]}", "model.layers[0].gemm", "three sizes"),
        ("{gemm: [8, 8, 8], forward: 1 ms}", "model.layers[0].forward", "no time with gemm"),
        ("{forward: 1 ms, backward: 1 ms}", "model.layers[0].params", "the parameters' bytes"),
    ],
)
def test_a_layer_is_timed_or_a_gemm(root, layer, key, words):
    with pytest.raises(ConfigError) as err:
        hwsim.run(scenario(root, f"model={{kind: layers, layers: [{layer}]}}"))
    assert err.value.key == key and words in str(err.value)


@pytest.mark.parametrize(
    "collective, sizes",
    [
        ("{algorithm: ring, hierarchical: true}", [8, 16]),
        ("{algorithm: direct, hierarchical: true}", [8, 16]),
        ("{algorithm: halving_doubling, hierarchical: true, chunks: 2}", [8, 16]),
        ("{algorithm: ring}", [128]),
        ("{algorithm: double_binary_tree}", [128]),
    ],
)
def test_the_estimate_of_an_exact_run_counts_every_transfer(root, collective, sizes):
    from hwsim.systems.data_parallel.system import exact_cost

    s = hwsim.load_scenario(
        root / "scenarios" / "data_parallel_8x16.yaml", ["system.steps=1", "model.repeat=2", f"system.collective={collective}"]
    )
    transfers, _ = exact_cost(s, sizes, [s.system.collective.algorithm])
    assert transfers == len(hwsim.run(s).trace.messages)  # one row per message the run sent


def test_an_exact_run_too_large_for_this_machine_is_refused_before_it_starts(root):
    from hwsim.build import check
    from hwsim.systems.data_parallel.system import EXACT_PLAN_BYTES, EXACT_TRANSFERS, exact_cost

    dims = "[{kind: switch, size: 8, bandwidth: 450 GB/s, latency: 0.5 us}, {kind: switch, size: SIZE, bandwidth: 400 Gb/s, latency: 2 us}]"
    path = root / "scenarios" / "data_parallel_8x16.yaml"
    big = hwsim.load_scenario(path, ["system.replicas=65536", "hardware.network.dims=" + dims.replace("SIZE", "8192")])
    transfers, plan_bytes = exact_cost(big, [8, 8192], ["ring"])
    assert transfers > 1000 * EXACT_TRANSFERS and plan_bytes > 10 * EXACT_PLAN_BYTES  # a month, 47 GiB
    with pytest.raises(ConfigError) as err:
        check(big, str(path))
    message = str(err.value)
    assert err.value.key == "system.mode" and err.value.got == "exact" and "at 65,536 replicas" in message
    assert "Here symmetric applies; lockstep builds the same 47.49 GiB of plans" in message
    check(
        hwsim.load_scenario(
            path, ["system.replicas=65536", "hardware.network.dims=" + dims.replace("SIZE", "8192"), "system.mode=symmetric"]
        )
    )
    # the shipped size, and 1,024 replicas (13.2 million transfers, measured: EXACT_TRANSFERS), are not refused
    check(hwsim.load_scenario(path))
    check(hwsim.load_scenario(path, ["system.replicas=1024", "hardware.network.dims=" + dims.replace("SIZE", "128")]))
    # a flat double binary tree has no faster mode: the message says why
    with pytest.raises(ConfigError, match="symmetric does not apply \\(for double_binary_tree"):
        check(
            hwsim.load_scenario(
                path,
                [
                    "system.replicas=65536",
                    "hardware.network={kind: switch, bandwidth: 400 Gb/s, latency: 1 us}",
                    "system.collective={algorithm: double_binary_tree}",
                    "system.steps=200",
                ],
            )
        )


def test_a_timed_layers_report_says_na_for_flop_and_memory(root, tmp_path):
    """Layers given as times carry no FLOP count and hold nothing in the banks: the summary says n/a (not
    0 FLOP/s of a peak, not 0 B) while the arrays are busy; ops are labelled fwd/bwd like every other
    system's. A GEMM layer's FLOP are counted."""
    from hwsim.report.console import describe

    r = hwsim.run(scenario(root, replicas=4, layers=6, params="4 MiB"))
    flops, units = r.summary["flops"], r.utilization
    assert flops["achieved_flop_per_s"] is None and flops["fraction_of_peak"] is None and flops["peak_flop_per_s"] > 0
    systolic = units[units.kind == "systolic"]
    assert (systolic.util > 0.5).all() and systolic.work.isna().all() and systolic.achieved_fraction.isna().all()
    assert r.banks.peak_bytes.isna().all() and all(m["peak_bytes"] is None for m in r.summary["memory"].values())
    assert set(r.trace.busy[r.trace.busy.kind == "systolic"].label.str.split().str[0]) == {"fwd", "bwd"}
    text = describe(r.summary)
    assert "FLOP/s: n/a (work given as times (layers, recorded traces) carries no FLOP count)" in text
    assert "peak memory: n/a (work given as times (layers, recorded traces) holds nothing in the banks)" in text
    assert "n/a (work given as times (layers, recorded traces) holds nothing" in (r.write(tmp_path) / "report.html").read_text()
    gemm = "model={kind: layers, name: g, layers: [{gemm: [64, 64, 64]}], repeat: 2}"
    counted = hwsim.run(scenario(root, gemm, replicas=2))
    assert counted.summary["flops"]["achieved_flop_per_s"] > 0
    steps, replicas, layers, gemms = 2, 2, 2, 3  # a GEMM layer: its forward and its backward's two
    assert counted.summary["flops"]["achieved_flop_per_s"] * counted.sim_time_s == pytest.approx(
        steps * replicas * layers * gemms * 2 * 64**3
    )


def test_many_identical_units_are_summed_up_by_kind(root, tmp_path):
    """With many devices the console, the plots and the HTML page show each kind of unit once (its spread),
    not a row per identical unit; the full table stays in units.csv."""
    from hwsim.report.console import describe

    r = hwsim.run(scenario(root, replicas=16, layers=2))
    line = next(x for x in describe(r.summary).splitlines() if "utilization:" in x)
    assert "systolic" in line and "median of 16 (" in line and "link" in line
    units, note = r.shown_units()
    assert len(units) < 16 and "median" in note and any(".up" in u or ".down" in u for u in units)
    page = (r.write(tmp_path) / "report.html").read_text()
    assert page.index("<h2 id='unit-timeline'>") < page.index("<h2 id='units'>")  # the plots before the tables
    assert "one row per kind (min / median / max over its units)" in page
    assert len(pd.read_csv(tmp_path / "units.csv")) == len(r.utilization)
