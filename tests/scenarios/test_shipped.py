"""Every shipped scenario runs (with few steps), passes `hwsim validate`, and writes its report."""

from pathlib import Path

import pytest

import hwsim
from hwsim.commands.validate import validate_run
from hwsim.result import RunResult

SCENARIOS = sorted(
    p for p in (Path(__file__).resolve().parents[2] / "scenarios").glob("*.yaml") if not p.stem.startswith("sweep_")
)
"""Scenario files; the sweep files (sweep_*.yaml) run in tests/test_sweep.py."""
SMALLER = {
    "megatron_175b_fill": ["system.parallel.data=2", "system.batch=48"],  # 256 GPUs, still 24 micro-batches
    "megatron_zeropp": ["system.parallel.data=32", "system.batch=64"],  # two nodes, still ZeRO-3 over them
    "data_parallel_1024_slow_nic": [  # 128 NPUs, NPU 100 the slow one
        "system.replicas=128",
        "hardware.network.dims[1].size=16",
        "hardware.network.overrides=[{npu: 100, dim: 1, bandwidth: 25 Gb/s}]",
    ],
    "cluster_jobs_megatron": ["system.jobs[0].model.layers=4", "system.alone=false"],  # a GPT of 4 layers, no lone runs
}


PAST_THE_BANK = ("llama3_405b_16k", "deepseek_v3_2048")
"""Published layouts whose memory hwsim counts past 80 GiB (its distributed optimizer keeps the fp32 gradients
whole; Llama 3's FSDP shards them, DeepSeek-V3 recomputes and caches in fp8): they run out of memory as shipped,
and the README and `hwsim validate published` run them with a 1 TiB bank."""


@pytest.mark.parametrize("path", SCENARIOS, ids=lambda p: p.stem)
def test_scenario_runs(path, tmp_path):
    if path.stem in PAST_THE_BANK:
        shipped = RunResult(*_shipped(path))
        assert shipped.status == "out_of_memory" and "gradients" in shipped.diagnosis, shipped.diagnosis
        scenario = hwsim.load_scenario(path, ["system.steps=1", "hardware.memory.hbm.capacity=1 TiB"])
    elif path.stem.startswith("online"):  # a stream runs for a time, not a number of steps
        scenario = hwsim.load_scenario(path, ["system.duration=1.2 s"])
    elif path.stem.startswith("federated"):  # rounds, not steps
        scenario = hwsim.load_scenario(path, ["system.rounds=2"])
    elif path.stem == "megatron_1t_3072":  # 64 micro-batches per replica (= p) rather than 512
        scenario = hwsim.load_scenario(path, ["system.steps=1", "system.batch=384"])
    elif path.stem.startswith("replay"):  # iterations of a trace set, not training steps
        scenario = hwsim.load_scenario(path, ["system.iterations=1"])
    elif path.stem.startswith("cluster_jobs"):  # each job's steps are its own
        scenario = hwsim.load_scenario(path, SMALLER.get(path.stem, []))
    elif path.stem in SMALLER:  # fewer replicas: the same pipeline per replica
        scenario = hwsim.load_scenario(path, ["system.steps=1", *SMALLER[path.stem]])
    else:
        scenario = hwsim.load_scenario(path, ["system.steps=1", "run.eval_every=1"])  # one step: validate adds runs
    checks, outcome = validate_run(scenario)  # the run, and `hwsim validate`'s checks of it
    failed = [c for c in checks if c.result == "FAIL"]
    assert not failed, failed
    result = RunResult(scenario, outcome)
    assert result.status == "ok", result.diagnosis
    if path.stem.startswith("online"):
        assert result.summary["online"]["requests"] > 0
    elif path.stem.startswith("federated"):
        assert result.summary["federated"]["rounds"] == 2
    elif path.stem.startswith("cluster_jobs"):
        ran = result.summary["jobs"]["jobs"]
        assert all(ran[job.name]["steps"] == job.system.steps for job in scenario.system.jobs)
    else:
        assert result.summary["steps"] == 1
    assert (result.write(tmp_path) / "report.html").is_file()


def test_there_are_scenarios():
    assert any(p.stem == "quickstart" for p in SCENARIOS)


def _shipped(path):
    scenario = hwsim.load_scenario(path, ["report.plots=false"])
    return scenario, hwsim.build.simulate(scenario)
