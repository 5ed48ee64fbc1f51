"""Data parallelism with real math: R replicas train as one device with R times the batch, stay identical
with any all-reduce algorithm and codec, and a codec's bytes are what goes on the wire."""

import numpy as np
import pytest

import hwsim
from hwsim.codecs import make_codec
from hwsim.errors import ConfigError

STEPS = 4


def scenario(root, *overrides, replicas=4, algorithm="ring"):
    base = [
        "hardware=datacenter_npu",
        "model=mlp_digits",
        f"system={{kind: data_parallel, replicas: {replicas}, steps: {STEPS}, batch: 8, lr: 0.1, momentum: 0.9, "
        f"collective: {{algorithm: {algorithm}}}}}",
        "run.mode=full",
        "run.eval_every=2",
    ]
    return hwsim.load_scenario(root / "scenarios" / "quickstart.yaml", base + list(overrides))


def reference(system, data, replicas: int, batch: int, lr: float, momentum: float):
    """One device, float64, the whole step's R b samples at once, from the same initial weights."""
    params = [[a.astype(np.float64) for a in layer] for layer in system.initial]
    velocity = [[np.zeros_like(a) for a in layer] for layer in params]
    last = len(params) - 1
    for idx in system.step_samples:
        x, y = data.x_train[idx].astype(np.float64), data.y_train[idx]
        acts, pre = [x], []
        for li, (w, b) in enumerate(params):
            z = acts[-1] @ w + b
            pre.append(z)
            acts.append(z if li == last else np.maximum(z, 0))
        p = np.exp(acts[-1] - acts[-1].max(axis=1, keepdims=True))
        p /= p.sum(axis=1, keepdims=True)
        grad = p
        grad[np.arange(len(y)), y] -= 1
        grad /= len(y)
        for li in reversed(range(len(params))):
            dz = grad if li == last else grad * (pre[li] > 0)
            w = params[li][0]
            grads = (acts[li].T @ dz, dz.sum(axis=0))
            grad = dz @ w.T
            for a, g, v in zip(params[li], grads, velocity[li], strict=True):
                v *= momentum
                v += g
                a -= lr * v
    return params


@pytest.mark.parametrize("algorithm", ["ring", "double_binary_tree"])
def test_replicas_train_as_one_device_with_their_whole_batch(root, algorithm):
    r = hwsim.run(scenario(root, replicas=4, algorithm=algorithm))
    system = r.outcome.system
    assert len(system.step_samples) == STEPS and all(len(idx) == 4 * 8 for idx in system.step_samples)
    expected = reference(system, system.data, 4, 8, 0.1, 0.9)
    for got, want in zip(system.final_params(), expected, strict=True):
        for a, b in zip(got, want, strict=True):
            np.testing.assert_allclose(a, b, rtol=0, atol=2e-5 * np.abs(b).max())
    assert "test_accuracy" in set(r.trace.metrics.metric)


@pytest.mark.parametrize("algorithm", ["ring", "direct", "halving_doubling", "double_binary_tree"])
@pytest.mark.parametrize("codec", [None, "int8", "{name: qsgd, levels: 4}"])
def test_every_replica_holds_the_same_weights_with_any_algorithm_and_codec(root, algorithm, codec):
    overrides = [] if codec is None else [f"system.collective.codec={codec}"]
    system = hwsim.run(scenario(root, *overrides, algorithm=algorithm)).outcome.system
    for replica in system.params[1:]:
        for mine, theirs in zip(replica, system.params[0], strict=True):
            for a, b in zip(mine, theirs, strict=True):
                np.testing.assert_array_equal(a, b)


def test_a_run_with_a_random_codec_repeats_bit_for_bit(root):
    runs = [hwsim.run(scenario(root, "system.collective.codec={name: qsgd, levels: 4}")) for _ in range(2)]
    for a, b in zip(runs[0].outcome.system.final_params(), runs[1].outcome.system.final_params(), strict=True):
        np.testing.assert_array_equal(a[0], b[0])
    assert runs[0].summary["step_time_s"] == runs[1].summary["step_time_s"]


def test_int8_sends_the_codecs_bytes_and_learns_within_its_error(root):
    """A ring on R replicas sends 2 (R - 1) messages of one block each per all-reduce: each message is
    int8's buffer of that block. The weights after int8 stay within a few per cent of fp32's."""
    plain, int8 = (hwsim.run(scenario(root, *o)) for o in ([], ["system.collective.codec=int8"]))
    codec = make_codec("int8")
    table = int8.outcome.system.collectives
    for _, row in table.iterrows():
        elements = row.bytes // 4
        blocks = [(b + 1) * elements // 4 - b * elements // 4 for b in range(4)]
        # rank 0 sends blocks 0, 3, 2 in the reduce-scatter and 1, 0, 3 in the all-gather (ring on 4)
        sent = [blocks[b] for b in (0, 3, 2, 1, 0, 3)]
        assert row.wire_bytes == sum(codec.wire_bytes(n) for n in sent)
    assert table.wire_bytes.sum() < 0.3 * plain.outcome.system.collectives.wire_bytes.sum()
    for a, b in zip(int8.outcome.system.final_params(), plain.outcome.system.final_params(), strict=True):
        assert np.linalg.norm(a[0] - b[0]) < 0.05 * np.linalg.norm(b[0])


@pytest.mark.parametrize(
    "overrides, key, words",
    [
        (["system.mode=symmetric"], "system.mode", "exact in full mode"),
        (["system.collective.codec=int9"], "system.collective.codec", "unknown codec 'int9'"),
        (["system.bank=nowhere"], "system.bank", "a bank of hardware.memory"),
        (["system.collective.order=random"], "system.collective.order", "fifo"),
        (["system.batch=500"], "system.batch", "at most"),
    ],
)
def test_bad_settings_get_one_clear_error(root, overrides, key, words):
    with pytest.raises(ConfigError) as err:
        hwsim.run(scenario(root, *overrides))
    assert err.value.key == key and words in str(err.value)
