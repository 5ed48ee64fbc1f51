"""The replay system: Chakra traces run node by node, against the data-parallel system, the symmetric mode
against the exact one, and closed forms for dependencies, resources and messages."""

from __future__ import annotations

import pytest

from hwsim.build import check, simulate
from hwsim.config.load import PROJECT_ROOT, load_scenario
from hwsim.errors import ConfigError
from hwsim.workloads.chakra import EtNode, write_trace
from tests.systems.replay.traces import RING8, replay_scenario, step_time


def _scenario(tmp_path, traces: list[list[EtNode]], hardware: str = RING8, system: str = "{kind: replay}"):
    for r, nodes in enumerate(traces):
        write_trace(tmp_path / f"t.{r}.et", nodes)
    return replay_scenario(tmp_path, "t", hardware, system)


def _data_parallel_step(tmp_path) -> list[EtNode]:
    return [
        EtNode(1, "forward", "compute", seconds=100e-6),
        EtNode(2, "backward", "compute", (1,), seconds=200e-6),
        EtNode(3, "gradient all-reduce", "collective", (2,), bytes=1 << 20, collective="all_reduce"),
        EtNode(4, "optimizer", "compute", (3,), seconds=10e-6),
    ]


def test_a_data_parallel_step_replays_as_the_data_parallel_system_runs_it(tmp_path):
    """One layer's forward and backward, its 1 MiB gradient's ring all-reduce and the optimizer, as a trace on 8
    NPUs of a ring: the same step time as the data-parallel system's for the same layer (to rounding)."""
    replayed = simulate(_scenario(tmp_path, [_data_parallel_step(tmp_path)] * 8))
    path = tmp_path / "dp.yaml"
    path.write_text(
        f"name: dp\nhardware: {RING8}\n"
        "model: {kind: layers, layers: [{name: block, forward: 100 us, backward: 200 us, params: 1 MiB}]}\n"
        "system: {kind: data_parallel, replicas: 8, optimizer: 10 us}\nrun: {mode: timing-only}\nreport: {plots: false}\n"
    )
    alone = simulate(load_scenario(path))
    assert replayed.status == alone.status == "ok"
    assert step_time(replayed) == pytest.approx(step_time(alone), rel=1e-9)
    assert step_time(replayed) > 310e-6  # the all-reduce takes time


def test_symmetric_mode_equals_the_exact_run(tmp_path):
    """16 identical traces on a switch (two all-reduces, an all-gather, compute between): NPU 0 alone with its
    partners mirrored takes the same time as every NPU simulated."""
    nodes = [
        EtNode(1, "f", "compute", seconds=50e-6),
        EtNode(2, "ar1", "collective", (1,), bytes=3 << 20, collective="all_reduce"),
        EtNode(3, "b", "compute", (1,), seconds=80e-6),
        EtNode(4, "ar2", "collective", (3,), bytes=1 << 20, collective="all_reduce"),
        EtNode(5, "ag", "collective", (2, 4), bytes=1 << 19, collective="all_gather"),
    ]
    switch = "{base: datacenter_npu, network: {kind: switch, npus: 16, bandwidth: 100 GB/s, latency: 1 us}}"
    exact = simulate(_scenario(tmp_path, [nodes] * 16, switch))
    symmetric = simulate(_scenario(tmp_path, [nodes] * 16, switch, "{kind: replay, mode: symmetric}"))
    assert step_time(symmetric) == pytest.approx(step_time(exact), rel=1e-9) and len(symmetric.system.devices) == 1


def test_dependencies_and_one_node_per_resource(tmp_path):
    """On each NPU: two GPU compute nodes without dependencies run one after the other, in id order; a CPU node
    beside them; a node waiting for the second and the CPU node starts when both are done."""
    nodes = [
        EtNode(1, "a", "compute", seconds=10e-6),
        EtNode(2, "b", "compute", seconds=20e-6),
        EtNode(3, "host", "compute", seconds=25e-6, cpu=True),
        EtNode(4, "after", "compute", (2, 3), seconds=5e-6),
    ]
    two = "{base: datacenter_npu, network: {kind: switch, npus: 2, bandwidth: 100 GB/s, latency: 1 us}}"
    outcome = simulate(_scenario(tmp_path, [nodes] * 2, two))
    assert step_time(outcome) == pytest.approx(35e-6)
    busy = outcome.trace.busy
    after = busy[busy.label.str.startswith("after") & busy.unit.str.startswith("npu0")]
    assert float(after.start_s.iloc[0]) == pytest.approx(30e-6)


def test_a_send_and_its_receive(tmp_path):
    """NPU 0 computes, then sends 8 MiB to NPU 1, whose receive then lets its compute start: the step is the two
    computes and the message's unloaded time on the fabric."""
    size = 8 << 20
    sender = [EtNode(1, "c0", "compute", seconds=40e-6), EtNode(2, "send", "send", (1,), bytes=size, peer=1, tag=7)]
    receiver = [EtNode(1, "recv", "recv", bytes=size, peer=0, tag=7), EtNode(2, "c1", "compute", (1,), seconds=30e-6)]
    two = "{base: datacenter_npu, network: {kind: switch, npus: 2, bandwidth: 100 GB/s, latency: 1 us}}"
    outcome = simulate(_scenario(tmp_path, [sender, receiver], two))
    message = outcome.cluster.unloaded(0, 1, size)
    assert step_time(outcome) == pytest.approx(40e-6 + message + 30e-6, rel=1e-9)


@pytest.mark.parametrize(
    ("traces", "system", "key", "expected"),
    [
        (
            [
                [EtNode(1, "ar", "collective", bytes=64, collective="all_reduce")],
                [EtNode(1, "ar", "collective", bytes=32, collective="all_reduce")],
            ],
            "{kind: replay}",
            "node 1 (ar)",
            "collective 0 of every NPU alike",
        ),
        (
            [[EtNode(1, "s", "send", bytes=8, peer=1)], [EtNode(1, "c", "compute", seconds=1e-6)]],
            "{kind: replay}",
            "messages from NPU 0 to NPU 1, tag 0",
            "a receive for every send",
        ),
        (
            [[EtNode(1, "c", "compute", seconds=1e-6)], [EtNode(1, "c", "compute", seconds=2e-6)]],
            "{kind: replay, mode: symmetric}",
            "system.mode",
            "NPU 1's trace differs",
        ),
        ([[EtNode(1, "c", "compute", seconds=1e-6, deps=(9,))]] * 2, "{kind: replay}", "node 1 (c)", "nodes of its own file"),
        (
            [[EtNode(1, "a", "compute", (2,), seconds=1e-6), EtNode(2, "b", "compute", (1,), seconds=1e-6)]] * 2,
            "{kind: replay}",
            "node 1",
            "without cycles",
        ),
    ],
)
def test_traces_the_replay_cannot_run_are_refused_by_name(tmp_path, traces, system, key, expected):
    two = "{base: datacenter_npu, network: {kind: switch, npus: 2, bandwidth: 100 GB/s, latency: 1 us}}"
    with pytest.raises(ConfigError) as err:
        _scenario(tmp_path, traces, two, system)
    assert err.value.key == key and expected in err.value.expected, (err.value.key, err.value.expected)


def test_a_chakra_model_needs_the_replay_system(tmp_path):
    write_trace(tmp_path / "t.0.et", [EtNode(1, "c", "compute", seconds=1e-6)])
    path = tmp_path / "s.yaml"
    path.write_text("name: s\nhardware: datacenter_npu\nmodel: {kind: chakra, traces: t}\nsystem: {kind: single_device}\n")
    with pytest.raises(ConfigError) as err:
        check(load_scenario(path), str(path))
    assert err.value.key == "system.kind" and "replay" in err.value.expected


def test_an_exported_data_parallel_job_replays_to_its_step_time(tmp_path):
    """`hwsim export chakra` on the 24-layer data-parallel job (8 replicas on one node of cluster_8x16): the files
    read back as the job's step, and replayed (one collective at a time per NPU) give the data-parallel system's
    step time to 1e-9 (its layer all-reduces queue one after another there as well); a system export does not
    know is refused, and nothing is written."""
    from hwsim.cli import main
    from hwsim.commands.export import data_parallel_step
    from hwsim.workloads.chakra import read_trace

    job = PROJECT_ROOT / "scenarios" / "data_parallel_8x16.yaml"
    small = ["system.replicas=8", "system.collective.hierarchical=false", "system.steps=1", "report.plots=false"]
    assert main(["export", "chakra", str(job), str(tmp_path / "out"), *small]) == 0
    files = sorted((tmp_path / "out").glob("*.et"))
    assert len(files) == 8 and read_trace(files[3]) == data_parallel_step(load_scenario(job, small))
    path = tmp_path / "replay.yaml"
    path.write_text(
        "name: r\nhardware: cluster_8x16\nmodel: {kind: chakra, traces: out/data_parallel_8x16}\n"
        "system: {kind: replay}\nrun: {mode: timing-only}\nreport: {plots: false}\n"
    )
    assert step_time(simulate(load_scenario(path))) == pytest.approx(step_time(simulate(load_scenario(job, small))), rel=1e-9)
    assert main(["export", "chakra", str(PROJECT_ROOT / "scenarios" / "quickstart.yaml"), str(tmp_path / "no")]) == 2
    assert not (tmp_path / "no").exists()


EDGE = "{base: edge_npu, memory: {working: {precision: fp32, capacity: 16 MiB, bandwidth: 64 GB/s, latency: 10 ns}}}"


def _exported_pipeline(tmp_path, *overrides: str):
    """`pipeline_1f1b` with `overrides`, one step, timing-only: the scenario, its simulated step, and its export
    into `tmp_path`."""
    from hwsim.commands.export import export_chakra

    more = ["system.steps=1", "run.mode=timing-only", "report.plots=false"]
    job = load_scenario(PROJECT_ROOT / "scenarios" / "pipeline_1f1b.yaml", [*overrides, *more])
    check(job)
    return job, step_time(simulate(job)), export_chakra(job, tmp_path)


@pytest.mark.parametrize(
    ("schedule", "per_device", "tolerance"),
    [("gpipe", 1, 0.005), ("1f1b", 1, 0.005), ("zb_h1", 1, 0.005), ("breadth_first", 2, 0.005), ("interleaved", 2, 0.02)],
)
def test_an_exported_pipeline_replays_in_the_pipeline_systems_step_time(tmp_path, schedule, per_device, tolerance):
    """`hwsim export chakra` of a one-replica pipeline (4 devices, 8 micro-batches): each device's ops, sends and
    receives replayed take the step the pipeline system simulates, to `tolerance` (measured: 0.06 to 0.11 %,
    interleaved 1.5 %: the pipeline sends each message as its own process, the replay one at a time per NPU)."""
    job, alone, files = _exported_pipeline(
        tmp_path,
        f"system.schedule={schedule}",
        f"system.stages_per_device={per_device}",
        "system.data_parallel=1",
        "system.placement=null",
    )
    assert len(files) == 4
    assert step_time(simulate(replay_scenario(tmp_path, job.name, EDGE))) == pytest.approx(alone, rel=tolerance)


@pytest.mark.parametrize(("schedule", "replicas"), [("1f1b", 4), ("zb_h1", 2)])
def test_an_exported_data_parallel_pipeline_replays_its_all_reduces_over_process_groups(tmp_path, schedule, replicas):
    """A pipeline of 4 devices and D replicas exported: D x 4 traces, each stage's gradient all-reduce over the
    process group of its position (NPUs d, 4 + d, ...: `NAME.groups.json`, found beside the traces), replayed in
    the pipeline system's step time, to 1 % (measured: 1f1b with 4 replicas -0.52 %, with 2 -0.59 %, gpipe -0.32 %, zb_h1 -0.08 %: the
    pipeline system adds each received piece on the device's vector unit, beside its ops; the replay's
    all-reduce has no reduction cost unless system.collective.reduction_bandwidth gives one)."""
    import json

    job, alone, files = _exported_pipeline(tmp_path, f"system.schedule={schedule}", f"system.data_parallel={replicas}")
    assert len(files) == 4 * replicas + 1
    groups = json.loads((tmp_path / f"{job.name}.groups.json").read_text())
    assert groups == {f"stage_device{d}": [r * 4 + d for r in range(replicas)] for d in range(4)}
    replay = replay_scenario(tmp_path, job.name, EDGE)
    assert step_time(simulate(replay)) == pytest.approx(alone, rel=0.01)


def test_symmetric_mode_where_it_cannot_be_exact_is_refused_before_the_run(tmp_path):
    """Identical traces on a ring (a transfer is not NPU, switch, NPU): a clear error at the check, not a
    traceback from the run."""
    with pytest.raises(ConfigError, match="one switch"):
        _scenario(tmp_path, [_data_parallel_step(tmp_path)] * 8, system="{kind: replay, mode: symmetric}")


SWITCH2 = "{base: datacenter_npu, network: {model: ideal, kind: switch, npus: 2, bandwidth: 50 GB/s, latency: 500 ns}}"


def _two_groups(tmp_path, groups: dict) -> None:
    """Two NPUs, each with two independent 1 MiB all-reduces over process groups x and y, and `groups` as the
    trace set's groups file."""
    import json

    nodes = [
        EtNode(1, "ar x", "collective", bytes=1 << 20, collective="all_reduce", group="x"),
        EtNode(2, "ar y", "collective", bytes=1 << 20, collective="all_reduce", group="y"),
    ]
    for r in range(2):
        write_trace(tmp_path / f"t.{r}.et", nodes)
    (tmp_path / "t.groups.json").write_text(json.dumps(groups))


def test_collectives_of_two_process_groups_share_one_stream_or_run_side_by_side(tmp_path):
    """Without contention (ideal links) two independent collectives of two groups take twice one's time on one
    stream per NPU (ASTRA-sim's), and one's time with a stream per group (NCCL's communicators)."""
    _two_groups(tmp_path, {"x": [0, 1], "y": [1, 0]})
    one = step_time(simulate(replay_scenario(tmp_path, "t", SWITCH2, "{kind: replay, streams: one}")))
    group = step_time(simulate(replay_scenario(tmp_path, "t", SWITCH2, "{kind: replay, streams: group}")))
    assert one == pytest.approx(2 * group, rel=1e-9)


@pytest.mark.parametrize(
    ("groups", "match"),
    [
        ({"x": [0, 1]}, "ar y.*pg_name.*y.*a group of"),
        ({"x": [0, 1], "y": [0, 2]}, "distinct NPUs of the trace set, 0 to 1"),
        ({"x": [0, 1], "y": [1, 1]}, "distinct NPUs"),
        ([0, 1], "a JSON object"),
    ],
)
def test_a_groups_file_that_does_not_fit_the_traces_is_refused(tmp_path, groups, match):
    _two_groups(tmp_path, groups)
    with pytest.raises(ConfigError, match=match):
        replay_scenario(tmp_path, "t", SWITCH2)


def test_a_process_group_without_a_groups_file_is_refused_by_node(tmp_path):
    nodes = [EtNode(1, "ar", "collective", bytes=64, collective="all_reduce", group="7")]
    with pytest.raises(ConfigError, match=r"node 1 \(ar\).pg_name.*model.groups"):
        _scenario(tmp_path, [nodes, nodes], SWITCH2)
