import json

import numpy as np
import pandas as pd
import pytest

import hwsim
from hwsim.errors import ConfigError
from hwsim.workloads import make_model
from hwsim.workloads.data import BatchStream, load_dataset


@pytest.fixture(scope="module")
def quickstart(request):
    root = request.config.rootpath
    return lambda *overrides: hwsim.load_scenario(root / "scenarios" / "quickstart.yaml", list(overrides))


@pytest.fixture(scope="module")
def int8_run(quickstart):
    return hwsim.run(quickstart())


def test_quickstart_learns_digits_with_int8_storage(int8_run):
    assert int8_run.status == "ok"
    assert int8_run.summary["learning"]["final_test_accuracy"] >= 0.9
    loss = int8_run.metrics[int8_run.metrics.metric == "loss"].value.to_numpy()
    assert loss[-30:].mean() < 0.25 * loss[:10].mean()


def test_int8_storage_ends_within_two_points_of_fp32_storage(int8_run, quickstart):
    fp32 = hwsim.run(quickstart("hardware.memory.params.precision=fp32"))
    acc_int8 = int8_run.summary["learning"]["final_test_accuracy"]
    acc_fp32 = fp32.summary["learning"]["final_test_accuracy"]
    assert abs(acc_int8 - acc_fp32) <= 0.02
    # fp32 storage moves 4x the parameter bytes through the same bank
    stored = fp32.banks.set_index("bank").peak_bytes
    assert stored["dev0.params"] > 3.5 * int8_run.banks.set_index("bank").peak_bytes["dev0.params"]


def test_same_scenario_and_seed_give_an_identical_summary(int8_run, quickstart):
    again = hwsim.run(quickstart())
    a, b = (json.loads(json.dumps(r.summary, default=float)) for r in (int8_run, again))
    a["provenance"].pop("wall_time_s")
    b["provenance"].pop("wall_time_s")
    assert a == b
    pd.testing.assert_frame_equal(int8_run.trace.busy, again.trace.busy)


def test_another_seed_learns_differently(int8_run, quickstart):
    other = hwsim.run(quickstart("seed=1", "system.steps=20"))
    first = int8_run.metrics[int8_run.metrics.metric == "loss"].value.iloc[:20].to_numpy()
    assert not np.array_equal(first, other.metrics[other.metrics.metric == "loss"].value.to_numpy())


def test_timing_only_mode_has_the_same_timeline_and_memory_as_the_math(int8_run, quickstart):
    timing = hwsim.run(quickstart("run.mode=timing-only"))
    pd.testing.assert_frame_equal(int8_run.trace.busy, timing.trace.busy)
    pd.testing.assert_frame_equal(int8_run.banks, timing.banks)
    assert timing.summary["learning"]["final_test_accuracy"] is None


def test_fp32_storage_trains_exactly_like_plain_numpy_sgd(quickstart):
    """With fp32 storage nothing is lost in the bank: the weights after 15 steps equal
    a float64 NumPy SGD-with-momentum over the same batches (to float32 rounding)."""
    scenario = quickstart("hardware.memory.params.precision=fp32", "system.steps=15")
    result = hwsim.run(scenario)
    got = result.outcome.system.stored_params()

    data_seed, model_seed = np.random.SeedSequence(scenario.seed).spawn(2)
    data = load_dataset("digits", scenario.run.test_fraction, np.random.default_rng(data_seed))
    rng = np.random.default_rng(model_seed)
    params = [[p.astype(np.float64) for p in layer] for layer in make_model(scenario.model).init_params(rng)]
    velocity = [[np.zeros_like(p) for p in layer] for layer in params]
    batches = BatchStream(len(data.y_train), scenario.system.batch, rng)
    for _ in range(scenario.system.steps):
        idx = batches.next()
        x, y = data.x_train[idx].astype(np.float64), data.y_train[idx]
        acts, pres = [x], []
        for li, (w, b) in enumerate(params):
            z = acts[-1] @ w + b
            pres.append(z)
            acts.append(z if li == len(params) - 1 else np.maximum(z, 0))
        p = np.exp(acts[-1] - acts[-1].max(1, keepdims=True))
        p /= p.sum(1, keepdims=True)
        p[np.arange(len(y)), y] -= 1
        grad = p / len(y)
        for li in reversed(range(len(params))):
            dz = grad if li == len(params) - 1 else grad * (pres[li] > 0)
            dw, db = acts[li].T @ dz, dz.sum(0)
            grad = dz @ params[li][0].T
            for pi, g in enumerate((dw, db)):
                velocity[li][pi] = scenario.system.momentum * velocity[li][pi] + g
                params[li][pi] = params[li][pi] - scenario.system.lr * velocity[li][pi]
    for got_layer, want_layer in zip(got, params, strict=True):
        for g, w in zip(got_layer, want_layer, strict=True):
            np.testing.assert_allclose(g, w, rtol=1e-4, atol=1e-5)


def test_a_parameter_bank_too_small_is_a_simulated_out_of_memory(quickstart):
    result = hwsim.run(quickstart("hardware.memory.params.capacity=8 KiB"))
    assert result.status == "out_of_memory"
    assert "bank 'dev0.params'" in result.diagnosis and "dense0.params" in result.diagnosis


def test_a_working_bank_too_small_fails_mid_step_naming_what_holds_it(quickstart):
    result = hwsim.run(quickstart("hardware.memory.working.capacity=150 KiB"))
    assert result.status == "out_of_memory"
    assert "dev0.working" in result.diagnosis and "held by" in result.diagnosis
    assert result.banks.set_index("bank").peak_bytes["dev0.working"] <= 150 * 1024
    assert result.write  # the run still yields a result that can be written


@pytest.mark.parametrize(
    ("overrides", "key"),
    [
        (["system.param_bank=sram"], "system.param_bank"),
        (["model=gpt2_small"], "run.mode"),
        (["system.block=12"], "system.block"),
        (["hardware.memory.working.precision=bf16"], "hardware.memory.working.precision"),
        (["system.batch=5000"], "system.batch"),
    ],
)
def test_combinations_the_schema_cannot_see_are_clear_errors(quickstart, overrides, key):
    with pytest.raises(ConfigError, match=key.replace(".", r"\.")):
        hwsim.run(quickstart(*overrides))
