"""Tensor x pipeline x data parallelism with the real math: every schedule of the library, with each
optimizer, trains as one device does (DualPipe's two copies of each model stage reduced between them)."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.build import check, simulate
from hwsim.config.load import load_scenario
from hwsim.errors import ConfigError
from hwsim.policies import SCHEDULES

MLP = """
name: mlp3d
seed: 3
hardware:
  base: datacenter_npu
  network: {{kind: switch, bandwidth: 100 Gb/s, latency: 1 us}}
model: {{kind: mlp, inputs: 64, hidden: [{hidden}], classes: 10, dataset: digits}}
system: {system}
run: {{mode: full, eval_every: 100}}
report: {{plots: false, trace: false, html: false}}
"""
COMMON = "batch: 32, steps: 3, lr: 0.1, momentum: 0.9, bank: working"
EIGHT = "32, 32, 32, 32, 32, 32, 32"  # 8 layers: four column/row pairs, a pair per stage at p 2, v 2


def _scenario(write_yaml, system: str, hidden: str = EIGHT):
    path = write_yaml(MLP.format(system=system, hidden=hidden))
    scenario = load_scenario(path)
    check(scenario, str(path))
    return scenario


def _train(write_yaml, system: str, hidden: str = EIGHT):
    outcome = simulate(_scenario(write_yaml, system, hidden))
    assert outcome.status == "ok", outcome.diagnosis
    return outcome


@pytest.fixture(scope="module")
def one_device(tmp_path_factory):
    path = tmp_path_factory.mktemp("one") / "s.yaml"
    path.write_text(MLP.format(system=f"{{kind: data_parallel, replicas: 1, {COMMON}}}", hidden=EIGHT))
    return simulate(load_scenario(path)).system.final_params()


def _layout(schedule: str, optimizer: str) -> str:
    v = 2 if SCHEDULES[schedule].placement in ("looping", "vshape", "dual") else 1
    return (
        f"{{kind: megatron, parallel: {{tensor: 2, pipeline: 2, data: 2, virtual: {v}}}, schedule: {schedule}, "
        f"optimizer: {optimizer}, microbatch: 4, {COMMON}}}"
    )


@pytest.mark.parametrize("schedule", sorted(SCHEDULES))
def test_every_schedule_and_optimizer_on_2x2x2_trains_as_one_device(write_yaml, one_device, schedule):
    """t 2 x p 2 x d 2 (8 NPUs), 4 micro-batches of 4 per replica: after 3 steps the gathered weights equal
    one device's with the whole batch, to float32 rounding (measured: at most 6e-8 apart), with the
    all-reduce, the distributed optimizer (whose reduce-scatter and all-gather are the same bits) and the
    sharded one (each run's gradients reduce-scattered on their own: sums in another order)."""
    runs = {opt: _train(write_yaml, _layout(schedule, opt)) for opt in ("allreduce", "distributed", "sharded")}
    for outcome in runs.values():
        for (w, b), (w1, b1) in zip(outcome.system.final_params(), one_device, strict=True):
            np.testing.assert_allclose(w, w1, rtol=1e-5, atol=1e-6)
            np.testing.assert_allclose(b, b1, rtol=1e-5, atol=1e-6)
    for (w, _), (w1, _) in zip(runs["allreduce"].system.final_params(), runs["distributed"].system.final_params(), strict=True):
        assert w.tobytes() == w1.tobytes()
    ops = runs["allreduce"].trace.ops
    assert (ops.step == 1).sum() == sum(len(o) for o in runs["allreduce"].system.schedule) * 2  # per replica


def test_replicas_and_tensor_ranks_stay_in_step(write_yaml):
    """Both replicas of every (tensor rank, device) hold the same bits after training."""
    system = _train(write_yaml, _layout("1f1b", "distributed")).system
    for (i, j, k), params in system.params.items():
        if k == 1:
            for li, (w, b) in params.items():
                w0, b0 = system.params[(i, j, 0)][li]
                assert w.tobytes() == w0.tobytes() and b.tobytes() == b0.tobytes()


@pytest.mark.parametrize(
    ("system", "hidden", "key"),
    [
        (_layout("1f1b", "allreduce"), "32, 32", "model.hidden"),  # 3 layers in 2 stages
        (_layout("1f1b", "allreduce"), "32, 32, 32, 32, 32", "model.hidden"),  # 6 layers: a stage splits a pair
    ],
)
def test_a_pipeline_the_mlp_cannot_run_is_one_clear_error(write_yaml, system, hidden, key):
    with pytest.raises(ConfigError) as err:
        _scenario(write_yaml, system, hidden)
    assert err.value.key == key


@pytest.mark.parametrize("optimizer", ["allreduce", "distributed"])
def test_a_compressed_reduction_keeps_every_rank_identical_and_repeats(write_yaml, optimizer):
    """The data-parallel gradient reduction in int8 messages (real encodings): every replica ends with the
    same bits, a second run gives the same bits, and the reductions send under 30 % of fp32's bytes."""
    system = _layout("interleaved", optimizer).replace("microbatch: 4", "microbatch: 4, compression: {gradients: int8}")
    first, again = _train(write_yaml, system).system, _train(write_yaml, system).system
    for (i, j, k), params in first.params.items():
        for li, (w, _) in params.items():
            w0, _ = first.params[(i, j, 0)][li]
            assert w.tobytes() == w0.tobytes() and w.tobytes() == again.params[(i, j, k)][li][0].tobytes()
    plain = _train(write_yaml, _layout("interleaved", optimizer)).system
    assert first.wire_bytes < 0.3 * plain.wire_bytes if optimizer == "allreduce" else first.wire_bytes < plain.wire_bytes


def test_a_fill_job_trains_in_the_bubbles_and_the_main_job_is_the_same_bits(write_yaml):
    """A second mlp on every GPU in the predicted bubbles, with the real math: its loss falls, the main
    job's weights are the same bits as without it, and (placed in the windows) it delays nothing."""
    plain = _train(write_yaml, _layout("1f1b", "allreduce").replace("steps: 3", "steps: 12"))
    system = _layout("1f1b", "allreduce").replace("steps: 3", "steps: 12")
    filled = _train(write_yaml, system[:-1] + ", fill: {model: mlp_digits, mode: train, microbatches: 16, microbatch: 4}}")
    for (w, b), (w1, b1) in zip(plain.system.final_params(), filled.system.final_params(), strict=True):
        assert w.tobytes() == w1.tobytes() and b.tobytes() == b1.tobytes()
    fill = filled.system.summary(filled.trace)["megatron_mlp"]["fill"]
    assert min(fill["microbatches_placed"]) > 0 and fill["last_loss"] < fill["first_loss"]
    assert filled.sim_time_s == plain.sim_time_s
    assert filled.trace.ops.op.str.startswith("fill").any()


@pytest.mark.parametrize(
    ("fill", "key"),
    [
        ("{model: gpt2_small}", "system.fill.model"),  # a transformer beside an mlp
        ("{model: {kind: mlp, inputs: 32, hidden: [16], classes: 10}}", "system.fill.model"),  # not the data's inputs
    ],
)
def test_a_fill_job_the_mlp_cannot_run_is_one_clear_error(write_yaml, fill, key):
    with pytest.raises(ConfigError) as err:
        _scenario(write_yaml, _layout("1f1b", "allreduce")[:-1] + f", fill: {fill}}}")
    assert err.value.key == key


@pytest.mark.parametrize("schedule", ["interleaved", "dualpipe"])
def test_validate_checks_the_schedule_a_3d_mlp_ran(write_yaml, schedule):
    """`hwsim validate` on a 3D mlp: every op once per step on its device, in the schedule's order, after its
    inputs, with the schedule's activation peaks, for each replica."""
    from hwsim.commands.validate import validate

    checks = validate(_scenario(write_yaml, _layout(schedule, "allreduce").replace("steps: 3", "steps: 1")))
    assert not [c for c in checks if c.result == "FAIL"]
    passed = {c.name for c in checks if c.result == "PASS"}
    assert (
        "simulation: devices ran the schedule's order" in passed and "simulation: each op once per step, on its device" in passed
    )
