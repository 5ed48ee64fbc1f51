"""Energy and power: each unit's work at its energy per operation plus the boards' idle power, over time, per
device and for the cluster; the cap; the preset's energy block and its errors."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.build import check, simulate
from hwsim.config.load import PROJECT_ROOT, load_scenario
from hwsim.config.units import UnitError, format_quantity, parse_quantity
from hwsim.errors import ConfigError
from hwsim.report.energy import BINS, EnergyModel, _spread
from hwsim.report.summary import unit_table
from hwsim.result import RunResult

SCENARIOS = PROJECT_ROOT / "scenarios"


def test_energy_and_power_units_parse_and_print():
    assert parse_quantity("1.4 pJ", "energy") == pytest.approx(1.4e-12)
    assert parse_quantity("13.11 pJ/bit", "energy_per_byte") == pytest.approx(8 * 13.11e-12)
    assert parse_quantity("100 pJ/B", "energy_per_byte") == pytest.approx(1e-10)
    assert parse_quantity("433 MWh", "energy") == pytest.approx(433e6 * 3600)
    assert parse_quantity("6.5 kW", "power") == 6500 and parse_quantity("500 mW", "power") == pytest.approx(0.5)
    with pytest.raises(UnitError, match="power"):
        parse_quantity("54 J", "power")
    assert format_quantity(1.4e-12, "energy") == "1.4 pJ" and format_quantity(2.5e6, "energy") == "2.5 MJ"
    assert format_quantity(0.5, "power") == "500 mW"


def test_spreading_keeps_every_joule_in_its_windows():
    """Random intervals over 10 windows of 0.1 s: each row's windows hold its intervals' joules, each window
    the part of each interval inside it (a brute-force overlap count)."""
    rng = np.random.default_rng(7)
    n, width = 300, 0.1
    rows = rng.integers(0, 3, n)
    start = rng.uniform(0, 1, n)
    end = np.minimum(start + rng.exponential(0.15, n) * (rng.random(n) > 0.2), 1.0)  # some instants
    joules = rng.uniform(0, 5, n)
    energy = np.zeros((3, 10))
    _spread(energy, rows, start, end, joules, width)
    expected = np.zeros((3, 10))
    for r, s, e, j in zip(rows, start, end, joules, strict=True):
        for b in range(10):
            lo, hi = b * width, (b + 1) * width
            if e == s:
                expected[r, min(int(s / width), 9)] += j if lo <= s < hi or (b == 9 and s >= hi) else 0.0
            else:
                expected[r, b] += j * max(0.0, min(e, hi) - max(s, lo)) / (e - s)
    assert energy == pytest.approx(expected, abs=1e-9)
    assert energy.sum(axis=1) == pytest.approx(np.bincount(rows, joules, minlength=3))


def _result(path, *overrides):
    scenario = load_scenario(path, ["report.plots=false", *overrides])
    check(scenario, str(path))
    return RunResult(scenario, simulate(scenario))


def test_a_devices_energy_is_its_units_work_at_their_energies_plus_idle_power():
    """On the digits MLP with 8 replicas (datacenter_npu): the arrays' FLOPs / 2 at the MAC energy of the run's
    precision, each bank's bytes at its energy, the idle power over the run; power over time integrates to it."""
    result = _result(SCENARIOS / "data_parallel_mlp.yaml")
    energy, units, hw = result.energy, result.utilization, result.scenario.hardware
    row = energy.devices.set_index("device").loc["r0"]
    mine = units[units.device == "r0"].set_index("kind")
    precision = result.scenario.system.precision if hasattr(result.scenario.system, "precision") else "fp32"
    assert row.compute_j == pytest.approx(mine.loc["systolic"].work / 2 * getattr(hw.energy.mac, precision))
    banks = units[(units.device == "r0") & (units.kind == "memory")]
    assert row.memory_j == pytest.approx(sum(b.work * hw.energy.memory[b.unit.split(".")[1]] for b in banks.itertuples()))
    assert row.static_j == pytest.approx(hw.energy.static * result.sim_time_s)
    assert row.energy_j == pytest.approx(row.compute_j + row.vector_j + row.memory_j + row.static_j)
    power = result.power[result.power.device == "r0"]
    assert len(power) == BINS and (power.power_w >= hw.energy.static - 1e-9).all()
    assert float((power.power_w * (power.end_s - power.start_s)).sum()) == pytest.approx(row.energy_j, rel=1e-9)
    summary = result.summary["energy"]
    assert summary["npus"] == 8 and summary["total_j"] == pytest.approx(energy.devices.energy_j.sum() + summary["network_j"])
    assert summary["per_step_j"] == pytest.approx(summary["total_j"] / result.summary["steps"])
    assert summary["edp_js"] == pytest.approx(summary["per_step_j"] * result.summary["step_time_s"])
    target = result.summary["learning"]["time_to_target_s"]
    assert target is not None and 0 < summary["to_target_j"] < summary["total_j"]


def test_a_symmetric_3d_run_counts_every_npu_its_devices_stand_for(write_yaml):
    result = _result(SCENARIOS / "megatron_gpt3_175b.yaml", "system.parallel.data=2", "system.batch=128")
    devices = result.energy.devices
    assert (devices.represents == 16).all() and result.summary["energy"]["npus"] == 128
    cluster = result.power[result.power.device == "cluster"]
    boards = (devices.energy_j * devices.represents).sum()
    integral = float((cluster.power_w * (cluster.end_s - cluster.start_s)).sum())
    assert integral == pytest.approx(boards + result.energy.network_j, rel=1e-9)
    assert result.summary["energy"]["average_power_per_npu_w"] == pytest.approx(boards / result.sim_time_s / 128)


def test_a_device_over_its_cap_is_reported_with_the_clock_that_would_fit(tmp_path):
    """The A100 preset with a 100 W cap on GPT-3 175B: every GPU averages over it; the arrays' clock that
    fits gives exactly the cap with the rest of the power unchanged; `hwsim validate`'s check fails."""
    from hwsim.commands.run_checks import energy_checks

    result = _result(SCENARIOS / "megatron_gpt3_175b.yaml", "hardware.energy.cap=100 W")
    devices = result.energy.devices
    assert devices.over_cap.all() and result.summary["energy"]["over_cap"] == list(devices.device)
    row = devices.iloc[0]
    compute_w = (row.compute_j + row.onchip_j) / result.sim_time_s
    at = row.clock_under_cap_hz / result.scenario.hardware.systolic.clock
    assert row.average_power_w - compute_w + compute_w * at == pytest.approx(100.0)
    checks = {c.name: c for c in energy_checks(result.scenario, result.outcome)}
    assert checks["energy: within each power cap"].result == "FAIL"
    assert checks["energy: parts and power add up"].result == "PASS"
    fine = {c.name: c.result for c in energy_checks(*_scenario_outcome(SCENARIOS / "megatron_gpt3_175b.yaml"))}
    assert fine["energy: within each power cap"] == "PASS"


def _scenario_outcome(path):
    result = _result(path)
    return result.scenario, result.outcome


def test_without_an_energy_model_the_summary_says_so():
    result = _result(SCENARIOS / "data_parallel_mlp.yaml", "hardware.energy=null")
    assert result.summary["energy"] is None and result.power.empty
    assert "Power" not in result.figures()
    assert EnergyModel(result.scenario, result.outcome, unit_table(result.trace, result.sim_time_s)).modelled is False


def test_the_energy_of_each_bank_must_be_named_once(write_yaml):
    path = SCENARIOS / "data_parallel_mlp.yaml"
    with pytest.raises(ConfigError) as err:
        check(load_scenario(path, ["hardware.energy.memory={params: 1 pJ/bit}"]), str(path))
    assert err.value.key == "hardware.energy.memory" and "working" in err.value.expected
    with pytest.raises(ConfigError) as err:
        load_scenario(path, ["hardware.energy.static=54 J"])
    assert err.value.key == "hardware.energy.static"


def test_energy_reaches_the_console_the_report_and_a_sweeps_columns(tmp_path):
    from hwsim.commands.sweep import flatten
    from hwsim.report.console import describe

    result = _result(SCENARIOS / "data_parallel_mlp.yaml", "report.plots=true", "report.html=true")
    assert "  energy: " in describe(result.summary) and "per sample" in describe(result.summary)
    folder = result.write(tmp_path / "r")
    assert (folder / "power.png").is_file() and (folder / "power.csv").is_file() and (folder / "energy_devices.csv").is_file()
    assert "energy per step" in (folder / "report.html").read_text()
    columns = flatten(result.summary)
    assert {"energy.per_step_j", "energy.edp_js", "energy.average_power_w"} <= set(columns)


def test_the_published_energy_table_compares_with_bloom_and_an_h100_node():
    """BLOOM's 433 MWh (GPU-hours at the 400 W TDP) against hwsim's energy, two ways, and an H100 node's
    measured 76 % of its rating against hwsim's GPUs; errors are predicted / published - 1. Measured when
    written: 270 MWh by tokens (-38 %), 348 MWh by GPU-hours (-20 %), 322 W per A100, H100 GPUs at 42 % of
    the node's rating: the goal (15 %) is not met."""
    from hwsim.commands.published import BLOOM_KWH, energy

    table = energy()
    assert table.error.to_numpy() == pytest.approx((table.predicted / table.published - 1).to_numpy())
    assert (table.published.iloc[:2] == BLOOM_KWH / 1e3).all() and table.goal.sum() == 2
    assert (table.predicted > 0).all() and (table.error.iloc[:2] < 0).all()  # the TDP is an upper bound


def test_the_tile_models_on_chip_traffic_counts_every_operand_load():
    """`tile_traffic` against a count of every load of a small tiled GEMM: each output tile, at each step of k,
    copies its A rows and B columns from L2 into shared memory, and each of its arrays reads its rows of A and
    its columns of B from there."""
    from hwsim.config.schema import SystolicSpec
    from hwsim.hardware import tile_traffic

    rng = np.random.default_rng()
    tile = (int(rng.choice([4, 8, 16])), int(rng.choice([4, 8, 16])))
    per_tile = int(rng.choice([1, 2, 4]))
    spec = SystolicSpec(rows=2, cols=2, clock=1e9, arrays=8, per_tile=per_tile, tile=tile)
    m, n, k = tile[0] * int(rng.integers(1, 4)), tile[1] * int(rng.integers(1, 4)), int(rng.integers(1, 9))
    l2 = l1 = 0
    for _ in range(m // tile[0]):
        for _ in range(n // tile[1]):
            for _ in range(k):
                l2 += tile[0] + tile[1]  # one column of A's block and one row of B's
                l1 += tile[0] + tile[1]  # written into shared memory
                for _ in range(per_tile):
                    l1 += tile[0] + tile[1] // per_tile  # each array reads its operands
    flops = 2 * m * n * k
    assert tile_traffic(spec, 2.0) == pytest.approx((2.0 * l2 / flops, 2.0 * l1 / flops))
    assert tile_traffic(SystolicSpec(rows=2, cols=2, clock=1e9), 2.0) == (0.0, 0.0)


def test_the_power_limiter_holds_each_gemm_at_the_cap_as_measured_on_an_a100():
    """Antepara et al. (SC'25, Table 2) measured an A100's fp16 GEMM at its 400 W TDP, clipped there. The A100
    preset's GEMM at its full rate asks for more (tensor cores, L2 and L1 traffic, idle power), so on GPT-3 175B
    the limiter holds the GEMMs: no array interval above the cap with the idle power, energy held back, and
    the parts still add up."""
    from hwsim.commands.run_checks import energy_checks
    from hwsim.hardware import tile_traffic

    result = _result(SCENARIOS / "megatron_gpt3_175b.yaml")
    hw = result.scenario.hardware
    l2, l1 = tile_traffic(hw.systolic, 2.0)
    per_flop = hw.energy.mac.bf16 / 2 + l2 * hw.energy.l2 + l1 * hw.energy.l1
    arrays = result.utilization[result.utilization.kind == "systolic"].iloc[0]
    assert hw.energy.static + per_flop * arrays.peak_per_s > hw.energy.cap  # the demand of a GEMM at full rate
    model = result.energy
    devices = model.devices
    assert (devices.limited_j > 0).all() and (devices.onchip_j > 0).all()
    per = model.per_work.set_index("unit")
    for chunk in result.trace.chunks("busy", ["unit", "start_s", "end_s", "work"]):
        gemms = chunk[chunk.unit.isin(per.index[per.kind == "systolic"]) & (chunk.end_s > chunk.start_s)]
        asked = gemms.work.to_numpy() * per.loc[gemms.unit.astype(str)].per_work.to_numpy() / (gemms.end_s - gemms.start_s)
        assert (asked > hw.energy.cap - hw.energy.static).mean() > 0.5  # most GEMMs ask for more than the cap
    checks = {c.name: c.result for c in energy_checks(result.scenario, result.outcome)}
    assert checks["energy: parts and power add up"] == "PASS"
    window = model.power[model.power.device == devices.device.iloc[0]]
    assert window.power_w.max() <= hw.energy.cap + 1e-6
