"""The sweep's Pareto front and plot choices."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.errors import ConfigError
from hwsim.report.sweep import choose, maximized, pareto_front


def _brute_front(a, b):
    """A point is on the front if no other is at least as good on both and better on one (lower is better)."""
    n = len(a)
    return np.array([not any(a[j] <= a[i] and b[j] <= b[i] and (a[j] < a[i] or b[j] < b[i]) for j in range(n)) for i in range(n)])


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 6), st.integers(0, 6)), min_size=1, max_size=30))
def test_the_pareto_front_is_exactly_the_undominated_points(pairs):
    a, b = np.array(pairs, dtype=float).T
    got = pareto_front(a, b)
    expected = _brute_front(a, b)
    # among exact duplicates on the front, one is kept
    for i in np.flatnonzero(expected & ~got):
        assert any(got[j] and a[j] == a[i] and b[j] == b[i] for j in range(len(a)))
    assert not (got & ~expected).any()


def test_maximized_metrics_flip_their_direction():
    rng = np.random.default_rng(0)
    a, b = rng.random(50), rng.random(50)
    assert (pareto_front(a, b, max_b=True) == pareto_front(a, -b)).all()
    assert maximized("learning.final_test_accuracy") == ("learning.final_test_accuracy", True)
    assert maximized("min:samples_per_s") == ("samples_per_s", False)
    assert maximized("bytes_moved.network") == ("bytes_moved.network", False)


def _table():
    return pd.DataFrame(
        {
            "point": [0, 1, 2],
            "a": [1, 2, 3],
            "b": ["x", "y", "x"],
            "status": ["ok", "ok", "error"],
            "sim_time_s": [1.0, 2.0, None],
            "learning.time_to_target_s": [0.5, None, None],
            "step_time_s": [0.1, 0.2, None],
            "bytes_moved.network": [10, 20, None],
        }
    )


def test_defaults_prefer_a_time_every_ok_point_has_and_a_second_metric_that_varies():
    chosen = choose(_table(), ["a", "b"], {})
    assert chosen == {"metric": "step_time_s", "x": "a", "by": "b", "pareto": ["step_time_s", "bytes_moved.network"]}
    assert choose(_table(), ["a"], {"by": None})["by"] is None


@pytest.mark.parametrize(
    ("plots", "says"),
    [({"x": "c"}, "one of the swept keys"), ({"pareto": "sim_time_s"}, "two metrics"), ({"metric": "speed"}, "sim_time_s")],
)
def test_bad_plot_choices_are_named(plots, says):
    with pytest.raises(ConfigError, match=says):
        choose(_table(), ["a", "b"], plots)


def test_the_points_table_links_only_reports_that_exist():
    from hwsim.report.sweep import page

    table = pd.DataFrame(
        {
            "point": [0, 1],
            "status": ["ok", "ok"],
            "x": [1, 2],
            "sim_time_s": [1.0, 2.0],
            "report": ["reports/a/report.html", None],
        }
    )
    about = {"name": "s", "description": "", "scenario": "s.yaml", "overrides": [], "zips": [], "samples": None, "seed": 0,
             "axes": [{"key": "x", "unit": "", "values": [1, 2]}]}  # fmt: skip
    chosen = {"metric": "sim_time_s", "x": "x", "by": None, "pareto": ["sim_time_s", "max:x"]}
    text = page(about, table, chosen, {}, {"ok": 2})
    assert text.count("<a href=") == 1 and "href='-'" not in text


def test_parameter_values_read_as_names_not_json():
    from hwsim.report.sweep import show

    assert show('{"name": "eden", "bits": 2}', "") == "eden bits=2"
    assert show("[dense0, dense1]", "") == "[dense0, dense1]"
    assert show(1.25e9, "rate") == "10 Gb/s"


def test_the_pareto_plot_numbers_its_points_and_lists_their_parameters_beside_it():
    from hwsim.report.sweep import pareto_figure

    table = pd.DataFrame(
        {"status": "ok", "system.uplink": ['{"name": "eden", "bits": 1}', '{"name": "eden", "bits": 4}', '{"name": "fp32"}'],
         "seed": [0, 0, 0], "bytes_moved.network": [5e4, 2e5, 1e6], "step_time_s": [3e-3, 2e-3, 1e-3]}
    )  # fmt: skip
    fig = pareto_figure(table, [["system.uplink"], ["seed"]], {}, ["bytes_moved.network", "step_time_s"])
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.texts]
    assert [t for t in labels if t.isdigit()] == ["1", "2", "3"]  # the points carry numbers only
    listing = next(t for t in labels if t.startswith("Pareto points"))
    assert "1: uplink=eden bits=1, seed=0" in listing and "{" not in listing
    assert ax.get_xlabel().startswith("bytes_moved.network (KiB)")
