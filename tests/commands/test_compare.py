"""`hwsim compare`: several runs, one table and its plots."""

import pandas as pd

from hwsim.cli import main


def test_compare_runs_each_scenario_and_writes_the_table_and_plot(capsys, tmp_path, root):
    files = [str(root / "scenarios" / f"compressed_ps_{n}.yaml") for n in ("fp32", "int8")]
    assert main(["compare", *files, "system.steps=5", "run.eval_every=1", "--out", str(tmp_path)]) == 0
    table = pd.read_csv(tmp_path / "comparison.csv")
    assert list(table.scenario) == ["compressed_ps_fp32", "compressed_ps_int8"]
    assert table.network_bytes.iloc[0] > 3.5 * table.network_bytes.iloc[1]
    assert (tmp_path / "comparison.png").stat().st_size > 10_000
    assert (tmp_path / "compressed_ps_int8" / "report.html").is_file()
    assert "| compressed_ps_int8 | ok |" in capsys.readouterr().out


def test_compare_checks_every_file_before_running_any(capsys, tmp_path, root):
    good = str(root / "scenarios" / "compressed_ps_int8.yaml")
    assert main(["compare", good, good, "--out", str(tmp_path)]) == 2
    assert "names must differ" in capsys.readouterr().err
    assert main(["compare", good, "system.uplink=int3", "--out", str(tmp_path)]) == 2
    assert "unknown codec 'int3'" in capsys.readouterr().err
    assert not (tmp_path / "compressed_ps_int8").exists()


def test_compare_of_pipeline_schedules_shows_the_zero_bubble_trade_off(capsys, tmp_path, root):
    """The issue's comparison at small shapes: ZB-H1 and ZB-H2 have smaller bubbles than 1F1B, ZB-H1 at
    1F1B's activations, ZB-H2 at 2p - 1; ZB-V a smaller overhead at 1F1B's activations (its first device,
    holding the light first and last layers, idles more: `overhead_s`, not `bubble_s`, shows the step's
    loss); every run writes the Gantt and trade-off figures."""
    files = [str(root / "scenarios" / f"pipeline_{n}.yaml") for n in ("1f1b", "zb_h1", "zb_h2", "zb_v")]
    small = ["system.steps=2", "system.data_parallel=1", "system.network=free", "model.hidden=[24,24,24,24,24,24,24]"]
    assert main(["compare", *files, *small, "--out", str(tmp_path), "--progress", "off"]) == 0
    table = pd.read_csv(tmp_path / "comparison.csv").set_index("schedule")
    assert table.bubble_s["zb_h2"] < table.bubble_s["zb_h1"] < table.bubble_s["1f1b"]
    assert table.overhead_s["zb_v"] < table.overhead_s["1f1b"]
    assert table.peak_activation_microbatches.to_dict() == {"1f1b": 4, "zb_h1": 4, "zb_h2": 7, "zb_v": 4}
    assert table.peak_activation_bytes["zb_h2"] > table.peak_activation_bytes["zb_h1"]
    for name in ("pipelines.png", "schedules.png"):
        assert (tmp_path / name).stat().st_size > 10_000
    assert "schedules.png" in capsys.readouterr().out
