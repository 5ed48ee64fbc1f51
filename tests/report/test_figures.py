"""What the report's figures say: the fabric's absolute utilization scale and level labels, the Gantt
chart's micro-batch labels only where they fit, heatmap text that reads on its cell, and plot helpers that
say which runs they apply to."""

from types import SimpleNamespace

import numpy as np
import pandas as pd
import pytest
from matplotlib import colormaps

import hwsim
from hwsim.network.topology import dims, star
from hwsim.report.fabric import fabric_figure
from hwsim.report.pipeline import gantt_figure
from hwsim.report.plots import time_scale
from hwsim.report.sweep import heatmap_figure, text_colour
from hwsim.report.write import png
from hwsim.result import FIGURES, PlotNotApplicable


def _links(t, util):
    return pd.DataFrame({"link": [f"l{i}" for i in range(t.links)], "util": util, "bytes": np.asarray(util) * 1e6})


def test_the_fabric_colours_utilization_on_an_absolute_scale_and_says_so():
    t = star(4, [1.25e9] * 4, [1e-6] * 4)
    fig = fabric_figure(t, _links(t, [0.08, 0.0] * 4))
    ax, bar = fig.axes
    assert ax.collections[0].get_clim() == (0.0, 1.0)  # 8 % busy is not the top of the scale
    assert "0-100 %" in bar.get_ylabel()
    assert bar.get_yticklabels()[-1].get_text() == "100%"
    labels = [label.get_text() for label in ax.get_yticklabels()]
    assert labels[0] == "NPUs (4)" and labels[1].startswith("switch\n4 NPUs each\n10 Gb/s")


def test_the_fabric_names_each_level_of_switches():
    t = dims([("switch", 4, 1.25e9, 1e-6), ("switch", 2, 1.25e8, 1e-6)])
    fig = fabric_figure(t, _links(t, [0.5] * t.links))
    labels = [label.get_text() for label in fig.axes[0].get_yticklabels()]
    assert labels == [
        "NPUs (8)",
        "dim0 switches (innermost)\n2 x 4 NPUs each\n10 Gb/s per cable",
        "dim1 switches\n4 x 2 NPUs each\n1 Gb/s per cable",
    ]


def _trace(widths, devices=4):
    """A pipeline trace: on each device, a forward per width (seconds), one after the other."""
    ends = np.cumsum(widths)
    one = {"step": 1, "op": "forward", "stage": 0, "microbatch": range(len(widths)), "start_s": ends - widths, "end_s": ends}
    ops = pd.concat([pd.DataFrame({"device": f"d{d}", **one}) for d in range(devices)], ignore_index=True)
    return SimpleNamespace(ops=ops, busy=pd.DataFrame(columns=["unit", "label", "start_s", "end_s"]))


def test_the_gantt_chart_labels_only_the_boxes_a_number_fits_in():
    widths = np.array([1e-6, 1e-4] * 20)  # 20 slivers, 20 wide boxes
    fig = gantt_figure(_trace(widths))
    ax = fig.axes[0]
    assert sorted(int(t.get_text()) for t in ax.texts) == sorted(list(range(1, 40, 2)) * 4)
    png(fig)  # lays out and renders as the report does; then each number sits inside its box
    for text in ax.texts:
        j = int(text.get_text())
        start, end = np.array([widths[:j].sum(), widths[: j + 1].sum()]) * time_scale(widths.sum())[0]
        left, right = ax.transData.transform([(start, 0), (end, 0)])[:, 0]
        box = text.get_window_extent()
        assert left <= box.x0 and box.x1 <= right


def test_heatmap_numbers_are_black_on_light_cells_and_white_on_dark_ones():
    viridis = colormaps["viridis"]
    assert text_colour(viridis(1.0)) == "black" and text_colour(viridis(0.0)) == "white"
    table = pd.DataFrame({"status": "ok", "x": [1, 2, 1, 2], "y": [1, 1, 2, 2], "m": [0.0, 1.0, 2.0, 3.0]})
    fig = heatmap_figure(table, [["x"], ["y"]], {}, "m", "x", "y", sampled=False)
    colours = {t.get_text(): t.get_color() for t in fig.axes[0].texts}
    assert colours["0"] == "white" and colours["3"] == "black"  # dark purple, yellow


@pytest.fixture(scope="module")
def quick(request):
    path = request.config.rootpath / "scenarios" / "quickstart.yaml"
    return hwsim.run(hwsim.load_scenario(path, ["system.steps=5"]))


@pytest.fixture(scope="module")
def pipe(request):
    path = request.config.rootpath / "scenarios" / "pipeline_1f1b.yaml"
    return hwsim.run(hwsim.load_scenario(path, ["system.steps=1"]))


def test_a_plot_helper_that_does_not_apply_says_which_runs_have_it(quick, pipe):
    assert issubclass(PlotNotApplicable, ValueError)
    for result, kind in ((quick, "single_device"), (pipe, "pipeline without fill")):
        applies = result.figures()
        for caption, (name, who) in FIGURES.items():
            if caption in applies:
                assert applies[caption] == getattr(result, name)
                continue
            with pytest.raises(PlotNotApplicable) as err:
                getattr(result, name)()
            assert str(err.value) == f"{name}: only {who} have this plot (this run is {kind})"
    with pytest.raises(PlotNotApplicable, match=r"^plot_gantt: only pipeline runs .*\(this run is single_device\)"):
        quick.plot_gantt()
    with pytest.raises(PlotNotApplicable, match=r"^plot_fill: only filled pipeline runs .* that finished"):
        pipe.plot_fill()


@pytest.mark.parametrize(
    "run, pngs",
    [
        ("quick", {"unit_timeline", "utilization", "memory_over_time", "power", "learning"}),
        (
            "pipe",
            {
                "unit_timeline",
                "utilization",
                "memory_over_time",
                "power",
                "learning",
                "fabric",
                "pipeline_gantt",
                "activation_memory",
            },
        ),
    ],  # fmt: skip
)
def test_the_report_writes_the_plots_that_apply_and_no_others(request, tmp_path, run, pngs):
    result = request.getfixturevalue(run)
    folder = result.write(tmp_path / "r")
    assert {p.stem for p in folder.glob("*.png")} == pngs
    assert {c.lower().replace(" ", "_") for c in result.figures()} == pngs
    assert (folder / "report.html").read_text().count("data:image/png;base64,") == len(pngs)
