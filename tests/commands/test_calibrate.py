"""`hwsim calibrate` and `hwsim validate host`: the fits recover known constants, the preset means what was
measured in hwsim's units, the command writes its files, and a small real torch.distributed run trains exactly as
hwsim's math does (skipped, and said so, when torch is not installed)."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.commands import calibrate as cal_module
from hwsim.commands.calibrate import Calibration, Fit, fit_line, preset_yaml
from hwsim.config.load import load_scenario
from hwsim.hardware.arithmetic import array_cycles


def test_the_fit_recovers_launch_and_rate_on_fresh_random_points():
    rng = np.random.default_rng()
    launch, rate = rng.uniform(1e-6, 1e-4), rng.uniform(1e8, 1e11)
    work = rng.uniform(1e3, 1e9, 30)
    fit = fit_line(work, launch + work / rate)
    assert fit.launch == pytest.approx(launch, rel=1e-6)
    assert fit.rate == pytest.approx(rate, rel=1e-6)
    no_fixed = fit_line(work, work / rate * (1 + rng.normal(0, 1e-3, 30)))  # a negative launch is taken as 0
    assert no_fixed.launch >= 0 and no_fixed.rate == pytest.approx(rate, rel=1e-2)


def _calibration(framework: bool = True) -> Calibration:
    cal = Calibration("quick", 1, when="2026-12-07T00:00:00", host="test")
    cal.fits = {
        "gemm torch fp32": Fit(2e-6, 3e10),
        "gemm torch bf16": Fit(2e-6, 1e9),
        "elementwise": Fit(1.5e-6, 5e9),
        "all_reduce": Fit(4e-4, 3e8),
    }
    if framework:
        cal.fits["framework"] = Fit(3e-4, 1 / 2.4e-4)
    cal.copy_rate = 2e10
    return cal


def test_the_preset_runs_a_gemm_in_the_measured_time(tmp_path):
    """hwsim's arrays on the written preset: a GEMM takes m n k / rate plus the launch; the bank moves at the copy
    rate; the NIC's bandwidth and overhead are the all-reduce fit's; the framework's step line is there."""
    path = tmp_path / "host.yaml"
    path.write_text(preset_yaml(_calibration()))
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"name: s\nhardware: {path}\nmodel: mlp_digits\nsystem: {{kind: single_device}}\n")
    hw = load_scenario(scenario).hardware
    m, n, k = 64, 128, 96
    assert array_cycles(hw.systolic, m, n, k, "fp32") / hw.systolic.clock == pytest.approx(m * n * k / 3e10, rel=1e-5)
    assert hw.systolic.launch == pytest.approx(2.4e-4 / cal_module.OPS_PER_LAYER, rel=1e-5)
    assert hw.memory["working"].bandwidth == pytest.approx(2e10, rel=1e-5)
    assert hw.nic.bandwidth == pytest.approx(3e8, rel=1e-5) and hw.nic.overhead == pytest.approx(2e-4, rel=1e-5)
    from hwsim.commands.host import framework_step

    assert framework_step(path) == pytest.approx(3e-4, rel=1e-5)
    without = tmp_path / "bare.yaml"
    without.write_text(preset_yaml(_calibration(framework=False)))
    assert "NOT measured" not in without.read_text() and framework_step(without) == 0.0
    assert load_scenario(scenario, [f"hardware={without}"]).hardware.systolic.launch == pytest.approx(2e-6)


def test_the_command_measures_writes_the_preset_the_table_and_the_plot(tmp_path, monkeypatch, capsys):
    """A small quick grid (the full one is `hwsim calibrate`): every part measured, the files written."""
    pytest.importorskip(
        "torch", reason="torch is not installed (pip install -e .[torch]): calibrate's collective part is skipped"
    )
    from hwsim.cli import main

    monkeypatch.setitem(cal_module.GEMM_SIZES, "quick", (16, 64))
    monkeypatch.setitem(cal_module.ELEMENTS, "quick", (10**3, 10**5))
    monkeypatch.setitem(cal_module.MESSAGE_BYTES, "quick", (4, 2**16))
    monkeypatch.setattr(cal_module, "FRAMEWORK_LAYERS", (1, 2))
    monkeypatch.setitem(cal_module.TIMING, "quick", (0.001, 2))
    out = tmp_path / "host.yaml"
    assert main(["calibrate", "--quick", "--out", str(out), "--progress", "off"]) == 0
    assert {p.name for p in tmp_path.iterdir()} >= {"host.yaml", "calibration.csv", "calibration.md", "calibration.png"}
    text = capsys.readouterr().out
    for part in ("gemm numpy fp32", "gemm torch bf16", "elementwise", "framework", "all_reduce", "memory copy"):
        assert part in text
    scenario = tmp_path / "s.yaml"
    scenario.write_text(f"name: s\nhardware: {out}\nmodel: mlp_digits\nsystem: {{kind: single_device}}\n")
    assert load_scenario(scenario).hardware.systolic.clock > 1e8  # any CPU does more than 10^8 MACs a second


def test_a_small_validate_host_trains_as_hwsims_math_does(tmp_path):
    """Real DDP training (gloo) on 1 and 2 processes from hwsim's initial weights and batches: the loss equals
    hwsim's at every step to float32 rounding; the step times are measured and predicted."""
    pytest.importorskip("torch", reason="torch is not installed (pip install -e .[torch]): validate host is skipped")
    from hwsim.commands.host import LOSS_GOAL, validate_host

    preset = tmp_path / "host.yaml"
    preset.write_text(preset_yaml(_calibration()))
    rows = validate_host(preset, steps=15, batch=8)
    assert [r.processes for r in rows] == [1, 2]
    for r in rows:
        assert r.loss_difference < LOSS_GOAL
        assert len(r.measured_steps) == 15 and r.measured_s > 0 and r.predicted_s > 0
        assert r.predicted_losses[0] > r.predicted_losses[-1]  # it learns
