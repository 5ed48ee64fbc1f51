"""Sweeps end to end: checks before any point runs, records, resume after a kill or Ctrl-C,
failing points, executors (local processes, threads, Dask) giving one table, plots and report."""

import json
import os
import signal
import subprocess
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pandas as pd
import pytest

from hwsim.cli import main
from hwsim.commands import sweep as engine
from hwsim.config.sweep import sweep_from
from hwsim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]
QUICK = str(ROOT / "scenarios" / "quickstart.yaml")


def _run(sweep, folder, executor=None, **kw):
    planned, resolved, units = engine.plan(sweep)
    executor = executor or ThreadPoolExecutor(1)
    try:
        return engine.run_sweep(sweep, planned, resolved, folder, executor, **kw), planned, units
    finally:
        executor.shutdown()


def _quick_sweep(*grid, steps=20):
    return sweep_from(QUICK, [f"system.steps={steps}", "run.eval_every=10"], list(grid))


def test_a_sweep_writes_one_row_per_point_with_params_and_every_summary_number(tmp_path):
    sweep = _quick_sweep("system.batch=16,32", "hardware.nic.bandwidth=1,10 Gb/s")
    done, planned, units = _run(sweep, tmp_path)
    table = done.table
    assert done.ran == 4 and done.skipped == 0
    assert list(table.point) == [0, 1, 2, 3]
    assert list(table["system.batch"]) == [16, 16, 32, 32]
    assert list(table["hardware.nic.bandwidth"]) == [1.25e8, 1.25e9, 1.25e8, 1.25e9]  # resolved, in bytes/s
    assert units == {"system.batch": "", "hardware.nic.bandwidth": "rate"}
    assert (table.status == "ok").all()
    for column in ("sim_time_s", "samples_per_s", "learning.final_test_accuracy", "units.dev0.systolic.util",
                   "memory.dev0.params.peak_bytes", "flops.fraction_of_peak"):  # fmt: skip
        assert table[column].notna().all(), column
    assert table.loc[2, "samples"] == 2 * table.loc[0, "samples"]  # batch 32 vs 16, same steps
    from_parquet = pd.read_parquet(tmp_path / "sweep.parquet")
    pd.testing.assert_frame_equal(from_parquet, table, check_dtype=False)
    from_csv = pd.read_csv(tmp_path / "sweep.csv")
    assert list(from_csv.columns) == list(table.columns) and len(from_csv) == 4
    records = sorted((tmp_path / "points").glob("*.json"))
    assert {p.stem for p in records} == set(table.key)
    again, _, _ = _run(sweep, tmp_path)
    assert again.ran == 0 and again.skipped == 4
    pd.testing.assert_frame_equal(again.table, table)


def test_points_that_resolve_to_one_scenario_run_once(tmp_path):
    sweep = _quick_sweep("hardware.nic.bandwidth=10 Gb/s,10Gb/s,1.25 GB/s")
    done, planned, _ = _run(sweep, tmp_path)
    assert len(planned) == 3 and len({p.key for p in planned}) == 1
    assert done.ran == 1 and len(done.table) == 3 and (done.table.status == "ok").all()


def test_a_failing_point_is_recorded_with_its_error_and_retried_next_time(tmp_path, monkeypatch):
    import hwsim.result

    real = hwsim.result.run

    def flaky(scenario, progress=None):
        if scenario.system.batch == 32:
            raise RuntimeError("simulated bug")
        return real(scenario, progress)

    monkeypatch.setattr(hwsim.result, "run", flaky)
    sweep = _quick_sweep("system.batch=16,32,64")
    done, _, _ = _run(sweep, tmp_path)
    assert list(done.table.status) == ["ok", "error", "ok"]
    assert done.table.error[1] == "RuntimeError: simulated bug"
    record = json.loads((tmp_path / "points" / f"{done.table.key[1]}.json").read_text())
    assert "simulated bug" in record["traceback"]
    monkeypatch.setattr(hwsim.result, "run", real)
    again, _, _ = _run(sweep, tmp_path)
    assert again.ran == 1 and again.skipped == 2 and (again.table.status == "ok").all()


def test_a_simulated_failure_is_a_result_and_an_invalid_combination_a_row(tmp_path):
    pipeline = str(ROOT / "scenarios" / "pipeline_1f1b.yaml")
    grid = ["system.schedule=1f1b,interleaved", "system.placement=contiguous,looping"]
    sweep = sweep_from(pipeline, ["system.steps=1", "system.stages_per_device=2"], grid)
    done, planned, _ = _run(sweep, tmp_path)
    table = done.table.set_index(["system.schedule", "system.placement"])
    assert table.status[("1f1b", "contiguous")] == "ok" and table.status[("interleaved", "looping")] == "ok"
    assert table.status[("interleaved", "contiguous")] == "invalid"
    assert "needs looping placement" in table.error[("interleaved", "contiguous")]
    assert not planned[2].key and done.ran == sum(bool(p.key) for p in planned)
    tiny = sweep_from(QUICK, ["system.steps=2"], ["hardware.memory.working.capacity=1 KiB,16 MiB"])
    done, _, _ = _run(tiny, tmp_path / "oom")
    assert list(done.table.status) == ["out_of_memory", "ok"]
    assert "working" in done.table.error[0]


@pytest.mark.parametrize(
    ("grid", "says"),
    [
        ("system.bach=16,32", "system.bach"),
        ("hardware.nic.bandwidth=10 Gb/s,fast", "'fast'"),
        ("system.batch=16,-1", "system.batch"),
        ("hardware.systolic.dataflow=output_stationary,diagonal", "diagonal"),
    ],
)
def test_an_invalid_key_or_value_is_an_error_before_any_point_runs(tmp_path, capsys, grid, says):
    code = main(["sweep", QUICK, "--grid", grid, "--grid", "system.steps=5,6", "--out", str(tmp_path / "s")])
    err = capsys.readouterr().err
    assert code == 2
    assert "--grid" in err and says in err and "Traceback" not in err
    assert not (tmp_path / "s").exists()  # nothing ran, nothing written


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["--grid", "system.steps=1..5"], "--samples N"),
        (["--grid", "system.steps=2,3", "--executor", "ray://x"], "local or dask://"),
        (["--grid", "system.steps=2,3", "--workers", "0"], "at least 1"),
        (["--zip", "system.steps=2,3", "--zip", "system.batch=8"], "one length"),
        (["--grid", "system.steps=2,3", "--x", "system.batch"], "one of the swept keys"),
    ],
)
def test_command_line_mistakes_exit_2(tmp_path, capsys, args, says):
    code = main(["sweep", QUICK, *args, "--out", str(tmp_path / "s"), "--progress", "off"])
    err = capsys.readouterr().err
    assert code == 2 and says in err and "Traceback" not in err


def _command(out: Path, workers: int = 2) -> list[str]:
    return [sys.executable, "-m", "hwsim.cli", "sweep", QUICK, "system.steps=250", "run.eval_every=50",
            "--grid", "system.lr=0.02,0.05", "--grid", "system.batch=8,16,24,32", "--workers", str(workers),
            "--out", str(out), "--progress", "off"]  # fmt: skip


def _finished(folder: Path) -> dict[str, tuple[int, bytes]]:
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in (folder / "points").glob("*.json")}


def _wait_for(folder: Path, count: int, process: subprocess.Popen, timeout: float = 240) -> None:
    end = time.monotonic() + timeout
    while len(_finished(folder)) < count:
        assert process.poll() is None, "the sweep ended before it could be stopped"
        assert time.monotonic() < end, "the sweep made no progress"
        time.sleep(0.05)


def test_a_killed_sweep_resumes_without_recomputing_or_losing_a_point(tmp_path):
    killed, whole = tmp_path / "killed", tmp_path / "whole"
    process = subprocess.Popen(_command(killed), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    _wait_for(killed, 2, process)
    os.killpg(process.pid, signal.SIGKILL)  # the driver and its workers, no chance to clean up
    process.wait()
    before = _finished(killed)
    assert 2 <= len(before) < 8
    rerun = subprocess.run(_command(killed), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0, rerun.stderr
    assert f"ran {8 - len(before)}, finished before {len(before)}" in rerun.stdout
    after = _finished(killed)
    assert {name: after[name] for name in before} == before  # not rewritten, not lost
    assert len(after) == 8
    subprocess.run(_command(whole, workers=1), check=True, capture_output=True, timeout=600)
    pd.testing.assert_frame_equal(pd.read_parquet(killed / "sweep.parquet"), pd.read_parquet(whole / "sweep.parquet"))
    assert (killed / "sweep.csv").read_bytes() == (whole / "sweep.csv").read_bytes()


def _workers(pid: int) -> list[int]:
    """The driver's pool processes (not multiprocessing's resource tracker)."""
    out = subprocess.run(["ps", "-ww", "--ppid", str(pid), "-o", "pid=,args="], capture_output=True, text=True).stdout
    return [int(line.split()[0]) for line in out.splitlines() if "spawn_main" in line]


def test_a_killed_worker_costs_only_the_points_in_flight_and_the_sweep_goes_on(tmp_path):
    folder = tmp_path / "s"
    process = subprocess.Popen(
        _command(folder), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(folder, 1, process)
    os.kill(_workers(process.pid)[0], signal.SIGKILL)
    out, err = process.communicate(timeout=600)
    assert process.returncode == 1 and engine.WORKER_DIED in err
    table = pd.read_csv(folder / "sweep.csv")
    lost = int((table.status == "error").sum())
    assert (
        1 <= lost <= 4 and (table.status[table.status != "error"] == "ok").all()
    )  # at most the points in flight (2 x 2 workers)
    assert set(table.error.dropna()) == {engine.WORKER_DIED}
    rerun = subprocess.run(_command(folder), capture_output=True, text=True, timeout=600)
    assert rerun.returncode == 0 and f"ran {lost}, finished before {8 - lost}" in rerun.stdout
    assert (pd.read_csv(folder / "sweep.csv").status == "ok").all()


def test_ctrl_c_keeps_what_finished_and_marks_the_rest_pending(tmp_path):
    folder = tmp_path / "s"
    process = subprocess.Popen(
        _command(folder), start_new_session=True, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    _wait_for(folder, 1, process)
    os.killpg(process.pid, signal.SIGINT)  # Ctrl-C reaches the driver and the workers (which leave it to the driver)
    out, err = process.communicate(timeout=60)
    assert process.returncode == 130, err
    assert "Re-run the same command to resume" in err
    table = pd.read_csv(folder / "sweep.csv")
    finished = set(table.key[table.status == "ok"])
    assert finished == {p.stem for p in (folder / "points").glob("*.json")}
    assert len(finished) >= 1 and set(table.status) <= {"ok", "pending"} and (table.status == "pending").any()


def test_dask_and_local_executors_give_identical_tables(tmp_path, capsys):
    distributed = pytest.importorskip("distributed", reason="the test extra installs distributed")
    args = [QUICK, "system.steps=30", "--grid", "system.lr=0.02,0.05", "--grid", "hardware.nic.bandwidth=1,10 Gb/s",
            "--progress", "off"]  # fmt: skip
    with distributed.LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
        address = cluster.scheduler_address.removeprefix("tcp://")
        assert main(["sweep", *args, "--executor", f"dask://{address}", "--out", str(tmp_path / "dask")]) == 0
    assert "Dask at dask://" in capsys.readouterr().out
    assert main(["sweep", *args, "--out", str(tmp_path / "local")]) == 0
    dask_table = pd.read_parquet(tmp_path / "dask" / "sweep.parquet")
    pd.testing.assert_frame_equal(dask_table, pd.read_parquet(tmp_path / "local" / "sweep.parquet"))
    assert len(dask_table) == 4 and (dask_table.status == "ok").all()


def test_an_unreachable_dask_scheduler_is_a_clear_error(tmp_path, capsys):
    pytest.importorskip("distributed", reason="the test extra installs distributed")
    code = main(["sweep", QUICK, "--grid", "system.steps=2,3", "--executor", "dask://127.0.0.1:9", "--out", str(tmp_path)])
    assert code == 2 and "a reachable Dask scheduler" in capsys.readouterr().err


def test_the_command_writes_plots_and_a_report_and_keeps_point_reports_on_request(tmp_path, capsys):
    out = tmp_path / "s"
    code = main(["sweep", QUICK, "system.steps=20", "--grid", "system.batch=16,32", "--grid", "system.lr=0.02,0.05",
                 "--reports", "--workers", "1", "--out", str(out), "--progress", "off"])  # fmt: skip
    assert code == 0
    printed = capsys.readouterr().out
    assert "ran 4, finished before 0: 4 ok" in printed and "best step_time_s" in printed
    for name in ("sweep_metric.png", "sweep_heatmap.png", "sweep_pareto.png", "report.html", "sweep.json"):
        assert (out / name).is_file(), name
    page = (out / "report.html").read_text()
    assert page.count("data:image/png;base64") == 3 and "reports/" in page
    table = pd.read_parquet(out / "sweep.parquet")
    for rel in table.report:
        assert (out / rel).is_file()
    about = json.loads((out / "sweep.json").read_text())
    assert about["points"] == 4 and about["plots"]["x"] == "system.batch" and about["plots"]["by"] == "system.lr"


def test_a_sampled_sweep_draws_its_points_and_plots_them(tmp_path, capsys):
    out = tmp_path / "s"
    args = ["sweep", QUICK, "system.steps=10", "--grid", "system.lr=0.01..0.1 log", "--grid", "system.batch=8..64",
            "--samples", "5", "--seed", "1", "--workers", "1", "--out", str(out), "--progress", "off"]  # fmt: skip
    assert main(args) == 0
    table = pd.read_parquet(out / "sweep.parquet")
    assert len(table) == 5 and table["system.batch"].between(8, 64).all() and table["system.lr"].between(0.01, 0.1).all()
    assert (out / "sweep_heatmap.png").is_file()
    capsys.readouterr()
    assert main([*args[:-4], "--seed", "1", "--workers", "1", "--out", str(out), "--progress", "off"]) == 0
    assert "ran 0, finished before 5" in capsys.readouterr().out


@pytest.mark.parametrize("name", sorted(p.stem for p in (ROOT / "scenarios").glob("sweep_*.yaml")))
def test_shipped_sweeps_run(tmp_path, name):
    path = ROOT / "scenarios" / f"{name}.yaml"
    short = ["system.rounds=1"] if "federated" in name else ["system.steps=1", "run.eval_every=1"]
    short.append("run.target_accuracy=0.05")  # reached at once, for sweeps that plot the time to it
    grid, zipped = [], []
    if name == "sweep_megatron_175b":
        short.append("system.batch=192")  # an eighth of the micro-batches: less to simulate
    if name == "sweep_allreduce":
        short.append("model.repeat=1")  # one block of the four: the same collectives, a quarter of them
    if name == "sweep_megatron_52b":  # three of its layouts (the whole model per GPU does not fit), one batch
        grid = ["system.batch=64", "system.microbatch=1"]
        zipped = ["system.parallel.tensor=1,4,8", "system.parallel.pipeline=1,8,8", "system.parallel.data=64,2,1"]
    sweep = sweep_from(path, short, grid, zipped)
    done, planned, units = _run(sweep, tmp_path)
    if name in ("sweep_megatron_175b", "sweep_megatron_52b"):  # layouts past 80 GiB are meant to be there, marked
        assert set(done.table.status) == {"ok", "out_of_memory"}, done.table.error.dropna().tolist()
    else:
        assert (done.table.status == "ok").all(), done.table.error.dropna().tolist()
    chosen = engine.write_report(tmp_path, sweep, planned, units, done.table, {})
    assert chosen == {**chosen, **sweep.plots}
    assert (tmp_path / "sweep_metric.png").is_file() and (tmp_path / "sweep_pareto.png").is_file()


def test_an_axis_that_changes_nothing_is_named_and_no_point_is_called_best(tmp_path, capsys):
    """NIC bandwidth on a single device: every result identical across it; a warning on stderr, in sweep.json
    and the report, and "all points equal" instead of a best point."""
    out = tmp_path / "s"
    code = main(["sweep", QUICK, "system.steps=20", "--grid", "hardware.nic.bandwidth=1,10,100Gb/s", "--workers", "1",
                 "--out", str(out), "--progress", "off"])  # fmt: skip
    printed = capsys.readouterr()
    assert code == 0
    assert "hwsim: warning: hardware.nic.bandwidth had no effect: step_time_s and every other result" in printed.err
    assert "all points equal: step_time_s" in printed.out and "best" not in printed.out
    about = json.loads((out / "sweep.json").read_text())
    assert [n["keys"] for n in about["no_effect"]] == [["hardware.nic.bandwidth"]]
    assert "Warning:</b> hardware.nic.bandwidth had no effect" in (out / "report.html").read_text()


def test_no_effect_judges_each_axis_where_the_others_are_equal():
    sweep = sweep_from(QUICK, [], ["system.batch=16,32", "hardware.nic.bandwidth=1,10 Gb/s", "system.lr=0.1"])
    table = pd.DataFrame({"point": range(4), "system.batch": [16, 16, 32, 32], "hardware.nic.bandwidth": [1, 10, 1, 10],
                          "system.lr": 0.1, "status": "ok", "error": None, "sim_time_s": [1.0, 1.0, 2.0, 2.0],
                          "loss": [0.5, 0.5, 0.4, 0.4], "key": list("abcd"), "report": None})  # fmt: skip
    assert engine.no_effect(sweep, table) == [["hardware.nic.bandwidth"]]  # lr: one value, not judged
    assert engine.no_effect(sweep, table.assign(loss=[0.5, 0.6, 0.4, 0.4])) == []  # another result changed
    assert engine.no_effect(sweep, table.assign(status=["ok", "out_of_memory", "ok", "ok"])) == []
    assert engine.no_effect(sweep, table.assign(status=["ok", "pending", "ok", "ok"])) == [["hardware.nic.bandwidth"]]
    from hwsim.cli import _best

    line = _best(table, "sim_time_s", {"hardware.nic.bandwidth": "rate"})
    bandwidths = "hardware.nic.bandwidth=any of 8 b/s / 80 b/s"  # tied: either value is as good
    assert line == "  best sim_time_s: 1 at points 0, 1 (system.batch=16, " + bandwidths + ", system.lr=0.1)"
    assert _best(table.assign(sim_time_s=1.0), "sim_time_s", {}).startswith("  all points equal: sim_time_s = 1 at every")
    assert _best(table.head(1), "sim_time_s", {}).startswith("  best sim_time_s: 1 at point 0 (")


def test_a_bad_plot_metric_names_the_columns_it_could_be(tmp_path):
    sweep = _quick_sweep("system.batch=16,32")
    done, planned, units = _run(sweep, tmp_path)
    with pytest.raises(ConfigError, match="sim_time_s"):
        engine.write_report(tmp_path, sweep, planned, units, done.table, {"metric": "sim_tme_s"})


def test_running_a_sweep_file_as_a_scenario_says_to_use_hwsim_sweep(capsys):
    assert main(["run", str(ROOT / "scenarios" / "sweep_systolic_dataflow.yaml")]) == 2
    assert "this is a sweep file, run it with: hwsim sweep" in capsys.readouterr().err
