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
    expected |= {"unit_timeline.png", "utilization.png", "memory_over_time.png", "learning.png"}
    assert expected <= names
    assert not [n for n in names if n.endswith(".tmp")]
    html = (folder / "report.html").read_text()
    assert html.count("data:image/png;base64,") == 4
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
