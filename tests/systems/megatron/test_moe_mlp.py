"""Expert parallelism with the real math: a mixture-of-experts MLP on digits whose experts sit on different
ranks, tokens moved by real all-to-alls (`scenarios/megatron_moe_mlp.yaml`)."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.build import check, simulate
from hwsim.config.load import PROJECT_ROOT, load_scenario
from hwsim.errors import ConfigError
from hwsim.workloads.moe_mlp import reference_grads

SCENARIO = PROJECT_ROOT / "scenarios" / "megatron_moe_mlp.yaml"


def _run(*overrides):
    scenario = load_scenario(SCENARIO, ["report.plots=false", *overrides])
    check(scenario, str(SCENARIO))
    outcome = simulate(scenario)
    assert outcome.status == "ok", outcome.diagnosis
    return scenario, outcome.system


def _flat(params: dict) -> np.ndarray:
    parts = [*params["trunk"], params["router"], *(a for e in params["experts"] for a in e), *params["out"]]
    return np.concatenate([np.ravel(a) for a in parts]).astype(np.float64)


def test_the_reference_gradients_are_the_loss_slopes():
    """The float64 reference's gradient against central differences of its loss, on 3 random entries of every
    parameter where the loss is smooth: steps of 1e-4 (divided by the float32 parameter's actual move). An entry
    whose one-sided slopes disagree sits on a kink (a ReLU's, or a routing change) within the step, where no
    gradient is defined: it is drawn again (rare; a CI run met one)."""
    scenario, system = _run("system.steps=1", "model.moe.experts=4", "system.parallel.data=2", "system.parallel.expert=2")
    model, params = system.model, system.start_params
    data = system.data
    rows = np.random.default_rng().choice(len(data.y_train), 16, replace=False)
    x, y = data.x_train[rows], data.y_train[rows]
    base, grads = reference_grads(model, params, x, y)
    rng = np.random.default_rng()
    for name, index in (("trunk", 0), ("router", None), ("experts", (1, 2)), ("out", 0)):
        target = params[name] if index is None else params[name][index] if name != "experts" else params[name][index[0]][index[1]]
        grad = grads[name] if index is None else grads[name][index] if name != "experts" else grads[name][index[0]][index[1]]
        checked = 0
        for flat in rng.permutation(target.size):
            at = np.unravel_index(flat, target.shape)
            old = target[at]
            losses, moved = [], []
            for sign in (1, -1):
                target[at] = old + sign * 1e-4
                moved.append(float(target[at]))  # the float32 parameter's actual value
                losses.append(reference_grads(model, params, x, y)[0])
            target[at] = old
            right = (losses[0] - base) / (moved[0] - float(old))
            left = (base - losses[1]) / (float(old) - moved[1])
            if abs(right - left) > 1e-3 * max(abs(right), abs(left)) + 1e-7:
                continue  # a kink within the step
            slope = (losses[0] - losses[1]) / (moved[0] - moved[1])
            assert slope == pytest.approx(grad[at], rel=1e-3, abs=1e-7), (name, at)
            checked += 1
            if checked == 3:
                break
        assert checked == 3, name


@pytest.mark.parametrize("ranks", [1, 4])
def test_one_step_applies_the_reference_gradient(ranks):
    """With momentum 0 a step is w - lr g: on 1 rank and on 4 (experts on their ranks, all-to-alls between), every
    parameter moved by the float64 reference's gradient of the first batch, to float32 rounding."""
    scenario, system = _run(
        "system.steps=1", "system.momentum=0", f"system.parallel.data={ranks}", f"system.parallel.expert={ranks}"
    )
    start = system.start_params
    rows = system.first_samples
    _, grads = reference_grads(system.model, start, system.data.x_train[rows], system.data.y_train[rows])
    moved = (_flat(start) - _flat(system.final_params())) / scenario.system.lr
    expected = _flat(grads)
    assert moved == pytest.approx(expected, abs=2e-4 * np.abs(expected).max())


def test_four_expert_ranks_train_as_one_device():
    """30 steps on 4 ranks (2 experts each, real all-to-alls of real rows) against 1 rank with every expert: the
    same routing, the weights the same to float32 rounding; the all-to-alls carried the routed rows, the learning
    curve is in the report's metrics."""
    _, one = _run("system.steps=30", "system.parallel.data=1", "system.parallel.expert=1")
    _, four = _run("system.steps=30")
    assert _flat(four.final_params()) == pytest.approx(_flat(one.final_params()), rel=1e-3, abs=1e-5)
    assert four.a2a_bytes > 0 and one.a2a_bytes == 0


def test_the_moe_mlp_learns_digits():
    result_scenario, system = _run()
    loss, acc = system.model.evaluate(system.final_params(), system.data.x_test, system.data.y_test)
    assert acc > 0.9 and loss < 0.3


@pytest.mark.parametrize(
    ("overrides", "key", "expected"),
    [
        (("system.parallel.expert=2",), "system.parallel.expert", "system.parallel.data"),
        (("model.moe.top_k=9",), "model.moe.top_k", "at most model.moe.experts"),
        (("model.moe.experts=6",), "model.moe.experts", "a multiple of system.parallel.expert"),
        (("model.hidden=[64, 32]",), "model.hidden", "one hidden layer"),
        (
            ("system.parallel.tensor=2", "system.parallel.data=2", "system.parallel.expert=2"),
            "system.parallel.tensor",
            "1 for a MoE mlp",
        ),
    ],
)
def test_bad_moe_mlp_layouts_are_refused_by_name(overrides, key, expected):
    with pytest.raises(ConfigError) as err:
        check(load_scenario(SCENARIO, list(overrides)), str(SCENARIO))
    assert err.value.key == key and expected in err.value.expected, (err.value.key, err.value.expected)
