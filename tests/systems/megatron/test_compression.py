"""Codecs on the 3D system's communication: exact wire bytes for gathers, reductions and pipeline sends, their
encode and decode passes in the time, hierarchical partitioning inside the node, and bad input."""

from __future__ import annotations

import math

import pytest

from hwsim.build import check
from hwsim.codecs import make_codec
from hwsim.config.load import load_scenario
from hwsim.errors import ConfigError
from hwsim.systems.megatron.costs import GRAD_BYTES, WEIGHT_BYTES, ring_wire_bytes
from tests.systems.megatron.layouts import run, small

SHARDED = dict(t=1, p=1, d=16, v=2, batch=16, optimizer="sharded")  # 16 NPUs: two nodes of 8
ZEROPP = ["system.schedule=breadth_first", "system.compression.weights=int8", "system.compression.gradients=int4"]


def _data(outcome, prefix: str):
    busy = outcome.trace.busy
    return busy[busy.unit.str.endswith("data_comm") & busy.label.str.startswith(prefix)]


def _encoded(codec: str, elements: float, ranks: int) -> float:
    return ranks * make_codec(codec).wire_bytes(math.ceil(elements / ranks))


def test_gathers_and_reductions_carry_the_codecs_exact_bytes(write_yaml):
    outcome, _ = run(small(write_yaml, more=ZEROPP, **SHARDED))
    system = outcome.system
    gathers, scatters = _data(outcome, "gather chunk"), _data(outcome, "reduce-scatter chunk")
    chunks = system.runs[0]
    for run_, span in zip([r for r in chunks if r.gathers], gathers.itertuples(), strict=True):
        n = system.stage_params[run_.stage]
        assert span.work == pytest.approx(ring_wire_bytes("all_gather", 16, _encoded("int8", n, 16)), rel=1e-12)
        timer = system.timer.seconds("all_gather", system.group("data", 0, 0), _encoded("int8", n, 16))
        codec_s = 2 * (n * WEIGHT_BYTES + _encoded("int8", n, 16)) / system.wire.rate  # encode + decode passes
        assert span.end_s - span.start_s == pytest.approx(timer + codec_s, rel=1e-9)
    for run_, span in zip([r for r in chunks if r.reduces], scatters.itertuples(), strict=True):
        n = system.stage_params[run_.stage]
        assert span.work == pytest.approx(ring_wire_bytes("reduce_scatter", 16, _encoded("int4", n, 16)), rel=1e-12)
    plain, _ = run(small(write_yaml, more=ZEROPP[:1], **SHARDED))
    assert _data(outcome, "").work.sum() < 0.3 * _data(plain, "").work.sum()  # int8 gathers, int4 reductions


def test_compressed_all_reduce_and_pipeline_sends(write_yaml):
    more = ["system.compression.gradients=bf16", "system.compression.pipeline=int8"]
    outcome, m = run(small(write_yaml, t=2, p=2, d=2, batch=8, more=more))
    system = outcome.system
    elements = 256 * 1 * 512 / 2  # s b h / t
    assert system.p2p_bytes == make_codec("int8").wire_bytes(int(elements))
    assert m["sent_per_rank_step"]["pipeline"] == pytest.approx(4 * system.p2p_bytes, rel=1e-12)  # 4 sends each
    reduce = _data(outcome, "gradient reduce")
    n = system.params[0]
    assert reduce[reduce.unit == "t0.p0.d0.data_comm"].work.iloc[0] == pytest.approx(
        ring_wire_bytes("all_reduce", 2, _encoded("bf16", n, 2)), rel=1e-12
    )
    plain, m0 = run(small(write_yaml, t=2, p=2, d=2, batch=8))
    assert m["sent_per_rank_step"]["data"] < 0.51 * m0["sent_per_rank_step"]["data"]  # bf16 against fp32 main_grad


def test_hierarchical_partitioning_keeps_backward_gathers_in_the_node(write_yaml):
    """hpZ: a run without a forward gathers the second copy's 16-bit shares from the node's 8 ranks; the
    forwards still gather over all 16; each rank holds a 1/8 second copy of the weights."""
    outcome, m = run(small(write_yaml, more=[*ZEROPP, "system.compression.hierarchical=true"], **SHARDED))
    system = outcome.system
    assert system.local_group(0) == tuple(range(8))
    forward = [r for r in system.runs[0] if r.gathers and r.forward]
    backward = [r for r in system.runs[0] if r.gathers and not r.forward]
    assert forward and backward
    local = sum(ring_wire_bytes("all_gather", 8, system.stage_params[r.stage] * WEIGHT_BYTES) for r in backward)
    assert m["sent_per_rank_step"]["data_in_node"] == pytest.approx(local, rel=1e-12)
    params = system.params[0]
    assert m["memory"][0]["weights_bytes"] == pytest.approx(params * WEIGHT_BYTES * (1 / 16 + 1 / 8), rel=1e-12)
    flat, m0 = run(small(write_yaml, more=ZEROPP, **SHARDED))
    assert m["sent_per_rank_step"]["data"] < m0["sent_per_rank_step"]["data"]


@pytest.mark.parametrize(
    ("more", "key"),
    [
        (["system.compression.weights=int9"], "system.compression.weights"),
        (["system.compression.gradients={name: int4, blok: 8}"], "system.compression.gradients"),
        (["system.compression.hierarchical=true"], "system.compression.hierarchical"),  # not sharded
    ],
)
def test_bad_compression_is_one_clear_error(write_yaml, more, key):
    with pytest.raises(ConfigError) as err:
        small(write_yaml, t=2, p=2, d=2, batch=8, more=more)
    assert err.value.key == key


def test_an_mlp_takes_no_compression_but_its_gradients(root):
    path = root / "scenarios" / "megatron_mlp.yaml"
    with pytest.raises(ConfigError) as err:
        check(load_scenario(path, ["system.compression.pipeline=int8"]), str(path))
    assert err.value.key == "system.compression.pipeline"
    check(load_scenario(path, ["system.compression.gradients=int8"]), str(path))


def test_reductions_without_a_codec_stay_fp32(write_yaml):
    outcome, _ = run(small(write_yaml, t=8, d=2, batch=8))
    span = _data(outcome, "gradient reduce").iloc[0]
    assert span.work == pytest.approx(ring_wire_bytes("all_reduce", 2, outcome.system.params[0] * GRAD_BYTES), rel=1e-12)


def test_real_math_compressed_all_reduce_keeps_replicas_identical_and_deterministic(root):
    """The digits MLP, tensor 2 x data 2, its gradients all-reduced in int8 messages (real encodings): both
    replicas of each tensor rank end with the same bits, the run repeats bit for bit, it still learns, and
    its data all-reduces send about a quarter of fp32's bytes."""
    from hwsim.build import simulate

    def one(more):
        scenario = load_scenario(root / "scenarios" / "megatron_mlp.yaml", ["system.steps=20", *more])
        outcome = simulate(scenario)
        assert outcome.status == "ok", outcome.diagnosis
        return outcome.system

    int8 = one(["system.compression.gradients=int8"])
    for i in range(2):
        for (w0, b0), (w1, b1) in zip(int8.params[(i, 0)], int8.params[(i, 1)], strict=True):
            assert w0.tobytes() == w1.tobytes() and b0.tobytes() == b1.tobytes()
    again = one(["system.compression.gradients=int8"])
    for (w0, _), (w1, _) in zip(int8.final_params(), again.final_params(), strict=True):
        assert w0.tobytes() == w1.tobytes()
    plain = one([])
    assert int8.wire_bytes < 0.3 * plain.wire_bytes
    loss = int8.cluster.recorder.trace().metrics
    losses = loss[loss.metric == "loss"].value.to_numpy()
    assert losses[-5:].mean() < losses[:5].mean()


@pytest.mark.parametrize("codec", ["fp8_e4m3", "int4"])
def test_stored_weights_are_decompressed_block_by_block_before_each_forward_and_backward(write_yaml, codec):
    """M6 at scale: the bank holds each device's weights in the codec's exact bytes; every F and B first
    decompresses its stage's weights on the vector unit, (stored + 2 bytes per weight) at the bank's rate,
    holding one block's 16-bit weights meanwhile; W needs none."""
    plain, m0 = run(small(write_yaml, t=2, p=4, d=1, batch=8, more=["system.schedule=zb_h1"]))
    packed, m = run(
        small(write_yaml, t=2, p=4, d=1, batch=8, more=["system.schedule=zb_h1", f"system.compression.storage={codec}"])
    )
    system = packed.system
    for j, mem in enumerate(m["memory"]):
        assert mem["weights_bytes"] == make_codec(codec).wire_bytes(int(system.params[j]))
        assert mem["weights_bytes"] < (0.51 if codec == "fp8_e4m3" else 0.27) * m0["memory"][j]["weights_bytes"]
        assert mem["gathered_bytes"] == system.block_weight_bytes  # one block at a time
    busy = packed.trace.busy
    spans = busy[busy.unit.str.endswith(".vector") & busy.label.str.startswith("decompress")]
    ops = packed.trace.ops
    assert len(spans) == int(ops.op.isin(["forward", "backward"]).sum())  # not the W ops
    stage = system.stage_params[0]
    per_op = (make_codec(codec).wire_bytes(int(stage)) + 2 * stage) / system.wire.rate
    first = spans[spans.unit == "t0.p0.d0.vector"].iloc[0]
    assert first.end_s - first.start_s == pytest.approx(per_op, rel=1e-9)
    assert m["step_s"] > m0["step_s"] and m["devices"][0]["decompress_s"] > 0


@pytest.mark.parametrize(
    ("more", "key"),
    [
        (["system.optimizer=sharded", "system.compression.storage=int8"], "system.compression.storage"),
        (["system.compression.storage=fp8_e3m4"], "system.compression.storage"),
    ],
)
def test_storage_the_layout_cannot_take_is_one_clear_error(write_yaml, more, key):
    with pytest.raises(ConfigError) as err:
        small(write_yaml, t=2, p=2, d=2, batch=8, more=more)
    assert err.value.key == key
