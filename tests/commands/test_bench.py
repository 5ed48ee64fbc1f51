"""`hwsim bench`: each table is written with its rows."""

import sys

import pandas as pd

from hwsim.cli import main


def test_bench_writes_its_table(capsys, tmp_path):
    assert main(["bench", "engine", "--ops", "2000", "--quick", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "bench.csv").read_text()
    assert "bare SimPy" in table and "engine" in table and "default threads vs one" in table
    for model in ("ideal", "flow", "store_and_forward"):
        assert f"fat tree, {model}" in table
    assert "data parallel: 24-layer iteration on 64 NPUs" in table
    assert "ASTRA-sim side by side: rt_template (congestion_aware, 8 NPUs)" in table
    rows = pd.read_csv(tmp_path / "bench.csv").set_index("benchmark")
    cold = rows[rows.index.str.startswith("cold start:")]
    assert len(cold) == 5 and (cold.wall_s > 0).all() and cold.ratio["cold start: python -c 'import numpy'"] == 1.0
    err = capsys.readouterr().err  # each part named as it starts, also when stderr is not a terminal
    assert "bench engine [0/" in err and "cold start" in err and "megatron" in err
    assert (tmp_path / "bench.md").read_text().startswith("| benchmark")


def test_kernel_bench_writes_its_table(capsys, tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torch", None)  # the PyTorch column is `hwsim bench`'s, not the suite's (30 s)
    assert main(["bench", "kernels", "--size", "1 MiB", "--out", str(tmp_path)]) == 0
    table = (tmp_path / "kernels.csv").read_text()
    for kernel in ("int8 per-block quantize", "int4 stochastic per-block quantize", "eden encode", "topk encode", "adam step"):
        assert kernel in table
    assert "copy bandwidth" in (tmp_path / "kernels.md").read_text()
    small = pd.read_csv(tmp_path / "kernels_small.csv")
    assert set(small.elements) == {1024, 65536} and set(small.threads) >= {1}
    assert (small[["hwsim_us", "parallel_us", "numpy_us"]] > 0).all().all()


def test_kernel_bench_refuses_a_bad_size(capsys):
    assert main(["bench", "kernels", "--size", "lots"]) == 2
    assert "--size" in capsys.readouterr().err
