"""Data-parallel replicas that compute slower (system.stragglers): symmetric mode, one replica per compute class,
against the exact run in every sharing model; the closed form; bad input."""

from __future__ import annotations

import pytest

from hwsim.build import check, simulate
from hwsim.config.load import load_scenario
from hwsim.errors import ConfigError

SWITCH = "{base: datacenter_npu, network: {kind: switch, bandwidth: 100 Gb/s, latency: 1 us, model: %s}}"
DIMS = (
    "{base: datacenter_npu, network: {model: %s, dims: [{kind: switch, size: 8, bandwidth: 450 GB/s, latency: 0.5 us}, "
    "{kind: switch, size: 8, bandwidth: 100 Gb/s, latency: 2 us}]}}"
)


def _run(write_yaml, hardware: str, mode: str, stragglers: str, replicas: int = 16, repeat: int = 4, more: str = ""):
    path = write_yaml(
        f"name: s\nhardware: {hardware}\n"
        f"model: {{kind: layers, layers: [{{name: block, forward: 0.5 ms, backward: 1 ms, params: 4 MiB}}], repeat: {repeat}}}\n"
        f"system: {{kind: data_parallel, replicas: {replicas}, steps: 2, optimizer: 0.2 ms, mode: {mode}, "
        f"stragglers: {stragglers} {more}}}\nrun: {{mode: timing-only}}\nreport: {{plots: false}}\n"
    )
    scenario = load_scenario(path)
    check(scenario, str(path))
    outcome = simulate(scenario)
    metrics = outcome.trace.metrics
    return list(metrics[metrics.metric == "step_time_s"].value), outcome


@pytest.mark.parametrize("model", ["flow", "ideal", "store_and_forward"])
@pytest.mark.parametrize("slow", ["{replicas: [3, 9], slowdown: 1.3}", "{replicas: [0], slowdown: 2}"])
def test_symmetric_mode_with_stragglers_equals_the_exact_run_on_16_npus(write_yaml, model, slow):
    """The stragglers differ in compute alone: every all-reduce starts when the slowest replica's backward ends
    and is the same collective as without them, so one replica per class, partners mirrored, gives the exact
    run's steps to the bit (replica 0 slow or not)."""
    exact, _ = _run(write_yaml, SWITCH % model, "exact", slow)
    symmetric, outcome = _run(write_yaml, SWITCH % model, "symmetric", slow)
    assert symmetric == exact
    assert len(outcome.system.devices) == 2


def test_symmetric_mode_with_stragglers_equals_exact_hierarchically_on_64_npus(write_yaml):
    exact, _ = _run(
        write_yaml, DIMS % "flow", "exact", "{fraction: 0.05, slowdown: 1.5}", 64, 2, ", collective: {hierarchical: true}"
    )
    symmetric, outcome = _run(
        write_yaml, DIMS % "flow", "symmetric", "{fraction: 0.05, slowdown: 1.5}", 64, 2, ", collective: {hierarchical: true}"
    )
    assert symmetric == exact
    assert len(outcome.system.slow) == 3  # round(0.05 x 64)


def test_one_layer_with_stragglers_takes_their_compute_and_optimizer(write_yaml):
    """One layer: the all-reduce starts after the slowest backward, the step ends after the slowest optimizer:
    the step is (s - 1) x (compute + optimizer) longer than without stragglers, and the report says so."""
    base, _ = _run(write_yaml, SWITCH % "flow", "symmetric", "null", repeat=1)
    slow, outcome = _run(write_yaml, SWITCH % "flow", "symmetric", "{replicas: [5], slowdown: 1.5}", repeat=1)
    assert slow[0] - base[0] == pytest.approx(0.5 * (1.5e-3 + 0.2e-3), rel=1e-9)
    section = outcome.system.summary(outcome.trace)["data_parallel"]["stragglers"]
    assert section["count"] == 1 and section["healthy_wait_s"] == pytest.approx(0.5 * 1.5e-3)


@pytest.mark.parametrize(
    ("slow", "match"),
    [
        ("{replicas: [16], slowdown: 1.2}", "replicas 0 to 15"),
        ("{replicas: [1], fraction: 0.1, slowdown: 1.2}", "one of them"),
        ("{replicas: [1], slowdown: 0.5}", "slowdown"),
    ],
)
def test_stragglers_that_cannot_be_are_refused(write_yaml, slow, match):
    with pytest.raises(ConfigError, match=match):
        _run(write_yaml, SWITCH % "flow", "exact", slow)
