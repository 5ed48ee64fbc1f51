"""A small transformer on a 3D layout (one node of 8 GPUs and a scale-out switch) for the megatron tests."""

from __future__ import annotations

from hwsim.build import check, simulate
from hwsim.config.load import load_scenario

SMALL = """
name: small_3d
hardware:
  base: a100_80gb
  network:
    model: {model}
    dims:
      - {{kind: switch, size: 8, bandwidth: 300 GB/s, latency: 1 us, efficiency: {eff}}}
      - {{kind: switch, size: 0, bandwidth: 200 Gb/s, latency: 2 us}}
model: {{kind: transformer, layers: 16, d_model: 512, heads: 8, d_ff: 2048, vocab: 1024, seq_len: 256}}
system:
  kind: megatron
  parallel: {{tensor: {t}, pipeline: {p}, data: {d}, virtual: {v}, sequence: {sp}}}
  batch: {batch}
  microbatch: {mb}
  recompute: {recompute}
  optimizer: {optimizer}
run: {{mode: timing-only}}
report: {{plots: false, trace: false, html: false}}
"""


def small(
    write_yaml,
    model="ideal",
    t=8,
    p=1,
    d=1,
    v=1,
    sp="false",
    batch=8,
    mb=1,
    recompute="none",
    optimizer="allreduce",
    eff=1,
    more=(),
):
    text = SMALL.format(
        model=model, t=t, p=p, d=d, v=v, sp=sp, batch=batch, mb=mb, recompute=recompute, optimizer=optimizer, eff=eff
    )
    path = write_yaml(text)
    scenario = load_scenario(path, list(more))
    check(scenario, str(path))
    return scenario


def run(scenario):
    outcome = simulate(scenario)
    assert outcome.status == "ok", outcome.diagnosis
    return outcome, outcome.system.summary(outcome.trace)["megatron"]
