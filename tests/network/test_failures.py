"""Cables that fail mid-run (hardware.network.failures, the flow model): flows stall, then reroute or abort,
against closed forms; bytes on the failed cable; bad input."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.build import check, simulate
from hwsim.config.load import load_scenario
from hwsim.errors import ConfigError
from tests.systems.replay.traces import step_time

# 2 leaves of 1 NPU, 2 spines, 100 Gb/s NPU links: each leaf's uplink to a spine carries 50 Gb/s. Two replicas
# all-reduce a 100 MB gradient: two rounds of 50 MB each way over spine 1 (ECMP: (0 + 1) mod 2), 8 ms each.
ROUND = 1e-6 + 4e-6 + 50e6 / 6.25e9  # NIC overhead, 4 hops of 1 us, 50 MB at 50 Gb/s
BASE = 20e-6 + 2 * ROUND  # forward and backward, then the ring's two rounds


def _run(write_yaml, network: str = "", spines: int = 2, mode: str = "exact", sharing: str = "flow"):
    path = write_yaml(
        f"""
name: failures
hardware:
  base: datacenter_npu
  network: {{kind: fat_tree, leaves: 2, npus_per_leaf: 1, spines: {spines}, bandwidth: 100 Gb/s, latency: 1 us,
             spine_latency: 1 us, model: {sharing}, {network}}}
model: {{kind: layers, layers: [{{name: l, forward: 10 us, backward: 10 us, params: 100 MB}}]}}
system: {{kind: data_parallel, replicas: 2, steps: 1, mode: {mode}}}
run: {{mode: timing-only}}
report: {{plots: false}}
"""
    )
    scenario = load_scenario(path)
    check(scenario, str(path))
    out = simulate(scenario)
    assert ("compiled" in out.cluster.shared) == (mode == "compiled")
    return out


MODES = pytest.mark.parametrize(
    ("mode", "sharing"), [("exact", "flow"), ("compiled", "flow"), ("exact", "ideal"), ("compiled", "ideal")]
)
"""SimPy's flows and the compiled engine's (`hwsim.collectives.compiled_failures`), under `flow` and under `ideal`
(its messages then flows that share nothing, `sharing.Unshared`): the same closed forms (no two flows here share
a link)."""


def _failures(outcome) -> list[dict]:
    return outcome.cluster.fabric.model.failures.summary(outcome.sim_time_s)["failures"]


@MODES
def test_without_failures_the_step_is_its_closed_form(write_yaml, mode, sharing):
    assert step_time(_run(write_yaml, mode=mode, sharing=sharing)) == pytest.approx(BASE, rel=1e-9)


@MODES
def test_a_cable_down_for_a_while_stalls_its_flows_that_long_when_they_wait(write_yaml, mode, sharing):
    """on_failure abort, the cable back before the timeout: both flows of the first round stall 2 ms, then go on."""
    out = _run(
        write_yaml, "failures: [{link: leaf0->spine1, at: 1 ms, duration: 2 ms}], on_failure: abort", mode=mode, sharing=sharing
    )
    assert out.status == "ok"
    assert step_time(out) == pytest.approx(BASE + 2e-3, rel=1e-9)
    (failure,) = _failures(out)
    assert failure["flows_stalled"] == 2 and failure["flows_rerouted"] == 0
    assert failure["stalled_s"] == pytest.approx(2 * 2e-3)


@MODES
def test_reroute_moves_the_stalled_flows_to_the_other_spine_after_the_delay(write_yaml, mode, sharing):
    """The other spine's uplinks are as fast: the step is late by the reroute delay alone; the failed cable
    carried only the bytes sent before the failure, the other spine the rest."""
    out = _run(
        write_yaml,
        "failures: [{link: leaf0->spine1, at: 1 ms, duration: 50 ms}], reroute_delay: 0.5 ms",
        mode=mode,
        sharing=sharing,
    )
    assert step_time(out) == pytest.approx(BASE + 0.5e-3, rel=1e-9)
    (failure,) = _failures(out)
    assert failure["flows_stalled"] == failure["flows_rerouted"] == 2
    assert failure["stalled_s"] == pytest.approx(2 * 0.5e-3)
    links = out.cluster.fabric.links(out.sim_time_s).set_index("link").bytes
    sent_before = (1e-3 - 20e-6 - 1e-6) * 6.25e9  # the first round's bytes on leaf0 -> spine1 until the failure
    assert links["leaf0->spine1"] == pytest.approx(sent_before, rel=1e-6)
    assert links["leaf0->spine1"] + links["leaf0->spine0"] == pytest.approx(2 * 50e6, rel=1e-9)


@MODES
def test_with_no_way_round_a_rerouted_flow_waits_for_the_cable(write_yaml, mode, sharing):
    """One spine (its uplinks then carry 100 Gb/s): nowhere to go, the flows wait the 2 ms out."""
    out = _run(write_yaml, "failures: [{link: leaf0->spine0, at: 1 ms, duration: 2 ms}]", spines=1, mode=mode, sharing=sharing)
    one_spine = 20e-6 + 2 * (1e-6 + 4e-6 + 50e6 / 12.5e9)
    assert step_time(out) == pytest.approx(one_spine + 2e-3, rel=1e-9)
    assert _failures(out)[0]["flows_rerouted"] == 0


@MODES
def test_flows_that_start_after_the_reroute_go_round_at_once(write_yaml, mode, sharing):
    """A cable down from the start: the routes change at once (delay 0), the all-reduce never touches it."""
    out = _run(write_yaml, "failures: [{link: leaf0->spine1, at: 0 s}]", mode=mode, sharing=sharing)
    assert step_time(out) == pytest.approx(BASE, rel=1e-9)
    assert _failures(out)[0]["flows_stalled"] == 0


@MODES
def test_abort_fails_the_run_a_timeout_after_the_failure_with_the_time_lost(write_yaml, mode, sharing):
    """NCCL-like: the cable stays down; the stalled flows hit the timeout and the run stops there."""
    out = _run(
        write_yaml, "failures: [{link: leaf0->spine1, at: 1 ms}], on_failure: abort, timeout: 5 ms", mode=mode, sharing=sharing
    )
    assert out.status == "network_timeout"
    assert out.sim_time_s == pytest.approx(6e-3)
    assert "leaf0->spine1" in out.diagnosis and "2 flow(s)" in out.diagnosis and "0.01 s of flow time lost" in out.diagnosis


@pytest.mark.parametrize(
    ("sharing", "network", "match"),
    [
        ("flow", "failures: [{link: leaf9->spine1, at: 1 ms}]", r"failures\[0\].link.*a link of the fabric.*leaf0->spine0"),
        ("store_and_forward", "failures: [{link: leaf0->spine1, at: 1 ms}]", "model flow or ideal"),
    ],
)
def test_a_failure_the_fabric_cannot_have_is_refused(write_yaml, sharing, network, match):
    with pytest.raises(ConfigError, match=match):
        _run(write_yaml, network, sharing=sharing)


def _sixteen(write_yaml, network: str, mode: str):
    """16 replicas on a 2:1 fat tree (4 leaves of 4, 2 spines): two layers' ring all-reduces beside the backward,
    two steps; `network`: the fabric's sharing model and failures."""
    path = write_yaml(
        f"""
name: sixteen
hardware:
  base: datacenter_npu
  network: {{kind: fat_tree, leaves: 4, npus_per_leaf: 4, spines: 2, bandwidth: 100 Gb/s, latency: 1 us,
             spine_latency: 1 us, oversubscription: 2, {network}}}
model: {{kind: layers, layers: [{{name: l, forward: 100 us, backward: 200 us, params: 8 MiB}}], repeat: 2}}
system: {{kind: data_parallel, replicas: 16, steps: 2, mode: {mode}}}
run: {{mode: timing-only}}
report: {{plots: false}}
"""
    )
    scenario = load_scenario(path)
    check(scenario, str(path))
    out = simulate(scenario)
    assert out.status == "ok", out.diagnosis
    return out


@pytest.mark.parametrize(
    "failures",
    [
        "failures: [{link: leaf0->spine1, at: 0.4 ms, duration: 1 ms}, {link: spine1->leaf3, at: 0.6 ms}], reroute_delay: 0.2 ms",
        "failures: [{link: leaf0->spine1, at: 0.4 ms, duration: 0.5 ms}, {link: leaf1->spine1, at: 0.5 ms, "
        "duration: 2 ms}], on_failure: abort",
    ],
    ids=["reroute", "abort"],
)
@pytest.mark.parametrize("sharing", ["flow", "ideal"])
def test_the_compiled_engine_cuts_flows_as_simpy_does(write_yaml, failures, sharing):
    """Two cables failing in the middle of the all-reduces (with reroute, the second for good): the compiled
    engine's step, every link's bytes and each failure's stalled and rerouted flows and seconds equal SimPy's to
    float rounding (measured: 1e-14; flow, reroute: 9 and 6 flows stalled and moved; flow, abort: 21 and 6 flows
    waiting 18.7 and 11.3 ms in all)."""
    exact, compiled = (_sixteen(write_yaml, f"model: {sharing}, {failures}", mode) for mode in ("exact", "compiled"))
    assert compiled.sim_time_s == pytest.approx(exact.sim_time_s, rel=1e-9)
    mine, theirs = _failures(compiled), _failures(exact)
    assert all(f["flows_stalled"] > 0 for f in theirs)  # every ring that crossed spine 1 (ECMP) was cut
    for a, b in zip(mine, theirs, strict=True):
        assert a["flows_stalled"] == b["flows_stalled"] and a["flows_rerouted"] == b["flows_rerouted"]
        assert a["stalled_s"] == pytest.approx(b["stalled_s"], rel=1e-9, abs=1e-15)
    links = [r.cluster.fabric.links(r.sim_time_s).set_index("link").bytes for r in (compiled, exact)]
    np.testing.assert_allclose(links[0].sort_index(), links[1].sort_index(), rtol=1e-9)


@pytest.mark.parametrize("mode", ["exact", "compiled"])
def test_ideal_messages_as_unshared_flows_take_the_ideal_models_time(write_yaml, mode):
    """With failures the ideal model's messages are flows that share nothing (`sharing.Unshared`): a cable that
    fails only after the run leaves every step as plain `ideal` gives it (on the 2:1 tree, where flows would
    share the uplinks)."""
    plain = _sixteen(write_yaml, "model: ideal", mode).sim_time_s
    unshared = _sixteen(write_yaml, "model: ideal, failures: [{link: leaf0->spine1, at: 10 s}]", mode).sim_time_s
    assert unshared == pytest.approx(plain, rel=1e-9)
