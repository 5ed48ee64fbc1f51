"""Several jobs on one fabric: interference against the max-min closed form, placement policies, the queue,
and bad input."""

from __future__ import annotations

import json

import pytest

from hwsim.build import check, simulate
from hwsim.cli import main
from hwsim.config.load import load_scenario
from hwsim.errors import ConfigError

B = 100e9 / 8  # the NPU links' bytes per second (100 Gb/s)
OVERHEAD, HOP = 1e-6, 1e-6  # datacenter_npu's NIC overhead per message; each link's latency
LAYER = 8 * 2**20  # one layer's gradient: a ring of 4 sends 6 blocks of a quarter of it
COMPUTE = 300e-6  # its forward and backward


def _jobs(write_yaml, jobs: str, oversubscription: float = 2, more: str = "") -> object:
    path = write_yaml(
        f"""
name: jobs
hardware:
  base: datacenter_npu
  network: {{kind: fat_tree, leaves: 4, npus_per_leaf: 4, spines: 2, bandwidth: 100 Gb/s, latency: 1 us,
             spine_latency: 1 us, oversubscription: {oversubscription}}}
model: {{kind: layers, layers: [{{name: block, forward: 100 us, backward: 200 us, params: 8 MiB}}]}}
system:
  kind: jobs
  {more}
  jobs: {jobs}
run: {{mode: timing-only}}
report: {{plots: false}}
"""
    )
    scenario = load_scenario(path)
    check(scenario, str(path))
    return scenario


def _summary(scenario) -> dict:
    outcome = simulate(scenario)
    assert outcome.status == "ok", outcome.diagnosis
    return outcome.system.summary(outcome.trace)["jobs"]["jobs"]


TWO = "[{name: a, system: {kind: data_parallel, replicas: 4}}, {name: b, system: {kind: data_parallel, replicas: 4}}]"
MEGATRON = "parallel: {tensor: 2, pipeline: 2, data: 2}, batch: 8"
GPT = "{kind: transformer, layers: 8, d_model: 2048, heads: 16, d_ff: 8192, vocab: 1024, seq_len: 2048}"


def _ring_step(hops: int, rate: float) -> float:
    """A step of the one-layer job: compute, then a ring all-reduce on 4 ranks: 6 rounds, each a quarter of the
    gradient over `hops` links at `rate` (max-min: every flow of a round gets the same share)."""
    return COMPUTE + 6 * (OVERHEAD + hops * HOP + LAYER / 4 / rate)


def test_two_jobs_on_a_non_blocking_tree_do_not_slow_each_other(write_yaml):
    """Spread over the 4 leaves, each job's ring crosses every leaf's uplinks; at 1:1 an uplink carries 200 Gb/s
    (4 x 100 / 2 spines), so the two jobs' flows on it get 100 Gb/s each, what they get alone: no slowdown."""
    jobs = _summary(_jobs(write_yaml, TWO, 1, "placement: spread"))
    for job in jobs.values():
        assert job["alone_step_time_s"] == pytest.approx(_ring_step(4, B), rel=1e-9)
        assert job["slowdown"] == pytest.approx(1.0, rel=1e-12)
    assert jobs["a"]["npus"] == [0, 4, 8, 12] and jobs["b"]["npus"] == [1, 5, 9, 13]


def test_on_a_two_to_one_tree_spread_jobs_halve_each_others_uplinks(write_yaml):
    """At 2:1 an uplink carries 100 Gb/s: alone a job's flow has it all; with the other job's flow on the same
    uplink (ECMP: spine (a + b) mod 2 = 0 for both rings) each gets half, so each round of the ring takes the
    block over 50 Gb/s: the max-min closed form, exactly; each job has half of its busiest link."""
    jobs = _summary(_jobs(write_yaml, TWO, 2, "placement: spread"))
    for job in jobs.values():
        assert job["alone_step_time_s"] == pytest.approx(_ring_step(4, B), rel=1e-9)
        assert job["step_time_s"] == pytest.approx(_ring_step(4, B / 2), rel=1e-9)
        assert job["hot_link_share"] == pytest.approx(0.5)
        assert job["slowdown"] > 1.3


def test_topology_aware_placement_keeps_each_job_in_a_leaf_and_the_slowdown_goes(write_yaml):
    jobs = _summary(_jobs(write_yaml, TWO, 2, "placement: topology"))
    assert jobs["a"]["npus"] == [0, 1, 2, 3] and jobs["b"]["npus"] == [4, 5, 6, 7]
    for job in jobs.values():
        assert job["nodes"] == 1
        assert job["step_time_s"] == pytest.approx(_ring_step(2, B), rel=1e-9)
        assert job["slowdown"] == pytest.approx(1.0, rel=1e-12)


QUEUE = """[{name: big, system: {kind: data_parallel, replicas: 12}},
  {name: wide, start: 10 us, system: {kind: data_parallel, replicas: 8}},
  {name: small, start: 20 us, system: {kind: data_parallel, replicas: 4}}]"""


@pytest.mark.parametrize("scheduler", ["fifo", "backfill"])
def test_a_job_that_does_not_fit_waits_and_backfill_lets_a_smaller_one_by(write_yaml, scheduler):
    """16 NPUs: big takes 12; wide (8) waits for big's end; small (4) fits beside big: under fifo it waits behind
    wide, under backfill it starts on arrival."""
    jobs = _summary(_jobs(write_yaml, QUEUE, 2, f"placement: topology\n  scheduler: {scheduler}"))
    big, wide, small = jobs["big"], jobs["wide"], jobs["small"]
    assert big["start_s"] == 0.0 and wide["start_s"] == big["end_s"]
    assert wide["queued_s"] == pytest.approx(big["end_s"] - 10e-6)
    if scheduler == "fifo":
        assert small["start_s"] == big["end_s"] and small["npus"] == [8, 9, 10, 11]  # the first leaf wide left
    else:
        assert small["start_s"] == pytest.approx(20e-6) and small["queued_s"] == 0.0
        assert small["end_s"] < big["end_s"] + small["step_time_s"]


def test_an_explicit_place_and_a_placement_function_of_ones_own(write_yaml, tmp_path):
    (tmp_path / "mine.py").write_text("def last(free, size, nodes):\n    return free[-size:][::-1]\n")
    jobs = """[{name: a, place: [3, 2, 1, 0], system: {kind: data_parallel, replicas: 4}},
      {name: b, system: {kind: data_parallel, replicas: 4}}]"""
    out = _summary(_jobs(write_yaml, jobs, 2, f"placement: {tmp_path / 'mine.py'}:last"))
    assert out["a"]["npus"] == [3, 2, 1, 0] and out["b"]["npus"] == [15, 14, 13, 12]


def test_the_same_jobs_give_the_same_results(write_yaml):
    first = _summary(_jobs(write_yaml, QUEUE, 2, "scheduler: backfill"))
    assert json.dumps(first) == json.dumps(_summary(_jobs(write_yaml, QUEUE, 2, "scheduler: backfill")))


@pytest.mark.parametrize(
    ("jobs", "more", "match"),
    [
        ("[]", "", "at least one job"),
        (TWO.replace("name: b", "name: a"), "", r"jobs\[1\].name.*a name of its own"),
        (TWO.replace("name: b", "name: b/c"), "", "letters, digits"),
        (TWO.replace("replicas: 4}}]", "replicas: 32}}]"), "", r"jobs\[1\].system: got .32 NPUs.*16 NPUs"),
        (TWO, "scheduler: none", None),
        (
            TWO.replace("name: a,", "name: a, place: [0, 1, 2, 3],").replace("name: b,", "name: b, place: [3, 4, 5, 6],"),
            "",
            "job a has NPU 3",
        ),
        (TWO.replace("name: a,", "name: a, place: [0, 1],"), "", "4 distinct NPUs"),
        (TWO.replace("replicas: 4}}]", "replicas: 4, mode: symmetric}}]"), "", "not mirrored"),
        (
            TWO.replace("{kind: data_parallel, replicas: 4}}]", "{kind: single_device}}]"),
            "",
            "one of data_parallel, pipeline, megatron",
        ),
        (
            TWO.replace(
                "name: b, system: {kind: data_parallel, replicas: 4}}]",
                f"name: b, model: {GPT}, system: "
                f"{{kind: megatron, {MEGATRON}, bank: params, straggler: {{npu: 1, slowdown: 2}}}}}}]",
            ),
            "",
            r"jobs\[1\].system.straggler.*one slow GPU is not written",
        ),
        (TWO, "placement: nowhere", "no placement policy named 'nowhere'"),
        (TWO.replace("name: b,", "name: b, hardware: edge_npu,"), "", r"jobs\[1\].hardware.*known keys: name, system"),
    ],
)
def test_jobs_the_cluster_cannot_run_are_refused_by_key(write_yaml, jobs, more, match):
    if match is None:  # 8 NPUs of 16 at once: scheduler none is fine; 20 are not
        check(_jobs(write_yaml, TWO, 2, more))
        with pytest.raises(ConfigError, match="fifo or backfill: the jobs need 20 NPUs"):
            _jobs(write_yaml, TWO.replace("replicas: 4}}]", "replicas: 16}}]"), 2, more)
        return
    with pytest.raises(ConfigError, match=match):
        _jobs(write_yaml, jobs, 2, more)


def test_the_shipped_cluster_scenario_runs_from_the_command_line(tmp_path, capsys):
    from hwsim.config.load import PROJECT_ROOT

    assert main(["run", str(PROJECT_ROOT / "scenarios" / "cluster_jobs_fat_tree.yaml"), "--out", str(tmp_path)]) == 0
    printed = capsys.readouterr().out
    assert "jobs, placement" in printed and "alone" in printed
    assert (tmp_path / "jobs.png").is_file() and (tmp_path / "job_links.csv").is_file()
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert all(job["slowdown"] is not None for job in summary["jobs"]["jobs"].values())


def test_validate_finds_two_jobs_on_one_npu_at_once_and_a_start_before_arrival():
    """`hwsim validate`'s jobs checks on a made-up record: they can fail."""
    from types import SimpleNamespace

    from hwsim.commands.validate import _jobs_checks

    def job(index, name, npus, arrival, start, end):
        return SimpleNamespace(index=index, name=name, npus=npus, start_s=start, end_s=end, spec=SimpleNamespace(start=arrival))

    system = SimpleNamespace(
        spec=SimpleNamespace(scheduler="fifo"),
        jobs=[
            job(0, "a", [0, 1], 0.0, 0.0, 2.0),
            job(1, "b", [1, 2], 0.5, 1.0, 3.0),  # on NPU 1 while a is
            job(2, "c", [3], 0.7, 0.8, 2.5),  # arrived after b, started before it
            job(3, "d", [4], 2.0, 1.9, 2.5),  # started before it arrived
        ],
    )
    results = {c.name: (c.result, c.detail) for c in _jobs_checks(system)}
    assert results["jobs: no NPU held by two jobs at once"] == ("FAIL", "a and b both on NPU 1")
    assert results["jobs: none started before it arrived"] == ("FAIL", "d")
    assert results["jobs: fifo starts them in arrival order"][0] == "FAIL"


def test_cassinis_two_jobs_on_one_link_interleave_when_one_is_shifted():
    """CASSINI (NSDI 2024, section 2, Fig. 2): two data-parallel jobs share a 50 Gb/s link; started together
    their all-reduces meet and each gets half of it (the paper: "roughly 22 Gbps", half of the link); shifting
    one by 120 ms interleaves them. With the paper's VGG16 pattern (Fig. 3: 255 ms, 141 ms of compute) hwsim's
    flow model gives 141 + 2 x 114 = 369 ms aligned and 255 ms shifted, the closed forms: the shift wins, by
    1.45x (the paper measured 1.26x at the 90th percentile for two VGG19 jobs, whose phases it does not give)."""
    from hwsim.config.load import PROJECT_ROOT

    path = PROJECT_ROOT / "scenarios" / "cluster_jobs_time_shift.yaml"
    alone = 0.141 + 712.5e6 / 6.25e9  # compute, then the 2-rank ring all-reduce: two halves over 50 Gb/s
    aligned = _summary(load_scenario(path, ["report.plots=false"]))
    shifted = _summary(load_scenario(path, ["report.plots=false", "system.jobs[1].start=120 ms"]))
    for name in ("j1", "j2"):
        assert aligned[name]["alone_step_time_s"] == pytest.approx(alone, rel=1e-4)  # plus latencies and overheads
        assert aligned[name]["step_time_s"] == pytest.approx(0.141 + 2 * (alone - 0.141), rel=1e-4)
        assert shifted[name]["step_time_s"] == pytest.approx(alone, rel=1e-4)
    assert shifted["j2"]["start_s"] == pytest.approx(0.120)


FAT16 = (
    "{base: datacenter_npu, network: {kind: fat_tree, leaves: 4, npus_per_leaf: 4, spines: 2, bandwidth: 100 Gb/s, "
    "latency: 1 us, spine_latency: 1 us, oversubscription: 2}}"
)
PIPE = "{kind: pipeline, devices: 4, data_parallel: 2, microbatches: 8, microbatch: 8, steps: 1, schedule: 1f1b}"
TRACE = "{kind: chakra, traces: %s}"


@pytest.mark.parametrize("kind", ["pipeline", "replay"])
def test_a_placed_pipeline_or_replay_alone_takes_what_it_takes_as_its_own_scenario(write_yaml, kind):
    """One job packed on NPUs 0 .. n - 1 of the fat tree: its step in the jobs run equals the same system's
    step as a scenario of its own on that fabric (the view maps its ranks one to one)."""
    from hwsim.config.load import PROJECT_ROOT

    traces = PROJECT_ROOT / "scenarios" / "traces" / "data_parallel_8x16"
    model, system = ("mlp_digits_deep", PIPE) if kind == "pipeline" else (TRACE % traces, "{kind: replay, iterations: 1}")
    own = write_yaml(
        f"name: own\nhardware: {FAT16}\nmodel: {model}\nsystem: {system}\nrun: {{mode: timing-only}}\nreport: {{plots: false}}\n",
        "own.yaml",
    )
    alone = simulate(load_scenario(own))
    metrics = alone.trace.metrics
    expected = float(metrics[metrics.metric == "step_time_s"].value.iloc[-1])
    jobs = write_yaml(
        f"name: jobs\nhardware: {FAT16}\nmodel: mlp_digits\nsystem: {{kind: jobs, placement: packed, jobs: "
        f"[{{name: j, model: {model}, system: {system}}}]}}\nrun: {{mode: timing-only}}\nreport: {{plots: false}}\n",
        "jobs.yaml",
    )
    scenario = load_scenario(jobs)
    check(scenario)
    job = _summary(scenario)["j"]
    assert job["npus"] == list(range(8))
    assert job["step_time_s"] == pytest.approx(expected, rel=1e-12)
    assert job["alone_step_time_s"] == pytest.approx(expected, rel=1e-12)


def test_jobs_of_three_kinds_share_one_cluster(write_yaml):
    """A data-parallel job, a pipeline and a replay on 16 NPUs: the replay (8) waits for room behind the
    other two (12), then runs."""
    from hwsim.config.load import PROJECT_ROOT

    traces = PROJECT_ROOT / "scenarios" / "traces" / "data_parallel_8x16"
    jobs = (
        f"[{{name: dp, system: {{kind: data_parallel, replicas: 4}}}}, {{name: pipe, model: mlp_digits_deep, system: {PIPE}}}, "
        f"{{name: trace, model: {TRACE % traces}, system: {{kind: replay, iterations: 1}}}}]"
    )
    out = _summary(_jobs(write_yaml, jobs, 2, "placement: spread"))
    assert out["trace"]["start_s"] == pytest.approx(min(out["dp"]["end_s"], out["pipe"]["end_s"]))
    assert all(job["steps"] == 1 for job in out.values())
    assert set(out["trace"]["npus"]).isdisjoint(
        set(out["dp"]["npus"]) if out["dp"]["end_s"] > out["trace"]["start_s"] else out["pipe"]["npus"]
    )


def test_a_job_trains_with_the_real_math_and_another_job_beside_it_leaves_its_losses_alone(write_yaml):
    """Full mode: job a (its own seed stream) trains, and its loss curve is the same, to the bit, alone and
    beside job b on the same switch."""

    def losses(jobs: str) -> list[float]:
        path = write_yaml(
            "name: j\nhardware: {base: edge_npu, network: {kind: switch, bandwidth: 10 Gb/s, latency: 1 us}}\n"
            f"model: mlp_digits\nsystem: {{kind: jobs, alone: false, jobs: {jobs}}}\n"
            "run: {mode: full, eval_every: 5}\nreport: {plots: false}\n"
        )
        outcome = simulate(load_scenario(path))
        metrics = outcome.trace.metrics
        return list(metrics[metrics.metric == "a.loss"].value)

    a = "{name: a, system: {kind: data_parallel, replicas: 2, steps: 10, batch: 16}}"
    b = "{name: b, system: {kind: data_parallel, replicas: 2, steps: 10, batch: 16}}"
    alone, beside = losses(f"[{a}]"), losses(f"[{a}, {b}]")
    assert len(alone) == 10 and alone == beside
    assert alone[-1] < alone[0]


def _megatron_on_a_fat_tree(write_yaml, sharing: str, system: str, leaves: int = 2) -> object:
    path = write_yaml(
        f"""
name: megatron_jobs
hardware:
  base: a100_80gb
  network: {{model: {sharing}, kind: fat_tree, leaves: {leaves}, npus_per_leaf: 4, spines: 2, bandwidth: 100 Gb/s,
             latency: 1 us, spine_latency: 1 us, oversubscription: 2}}
model: {GPT}
system: {system}
run: {{mode: timing-only}}
report: {{plots: false, trace: false, html: false}}
"""
    )
    scenario = load_scenario(path)
    check(scenario, str(path))
    return scenario


def test_a_megatron_job_runs_as_its_exports_replay_in_the_3d_systems_step_time(write_yaml):
    """A Megatron job (t = p = d = 2) alone on the 8 NPUs of a fat tree, links unshared (ideal): the replay of its
    export takes the 3D system's own step on that fabric to 0.2 % (measured: equal to 1e-14), as an exported job's replay does
    (tests/commands/test_export_megatron.py). The job's framework profile is read as a Megatron scenario's: read
    as bare switches, its GEMMs ran at full efficiency and the step came out 1.8 % long."""
    own = simulate(_megatron_on_a_fat_tree(write_yaml, "ideal", f"{{kind: megatron, {MEGATRON}}}"))
    metrics = own.trace.metrics
    expected = float(metrics[metrics.metric == "step_time_s"].value.iloc[-1])
    jobs = f"{{kind: jobs, placement: packed, jobs: [{{name: m, model: {GPT}, system: {{kind: megatron, {MEGATRON}}}}}]}}"
    job = _summary(_megatron_on_a_fat_tree(write_yaml, "ideal", jobs))["m"]
    assert job["kind"] == "megatron" and job["steps"] == 1 and job["npus"] == list(range(8))
    assert job["step_time_s"] == pytest.approx(expected, rel=0.002)


def test_a_megatron_job_beside_a_data_parallel_job_shares_the_spines(write_yaml):
    """A Megatron job (8 GPUs) and a data-parallel job (8 NPUs) spread over the 4 leaves of a 2:1 tree under
    max-min sharing: each sends over the spines, so each is slower in the mix than alone."""
    jobs = (
        f"{{kind: jobs, placement: spread, jobs: [{{name: m, model: {GPT}, system: {{kind: megatron, {MEGATRON}}}}}, "
        "{name: dp, model: {kind: layers, layers: [{name: block, forward: 1 ms, backward: 2 ms, params: 64 MiB}], "
        "repeat: 8}, system: {kind: data_parallel, replicas: 8}}]}"
    )
    out = _summary(_megatron_on_a_fat_tree(write_yaml, "flow", jobs, leaves=4))
    assert out["m"]["kind"] == "megatron" and out["m"]["steps"] == 1
    assert out["m"]["slowdown"] > 1.001 and out["dp"]["slowdown"] > 1.001


@pytest.mark.parametrize("framework", [None, "megatron-core"])
def test_a_megatron_jobs_framework_profile_is_read_as_a_megatron_scenarios(write_yaml, framework):
    """A job's `framework`, a profile name or none (the default profile), reads the same switches a Megatron
    scenario of its own gets."""
    from hwsim.config.load import DEFAULT_FRAMEWORK

    system = f"{{kind: megatron, {MEGATRON}" + (f", framework: {framework}}}" if framework else "}")
    own = _megatron_on_a_fat_tree(write_yaml, "ideal", system).system.framework
    jobs = f"{{kind: jobs, jobs: [{{name: m, model: {GPT}, system: {system}}}]}}"
    job = _megatron_on_a_fat_tree(write_yaml, "ideal", jobs).system.jobs[0].system.framework
    assert job == own and job.name == (framework or DEFAULT_FRAMEWORK)
