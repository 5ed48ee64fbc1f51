"""Long runs: tables spill to Parquet chunk by chunk, and everything read from them (summary, tables,
plots, the Chrome trace's window) is what the same run gives when it stays in memory."""

import json

import numpy as np
import pandas as pd
import pytest

import hwsim
from hwsim.result import RunResult
from hwsim.trace import Recorder, chrome, store


@pytest.fixture(scope="module")
def runs(request):
    """The same compressed-PS run (many tables, messages too) in memory and spilled every 100 rows."""
    path = request.config.rootpath / "scenarios" / "compressed_ps_int8.yaml"
    scenario = hwsim.load_scenario(path, ["system.steps=12"])
    kept = hwsim.run(scenario)
    patch = pytest.MonkeyPatch()
    patch.setattr(store, "SPILL_ROWS", 100)
    try:
        spilled = hwsim.run(scenario)
    finally:
        patch.undo()
    return kept, spilled


def test_long_tables_spill_and_read_back_the_same_rows(runs):
    kept, spilled = runs
    for name in ("busy", "memory", "messages", "metrics"):
        assert not kept.trace.on_disk(name)
        assert spilled.trace.on_disk(name) == (spilled.trace.rows(name) >= 100)
        a, b = kept.trace.stores[name].memory_frame(), spilled.trace.stores[name].frame()
        assert len(a) == len(b) == spilled.trace.rows(name)
        pd.testing.assert_frame_equal(
            a, b.astype({c: object for c in b.columns if isinstance(b[c].dtype, pd.CategoricalDtype)}), check_dtype=False
        )
        chunks = list(spilled.trace.chunks(name))
        assert sum(len(c) for c in chunks) == len(a) and max(len(c) for c in chunks) <= 100


def test_a_spilled_run_has_the_same_summary(runs):
    """Equal but for the last bits of sums added up chunk by chunk."""
    kept, spilled = runs
    a, b = (json.loads(json.dumps(r.summary, default=float)) for r in (kept, spilled))
    for s in (a, b):
        s["provenance"].pop("wall_time_s")
        s.pop("trace")
    assert flat(a).keys() == flat(b).keys()
    for key, value in flat(a).items():
        assert flat(b)[key] == (pytest.approx(value, rel=1e-12, abs=1e-18) if isinstance(value, float) else value), key
    assert {"busy", "memory", "messages", "metrics", "phases"} <= set(spilled.summary["trace"]["parquet"])


def flat(tree, prefix=""):
    if isinstance(tree, dict):
        return {k: v for key, sub in tree.items() for k, v in flat(sub, f"{prefix}{key}.").items()}
    return {prefix: tree}


def test_a_spilled_run_writes_parquet_plots_and_a_windowed_trace(runs, tmp_path, monkeypatch):
    monkeypatch.setattr(chrome, "MAX_EVENTS", 300)
    spilled = RunResult(runs[1].scenario, runs[1].outcome)  # a summary made with this window
    folder = spilled.write(tmp_path / "r")
    for name in ("busy", "memory", "messages", "metrics"):
        assert not (folder / f"{name}.csv").exists()
        assert len(pd.read_parquet(folder / f"{name}.parquet")) == spilled.trace.rows(name)
    assert (folder / "unit_timeline.png").stat().st_size > 10_000
    doc = json.loads((folder / "trace.json").read_text())
    ops = [e for e in doc["traceEvents"] if e["ph"] == "X" and e.get("cat") != "message"]
    held = [e for e in doc["traceEvents"] if e["ph"] != "M" and e.get("cat") != "collective"]
    assert 250 <= len(held) <= 300 and f"{len(ops)} of {spilled.trace.rows('busy'):,} operations" in doc["otherData"]["window"]
    end = spilled.summary["trace"]["chrome_trace_window_s"][1] * 1e6
    assert all(e["ts"] + e.get("dur", 0) <= end + 1e-6 for e in held)
    assert "trace.json covers" in (folder / "report.html").read_text()


def test_memory_holds_at_most_one_chunk_per_table():
    recorder = Recorder(spill_rows=100)
    for i in range(1_050):
        recorder.metric(float(i), i, "loss", 1.0)
    table = recorder.tables["metrics"]
    assert len(table.rows) == 50 and table.spilled == 1_000
    trace = recorder.trace()
    assert trace.rows("metrics") == 1_050 and trace.metrics.step.tolist() == list(range(1_050))


def test_per_pixel_busy_shares_add_up_to_the_busy_time():
    from hwsim.report.downsample import busy_fractions

    rng = np.random.default_rng(0)
    start = np.sort(rng.uniform(0, 10, 400))
    end = start + rng.uniform(0, 0.5, 400)
    busy = pd.DataFrame(
        {"unit": rng.choice(["a", "b"], 400), "label": rng.choice(["fwd x", "bwd y", "z"], 400), "start_s": start, "end_s": end}
    )
    cats = ["fwd", "bwd", "other"]
    shares = busy_fractions(
        [busy[:150], busy[150:]],
        ["a", "b"],
        cats,
        lambda s: s.str.split(" ").str[0].where(lambda w: w.isin(cats), "other"),
        11.0,
        37,
    )
    width = 11.0 / 37
    for u, unit in enumerate(["a", "b"]):
        for c, cat in enumerate(cats):
            rows = busy[(busy.unit == unit) & (busy.label.str.split(" ").str[0].where(lambda w: w.isin(cats), "other") == cat)]
            assert shares[c, u].sum() * width == pytest.approx((rows.end_s - rows.start_s).sum())
            # and bin by bin against a direct overlap count
            edges = np.arange(38) * width
            direct = [
                np.clip(np.minimum(rows.end_s, edges[b + 1]) - np.maximum(rows.start_s, edges[b]), 0, None).sum()
                for b in range(37)
            ]
            np.testing.assert_allclose(shares[c, u] * width, direct, atol=1e-12)
