"""What the replay and export tests share: a checked replay scenario of a trace set, and a run's step time."""

from __future__ import annotations

from hwsim.build import check
from hwsim.config.load import load_scenario

RING8 = "{base: datacenter_npu, network: {kind: ring, npus: 8, bandwidth: 50 GB/s, latency: 500 ns}}"


def replay_scenario(folder, prefix: str, hardware: str = RING8, system: str = "{kind: replay}"):
    """The checked replay scenario of the trace set `folder/prefix` on `hardware` (a YAML mapping)."""
    path = folder / "replay.yaml"
    path.write_text(
        f"name: replay\nhardware: {hardware}\nmodel: {{kind: chakra, traces: {prefix}}}\nsystem: {system}\n"
        "run: {mode: timing-only}\nreport: {plots: false}\n"
    )
    scenario = load_scenario(path)
    check(scenario, str(path))
    return scenario


def step_time(outcome) -> float:
    """The run's last step time (its `step_time_s` metric)."""
    metrics = outcome.trace.metrics
    return float(metrics[metrics.metric == "step_time_s"].value.iloc[-1])
