import json
import signal
import subprocess
import sys

import pytest

from hwsim.cli import main

MINIMAL = "name: t\nhardware: edge_npu\nmodel: mlp_digits\nsystem: {kind: single_device, steps: 2}\n"


@pytest.mark.parametrize(
    ("text", "overrides", "says"),
    [
        (MINIMAL + "bogus: 1\n", [], "bogus"),
        (
            MINIMAL.replace("hardware: edge_npu", "hardware: {base: edge_npu, nic: {bandwidth: 25 GB}}"),
            [],
            "hardware.nic.bandwidth",
        ),
        (
            MINIMAL.replace(
                "hardware: edge_npu",
                "hardware: {base: edge_npu, memory: {params: {precision: int8, capacity: -1 MiB, bandwidth: 1 GB/s}}}",
            ),
            [],
            "capacity",
        ),
        (MINIMAL.replace("model: mlp_digits", "model: gone.yaml"), [], "model"),
        (MINIMAL, ["system.nosuch=1"], "system.nosuch"),
        ("name: t\n  bad: [\n", [], "valid YAML"),
        (MINIMAL.replace("steps: 2}", "steps: 2, block: 12}"), [], "system.block"),  # a cross-field check names the file too
        (MINIMAL, ["system.kind=[single_device, pipeline]"], "system.kind"),
        (MINIMAL, ["system.kind={a: 1}"], "system.kind"),
        (MINIMAL.replace("single_device", "compressed_ps"), ["system.uplink={name: {bits: 4}}"], "a codec name is a string"),
        (MINIMAL, ["hardware={base: 5, nic: {bandwidth: 1 Gb/s}}"], "hardware.base"),
        (MINIMAL, ["model=" + "m" * 300], "characters)"),  # a name too long for a file name; the value is cut
        (MINIMAL, ["name=" + "n" * 300], "a folder name"),
        (MINIMAL + "system: {kind: single_device, steps: 3}\n", [], "each key once (it is also set on line 4)"),
        (MINIMAL, ["system.lr=.inf"], "a finite number"),
        (MINIMAL, ["system.momentum=.nan"], "a finite number"),
        (MINIMAL, ["hardware.nic.bandwidth=1e999 Gb/s"], "a finite one"),
    ],
)
def test_user_mistakes_exit_2_with_a_short_message(write_yaml, capsys, tmp_path, text, overrides, says):
    code = main(["run", str(write_yaml(text)), *overrides, "--out", str(tmp_path / "out")])
    err = capsys.readouterr().err
    assert code == 2
    assert says in err and "scenario.yaml" in err or "override" in err
    assert len(err.strip().splitlines()) <= 2
    assert "Traceback" not in err


def test_a_scenario_file_that_is_not_utf8_is_named(tmp_path, capsys):
    path = tmp_path / "latin1.yaml"
    path.write_bytes(MINIMAL.encode() + "description: caf\xe9\n".encode("latin-1"))
    assert main(["run", str(path)]) == 2
    err = capsys.readouterr().err
    assert f"{path}:5" in err and "UTF-8" in err and "0xe9" in err


def test_error_messages_cut_long_values(capsys, write_yaml):
    code = main(["run", str(write_yaml(MINIMAL)), "system.batch=" + "x" * 5000])
    err = capsys.readouterr().err
    assert code == 2 and "characters)" in err and len(err) < 600  # not 5,000 x


@pytest.mark.parametrize("kind", ["file", "unwritable"])
def test_out_is_checked_before_the_run(tmp_path, capsys, write_yaml, monkeypatch, kind):
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("not a folder")
    else:
        out.mkdir()
        monkeypatch.setattr("os.access", lambda path, mode: False)
    started = []
    monkeypatch.setattr("hwsim.result.simulate", lambda *a, **k: started.append(1))
    assert main(["run", str(write_yaml(MINIMAL)), "--out", str(out)]) == 2
    assert "--out" in capsys.readouterr().err and not started


def test_a_diverging_run_is_a_result(capsys, tmp_path, root):
    """lr = 50 blows the weights up within a few steps: status diverged, the report of the steps before
    it, exit 1."""
    out = tmp_path / "r"
    assert main(["run", str(root / "scenarios" / "quickstart.yaml"), "system.steps=50", "system.lr=50", "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert "quickstart: diverged - the training diverged" in printed and "Traceback" not in printed
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "diverged" and 0 < summary["steps"] < 50
    assert (out / "report.html").is_file() and (out / "learning.png").is_file()


def test_ctrl_c_writes_the_report_of_what_was_simulated(tmp_path, root):
    out = tmp_path / "r"
    cmd = [sys.executable, "-m", "hwsim.cli", "run", str(root / "scenarios" / "quickstart.yaml"), "system.steps=1000000"]
    proc = subprocess.Popen(
        [*cmd, "--out", str(out), "--progress", "on"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    while proc.poll() is None and "/1000000" not in proc.stderr.read(200):
        pass  # the progress bar shows the run has started
    proc.send_signal(signal.SIGINT)
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 130, stderr
    assert "interrupted; writing the report" in stderr and "Traceback" not in stderr
    summary = json.loads((out / "summary.json").read_text())
    assert summary["status"] == "interrupted" and 0 < summary["steps"] < 1_000_000
    assert "quickstart: interrupted" in stdout and (out / "report.html").is_file()


def test_each_system_prints_its_own_headline(capsys, tmp_path, root):
    scenarios = root / "scenarios"
    assert main(["run", str(scenarios / "federated_upfront.yaml"), "system.rounds=2", "--out", str(tmp_path / "f")]) == 0
    fed = capsys.readouterr().out
    assert "in 2 rounds (median round" in fed and "/step" not in fed  # every client fails: no loss, no crash
    assert main(["run", str(scenarios / "online_realtime.yaml"), "system.duration=0.3 s", "--out", str(tmp_path / "o")]) == 0
    online = capsys.readouterr().out
    assert "of the stream; training workers took" in online and "/step" not in online


def test_the_installed_command_prints_no_traceback(write_yaml):
    path = write_yaml(MINIMAL + "bogus: 1\n")
    done = subprocess.run([sys.executable, "-m", "hwsim.cli", "run", str(path)], capture_output=True, text=True)
    assert done.returncode == 2
    assert done.stderr.startswith("hwsim: error:") and "Traceback" not in done.stderr


def test_run_writes_a_report_and_prints_the_summary(capsys, tmp_path, root):
    code = main(
        ["run", str(root / "scenarios" / "quickstart.yaml"), "system.steps=5", "--out", str(tmp_path / "r"), "--progress", "on"]
    )
    out, err = capsys.readouterr()
    assert code == 0
    assert "quickstart: ok" in out and "report:" in out
    assert "5/5" in err  # the progress bar reached the end
    assert (tmp_path / "r" / "report.html").is_file()


def test_simulated_out_of_memory_exits_1_with_the_diagnosis(capsys, tmp_path, root):
    code = main(
        [
            "run",
            str(root / "scenarios" / "quickstart.yaml"),
            "hardware.memory.params.capacity=8 KiB",
            "--out",
            str(tmp_path / "r"),
        ]
    )
    out = capsys.readouterr().out
    assert code == 1
    assert "out_of_memory" in out and "dev0.params" in out
    assert (tmp_path / "r" / "summary.json").is_file()


def test_list_shows_shipped_files(capsys):
    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in ("scenarios/quickstart.yaml", "models/mlp_digits.yaml", "models/gpt2_small.yaml", "edge_npu"):
        assert name in out
    assert "zb_h2          ZB-H2" in out and "source: Qi et al., Zero Bubble Pipeline Parallelism" in out


def test_list_tells_every_shipped_scenario_apart_by_its_title(capsys, root):
    import yaml

    assert main(["list"]) == 0
    lines = [line.split(maxsplit=1) for line in capsys.readouterr().out.splitlines() if line.startswith("  scenarios/")]
    about = dict(lines)
    assert len(about) == len(list((root / "scenarios").glob("*.yaml")))
    pipelines = [text for name, text in about.items() if name.startswith("scenarios/pipeline_")]
    assert len(pipelines) >= 13 and len(set(pipelines)) == len(pipelines)
    for name, text in about.items():
        title = yaml.safe_load((root / name).read_text())["title"]
        assert text == title and len(title) <= 100, name


def test_a_scenario_title_is_in_the_schema_and_one_short_line(capsys, write_yaml, tmp_path):
    assert main(["schema"]) == 0
    assert "100 characters" in json.loads(capsys.readouterr().out)["properties"]["title"]["description"]
    assert main(["run", str(write_yaml(MINIMAL + "title: " + "t" * 101 + "\n")), "--out", str(tmp_path / "o")]) == 2
    assert "title" in capsys.readouterr().err


def test_list_shows_every_codec_with_its_wire_bits(capsys):
    from hwsim.codecs import CODECS

    assert main(["list"]) == 0
    out = capsys.readouterr().out
    for name in CODECS:
        assert f"\n  {name} " in out
    assert "drive       1.000 b  unbiased" in out


def test_a_full_disk_while_writing_the_report_is_one_line_and_exit_3(capsys, tmp_path, root, monkeypatch):
    import errno
    from pathlib import Path

    real = Path.write_bytes

    def write_bytes(self, data):
        if self.name == "metrics.csv.tmp":
            real(self, data[: len(data) // 2])  # a part, then the disk is full
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(self, data)

    monkeypatch.setattr(Path, "write_bytes", write_bytes)
    out = tmp_path / "r"
    overrides = ["system.steps=3", "report.plots=false", "report.trace=false"]
    code = main(["run", str(root / "scenarios" / "quickstart.yaml"), *overrides, "--out", str(out), "--progress", "off"])
    err = capsys.readouterr().err
    assert code == 3 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert err.startswith(f"hwsim: error: could not write the report to {out}: No space left on device; written so far: ")
    written = err.strip().rsplit("written so far: ", 1)[1].split(", ")
    assert written[0] == "summary.json" and "metrics.csv" not in written
    assert sorted(p.name for p in out.iterdir()) == sorted(written)  # no metrics.csv.tmp left behind


def test_a_description_is_at_most_10000_characters(capsys, tmp_path, write_yaml):
    path = write_yaml(MINIMAL + "description: " + "d" * 10_001 + "\n")
    assert main(["run", str(path), "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err
    assert f"{path}: description: got 'ddd" in err and "at most 10,000 characters" in err and "this one has 10,001" in err
    assert len(err) < 600 and not (tmp_path / "r" / "summary.json").exists()
    assert main(["run", str(write_yaml(MINIMAL + "description: " + "d" * 10_000 + "\n")), "--out", str(tmp_path / "r")]) == 0


def test_overrides_may_follow_options(tmp_path, root):
    path = str(root / "scenarios" / "quickstart.yaml")
    assert main(["run", path, "--out", str(tmp_path), "system.steps=3", "--progress", "off"]) == 0
    assert json.loads((tmp_path / "summary.json").read_text())["steps"] == 3
    with pytest.raises(SystemExit) as stop:  # what is neither an option nor key=value is still refused
        main(["run", path, "--out", str(tmp_path), "stray"])
    assert stop.value.code == 2


def test_a_reader_that_goes_away_gets_no_traceback():
    """`hwsim schema | head -c 10`: the pipe closes while hwsim writes; it stops quietly."""
    proc = subprocess.Popen([sys.executable, "-m", "hwsim.cli", "schema"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    proc.stdout.read(10)
    proc.stdout.close()
    err = proc.stderr.read().decode()
    assert proc.wait(timeout=60) == 141 and "Traceback" not in err


def test_validate_names_each_part_as_it_starts(root, capsys):
    """Long commands are never silent: where stderr is not a terminal, each part is a line."""
    path = str(root / "scenarios" / "pipeline_1f1b.yaml")
    small = ["system.steps=2", "system.data_parallel=1", "run.mode=timing-only"]
    assert main(["validate", path, *small]) == 0
    err = capsys.readouterr().err
    assert "validate pipeline_1f1b: simulate ..." in err and "one step, free network ..." in err


def test_a_file_error_outside_a_run_report_is_one_line(monkeypatch, capsys, root, tmp_path):
    """A comparison (or sweep) that cannot write its table: one line and exit 3, not a traceback."""
    import errno

    import hwsim.commands.compare as compare

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "comparison.csv"))

    monkeypatch.setattr(compare, "write_atomic", full)
    path = str(root / "scenarios" / "compressed_ps_int8.yaml")
    assert main(["compare", path, "system.steps=2", "--out", str(tmp_path), "--progress", "off"]) == 3
    err = capsys.readouterr().err
    assert "No space left on device" in err and "comparison.csv" in err and "Traceback" not in err
