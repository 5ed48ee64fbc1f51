"""`hwsim bench`: how fast the simulator itself is, as ratios measured in one run.

Absolute wall times on a shared machine are noise; a ratio of two things measured
side by side in the same process is not. Each measurement is repeated, alternating
engine and baseline, and the fastest repeat of each is kept.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import simpy

from hwsim.config import load_scenario
from hwsim.config.load import PROJECT_ROOT
from hwsim.config.schema import SystolicSpec
from hwsim.hardware import ArithmeticUnit
from hwsim.trace import Recorder

REPEATS = 3
GEMM = (64, 64, 64)


def engine_loop(n_ops: int) -> float:
    """Wall seconds for `n_ops` GEMMs through the engine: cycle model, unit queue, recorder probe."""
    env = simpy.Environment()
    unit = ArithmeticUnit(env, "bench.systolic", SystolicSpec(rows=16, cols=16, clock=1e9))
    Recorder().attach_unit(unit)

    def controller():
        for _ in range(n_ops):
            yield from unit.gemm(*GEMM, "fp32", "op")

    env.process(controller())
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def bare_simpy_loop(n_ops: int) -> float:
    """Wall seconds for the same shape in bare SimPy: request a capacity-1 resource, hold it, release."""
    env = simpy.Environment()
    resource = simpy.Resource(env, capacity=1)
    duration = 1e-6

    def controller():
        for _ in range(n_ops):
            with resource.request() as request:
                yield request
                yield env.timeout(duration)

    env.process(controller())
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def _best_of(fns: dict[str, Callable[[], float]]) -> dict[str, float]:
    best = {name: float("inf") for name in fns}
    for _ in range(REPEATS):
        for name, fn in fns.items():
            best[name] = min(best[name], fn())
    return best


def _scenario_row(name: str, overrides: list[str]) -> dict:
    from hwsim.result import run

    scenario = load_scenario(PROJECT_ROOT / "scenarios" / f"{name}.yaml", overrides)
    result = run(scenario)
    ops = len(result.trace.busy)
    return {
        "benchmark": f"scenario {name} ({scenario.run.mode})",
        "ops": ops,
        "wall_s": result.wall_time_s,
        "ops_per_wall_s": ops / result.wall_time_s,
        "ratio": float("nan"),
        "note": f"whole run{' incl. model math and data loading' if scenario.run.mode == 'full' else ''}; simulated {result.sim_time_s:.3g} s",
    }


def run_bench(n_ops: int, out: Path, progress: Callable[[int, int], None] | None = None) -> str:
    """Measure, write `bench.csv` and `bench.md` under `out`, and return the table as text."""
    engine_loop(1000)  # warm imports and caches outside the measurement
    bare_simpy_loop(1000)
    best = _best_of({"engine": lambda: engine_loop(n_ops), "bare": lambda: bare_simpy_loop(n_ops)})
    if progress:
        progress(1, 4)
    rows = [
        {
            "benchmark": "engine: GEMM op on a systolic unit (cycle model + queue + probe)",
            "ops": n_ops,
            "wall_s": best["engine"],
            "ops_per_wall_s": n_ops / best["engine"],
            "ratio": best["engine"] / best["bare"],
            "note": "ratio = engine cost per op / bare SimPy cost per op, same run",
        },
        {
            "benchmark": "bare SimPy: request + timeout + release",
            "ops": n_ops,
            "wall_s": best["bare"],
            "ops_per_wall_s": n_ops / best["bare"],
            "ratio": 1.0,
            "note": "baseline",
        },
    ]
    scenarios = [("quickstart", []), ("gpt2_timing", []), ("gpt3_pipeline_timing", [])]
    for i, (name, overrides) in enumerate(scenarios, start=2):
        rows.append(_scenario_row(name, overrides))
        if progress:
            progress(i, len(scenarios) + 1)
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "bench.csv", index=False)
    (out / "bench.md").write_text(markdown(table), encoding="utf-8")
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def markdown(table: pd.DataFrame) -> str:
    """The table as GitHub Markdown, numbers to 4 significant digits."""

    def cell(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"
