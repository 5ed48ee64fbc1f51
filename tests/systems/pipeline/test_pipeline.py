"""The pipeline system: schedule-invariance of the math, predicted = simulated times, the ring
all-reduce, mirrored replicas, memory, validation and errors."""

import json

import numpy as np
import pytest

import hwsim
from hwsim.build import simulate
from hwsim.cli import main
from hwsim.commands.validate import validate
from hwsim.errors import ConfigError
from hwsim.policies import makespan
from hwsim.report.pipeline import op_times

SCHEDULES = {
    "gpipe": 1,
    "1f1b": 1,
    "interleaved": 2,
    "breadth_first": 2,
    "hybrid": 2,
    "zb_h1": 1,
    "zb_h2": 1,
    "zb_v": 2,
    "v_half": 2,
    "v_min": 2,
    "dualpipe_v": 2,
    "dualpipe": 2,
}
SMALL = ["model.hidden=[24,24,24,24,24,24,24]", "system.microbatch=4", "system.steps=1", "system.data_parallel=2"]


def scenario(root, schedule: str, *overrides: str):
    path = root / "scenarios" / f"pipeline_{schedule}.yaml"
    return hwsim.load_scenario(path, [*SMALL, *overrides])


def numpy_step(system) -> list[tuple[np.ndarray, np.ndarray]]:
    """Float64 NumPy: one device, every micro-batch of every replica, mean gradient, one SGD step."""
    spec, data = system.spec, system.data
    params = [(w.astype(np.float64), b.astype(np.float64)) for w, b in system.initial]
    grads = [(np.zeros_like(w), np.zeros_like(b)) for w, b in params]
    idx = system.step_samples[0]
    count = len(idx) // spec.microbatch
    for q in range(count):
        rows = idx[q * spec.microbatch : (q + 1) * spec.microbatch]
        acts, pre = [data.x_train[rows].astype(np.float64)], []
        for li, (w, b) in enumerate(params):
            pre.append(acts[-1] @ w + b)
            acts.append(pre[-1] if li == len(params) - 1 else np.maximum(pre[-1], 0))
        p = np.exp(acts[-1] - acts[-1].max(1, keepdims=True))
        g = p / p.sum(1, keepdims=True)
        g[np.arange(len(rows)), data.y_train[rows]] -= 1
        g /= len(rows)
        for li in reversed(range(len(params))):
            if li < len(params) - 1:
                g = g * (pre[li] > 0)
            grads[li][0][...] += acts[li].T @ g
            grads[li][1][...] += g.sum(0)
            g = g @ params[li][0].T
    return [(w - spec.lr * gw / count, b - spec.lr * gb / count) for (w, b), (gw, gb) in zip(params, grads, strict=True)]


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_every_schedule_trains_the_same_weights_as_one_device(root, schedule):
    outcome = simulate(scenario(root, schedule))
    assert outcome.status == "ok", outcome.diagnosis
    want = numpy_step(outcome.system)
    got = outcome.system.final_params()
    for (w, b), (pw, pb) in zip(want, got, strict=True):
        np.testing.assert_allclose(pw, w, rtol=0, atol=2e-6 * np.abs(w).max())
        np.testing.assert_allclose(pb, b, rtol=0, atol=2e-6)


@pytest.mark.parametrize("schedule", SCHEDULES)
def test_simulated_op_times_equal_the_cycle_model_prediction(root, schedule):
    outcome = simulate(scenario(root, schedule, "system.network=free", "system.data_parallel=1"))
    predicted = outcome.system.predicted_times()
    simulated = op_times(outcome.trace.ops, 1)
    assert simulated.keys() == predicted.keys()
    span = makespan(predicted)
    for op, t in predicted.items():
        assert simulated[op].device == t.device
        assert abs(simulated[op].start - t.start) <= 1e-12 * span
        assert abs(simulated[op].end - t.end) <= 1e-12 * span


def test_ring_allreduce_moves_two_d_minus_one_over_d_of_each_gradient(root):
    sc = scenario(root, "breadth_first", "system.data_parallel=3")
    outcome = simulate(sc)
    messages = outcome.trace.messages
    ring = messages[messages.tag == "allreduce"]
    costs = outcome.system.costs
    per_stage_bytes = sum(4 * c.params for c in costs)  # every stage's fp32 gradient, once per replica
    # each replica's device sends 2 (D - 1) chunks of 1/D of its stage's gradient
    assert ring.bytes.sum() == pytest.approx(3 * 2 * 2 / 3 * per_stage_bytes, rel=1e-3)
    assert (ring.src != ring.dst).all()
    busy = outcome.trace.busy
    sent = busy[busy.unit.str.endswith(".nic.up")].work.sum()
    received = busy[busy.unit.str.endswith(".nic.down")].work.sum()
    assert sent == received == messages.bytes.sum()  # bytes sent = bytes received, none lost


def test_mirrored_replicas_time_exactly_like_simulated_ones(root):
    timing = ["run.mode=timing-only", "system.steps=2"]
    full = hwsim.run(scenario(root, "breadth_first", *timing, "system.replicas=all"))
    mirrored = hwsim.run(scenario(root, "breadth_first", *timing, "system.replicas=one"))
    assert full.status == mirrored.status == "ok"
    assert mirrored.sim_time_s == full.sim_time_s
    ops = full.trace.ops
    replica0 = ops[ops.device.str.startswith("r0.")].assign(device=lambda f: f.device.str[3:]).reset_index(drop=True)
    pd_mirror = mirrored.trace.ops.reset_index(drop=True)
    assert replica0.equals(pd_mirror)


def test_breadth_first_hides_more_of_the_all_reduce_than_1f1b(root):
    """The shipped case: small batch per device, 4 data-parallel replicas, 10 Gb/s NICs."""
    runs = {
        s: hwsim.run(
            hwsim.load_scenario(
                root / "scenarios" / f"pipeline_{s}.yaml", ["system.steps=1", "run.mode=timing-only", "system.replicas=one"]
            )
        )
        for s in ("1f1b", "breadth_first")
    }
    pipe = {s: r.summary["pipeline"] for s, r in runs.items()}
    assert pipe["breadth_first"]["overlapped_allreduce_s"] > 0 == pipe["1f1b"]["overlapped_allreduce_s"]
    assert pipe["breadth_first"]["exposed_allreduce_s"] < pipe["1f1b"]["exposed_allreduce_s"]
    assert runs["breadth_first"].summary["step_time_s"] < runs["1f1b"].summary["step_time_s"]


def test_tight_activation_memory_only_1f1b_and_zb_h1_fit(root):
    """The shipped case: 64-sample micro-batches, one replica, a 9 MiB working bank. ZB-H1 holds 1F1B's
    micro-batches in flight (its deferred W's keep what they need in the activations' place); ZB-H2's
    2p - 1 do not fit."""
    status = {}
    for s in ("gpipe", "1f1b", "breadth_first", "zb_h1", "zb_h2"):
        sc = hwsim.load_scenario(
            root / "scenarios" / f"pipeline_{s}.yaml",
            [
                "system.steps=1",
                "system.data_parallel=1",
                "system.microbatch=64",
                "hardware.memory.working.capacity=9 MiB",
                "run.mode=timing-only",
            ],
        )
        result = hwsim.run(sc)
        status[s] = (result.status, result.diagnosis)
    assert status["1f1b"][0] == status["zb_h1"][0] == "ok"
    for s in ("gpipe", "breadth_first", "zb_h2"):
        assert status[s][0] == "out_of_memory" and "'act " in status[s][1]


def test_activation_peaks_in_the_report_follow_the_schedule(root, tmp_path):
    result = hwsim.run(scenario(root, "1f1b", "system.data_parallel=1", "system.steps=2"))
    pipe = result.summary["pipeline"]
    peaks = [pipe["per_device"][f"d{d}"]["peak_activation_microbatches"] for d in range(4)]
    assert peaks == [4, 3, 2, 1]
    assert 0 < pipe["bubble_fraction"] < 1 and set(pipe["definitions"]) == {
        "bubble_fraction",
        "bubble_vs_ideal",
        "bubble_s",
        "overhead_s",
    }
    assert 0 < pipe["bubble_s"] < pipe["makespan_s"] and pipe["peak_activation_bytes"] > 0
    assert pipe["overhead_s"] == pytest.approx(pipe["makespan_s"] * pipe["bubble_vs_ideal"] / (1 + pipe["bubble_vs_ideal"]))
    folder = result.write(tmp_path / "r")
    for name in ("pipeline_gantt.png", "activation_memory.png", "ops.csv", "pipeline_devices.csv"):
        assert (folder / name).is_file(), name
    assert json.loads((folder / "summary.json").read_text())["pipeline"]["schedule"] == "1f1b"


def test_a_split_backward_holds_what_w_needs_until_w_and_frees_it(root):
    """ZB-H1 on one replica: each B swaps a stage's activations for its W's inputs ('wgt s.j'), each
    W frees them; at the step's end only the weights, velocity and gradients are left."""
    outcome = simulate(scenario(root, "zb_h1", "system.data_parallel=1", "run.mode=timing-only"))
    assert outcome.status == "ok", outcome.diagnosis
    memory, costs, elem = outcome.trace.memory, outcome.system.costs, outcome.system.elem
    memory = memory.assign(change=memory.groupby("bank").used_bytes.diff())
    held = memory[memory.event.str.startswith("alloc wgt ")]
    assert len(held) == 4 * 8 and memory.event.str.startswith("free wgt ").sum() == 4 * 8
    for event, change in zip(held.event, held.change, strict=True):
        stage = int(event.split()[2].split(".")[0])
        assert change == costs[stage].weight_inputs * elem
    ends = memory.groupby("bank").used_bytes.last()
    assert all(ends[f"d{d}.working"] == 3 * costs[d].params * elem for d in range(4))
    assert (outcome.trace.ops.op == "weight").sum() == 4 * 8


def test_dualpipe_keeps_its_two_parameter_copies_identical(root):
    """Each model stage's parameters live on two devices; summing the copies' gradients keeps them equal
    to the bit, step after step, and the bank holds both."""
    outcome = simulate(scenario(root, "dualpipe", "system.steps=3", "system.data_parallel=1"))
    assert outcome.status == "ok", outcome.diagnosis
    system = outcome.system
    for s in range(4):
        for mine, twin in zip(system.params[0, s], system.params[0, s + 4], strict=True):
            for a, b in zip(mine, twin, strict=True):
                assert np.array_equal(a, b)
    assert outcome.trace.memory.event.str.startswith("alloc s7.weights").any()
    assert (outcome.trace.ops.op == "allreduce").sum() == 3 * 8  # each stage's twin sum, every step


@pytest.mark.parametrize("schedule", ["gpipe", "breadth_first"])
def test_reverse_backward_order_trains_the_same_weights(root, schedule):
    outcome = simulate(scenario(root, schedule, "system.reverse_backward=true"))
    assert outcome.status == "ok", outcome.diagnosis
    first = outcome.system.schedule[0]
    backwards = [op.mb for op in first if op.kind == "B"]
    assert backwards[: outcome.system.shape.microbatches] == list(range(outcome.system.shape.microbatches))[::-1]
    for (w, b), (pw, pb) in zip(numpy_step(outcome.system), outcome.system.final_params(), strict=True):
        np.testing.assert_allclose(pw, w, rtol=0, atol=2e-6 * np.abs(w).max())
        np.testing.assert_allclose(pb, b, rtol=0, atol=2e-6)


def test_a_deadlocking_schedule_is_a_result_not_a_crash(root, tmp_path, monkeypatch):
    (tmp_path / "bad.py").write_text(
        "from hwsim.policies import build_schedule\n\n"
        "def backwards_first(shape):\n"
        "    return [sorted(ops, key=lambda op: op.kind) for ops in build_schedule('gpipe', shape)]\n"
    )
    monkeypatch.chdir(tmp_path)
    result = hwsim.run(scenario(root, "gpipe", "system.schedule=bad.py:backwards_first"))
    assert result.status == "invalid_schedule" and "deadlocks" in result.diagnosis


@pytest.mark.parametrize(
    ("override", "key"),
    [
        ("system.stages_per_device=3", "system.stages_per_device"),
        ("system.microbatches=0", "system.microbatches"),
        ("system.schedule=zigzag", "system.schedule"),
        ("system.microbatches=6", "system.schedule"),  # interleaved: m must be a multiple of p
        ("system.layers_per_stage=[2,2,2,1,1,1,1,1]", "system.layers_per_stage"),
        ("system.placement=contiguous", "system.schedule"),
        ("system.replicas=one", "system.replicas"),
        ("system.placement=ring", "system.placement"),
        ("system.reverse_backward=true", "system.reverse_backward"),  # interleaved has no reverse order
    ],
)
def test_bad_pipeline_settings_name_their_key(root, override, key):
    with pytest.raises(ConfigError) as err:
        simulate(scenario(root, "interleaved", override))
    assert err.value.key == key


def test_validate_passes_every_shipped_schedule(root):
    for schedule in SCHEDULES:
        checks = validate(scenario(root, schedule, "system.steps=2"))
        failed = [c for c in checks if c.result == "FAIL"]
        assert not failed, failed
        assert sum(c.result == "PASS" for c in checks) >= 10


def test_validate_command_exits_by_result(root, tmp_path, monkeypatch, capsys):
    path = root / "scenarios" / "pipeline_breadth_first.yaml"
    assert main(["validate", str(path), *SMALL, "--progress", "off"]) == 0
    out = capsys.readouterr().out
    assert "| makespan = closed form (uniform stages, free communication) | PASS |" in out
    (tmp_path / "bad.py").write_text("def lost(shape):\n    return [[] for _ in range(shape.devices)]\n")
    monkeypatch.chdir(tmp_path)
    assert main(["validate", str(path), *SMALL, "system.schedule=bad.py:lost", "--progress", "off"]) == 1
    assert "ops never run" in capsys.readouterr().out
    assert main(["validate", str(root / "scenarios" / "quickstart.yaml"), "system.steps=20", "--progress", "off"]) == 0
    out = capsys.readouterr().out  # any scenario: what every run must hold
    assert "| simulation ends ok | PASS |" in out and "| units: work within each unit's peak" in out


@pytest.mark.parametrize("schedule", ["1f1b", "zb_h1"])
def test_every_unit_counts_its_work_within_its_peak(root, schedule):
    """The arrays count FLOP and the vector units their element operations (activations, gradient
    accumulation), so every compute unit's achieved rate is a number, never above its peak."""
    r = hwsim.run(scenario(root, schedule, "run.mode=timing-only"))
    compute = r.utilization[r.utilization.kind.isin(["systolic", "vector"])]
    assert compute.work.notna().all() and (compute.work > 0).all()
    assert (compute.achieved_fraction <= 1 + 1e-12).all()
    system = r.outcome.system
    f = sum(c.forward_vector_ops for c in system.costs) * system.shape.microbatches * system.replicas
    vector = r.trace.busy[(r.trace.busy.kind == "vector") & r.trace.busy.label.str.startswith("fwd")]
    assert vector.work.sum() == f  # each stage's forward activations, every micro-batch of every replica
