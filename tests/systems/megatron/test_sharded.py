"""The sharded optimizer (ZeRO-3) on the 3D system: a d-th of the state, chunks gathered per run of their
ops and reduce-scattered after a run of backwards, prefetched; and the breadth-first comparison."""

from __future__ import annotations

import pytest

from hwsim.commands import claims
from hwsim.errors import ConfigError
from hwsim.policies import Op
from hwsim.systems.megatron.costs import ADAM_BYTES, GRAD_BYTES, WEIGHT_BYTES, ring_wire_bytes
from hwsim.systems.megatron.sharded import runs
from tests.systems.megatron.layouts import run, small

LAYOUT = dict(t=2, p=2, d=2, v=2, batch=16, sp="true")  # 8 NPUs: 4 micro-batches per replica


def _spans(outcome, prefix: str):
    busy = outcome.trace.busy
    return busy[busy.unit.str.endswith("data_comm") & busy.label.str.startswith(prefix)]


def test_runs_are_stretches_of_one_chunk():
    ops = [Op("F", 0, 0), Op("F", 0, 1), Op("F", 2, 0), Op("B", 2, 0), Op("W", 2, 0), Op("W", 0, 1)]
    got = runs(ops, split=True)
    assert [(r.first, r.last, r.stage, r.gathers, r.reduces) for r in got] == [
        (0, 1, 0, True, False),
        (2, 4, 2, True, True),
        (5, 5, 0, False, True),  # W needs no weights: nothing gathered
    ]
    assert runs(ops[:4], split=False)[1].reduces  # a fused B finishes the gradients


def test_with_one_replica_sharded_is_the_plain_step(write_yaml):
    plain, m0 = run(small(write_yaml, **{**LAYOUT, "d": 1, "t": 4}))
    sharded, m1 = run(small(write_yaml, **{**LAYOUT, "d": 1, "t": 4}, optimizer="sharded"))
    assert m1["step_s"] == m0["step_s"] and m1["memory"] == m0["memory"]


def test_each_rank_holds_a_dth_of_weights_gradients_and_state(write_yaml):
    outcome, m = run(small(write_yaml, optimizer="sharded", more=["system.schedule=breadth_first"], **LAYOUT))
    system = outcome.system
    for j, mem in enumerate(m["memory"]):
        params = system.params[j]
        assert mem["weights_bytes"] == pytest.approx(params * WEIGHT_BYTES / 2, rel=1e-12)
        assert mem["gradients_bytes"] == pytest.approx(params * GRAD_BYTES / 2, rel=1e-12)
        assert mem["optimizer_bytes"] == pytest.approx(params * ADAM_BYTES / 2, rel=1e-12)
        chunks = [system.stage_params[s] * (WEIGHT_BYTES + GRAD_BYTES) for s in system.shape.stages_of(j)]
        # a backward run holds its chunk's full weights and gradients; the prefetched next chunk's weights
        # and a previous run's gradients still being scattered come on top, never a third chunk
        assert min(chunks) <= mem["gathered_bytes"] <= 2 * max(chunks)


@pytest.mark.parametrize(("schedule", "fewest"), [("breadth_first", True), ("interleaved", False)])
def test_a_chunk_is_gathered_per_run_and_scattered_after_its_backwards(write_yaml, schedule, fewest):
    """Breadth-first runs every micro-batch of a chunk at once: a gather for its forwards, one for its
    backwards (the last chunk's follow its forwards, with the weights still there) and one reduce-scatter; interleaved switches chunks every few micro-batches and pays more. The data
    track carries exactly the ring's bytes of each."""
    outcome, _ = run(small(write_yaml, optimizer="sharded", more=[f"system.schedule={schedule}"], **LAYOUT))
    system = outcome.system
    gathers, scatters = _spans(outcome, "gather chunk"), _spans(outcome, "reduce-scatter chunk")
    for j in range(system.p):
        unit = f"t0.p{j}.d0.data_comm"
        chunks = system.runs[j]
        assert (gathers.unit == unit).sum() == sum(r.gathers for r in chunks)
        assert (scatters.unit == unit).sum() == sum(r.reduces for r in chunks)
        expected = sum(
            ring_wire_bytes("all_gather", 2, system.stage_params[r.stage] * WEIGHT_BYTES) * r.gathers
            + ring_wire_bytes("reduce_scatter", 2, system.stage_params[r.stage] * GRAD_BYTES) * r.reduces
            for r in chunks
        )
        sent = gathers[gathers.unit == unit].work.sum() + scatters[scatters.unit == unit].work.sum()
        assert sent == pytest.approx(expected, rel=1e-12)
    counts = [len(r) for r in system.runs]
    if fewest:
        # each chunk's forwards, then its backwards; the last chunk's backwards follow its forwards, one run
        assert counts == [2 * system.v - 1] * system.p
    else:
        assert min(counts) > 2 * system.v


def test_gathers_are_prefetched_under_the_compute(write_yaml):
    """The next chunk's gather runs during the current run: what the step exposes of the data track is
    less than the data track's busy time."""
    outcome, m = run(small(write_yaml, optimizer="sharded", more=["system.schedule=breadth_first"], **LAYOUT))
    busy = outcome.trace.busy
    data = busy[busy.unit == m["breakdown_device"] + ".data_comm"]
    assert m["breakdown"]["data_comm_s"] < (data.end_s - data.start_s).sum()


def test_sharded_on_an_mlp_needs_a_pipeline(root):
    from hwsim.build import check
    from hwsim.config.load import load_scenario

    path = root / "scenarios" / "megatron_mlp.yaml"
    with pytest.raises(ConfigError) as err:
        check(load_scenario(path, ["system.optimizer=sharded"]), str(path))
    assert err.value.key == "system.optimizer"


def test_breadth_first_comparison_picks_each_methods_fastest_layout_that_fits():
    """Two layouts of the 52B model at batch 16: each method's row is its fastest run that fits, the ratio
    their step times'; a layout none of whose runs fit is 'none fits'."""
    table = claims.breadth_first(batches=(16,), layouts=((4, 8), (8, 8)))
    row = table.iloc[0]
    assert row.ratio == pytest.approx(row.megatron_step_s / row.breadth_first_step_s, rel=1e-12)
    assert row.megatron_layout.endswith(("1f1b", "interleaved")) and " v" in row.breadth_first_layout
    assert row.breadth_first_layout.endswith(("breadth_first", "hybrid"))
    empty = claims.best(claims.BREADTH, 16, layouts=((1, 1),))  # the whole 52B model on each GPU: out of memory
    assert empty["layout"] == "none fits"
    assert "1.43" in claims.breadth_first_verdict(table)


def test_zeropp_comparison_reports_volume_and_throughput_against_the_blog(tmp_path):
    """One micro-batch size of the blog's Figure 7: ZeRO++ sends about a quarter of ZeRO-3's bytes across
    nodes (int8 forward gathers with their scales, no backward gathers across nodes, int4 reduce-scatters),
    and the report sets hwsim's TFLOP/s beside the blog's."""
    table = claims.zeropp(rows=((2, 14.0, 31.0),))
    row = table.iloc[0]
    assert 3.8 < row.volume_ratio < 4.0  # 3M against 0.75M plus the scales; the last layer is gathered once
    assert row.speedup > 1 and row.speedup_published == pytest.approx(31 / 14)
    assert row.zeropp_tflops > row.zero3_tflops
    text = claims.zeropp_report(table, tmp_path)
    assert "2.16x" in text and (tmp_path / "zeropp.csv").is_file()
