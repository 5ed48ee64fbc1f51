"""`hwsim import astra`: ASTRA-sim's inputs mapped onto a scenario (units, dimensions, system keys), the imported
run against the closed form of a ring all-reduce, refusals by name, and the command line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hwsim.build import check, simulate
from hwsim.cli import main
from hwsim.commands.astra import astra_scenario
from hwsim.config.load import load_scenario
from hwsim.errors import ConfigError
from hwsim.workloads.chakra import EtNode, write_trace

SYSTEM = {
    "scheduling-policy": "LIFO",
    "endpoint-delay": 10,
    "active-chunks-per-dimension": 1,
    "preferred-dataset-splits": 1,
    "all-reduce-implementation": ["ring"],
    "all-gather-implementation": ["ring"],
    "reduce-scatter-implementation": ["ring"],
    "all-to-all-implementation": ["ring"],
    "collective-optimization": "localBWAware",
    "local-mem-bw": 50,
    "boost-mode": 0,
}  # ASTRA-sim's tests/rt_template/inputs/system_cfg.json at 5f07824, one split


def _inputs(tmp_path, network: str, system: dict, npus: int, nbytes: int = 1 << 20, op: str = "all_reduce"):
    (tmp_path / "net.yml").write_text(network)
    (tmp_path / "sys.json").write_text(json.dumps(system))
    node = EtNode(1, "allreduce", "collective", bytes=nbytes, collective=op)
    for r in range(npus):
        write_trace(tmp_path / f"w.{r}.et", [node])
    return tmp_path / "net.yml", tmp_path / "sys.json", tmp_path / "w"


def _run(tmp_path, imported) -> float:
    path = tmp_path / "imported.yaml"
    path.write_text(imported.yaml() + "report: {plots: false}\n")
    scenario = load_scenario(path)
    check(scenario, str(path))
    metrics = simulate(scenario).trace.metrics
    return float(metrics[metrics.metric == "step_time_s"].value.iloc[-1])


@pytest.mark.parametrize(("delay", "memory"), [(0, None), (10, None), (10, 50)])
def test_a_ring_all_reduce_takes_the_closed_form_in_astra_sims_units(tmp_path, delay, memory):
    """One 1 MiB all-reduce on a Ring of 8 at 50 GB/s and 500 ns: 2(n-1) steps of endpoint delay + latency +
    (S/n) / (50 x 2^30 B/s); with local-mem-bw, the n-1 reduce-scatter steps also wait 3 (S/n) / (50 x 10^9 B/s)."""
    system = {**SYSTEM, "endpoint-delay": delay}
    if memory is None:
        del system["local-mem-bw"]
    else:
        system["local-mem-bw"] = memory
    network = "topology: [Ring]\nnpus_count: [8]\nbandwidth: [50.0]\nlatency: [500.0]\n"
    imported = astra_scenario(*_inputs(tmp_path, network, system, 8))
    n, piece = 8, (1 << 20) / 8
    expected = 2 * (n - 1) * (delay * 1e-9 + 500e-9 + piece / (50 * 2**30))
    if memory:
        expected += (n - 1) * 3 * piece / (memory * 1e9)
    assert _run(tmp_path, imported) == pytest.approx(expected, rel=1e-9)


def test_a_three_dimensional_network_and_its_system_keys_map_by_name(tmp_path):
    """ASTRA-sim's Ring_FullyConnected_Switch example (2 x 8 x 4): one dimension each, bandwidths in GiB/s,
    latencies in ns; per-dimension algorithms, LIFO, splits and active chunks; the congestion-aware backend."""
    network = "topology: [Ring, FullyConnected, Switch]\nnpus_count: [2, 8, 4]\nbandwidth: [200.0, 100.0, 50.0]\nlatency: [50.0, 500.0, 2000.0]\n"
    system = {
        **SYSTEM,
        "preferred-dataset-splits": 4,
        "active-chunks-per-dimension": 2,
        "all-reduce-implementation": ["ring", "direct", "halvingDoubling"],
        "all-to-all-implementation": ["ring", "direct", "direct"],
    }
    imported = astra_scenario(*_inputs(tmp_path, network, system, 64), backend="congestion_aware")
    s = imported.scenario
    assert s["hardware"]["network"] == {
        "model": "store_and_forward",
        "dims": [
            {"kind": "ring", "size": 2, "bandwidth": "200 GiB/s", "latency": "50 ns"},
            {"kind": "fully_connected", "size": 8, "bandwidth": "100 GiB/s", "latency": "500 ns"},
            {"kind": "switch", "size": 4, "bandwidth": "50 GiB/s", "latency": "2000 ns"},
        ],
    }
    assert s["system"]["collective"] == {
        "order": "lifo",
        "chunks": 4,
        "in_flight": 2,
        "algorithm": ["ring", "direct", "halving_doubling"],
        "hierarchical": True,
        "reduction_bandwidth": "50 GB/s",
    }
    assert s["hardware"]["nic"] == {"overhead": "10 ns"}
    assert s["model"]["kind"] == "chakra"
    assert _run(tmp_path, imported) > 0  # it runs


BAD = [
    ("network", "topology: [Torus]\nnpus_count: [8]\nbandwidth: [50]\nlatency: [1]\n", {}, "topology[0]"),
    ("network", "topology: [Ring]\nnpus_count: [8]\nbandwidth: [50, 25]\nlatency: [1]\n", {}, "bandwidth"),
    ("network", "topology: [Ring]\nnpus_count: [4]\nbandwidth: [50]\nlatency: [1]\n", {}, "npus_count"),
    ("network", "topology: [Ring]\nnpus_count: [8]\nbandwidth: [50]\nlatency: [1]\nlinks: 3\n", {}, "links"),
    ("system", None, {"all-reduce-implementation": ["direct4"]}, "all-reduce-implementation[0]"),
    ("system", None, {"roofline-enabled": 1}, "roofline-enabled"),
    ("system", None, {"intra-dimension-scheduling": "SCF"}, "intra-dimension-scheduling"),
    ("system", None, {"scheduling-policy": "RANDOM"}, "scheduling-policy"),
    ("system", None, {"all-reduce-implementation-chakra": ["x.et"]}, "all-reduce-implementation-chakra"),
    ("system", None, {"L": 3}, "L"),
    ("system", None, {"preferred-dataset-splits": 0}, "preferred-dataset-splits"),
]


@pytest.mark.parametrize(("what", "network", "change", "key"), BAD)
def test_what_hwsim_cannot_mean_is_refused_by_file_and_key(tmp_path, what, network, change, key):
    network = network or "topology: [Ring]\nnpus_count: [8]\nbandwidth: [50]\nlatency: [1]\n"
    files = _inputs(tmp_path, network, {**SYSTEM, **change}, 8)
    with pytest.raises(ConfigError) as err:
        astra_scenario(*files)
    assert err.value.key == key
    assert err.value.where.endswith("net.yml" if what == "network" else "sys.json")


def test_implementations_that_differ_are_refused_only_for_the_collectives_the_traces_run(tmp_path):
    system = {**SYSTEM, "all-to-all-implementation": ["direct"]}
    network = "topology: [Switch]\nnpus_count: [8]\nbandwidth: [50]\nlatency: [1]\n"
    assert astra_scenario(*_inputs(tmp_path, network, system, 8)).scenario["system"]["collective"]["algorithm"] == "ring"
    (tmp_path / "all_to_all").mkdir()
    files = _inputs(tmp_path / "all_to_all", network, {**system, "all-gather-implementation": ["direct"]}, 8, op="all_gather")
    assert astra_scenario(*files).scenario["system"]["collective"]["algorithm"] == "direct"


def test_remote_memory_and_other_backends_are_refused(tmp_path):
    files = _inputs(tmp_path, "topology: [Ring]\nnpus_count: [8]\nbandwidth: [50]\nlatency: [1]\n", SYSTEM, 8)
    (tmp_path / "mem.json").write_text('{"memory-type": "PER_NPU_MEMORY_EXPANSION", "remote-mem-bw": 512}')
    with pytest.raises(ConfigError, match="NO_MEMORY_EXPANSION"):
        astra_scenario(*files, memory=tmp_path / "mem.json")
    (tmp_path / "ns3.json").write_text("{}")
    with pytest.raises(ConfigError, match="ns-3 and Garnet"):
        astra_scenario(tmp_path / "ns3.json", *files[1:])


def test_the_command_writes_a_scenario_that_runs_like_the_three_files_do(tmp_path, capsys, monkeypatch):
    """`hwsim import astra` prints each mapping and writes a scenario (traces relative to it); `hwsim run` with
    the three files gives the same step; a refused input writes nothing."""
    network, system, workload = _inputs(
        tmp_path, "topology: [Ring]\nnpus_count: [8]\nbandwidth: [50]\nlatency: [500]\n", SYSTEM, 8
    )
    out = tmp_path / "scenario" / "imported.yaml"
    args = ["--network", str(network), "--system", str(system), "--workload", str(workload)]
    assert main(["import", "astra", *args, "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "50 GiB/s (ASTRA-sim's GB is 2^30 B)" in printed and "hardware.nic.overhead: 10 ns" in printed
    assert Path(load_scenario(out).model.traces).resolve() == (tmp_path / "w").resolve()
    assert f"traces: {(tmp_path / 'w').resolve()}" in out.read_text()  # outside the scenario's folder: absolute
    inside = tmp_path / "beside.yaml"
    assert main(["import", "astra", *args, "--out", str(inside)]) == 0
    assert "traces: w\n" in inside.read_text()
    monkeypatch.chdir(tmp_path)
    assert main(["run", str(out), "--out", "a", "report.plots=false"]) == 0
    first = json.loads((tmp_path / "a" / "summary.json").read_text())["step_time_s"]
    assert main(["run", *args, "--out", "b", "report.plots=false"]) == 0
    assert json.loads((tmp_path / "b" / "summary.json").read_text())["step_time_s"] == first
    system.write_text(json.dumps({**SYSTEM, "boost-mode": 1}))
    bad = tmp_path / "bad.yaml"
    assert main(["import", "astra", *args, "--out", str(bad)]) == 2
    assert "boost-mode" in capsys.readouterr().err
    assert not bad.exists() and not list(tmp_path.glob("bad.yaml*"))


AGREE = [
    "rt_template",
    "unit_fc2_lat0_ALL_GATHER_ed10",
    "unit_fc2_lat1000_AG_half_ed10",
    "mb1m_ALL_REDUCE_FullyConnected",
    "mb1m_ALL_GATHER_Switch",
    "hwsim_export_dp8_24x4MiB",
    "hwsim_export_pipeline_1f1b",
]


@pytest.mark.parametrize("case", AGREE)
def test_astra_sims_own_examples_take_its_recorded_iteration_time(tmp_path, case):
    """ASTRA-sim 5f07824's example inputs (scenarios/astra), and a job hwsim exported, imported and run: within
    2 % of the iteration time ASTRA-sim printed for them, on both analytical backends (data/astra_sim_runs.csv)."""
    from hwsim.commands.bench.astra import astra_runs, hwsim_time

    runs = astra_runs()
    for row in runs[runs.case == case].itertuples(index=False):
        simulated, _, refused = hwsim_time(row, tmp_path)
        assert not refused
        assert simulated == pytest.approx(row.cycles * 1e-9, rel=0.02), row.backend
