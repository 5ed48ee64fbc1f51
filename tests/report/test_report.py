import json

import pytest

import hwsim


@pytest.fixture(scope="module")
def result(request):
    path = request.config.rootpath / "scenarios" / "quickstart.yaml"
    return hwsim.run(hwsim.load_scenario(path, ["system.steps=40"]))


def test_report_folder_holds_everything(result, tmp_path):
    folder = result.write(tmp_path / "r")
    names = {p.name for p in folder.iterdir()}
    expected = {
        "summary.json",
        "busy.csv",
        "memory.csv",
        "messages.csv",
        "metrics.csv",
        "units.csv",
        "banks.csv",
        "trace.json",
        "report.html",
    }
    expected |= {"unit_timeline.png", "utilization.png", "memory_over_time.png", "learning.png", "power.png"}
    expected |= {"power.csv", "energy_devices.csv"}
    assert expected <= names
    assert not [n for n in names if n.endswith(".tmp")]
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 5
    assert json.loads((folder / "summary.json").read_text())["steps"] == 40


def test_summary_numbers_are_consistent(result):
    s = result.summary
    units = result.utilization.set_index("unit")
    systolic = units.loc["dev0.systolic"]
    assert s["sim_time_s"] == pytest.approx(result.trace.busy.end_s.max())
    assert 0 < systolic.util <= 1
    assert systolic.busy_cycles + systolic.idle_cycles == pytest.approx(s["sim_time_s"] * 1e9, abs=2)
    assert s["samples_per_s"] == pytest.approx(40 * 32 / s["sim_time_s"])
    assert s["flops"]["achieved_flop_per_s"] <= s["flops"]["peak_flop_per_s"]
    assert s["memory"]["dev0.params"]["peak_bytes"] == result.banks.set_index("bank").peak_bytes["dev0.params"]
    # every byte a memory port moved is in the busy table
    assert s["bytes_moved"]["memory"] == result.trace.busy[result.trace.busy.kind == "memory"].work.sum()


def test_no_unit_is_ever_busy_with_two_operations_at_once(result):
    for _, ops in result.trace.busy.groupby("unit"):
        ops = ops.sort_values("start_s")
        assert (ops.start_s.to_numpy()[1:] >= ops.end_s.to_numpy()[:-1] - 1e-18).all()


def test_provenance_records_the_resolved_scenario(result):
    prov = result.summary["provenance"]
    assert prov["seed"] == 0
    assert prov["scenario"]["system"]["steps"] == 40
    assert prov["scenario"]["hardware"]["systolic"]["clock"] == 1e9


def test_plot_titles_notes_and_the_capacity_line(request):
    """The utilization title keeps its note; the zoom covers every worker's first steps; the memory plot
    draws each bank's capacity."""
    path = request.config.rootpath / "scenarios" / "compressed_ps_int8.yaml"
    result = hwsim.run(hwsim.load_scenario(path, ["system.steps=6"]))
    fig = result.plot_utilization()
    assert fig.axes[0].get_title() == "Utilization per unit"
    note = " (32 busiest of 40 units)"
    from hwsim.report import plots

    assert plots.utilization_figure(result.utilization, note).axes[0].get_title().endswith(note)
    start, end, steps = result.zoom_window(2)
    metrics = result.metrics[result.metrics.metric == "step_time_s"]
    assert steps == 2 and end == metrics[metrics.step == 2].time_s.max() > metrics[metrics.step == 1].time_s.max()
    assert set(metrics[metrics.time_s <= end].step) == {1, 2} and (metrics[metrics.time_s <= end].step == 2).sum() == 4
    memory = result.plot_memory()
    capacities = {round(line.get_ydata()[0], 6) for ax in memory.axes for line in ax.get_lines() if line.get_linestyle() == "--"}
    assert len(capacities) >= 2  # params and working, each with its capacity line


def test_the_html_report_shows_numbers_with_units_and_scrolls_wide_tables(result, tmp_path):
    html = (result.write(tmp_path / "r") / "report.html").read_text()
    body = html.split("<h2 id='units'>Units")[1].split("<h2>Provenance")[0]  # the units and banks tables
    assert "GFLOP/s" in body and "GB/s" in body and "%" in body
    assert "e+" not in body and "e-0" not in body  # no raw scientific notation
    assert body.count("<div class='wide'>") == 2


@pytest.mark.parametrize(
    "scenario, overrides, bank",
    [
        ("pipeline_1f1b.yaml", ["hardware.memory.working.capacity=1 KiB"], "r0.d0.working"),
        ("online_realtime.yaml", ["system.prediction_hardware.memory.working.capacity=1 KiB"], "p0.working"),
    ],
)
def test_out_of_memory_at_time_zero_is_a_result_with_its_report(request, tmp_path, scenario, overrides, bank):
    path = request.config.rootpath / "scenarios" / scenario
    result = hwsim.run(hwsim.load_scenario(path, overrides))
    assert result.status == "out_of_memory" and f"'{bank}'" in result.diagnosis and result.sim_time_s == 0
    folder = result.write(tmp_path / "r")
    assert json.loads((folder / "summary.json").read_text())["status"] == "out_of_memory"
    assert (folder / "report.html").is_file() and (folder / "utilization.png").is_file()


def test_banks_of_one_kind_share_a_memory_panel_whatever_their_device_names():
    """Megatron's devices are named t0.p3.d0: their `hbm` banks are one kind, one panel (64 panels of one
    line each took seconds to draw)."""
    from hwsim.report.plots import _bank_kind

    assert _bank_kind("t0.p3.d0.hbm") == _bank_kind("t0.p0.d0.hbm") == "hbm"
    assert _bank_kind("w0.params") == "params" and _bank_kind("params") == "params"


def _disk_full_at(monkeypatch, name: str) -> None:
    """Make the write of `name` (through its .tmp file) fill the disk: a part is written, then ENOSPC."""
    import errno
    from pathlib import Path

    from hwsim.report import write as report_write

    def partly(path: Path) -> None:
        path.write_text('{"traceEvents": [')
        raise OSError(errno.ENOSPC, "No space left on device")

    real_write_bytes, real_chrome = Path.write_bytes, report_write.write_chrome

    def write_bytes(self, data):
        return partly(self) if self.name == name + ".tmp" else real_write_bytes(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    monkeypatch.setattr(
        report_write, "write_chrome", lambda trace, path: partly(path) if name == "trace.json" else real_chrome(trace, path)
    )


@pytest.mark.parametrize("failing", ["report.html", "trace.json", "busy.csv"])
def test_a_full_disk_names_what_was_written_and_leaves_no_partial_file(result, tmp_path, monkeypatch, failing):
    from hwsim.errors import ReportWriteError

    _disk_full_at(monkeypatch, failing)
    folder = tmp_path / "r"
    with pytest.raises(ReportWriteError) as caught:
        result.write(folder)
    names = sorted(p.name for p in folder.iterdir())
    assert not [n for n in names if n.endswith(".tmp")] and failing not in names
    message = str(caught.value)
    assert message.startswith(f"could not write the report to {folder}: No space left on device; written so far: summary.json")
    assert sorted(caught.value.written) == names  # every file there is named, whole, and nothing else
    assert ("trace.json" in names) == (failing == "report.html") and ("busy.csv" in names) == (failing != "busy.csv")
