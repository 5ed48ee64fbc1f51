"""One slow GPU in a 3D job (system.straggler): its kernels slowed, its tensor group and pipeline held up, the
healthy replicas waiting for its gradients, against closed forms."""

from __future__ import annotations

import pytest

from hwsim.errors import ConfigError
from tests.systems.megatron.layouts import run, small

SERIAL = ("system.framework=megatron-2021",)  # no collective beside a GEMM: an op is its kernels one after another


def test_a_straggler_without_a_pipeline_adds_its_slowed_kernels_and_optimizer_to_the_step(write_yaml):
    """t = 8, d = 1 data replicas of... one stage (p = 1): the straggler's rank takes s x its GEMMs and memory
    kernels; its tensor group's collectives wait for it but take as long. So its replica's ops end
    (s - 1) x (compute + recompute) later than a healthy one's, which waits that long at the gradient reduce,
    and the step grows by that and (s - 1) x the optimizer step."""
    s = 1.25
    _, healthy = run(small(write_yaml, t=4, d=2, batch=8, more=SERIAL))
    _, slow = run(small(write_yaml, t=4, d=2, batch=8, more=(*SERIAL, f"system.straggler={{npu: 5, slowdown: {s}}}")))
    row, straggler = healthy["devices"][0], slow["straggler"]
    assert straggler["rank"] == "t1.p0.d1"  # tpd order: NPU 5 = 1 + 4 x (0 + 1 x 1)
    assert straggler["healthy_step_s"] == pytest.approx(healthy["step_s"], rel=1e-12)
    late = (s - 1) * (row["compute_s"] + row["recompute_s"])
    assert straggler["waits"][0]["wait_s"] == pytest.approx(late, rel=1e-9)
    assert slow["step_s"] - healthy["step_s"] == pytest.approx(late + (s - 1) * row["optimizer_s"], rel=1e-9)
    assert straggler["cost"] == pytest.approx(slow["step_s"] / healthy["step_s"])


def test_a_straggler_slows_its_pipeline_stage_alone_and_every_replica_waits(write_yaml):
    """p = 4: only the straggler's stage's ops take longer (its compute s x the healthy one's); the other stages
    compute as before and wait for it; the step grows; every healthy replica's devices wait."""
    s = 1.5
    _, healthy = run(small(write_yaml, t=2, p=4, d=1, batch=8, more=SERIAL))
    _, slow = run(small(write_yaml, t=2, p=4, d=1, batch=8, more=(*SERIAL, f"system.straggler={{npu: 5, slowdown: {s}}}")))
    assert slow["straggler"]["rank"] == "t1.p2.d0"
    for d, (mine, theirs) in enumerate(zip(slow["devices"], healthy["devices"], strict=True)):
        expected = s * theirs["compute_s"] if d == 2 else theirs["compute_s"]
        assert mine["compute_s"] == pytest.approx(expected, rel=1e-9)
    assert slow["step_s"] > healthy["step_s"] * 1.1
    assert all(w["wait_s"] > 0 for w in slow["straggler"]["waits"])


@pytest.mark.parametrize(
    ("more", "key"),
    [
        (("system.straggler={npu: 8, slowdown: 1.2}",), "an NPU of the job, 0 to 7"),
        (("system.straggler={npu: 1, slowdown: 0.5}",), "slowdown"),
    ],
)
def test_a_straggler_the_job_cannot_have_is_refused(write_yaml, more, key):
    with pytest.raises(ConfigError, match=key):
        small(write_yaml, t=8, more=more)
