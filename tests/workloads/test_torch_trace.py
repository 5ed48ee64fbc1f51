"""PyTorch profiler traces: streams, cross-stream order and gaps read from a Kineto trace, the replayed step against
its closed form on another fabric and rank count, GEMMs on the cycle model, a real trace from torch.profiler, and
bad input."""

from __future__ import annotations

import gzip
import json

import pytest

from hwsim.build import check, simulate
from hwsim.config.load import load_scenario
from hwsim.errors import ConfigError
from hwsim.hardware.arithmetic import array_cycles
from hwsim.workloads.torch_trace import read_kineto

MIB = 1 << 20


def _kernel(name, stream, ts, dur, **args):
    return {
        "ph": "X",
        "cat": "kernel",
        "name": name,
        "pid": 0,
        "tid": stream,
        "ts": ts,
        "dur": dur,
        "args": {"stream": stream, **args},
    }


def _gpu_trace(nccl_args=None) -> dict:
    """Compute stream 7: k1 [0, 100], a GEMM [110, 210] (launched by aten::mm 64x128 by 128x256), k3 [400, 450];
    NCCL stream 13: a 4 MiB all-reduce [220, 380] over the 2 recorded ranks."""
    nccl = {"Collective name": "allreduce", "In msg nelems": MIB, "Out msg nelems": MIB, "dtype": "Float", "Group size": 2}
    return {
        "distributedInfo": {"backend": "nccl", "rank": 0, "world_size": 2},
        "traceEvents": [
            {"ph": "X", "cat": "cpu_op", "name": "aten::mm", "tid": 1, "ts": 105, "dur": 3,
             "args": {"External id": 9, "Input Dims": [[64, 128], [128, 256]], "Input type": ["float", "float"]}},
            _kernel("k1", 7, 0, 100),
            _kernel("ampere_sgemm_64x64_nn", 7, 110, 100, **{"External id": 9}),
            _kernel("ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*)", 13, 220, 160, **(nccl_args or nccl)),
            _kernel("k3", 7, 400, 50),
        ],
    }  # fmt: skip


def _write(tmp_path, trace: dict, name="trace.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(trace))
    return str(path)


def _run(tmp_path, trace_path: str, hardware: str, extra: str = "", system: str = "{kind: replay}") -> float:
    path = tmp_path / "s.yaml"
    path.write_text(
        f"name: t\nhardware: {hardware}\nmodel: {{kind: torch_trace, path: {trace_path}{extra}}}\nsystem: {system}\n"
        "run: {mode: timing-only}\nreport: {plots: false}\n"
    )
    scenario = load_scenario(path)
    check(scenario, str(path))
    metrics = simulate(scenario).trace.metrics
    return float(metrics[metrics.metric == "step_time_s"].value.iloc[-1])


def test_streams_cross_stream_order_and_gaps_are_read_from_a_gpu_trace(tmp_path):
    nodes, world = read_kineto(_write(tmp_path, _gpu_trace()))
    assert world == 2
    by_name = {n.name: n for n in nodes}
    gemm, nccl = (
        by_name["ampere_sgemm_64x64_nn"],
        by_name["ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*)"],
    )
    assert gemm.gemm == (64, 256, 128, 1, "fp32") and gemm.seconds == pytest.approx(100e-6)
    assert (nccl.kind, nccl.collective, nccl.bytes) == ("collective", "all_reduce", 4 * MIB)
    gaps = {n.name: n for n in nodes if n.kind == "delay"}
    # each gap: from its node's last dependency's end to its start
    assert gaps["gap before ampere_sgemm_64x64_nn"].seconds == pytest.approx(10e-6)
    assert gaps["gap before ncclDevKernel_AllReduce_Sum_f32_RING_LL(ncclDevComm*)"].seconds == pytest.approx(10e-6)
    assert gaps["gap before k3"].seconds == pytest.approx(20e-6)  # after the all-reduce ended at 380
    ids = {n.id: n.name for n in nodes}
    assert {ids[d] for d in gaps["gap before k3"].deps} == {"ampere_sgemm_64x64_nn", nccl.name}


@pytest.mark.parametrize("ranks", [2, 8])
def test_the_step_replays_on_another_fabric_and_rank_count_as_its_closed_form(tmp_path, ranks):
    """The compute stream's recorded times and gaps, the all-reduce on a ring of `ranks` at 50 GB/s and 500 ns:
    100 + 10 + 100 + 10 + 2(r-1)(0.5 us + (4 MiB / r) / 50 GB/s) + 20 + 50 us."""
    hardware = f"{{base: datacenter_npu, nic: {{overhead: 0 s}}, network: {{kind: ring, npus: {ranks}, bandwidth: 50 GB/s, latency: 500 ns}}}}"
    step = _run(tmp_path, _write(tmp_path, _gpu_trace()), hardware, f", ranks: {ranks}")
    all_reduce = 2 * (ranks - 1) * (500e-9 + 4 * MIB / ranks / 50e9)
    assert step == pytest.approx(290e-6 + all_reduce, rel=1e-9)


def test_identified_gemms_take_the_cycle_model_on_another_device(tmp_path):
    hardware = "{base: datacenter_npu, nic: {overhead: 0 s}, network: {kind: ring, npus: 2, bandwidth: 50 GB/s, latency: 500 ns}}"
    path = _write(tmp_path, _gpu_trace())
    recorded = _run(tmp_path, path, hardware)
    scaled = _run(tmp_path, path, hardware, system="{kind: replay, compute: cycle_model}")
    device = load_scenario(tmp_path / "s.yaml").hardware
    gemm_s = array_cycles(device.systolic, 64, 256, 128, "fp32", 1) / device.systolic.clock
    assert scaled == pytest.approx(recorded - 100e-6 + gemm_s, rel=1e-9)


BAD = [
    ("not json", "JSON, optionally gzipped", None),
    ({"displayTimeUnit": "ms"}, "traceEvents", None),
    (
        {"traceEvents": [{"ph": "X", "cat": "user_annotation", "name": "x", "tid": 1, "ts": 0, "dur": 1}]},
        "without kernels",
        "no kernels",
    ),
    (_gpu_trace({"Collective name": "allreduce", "Group size": 2}), "In msg nelems", None),
    (_gpu_trace({"Collective name": "send", "In msg nelems": 4, "dtype": "Float"}), "point-to-point", None),
    (_gpu_trace({"Collective name": "allreduce", "In msg nelems": 4, "dtype": "Float", "Group size": 1}), "whole world", None),
    (_gpu_trace({"Collective name": "gather", "In msg nelems": 4, "dtype": "Float"}), "collective hwsim runs", None),
]


@pytest.mark.parametrize(("trace", "expected", "got"), BAD)
def test_bad_traces_are_refused_by_name(tmp_path, trace, expected, got):
    path = tmp_path / "bad.json"
    path.write_text(trace if isinstance(trace, str) else json.dumps(trace))
    with pytest.raises(ConfigError) as err:
        read_kineto(path)
    text = str(err.value)
    assert str(path) in text
    assert (expected in text) or (got is not None and got in text)


def test_a_gzipped_trace_reads_as_the_plain_one(tmp_path):
    plain = read_kineto(_write(tmp_path, _gpu_trace()))
    (tmp_path / "t.json.gz").write_bytes(gzip.compress(json.dumps(_gpu_trace()).encode()))
    assert read_kineto(tmp_path / "t.json.gz") == plain


def test_a_real_cpu_trace_from_torch_profiler_replays_its_recorded_step(tmp_path):
    """A profiled CPU step of a small MLP (torch.profiler, record_shapes): its outermost ops chained with their
    gaps; replayed on one rank the step is the recorded span; its linear layers are GEMMs of the right shapes."""
    torch = pytest.importorskip(
        "torch", reason="torch is not installed (pip install -e .[torch]): the real-trace check is skipped"
    )
    from torch.profiler import ProfilerActivity, profile

    torch.manual_seed(0)
    model = torch.nn.Sequential(torch.nn.Linear(64, 32), torch.nn.ReLU(), torch.nn.Linear(32, 10))
    x, y = torch.randn(16, 64), torch.randint(0, 10, (16,))
    with profile(activities=[ProfilerActivity.CPU], record_shapes=True) as prof:
        torch.nn.functional.cross_entropy(model(x), y).backward()
    path = tmp_path / "real.json"
    prof.export_chrome_trace(str(path))
    nodes, world = read_kineto(path)
    assert world == 1
    assert [n.gemm[:3] for n in nodes if n.gemm] == [(16, 32, 64), (16, 10, 32)]
    events = [e for e in json.loads(path.read_text())["traceEvents"] if e.get("cat") == "cpu_op" and e.get("ph") == "X"]
    main = min(events, key=lambda e: e["ts"])["tid"]
    mine = [e for e in events if e["tid"] == main]
    span = (max(e["ts"] + e["dur"] for e in mine) - min(e["ts"] for e in mine)) * 1e-6
    step = _run(tmp_path, str(path), "datacenter_npu")
    if len({e["tid"] for e in events}) == 1:  # one thread: the step is its span exactly
        assert step == pytest.approx(span, rel=1e-9)
    assert step >= span * (1 - 1e-9)
