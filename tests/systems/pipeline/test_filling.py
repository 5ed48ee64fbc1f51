"""A pipeline filled with a second model instance: the first instance untouched, the second on
plan and training right (against float64 NumPy), memory, a bad filler, errors, report, validation."""

import dataclasses
import json

import numpy as np
import pytest

import hwsim
from hwsim.build import simulate
from hwsim.cli import main
from hwsim.commands.validate import validate
from hwsim.errors import ConfigError
from tests.systems.pipeline.test_pipeline import numpy_step

SMALL = ["system.steps=2", "system.fill.microbatches=2", "system.microbatch=4", "system.fill.microbatch=4"]


def filled(root, *overrides: str, name: str = "pipeline_fill"):
    return hwsim.load_scenario(root / "scenarios" / f"{name}.yaml", [*SMALL, *overrides])


def alone(scenario):
    return dataclasses.replace(scenario, system=dataclasses.replace(scenario.system, fill=None))


PRIMARY = ["forward", "backward", "weight", "allreduce", "update"]


@pytest.mark.parametrize("network", ["nic", "free"])
def test_first_instance_op_times_are_bit_for_bit_those_it_has_alone(root, network):
    sc = filled(root, f"system.network={network}")
    with_fill, without = simulate(sc), simulate(alone(sc))
    assert with_fill.status == without.status == "ok"
    assert with_fill.system.fill.microbatches == 2
    a = without.trace.ops[without.trace.ops.op.isin(PRIMARY)].reset_index(drop=True)
    b = with_fill.trace.ops[with_fill.trace.ops.op.isin(PRIMARY)].reset_index(drop=True)
    assert a.equals(b)
    assert with_fill.trace.ops.op.str.startswith("fill").sum() > 0


def test_second_instance_runs_at_its_planned_times(root):
    outcome = simulate(filled(root, "system.network=free"))
    fill, ops = outcome.system.fill, outcome.trace.ops
    steps = outcome.trace.metrics[outcome.trace.metrics.metric == "step_time_s"]
    begin = dict(zip(steps.step, steps.time_s - steps.value, strict=True))
    kinds = {"fill forward": "F", "fill backward": "B", "fill update": "U"}
    rows = ops[ops.op.isin(list(kinds))]
    assert len(rows) == 2 * len(fill.placement.times)
    span = steps.value.max()
    for row in rows.itertuples():
        planned = fill.placement.times[hwsim.policies.Op(kinds[row.op], row.stage, row.microbatch)]
        assert abs(row.start_s - (begin[row.step] + planned.start)) <= 1e-12 * span
        assert abs(row.end_s - (begin[row.step] + planned.end)) <= 1e-12 * span


@pytest.mark.parametrize("model", ["mlp_digits_deep", "mlp_digits"])
def test_second_instance_step_equals_float64_numpy(root, model):
    outcome = simulate(filled(root, "system.steps=1", f"system.fill.model={model}"))
    fill = outcome.system.fill
    assert fill.microbatches >= 1
    want = numpy_step(fill)
    for (w, b), (pw, pb) in zip(want, fill.final_params(), strict=True):
        np.testing.assert_allclose(pw, w, rtol=0, atol=2e-6 * np.abs(w).max())
        np.testing.assert_allclose(pb, b, rtol=0, atol=2e-6)


def test_second_instance_learns_and_runs_are_deterministic(root):
    sc = filled(root, "system.steps=30")
    first, second = hwsim.run(sc), hwsim.run(sc)
    summary = first.summary["fill"]
    assert summary["fill_loss_end"] < 0.7 * summary["fill_loss_start"]
    assert summary["fill_final_test_accuracy"] > 0.3
    assert summary["utilization_after"] > summary["utilization_before"] + 0.1
    assert summary["predicted_utilization_after"] == pytest.approx(summary["utilization_after"], rel=1e-9)
    assert summary["within_budget"] and abs(summary["primary_slowdown"]) < 1e-9
    assert first.metrics.equals(second.metrics)


def test_a_bank_too_small_for_the_second_instance_gets_no_placement(root):
    tight = simulate(filled(root, "hardware.memory.working.capacity=7 MiB"))  # the first instance peaks at 6.2 MiB
    assert tight.status == "ok"
    assert tight.system.fill.microbatches == 0
    assert "of the second instance" in tight.system.fill.placement.reason
    assert not tight.trace.ops.op.str.startswith("fill").any()
    roomy, first = simulate(filled(root)), simulate(alone(filled(root)))
    measured = first.trace.memory.groupby("bank").used_bytes.max()
    predicted = [16 * 2**20 - room for room in roomy.system.fill.headroom]  # the policy's view of the first instance
    assert predicted == [measured[f"d{d}.working"] for d in range(4)]
    banks = roomy.trace.memory.groupby("bank").used_bytes.max()
    capacity = roomy.trace.units.set_index("unit").capacity_bytes
    assert all(banks[b] <= capacity[b] for b in banks.index)
    assert any(e.startswith("alloc fill act") for e in roomy.trace.memory.event)


def test_a_filler_that_breaks_the_rules_ends_the_run_with_a_diagnosis(root, tmp_path, monkeypatch):
    (tmp_path / "greedy.py").write_text(
        "from hwsim.policies import Op, Placement, Timed\n"
        "def everywhere(windows, job, headroom):\n"
        "    times = {Op('F', s, 0): Timed(s % len(windows), 0.0, job.forward[s]) for s in range(job.stages)}\n"
        "    times |= {Op('B', s, 0): Timed(s % len(windows), 0.0, job.backward[s]) for s in range(job.stages)}\n"
        "    times |= {Op('U', s, -1): Timed(s % len(windows), 0.0, 0.0) for s in range(job.stages)}\n"
        "    return Placement(tuple(s % len(windows) for s in range(job.stages)), times, 1)\n"
    )
    monkeypatch.chdir(tmp_path)
    outcome = simulate(filled(root, "system.fill.policy=greedy.py:everywhere"))
    assert outcome.status == "invalid_schedule"
    assert "greedy.py:everywhere" in outcome.diagnosis and "idle window" in outcome.diagnosis


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("system.fill.policy=nowhere", "system.fill.policy"),
        ("system.fill.stages=3", "system.fill.stages"),
        ("system.fill.model=gpt2_small", "system.fill.model"),
        ("system.fill.microbatch=2000", "system.fill.microbatch"),
        ("system.fill.slowdown_budget=-1", "system.fill.slowdown_budget"),
    ],
)
def test_bad_fill_settings_name_their_key(root, override, key):
    with pytest.raises(ConfigError) as err:
        simulate(filled(root, override))
    assert err.value.key == key


def test_report_holds_the_fill_section_tables_and_plots(root, tmp_path):
    result = hwsim.run(filled(root))
    folder = result.write(tmp_path / "run")
    summary = json.loads((folder / "summary.json").read_text())
    fill = summary["fill"]
    assert fill["microbatches_placed"] == 2 and fill["policy"] == "best_mapping"
    assert set(fill["per_device"]) == {"d0", "d1", "d2", "d3"}
    for name in ("fill_devices.csv", "fill_map.csv", "bubble_filling.png", "fill_map.png", "pipeline_gantt.png"):
        assert (folder / name).is_file(), name
    grid = result.fill_map
    assert set(grid.devices) == {2, 4, 8} and 4 in set(grid.microbatches)
    point = grid[(grid.devices == 4) & (grid.microbatches == 4)].iloc[0]
    assert point.utilization_after >= point.utilization_before
    assert "second instance" in (folder / "report.html").read_text()


def test_validate_passes_the_shipped_filled_scenarios(root, tmp_path, monkeypatch, capsys):
    for name in ("pipeline_fill", "pipeline_fill_1f1b"):
        checks = validate(filled(root, name=name))
        fill = [c for c in checks if c.name.startswith("fill:")]
        assert len(fill) == 4
        assert all(c.result == "PASS" for c in checks if c.result != "n/a"), [c for c in checks if c.result == "FAIL"]
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(root / "scenarios" / "pipeline_fill.yaml"), *SMALL]) == 0
    assert "fill: first instance's op times unchanged" in capsys.readouterr().out


def test_a_split_backward_schedule_is_filled_around_its_w_ops(root):
    """ZB-H1 with the W's where the schedule puts them: the second instance goes into what idle time
    is left, the first instance's ops (W's included) keep their times, and validation passes."""
    sc = filled(
        root,
        "system.schedule=zb_h1",
        "system.placement=contiguous",
        "system.stages_per_device=1",
        "system.network=free",
        "system.data_parallel=1",
        "system.microbatches=4",
        "system.fill.model=linear_digits",
        "system.fill.microbatch=2",
        name="pipeline_fill_1f1b",
    )
    with_fill, without = simulate(sc), simulate(alone(sc))
    assert with_fill.system.fill.microbatches == 2
    a = without.trace.ops[without.trace.ops.op.isin(PRIMARY)].reset_index(drop=True)
    b = with_fill.trace.ops[with_fill.trace.ops.op.isin(PRIMARY)].reset_index(drop=True)
    assert a.equals(b) and (a.op == "weight").sum() == 2 * 4 * 4
    checks = validate(sc)
    assert all(c.result == "PASS" for c in checks if c.result != "n/a"), [c for c in checks if c.result == "FAIL"]
