"""Sweep definitions: axes from the command line and from files, checks, the grid and Latin hypercube points."""

from pathlib import Path

import numpy as np
import pytest

from hwsim.config.sweep import Sweep, check_sweep, parse_axis, points, read_sweep_file, sweep_from
from hwsim.errors import ConfigError

ROOT = Path(__file__).resolve().parents[2]


def test_a_list_axis_shares_the_unit_written_after_its_last_number():
    axis = parse_axis("hardware.nic.bandwidth=1,10,100 Gb/s")
    assert axis.values == ("1 Gb/s", "10 Gb/s", "100 Gb/s")
    assert parse_axis("system.lr=1e-3,0.05").values == (0.001, 0.05)  # 1e-3 is a number, not a string
    assert parse_axis("system.reduction.train=[dense0,dense1],[dense2]").values == (["dense0", "dense1"], ["dense2"])
    assert parse_axis("system.schedule=gpipe,1f1b").values == ("gpipe", "1f1b")


def test_range_axes_are_integer_or_quantities_linear_or_log():
    whole = parse_axis("system.microbatches=4..32")
    assert whole.is_range and whole.integer and (whole.low, whole.high) == (4, 32)
    rate = parse_axis("hardware.nic.bandwidth=1..100 Gb/s log")
    assert rate.log and rate.unit == "Gb/s" and not rate.integer
    assert rate.endpoints() == ("1 Gb/s", "100 Gb/s")
    u = np.linspace(0, 0.999, 7)
    drawn = [float(v.split()[0]) for v in rate.draw(u)]
    assert drawn == sorted(drawn) and 1 <= drawn[0] and drawn[-1] <= 100
    assert np.allclose(np.diff(np.log(drawn)), np.diff(np.log(drawn))[0], rtol=1e-4)  # even steps in log
    ints = whole.draw(np.arange(29) / 29)
    assert ints == list(range(4, 33))  # equal shares: each whole number once


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("system.lr", "key=v1,v2"),
        ("system.lr=", "key=v1,v2"),
        ("system.lr=0.1,0.2 log", "'log' only after a range"),
        ("system.lr=0.5..0.1", "LOW < HIGH"),
        ("hardware.nic.bandwidth=1 Gb/s..2 GB/s", "one unit"),
        ("system.lr=-1..1 log", "positive LOW"),
        ("system.lr=a..b", "two numbers"),
    ],
)
def test_bad_axes_are_named(text, says):
    with pytest.raises(ConfigError, match=says):
        parse_axis(text)


def _sweep(**kw) -> Sweep:
    return Sweep(name="t", scenario=Path("x.yaml"), **kw)


def test_the_grid_is_every_combination_first_axis_outermost_and_zips_vary_together():
    sweep = _sweep(
        grid=(parse_axis("a=1,2"), parse_axis("b=x,y,z")),
        zips=((parse_axis("c=10,20", "--zip"), parse_axis("d=p,q", "--zip")),),
    )
    got = points(sweep)
    assert len(got) == 2 * 3 * 2
    assert got[0].params == {"a": 1, "b": "x", "c": 10, "d": "p"}
    assert got[1].params == {"a": 1, "b": "x", "c": 20, "d": "q"}
    assert got[-1].params == {"a": 2, "b": "z", "c": 20, "d": "q"}
    assert all((p.params["c"], p.params["d"]) in ((10, "p"), (20, "q")) for p in got)
    assert got[5].overrides == ("a=1", "b=z", "c=20", "d=q")


def test_latin_hypercube_puts_one_sample_in_each_stratum_of_every_axis():
    n = 40
    sweep = _sweep(
        grid=(parse_axis("x=0.0..1.0"), parse_axis("m=1..40"), parse_axis("s=a,b,c,d")),
        zips=((parse_axis("p=1,2", "--zip"), parse_axis("q=u,v", "--zip")),),
        samples=n,
        seed=3,
    )
    got = points(sweep)
    assert len(got) == n
    xs = np.array([p.params["x"] for p in got])
    assert sorted(np.floor(xs * n).astype(int)) == list(range(n))  # one value in each tenth... fortieth
    assert sorted(p.params["m"] for p in got) == list(range(1, 41))
    assert {s: sum(p.params["s"] == s for p in got) for s in "abcd"} == dict.fromkeys("abcd", 10)
    assert all((p.params["p"], p.params["q"]) in ((1, "u"), (2, "v")) for p in got)
    assert [p.params for p in points(sweep)] == [p.params for p in got]  # the seed decides
    other = points(Sweep(**{**sweep.__dict__, "seed": 4}))
    assert [p.params for p in other] != [p.params for p in got]


@pytest.mark.parametrize(
    ("sweep", "says"),
    [
        (_sweep(), "at least one --grid"),
        (_sweep(grid=(parse_axis("a=1,2"), parse_axis("a=3"))), "given twice"),
        (_sweep(zips=((parse_axis("a=1,2"), parse_axis("b=1,2,3")),)), "a has 2, b has 3"),
        (_sweep(grid=(parse_axis("a=1..3"),)), "--samples N"),
        (_sweep(zips=((parse_axis("a=1..3"),),), samples=4), "cannot be a range"),
    ],
)
def test_sweep_level_mistakes(sweep, says):
    with pytest.raises(ConfigError, match=says):
        check_sweep(sweep)


def test_shipped_sweep_files_read_and_name_their_scenario():
    files = sorted((ROOT / "scenarios").glob("sweep_*.yaml"))
    assert len(files) >= 3
    for file in files:
        sweep = read_sweep_file(file)
        assert sweep.scenario.is_file() and sweep.axes and sweep.description
        assert len(points(sweep)) >= 8


@pytest.mark.parametrize(
    ("body", "says"),
    [
        ("sweep: {scenario: quickstart.yaml, grids: {a: [1]}}", "sweep.grids"),
        ("sweep: {grid: {a: [1]}}", "sweep.scenario"),
        ("sweep: {scenario: q.yaml, grid: {a: 3}}", "sweep.grid.a"),
        ("sweep: {scenario: q.yaml, grid: {a: {low: 1}}}", "a range"),
        ("sweep: {scenario: q.yaml, grid: {a: [1]}, samples: 0}", "sweep.samples"),
        ("sweep: {scenario: q.yaml, grid: {a: [1]}, plots: {colour: red}}", "sweep.plots.colour"),
        ("sweep: {scenario: q.yaml, zip: [{a: [1, 2]}, {b: {low: 1, high: 2}}]}", r"sweep.zip\[1\].b"),
    ],
)
def test_sweep_file_mistakes_name_the_file_and_key(write_yaml, body, says):
    path = write_yaml(body, "s.yaml")
    with pytest.raises(ConfigError, match=says) as err:
        read_sweep_file(path)
    assert str(path) in str(err.value)


def test_command_line_axes_replace_the_files_own_on_the_same_key():
    file = ROOT / "scenarios" / "sweep_systolic_dataflow.yaml"
    sweep = sweep_from(file, ["system.steps=1"], ["hardware.systolic.dataflow=weight_stationary"], samples=None)
    keys = [a.key for a in sweep.axes]
    assert keys.count("hardware.systolic.dataflow") == 1 and "hardware.systolic.rows" in keys
    assert sweep.overrides[-1] == "system.steps=1"
    assert len(points(sweep)) == 4
