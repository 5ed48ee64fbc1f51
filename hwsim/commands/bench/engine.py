"""`hwsim bench`: how fast the simulator itself is, as ratios measured in one run.

Absolute wall times on a shared machine are noise; a ratio of two things measured
side by side in the same process is not. Each measurement is repeated, alternating
engine and baseline, and the fastest repeat of each is kept.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pandas as pd
import simpy

from hwsim.commands.bench.astra import astra_rows
from hwsim.commands.bench.collectives import compression_rows, data_parallel_rows
from hwsim.commands.bench.fabric import fabric_rows
from hwsim.commands.bench.jobs import jobs_rows
from hwsim.commands.bench.megatron import megatron_rows, published_row, sweep_row
from hwsim.commands.bench.replay import replay_row
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
    ops = result.trace.rows("busy")
    return {
        "benchmark": f"scenario {name} ({scenario.run.mode})",
        "ops": ops,
        "wall_s": result.wall_time_s,
        "ops_per_wall_s": ops / result.wall_time_s,
        "ratio": float("nan"),
        "note": f"whole run{' incl. model math and data loading' if scenario.run.mode == 'full' else ''}; simulated {result.sim_time_s:.3g} s",
    }


def _federated_row() -> dict:
    """The federated scale scenario (1,000 clients, 20 per round, 50 rounds) against the same local
    training and averaging done in bare NumPy (same clients, same batches): the simulator's overhead."""
    from hwsim.result import run

    name = "federated_1000_clients"
    scenario = load_scenario(PROJECT_ROOT / "scenarios" / f"{name}.yaml")
    result = run(scenario)
    system = result.outcome.system
    numpy_s = _numpy_federated(system)
    rounds = system.spec.rounds
    return {
        "benchmark": f"scenario {name} ({system.spec.clients} clients, {system.spec.per_round}/round, {rounds} rounds)",
        "ops": result.trace.rows("busy"),
        "wall_s": result.wall_time_s,
        "ops_per_wall_s": result.trace.rows("busy") / result.wall_time_s,
        "ratio": result.wall_time_s / numpy_s,
        "note": f"whole run (target < 60 s); ratio = run / the same local SGD + FedAvg in bare NumPy ({numpy_s:.3g} s); "
        f"test accuracy {system.round_table.test_accuracy.iloc[-1]:.3f}",
    }


THREADED = {"federated_digits": ["system.rounds=2"], "online_realtime": ["system.duration=0.3 s"]}
"""Scenarios whose kernels see small tensors, timed with Numba's default threads and with one (and the
overrides `--quick` runs them with)."""


def _threads_row(name: str, overrides: list[str], repeats: int) -> dict:
    """`name` run in fresh processes with Numba's default thread count and with NUMBA_NUM_THREADS=1,
    alternately, the best of `repeats` each: small kernels must not pay for the thread pool."""
    script = (
        "import hwsim, sys\n"
        f"r = hwsim.run(hwsim.load_scenario({str(PROJECT_ROOT / 'scenarios' / f'{name}.yaml')!r}, {overrides!r}))\n"
        "print(r.wall_time_s, r.trace.rows('busy'))\n"
    )
    plain = {k: v for k, v in os.environ.items() if k != "NUMBA_NUM_THREADS"}
    envs = {"default": plain, "one": {**plain, "NUMBA_NUM_THREADS": "1"}}
    best, ops = {"default": float("inf"), "one": float("inf")}, 0
    for _ in range(repeats):
        for key, env in envs.items():
            out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True).stdout
            wall, ops = out.split()
            best[key] = min(best[key], float(wall))
    return {
        "benchmark": f"scenario {name}: default threads vs one",
        "ops": int(ops),
        "wall_s": best["default"],
        "ops_per_wall_s": int(ops) / best["default"],
        "ratio": best["default"] / best["one"],
        "note": f"ratio = run with Numba's default threads ({os.cpu_count()} cores) / with NUMBA_NUM_THREADS=1 "
        f"({best['one']:.3g} s), fresh processes, best of {repeats}" + (f"; {', '.join(overrides)}" if overrides else ""),
    }


def _numpy_federated(system) -> float:
    """Wall seconds for every participation's local SGD (float32 NumPy) and a FedAvg per round."""
    from hwsim.policies.federated import local_batches

    spec, data = system.spec, system.data
    parts = system.participation_table
    start = time.perf_counter()
    model = [tuple(a.copy() for a in layer) for layer in system.initial]
    for r, members in parts.groupby("round"):
        trained = []
        for k in members.client:
            local = [[a.copy() for a in layer] for layer in model]
            x, y = data.x_train[system.parts[k]], data.y_train[system.parts[k]]
            for idx in local_batches(len(y), spec.batch, spec.epochs, system.batch_rng(r, k)):
                _numpy_sgd(local, x[idx], y[idx], spec.lr)
            trained.append(local)
        model = [tuple(np.mean([t[li][j] for t in trained], axis=0) for j in range(2)) for li in range(len(model))]
    return time.perf_counter() - start


def _numpy_sgd(params, x, y, lr) -> None:
    acts, pres = [x], []
    for li, (w, b) in enumerate(params):
        z = acts[-1] @ w + b
        pres.append(z)
        acts.append(z if li == len(params) - 1 else np.maximum(z, 0))
    p = np.exp(acts[-1] - acts[-1].max(axis=1, keepdims=True))
    grad = p / p.sum(axis=1, keepdims=True)
    grad[np.arange(len(y)), y] -= 1
    grad /= len(y)
    for li in reversed(range(len(params))):
        dz = grad if li == len(params) - 1 else grad * (pres[li] > 0)
        grad = dz @ params[li][0].T
        params[li][0] -= lr * (acts[li].T @ dz)
        params[li][1] -= lr * dz.sum(axis=0)


COLD_START = {
    "python -c 'import numpy'": [sys.executable, "-c", "import numpy"],
    "hwsim --help": [sys.executable, "-m", "hwsim.cli", "--help"],
    "hwsim list": [sys.executable, "-m", "hwsim.cli", "list"],
    "hwsim schema": [sys.executable, "-m", "hwsim.cli", "schema"],
}
"""Commands whose whole-process wall a newcomer feels first; the first is the baseline of the ratios."""
COLD_RUN = ["system.replicas=64", "system.mode=symmetric", "system.steps=1", "report.plots=false", "report.trace=false"]
"""The 64-NPU timing-only run of the cold-start rows (`data_parallel_8x16` on 8 x 8), plots and trace off."""


def cold_start_rows(out: Path, repeats: int = REPEATS) -> list[dict]:
    """Whole-process wall of the commands a newcomer types first and of a 64-NPU timing-only run (fresh
    processes, best of `repeats`, alternating), against starting Python and importing NumPy in the same run."""
    dims = "{dims: [{kind: switch, size: 8, bandwidth: 400 GB/s, latency: 1 us}, {kind: switch, size: 8, bandwidth: 50 GB/s, latency: 2 us}]}"
    scenario = str(PROJECT_ROOT / "scenarios" / "data_parallel_8x16.yaml")
    run = [
        sys.executable,
        "-m",
        "hwsim.cli",
        "run",
        scenario,
        *COLD_RUN,
        f"hardware.network={dims}",
        "--out",
        str(out / "cold_run"),
    ]
    commands = {**COLD_START, "hwsim run: 64 NPUs, timing-only, no plots": run}
    best = dict.fromkeys(commands, float("inf"))
    for _ in range(repeats):
        for name, cmd in commands.items():
            start = time.perf_counter()
            subprocess.run(cmd, check=True, capture_output=True)
            best[name] = min(best[name], time.perf_counter() - start)
    base = best["python -c 'import numpy'"]
    return [
        {
            "benchmark": f"cold start: {name}",
            "ops": 1,
            "wall_s": wall,
            "ops_per_wall_s": 1 / wall,
            "ratio": wall / base,
            "note": f"whole process, best of {repeats}; ratio = wall / python -c 'import numpy' ({base:.3g} s) in the same run",
        }
        for name, wall in best.items()
    ]


def run_bench(n_ops: int, out: Path, progress: Callable[..., None] | None = None, quick: bool = False) -> str:
    """Measure, write `bench.csv` and `bench.md` under `out`, and return the table as text. `quick`: a
    smoke run (the thread comparison on short runs, once each), whose numbers mean little. `progress` is
    called as progress(done, total, what) before each part."""
    scenarios = [("quickstart", []), ("gpt2_timing", []), ("gpt3_pipeline_timing", [])]
    tasks = [
        ("cold start: fresh processes", lambda: cold_start_rows(out, 1 if quick else REPEATS)),
        ("engine vs bare SimPy", lambda: _engine_rows(n_ops)),
        *[(f"scenario {name}", lambda name=name, o=o: [_scenario_row(name, o)]) for name, o in scenarios],
        ("scenario federated_1000_clients (about a minute)", lambda: [_federated_row()]),
        ("fabric: fat tree under each sharing model", lambda: fabric_rows(1, 100, 2) if quick else fabric_rows()),
        ("data parallel at 64 to 4,096 NPUs (several minutes)", lambda: data_parallel_rows(quick)),
        ("compressed all-reduce: time to accuracy", lambda: compression_rows(quick)),
        ("megatron: 22B to 1T", lambda: megatron_rows(quick)),
        ("jobs: several on one fat tree", lambda: jobs_rows(quick)),
        ("chakra: a 1,024-NPU trace set", lambda: [replay_row(quick)]),
        ("ASTRA-sim's examples side by side (several minutes)", lambda: astra_rows(quick)),
        *([] if quick else [("sweep: 52B layouts (about a minute)", lambda: [sweep_row()])]),
        *([] if quick else [("validate published (about a minute)", lambda: [published_row()])]),
        *[
            (
                f"threads: {name}, default vs one",
                lambda name=name, o=o: [_threads_row(name, o if quick else [], 1 if quick else REPEATS)],
            )
            for name, o in THREADED.items()
        ],
    ]
    rows = []
    for i, (what, task) in enumerate(tasks):
        if progress:
            progress(i, len(tasks), what)
        rows += task()
    if progress:
        progress(len(tasks), len(tasks), "done")
    table = pd.DataFrame(rows)
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "bench.csv", index=False)
    (out / "bench.md").write_text(markdown(table), encoding="utf-8")
    return table.to_string(index=False, float_format=lambda v: f"{v:.4g}")


def _engine_rows(n_ops: int) -> list[dict]:
    engine_loop(1000)  # warm imports and caches outside the measurement
    bare_simpy_loop(1000)
    best = _best_of({"engine": lambda: engine_loop(n_ops), "bare": lambda: bare_simpy_loop(n_ops)})
    return [
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


def markdown(table: pd.DataFrame) -> str:
    """The table as GitHub Markdown, numbers to 4 significant digits."""

    def cell(value) -> str:
        return f"{value:.4g}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(table.columns) + " |", "|" + "---|" * len(table.columns)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in table.itertuples(index=False)]
    return "\n".join(lines) + "\n"
