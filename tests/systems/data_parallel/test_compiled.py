"""Compiled mode: every transfer as exact plays it, in the compiled engine; held to the exact run to float rounding
with stragglers, slow links, chunks, shared slots and reductions at a rate, in every sharing model; refusals."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.build import check, simulate
from hwsim.config.load import load_scenario
from hwsim.errors import ConfigError

SWITCH = "{base: datacenter_npu, network: {kind: switch, bandwidth: 100 Gb/s, latency: 1 us, model: %s%s}}"
DIMS = (
    "{base: datacenter_npu, network: {model: %s, dims: [{kind: switch, size: 8, bandwidth: 450 GB/s, latency: 0.5 us}, "
    "{kind: switch, size: 8, bandwidth: 100 Gb/s, latency: 2 us}]%s}}"
)
SLOW_NIC = ", overrides: [{npu: 5, bandwidth: 25 Gb/s}]"


def _run(write_yaml, hardware: str, mode: str, replicas: int = 16, repeat: int = 4, more: str = "", params: str = "4 MiB"):
    path = write_yaml(
        f"name: s\nhardware: {hardware}\n"
        f"model: {{kind: layers, layers: [{{name: block, forward: 0.5 ms, backward: 0.2 ms, params: {params}}}], repeat: {repeat}}}\n"
        f"system: {{kind: data_parallel, replicas: {replicas}, steps: 2, optimizer: 0.2 ms, mode: {mode} {more}}}\n"
        f"run: {{mode: timing-only}}\nreport: {{plots: false}}\n"
    )
    scenario = load_scenario(path)
    check(scenario, str(path))
    return simulate(scenario)


def _same(exact, compiled) -> None:
    """Steps, every all-reduce's start and end, and every link's bytes and busy time, to float rounding."""
    a, b = exact.system.collectives, compiled.system.collectives
    assert len(a) == len(b) > 0
    np.testing.assert_allclose(b.end_s, a.end_s, rtol=1e-9)
    np.testing.assert_allclose(b.start_s, a.start_s, rtol=1e-9)
    assert list(b.wire_bytes) == list(a.wire_bytes)
    links_a, links_b = exact.cluster.fabric.links(1.0), compiled.cluster.fabric.links(1.0)
    np.testing.assert_allclose(links_b.bytes, links_a.bytes, rtol=1e-12)
    np.testing.assert_allclose(links_b.busy_s, links_a.busy_s, rtol=1e-9, atol=1e-15)
    steps = [m[m.metric == "step_time_s"].value.to_numpy() for m in (exact.trace.metrics, compiled.trace.metrics)]
    np.testing.assert_allclose(steps[1], steps[0], rtol=1e-9)


@pytest.mark.parametrize("model", ["flow", "ideal", "store_and_forward"])
@pytest.mark.parametrize("algorithm", ["ring", "direct", "halving_doubling", "double_binary_tree"])
def test_compiled_equals_exact_with_a_straggler_and_a_slow_nic_on_16_npus(write_yaml, model, algorithm):
    more = f", stragglers: {{replicas: [3], slowdown: 1.5}}, collective: {{algorithm: {algorithm}}}"
    exact = _run(write_yaml, SWITCH % (model, SLOW_NIC), "exact", more=more)
    compiled = _run(write_yaml, SWITCH % (model, SLOW_NIC), "compiled", more=more)
    _same(exact, compiled)
    assert len(compiled.system.devices) == 2  # one replica per compute class
    assert compiled.trace.rows("messages") == exact.trace.rows("messages")


@pytest.mark.parametrize("model", ["flow", "ideal", "store_and_forward"])
def test_compiled_equals_exact_hierarchically_on_64_npus_with_chunks_and_stragglers(write_yaml, model):
    more = (
        ", stragglers: {fraction: 0.05, slowdown: 1.5}, "
        "collective: {hierarchical: true, chunks: 2, in_flight: 1, reduction_bandwidth: 200 GB/s}"
    )
    exact = _run(write_yaml, DIMS % (model, SLOW_NIC), "exact", 64, 2, more, "1 MiB")
    compiled = _run(write_yaml, DIMS % (model, SLOW_NIC), "compiled", 64, 2, more, "1 MiB")
    _same(exact, compiled)


@pytest.mark.parametrize("order", ["fifo", "lifo"])
def test_compiled_equals_exact_with_slots_shared_between_all_reduces(write_yaml, order):
    more = f", collective: {{hierarchical: true, chunks: 3, in_flight: 2, order: {order}}}"
    exact = _run(write_yaml, DIMS % ("flow", SLOW_NIC), "exact", 64, 3, more, "2 MiB")
    compiled = _run(write_yaml, DIMS % ("flow", SLOW_NIC), "compiled", 64, 3, more, "2 MiB")
    _same(exact, compiled)


def test_compiled_mode_records_every_message_as_exact_does(write_yaml):
    exact = _run(write_yaml, SWITCH % ("flow", ""), "exact", 8, 1)
    compiled = _run(write_yaml, SWITCH % ("flow", ""), "compiled", 8, 1)
    columns = ["src", "dst", "tag", "bytes"]
    a = exact.trace.messages.sort_values(["delivered_s", "src", "dst"]).reset_index(drop=True)
    b = compiled.trace.messages.sort_values(["delivered_s", "src", "dst"]).reset_index(drop=True)
    assert a[columns].equals(b[columns])
    np.testing.assert_allclose(b.delivered_s, a.delivered_s, rtol=1e-9)


@pytest.mark.parametrize(
    ("hardware", "more", "match"),
    [(SWITCH % ("flow", ""), ", collective: {codec: {name: uniform, bits: 8}}", "codec")],
)
def test_compiled_mode_refuses_what_it_does_not_play(write_yaml, hardware, more, match):
    with pytest.raises(ConfigError, match=match):
        _run(write_yaml, hardware, "compiled", more=more)
