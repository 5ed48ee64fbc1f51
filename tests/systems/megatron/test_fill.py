"""Bubble filling on the 3D system: a fill job in the predicted idle windows of every pipeline device, the
main job unchanged, its memory in the same bank, what does not fit as a result, and the budget check."""

from __future__ import annotations

import pytest

from hwsim.build import check
from hwsim.commands import claims
from hwsim.commands.validate import validate
from hwsim.config.load import load_scenario
from hwsim.errors import ConfigError
from hwsim.systems.megatron.fill import Fill, busy_s
from tests.systems.megatron.layouts import run, small

TINY = "{kind: transformer, name: tiny, layers: 2, d_model: 256, heads: 4, d_ff: 1024, vocab: 1024, seq_len: 256}"
LAYOUT = dict(t=2, p=4, d=1, batch=8)


def _fill(mode: str = "inference", model: str = TINY, microbatches: int = 400) -> list[str]:
    return [f"system.fill={{model: {model}, mode: {mode}, microbatches: {microbatches}}}"]


def test_the_fill_job_runs_in_the_predicted_windows_and_the_main_job_is_unchanged(write_yaml):
    alone, m0 = run(small(write_yaml, **LAYOUT))
    filled, m = run(small(write_yaml, more=_fill(), **LAYOUT))
    ops = filled.trace.ops
    main, fill = ops[~ops.op.str.startswith("fill")], ops[ops.op.str.startswith("fill")]
    columns = ["device", "op", "stage", "microbatch", "start_s", "end_s"]
    assert main[columns].reset_index(drop=True).equals(alone.trace.ops[columns].reset_index(drop=True))
    windows = filled.system.fill.windows
    for op in fill.itertuples():
        j = int(op.device[1:])
        assert any(a - 1e-12 <= op.start_s and op.end_s <= b + 1e-12 for a, b in windows[j]), op
    f = m["fill"]
    assert min(f["microbatches_placed"]) > 0 and len(fill) == sum(f["microbatches_placed"])
    assert f["slowdown"] == pytest.approx(0.0, abs=1e-12) and m["step_s"] == m0["step_s"]
    rows = m["devices"]
    assert f["utilization_gain"] == pytest.approx(sum(r["fill_s"] for r in rows) / sum(busy_s(r) for r in rows))
    assert all(after < before for before, after in zip(f["idle_before"], f["idle_after"], strict=True))
    assert f["samples_per_s"] == pytest.approx(len(fill) * 2 / m["step_s"])  # 2 tensor ranks per position


def test_a_training_fill_job_keeps_its_state_and_its_activations_in_the_bank(write_yaml):
    filled, m = run(small(write_yaml, more=_fill("train"), **LAYOUT))
    work = filled.system.fill.work
    assert set(filled.trace.ops.op) >= {"fill forward", "fill backward", "fill update"}
    assert work.backward.total_s > work.forward.total_s > 0 and work.update_s > 0
    for j, mem in enumerate(m["memory"]):
        if m["fill"]["microbatches_placed"][j]:  # its weights, gradients and Adam state, at the device's peak too
            assert mem["fill_bytes"] >= work.static_bytes
    events = filled.trace.memory
    assert events.event.str.contains("fill weights").any() and events.event.str.contains("fill act").any()


def test_a_fill_job_that_does_not_fit_is_a_result_with_the_reason(write_yaml):
    big = "{kind: transformer, name: big, layers: 8, d_model: 12288, heads: 96, d_ff: 49152, vocab: 51200, seq_len: 256}"
    _, m = run(small(write_yaml, more=_fill("train", big), **LAYOUT))  # 15B parameters x 18 bytes: no GPU holds it
    f = m["fill"]
    assert f["microbatches_placed"] == [0] * 4 and "would hold" in f["why_not_more"]
    _, m = run(small(write_yaml, more=[*_fill(), "system.fill.microbatch=64"], **LAYOUT))  # too long for any window
    assert m["fill"]["microbatches_placed"] == [0] * 4 and "fits no idle window" in m["fill"]["why_not_more"]


def test_fill_work_past_its_windows_delays_the_main_job_and_validate_says_so(write_yaml, monkeypatch):
    """Windows that are not idle (the whole step): the fill ops take the device from the main job, which
    waits; the slowdown is measured, and `hwsim validate` fails it against the budget."""
    whole = lambda self: [[(0.0, 1.0)] for _ in range(self.system.p)]  # noqa: E731
    monkeypatch.setattr(Fill, "predicted_windows", whole)
    scenario = small(write_yaml, more=_fill(), **LAYOUT)
    checks = {c.name: c for c in validate(scenario)}
    verdict = checks["fill: the main job's slowdown within fill.budget"]
    assert verdict.result == "FAIL" and "over its step alone" in verdict.detail


@pytest.mark.parametrize(
    ("more", "key"),
    [
        (["system.fill={model: mlp_digits}"], "system.fill.model"),
        (["system.fill={model: gpt2_small, mode: serve}"], "system.fill.mode"),
        (["system.fill={model: gpt2_small, policy: nosuch}"], "system.fill.policy"),
    ],
)
def test_bad_fill_settings_are_one_clear_error(write_yaml, more, key):
    with pytest.raises(ConfigError) as err:
        small(write_yaml, more=more, **LAYOUT)
    assert err.value.key == key


def test_an_mlp_takes_no_fill_job(root):
    path = root / "scenarios" / "megatron_mlp.yaml"
    with pytest.raises(ConfigError) as err:
        check(load_scenario(path, ["system.fill={model: gpt2_small}"]), str(path))
    assert err.value.key == "system.fill"


def test_pipefill_comparison_reports_the_gain_next_to_the_papers():
    table = claims.pipefill(rows=(("1,024 GPUs", ["system.parallel.data=8", "system.batch=256"], "5-15 %", 0.15),))
    row = table.iloc[0]
    assert row.idle_filled < row.idle_alone and row.utilization_gain > 0 and row.slowdown <= 0.02
    assert row.gap_to_top == pytest.approx(row.utilization_gain / 0.15 - 1)


def test_a_fill_job_not_resident_copies_its_weights_in_before_each_forward(write_yaml):
    """resident: false: no fill weights stay in the bank; each forward first copies them in from the host
    (weights / host_bandwidth, on the bank's track) and holds them during the forward; fewer fit."""
    _, kept = run(small(write_yaml, more=_fill(), **LAYOUT))
    swapped, m = run(
        small(write_yaml, more=[*_fill(), "system.fill.resident=false", "system.fill.host_bandwidth=1 GB/s"], **LAYOUT)
    )
    work = swapped.system.fill.work
    assert work.static_bytes == 0 and work.swap_s == pytest.approx(work.swap_bytes / 1e9)
    busy = swapped.trace.busy
    spans = busy[busy.label.str.startswith("fill swap-in")]
    assert len(spans) == sum(m["fill"]["microbatches_placed"]) and spans.work.eq(work.swap_bytes).all()
    assert sum(m["fill"]["microbatches_placed"]) < sum(kept["fill"]["microbatches_placed"])
    events = swapped.trace.memory
    assert not events.event.str.contains("fill weights").any()
    with pytest.raises(ConfigError) as err:
        small(write_yaml, more=[*_fill("train"), "system.fill.resident=false"], **LAYOUT)
    assert err.value.key == "system.fill.resident"
