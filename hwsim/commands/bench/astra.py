"""`hwsim bench`'s ASTRA-sim rows: ASTRA-sim's own example inputs (scenarios/astra/, from astra-sim 5f07824) run on
hwsim through `hwsim import astra`, beside ASTRA-sim's iteration time and wall time recorded from a run of the
same inputs (`data/astra_sim_runs.csv`, its header says how). The goal: hwsim within 2 % of either backend where
the semantics agree, and faster."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

import pandas as pd

from hwsim.build import check, simulate
from hwsim.commands.astra import astra_scenario
from hwsim.config.load import PROJECT_ROOT, load_scenario
from hwsim.workloads.chakra import EtNode, write_trace

RUNS = Path(__file__).resolve().parents[1] / "data" / "astra_sim_runs.csv"
INPUTS = PROJECT_ROOT / "scenarios" / "astra"
MEMORY = INPUTS / "inputs" / "remote_memory" / "analytical" / "no_memory_expansion.json"
QUICK = ("rt_template", "hwsim_export_dp8_1x25MiB")
"""The cases a quick bench runs: ASTRA-sim's own test input and an export of hwsim's (a tenth of a second each)."""


def astra_runs() -> pd.DataFrame:
    """ASTRA-sim's recorded runs."""
    return pd.read_csv(RUNS, comment="#")


def workload(spec: str, folder: Path) -> Path:
    """The trace prefix of a run: a path under scenarios/astra; generate:OP:BYTES:NPUS (one collective node per
    NPU), export:REPEAT:PARAMS (`hwsim export chakra` of data_parallel_8x16 on 8 replicas) or pipeline:SCHEDULE
    (of pipeline_1f1b with that schedule, one replica) written into `folder`."""
    if spec.startswith("pipeline:"):
        from hwsim.commands.export import export_chakra

        overrides = [f"system.schedule={spec.split(':')[1]}", "system.data_parallel=1", "system.steps=1", "run.mode=timing-only"]
        job = load_scenario(PROJECT_ROOT / "scenarios" / "pipeline_1f1b.yaml", overrides)
        export_chakra(job, folder)
        return folder / job.name
    if spec.startswith("export:"):
        from hwsim.commands.export import export_chakra

        _, repeat, params = spec.split(":")
        layers = f"[{{name: block, forward: 0.5 ms, backward: 1 ms, params: {params}}}]"
        job = load_scenario(
            PROJECT_ROOT / "scenarios" / "data_parallel_8x16.yaml",
            ["system.replicas=8", "system.collective.hierarchical=false", f"model.layers={layers}", f"model.repeat={repeat}"],
        )
        export_chakra(job, folder)
        return folder / job.name
    if not spec.startswith("generate:"):
        return INPUTS / spec
    _, op, nbytes, npus = spec.split(":")
    prefix = folder / op
    node = EtNode(0, op, "collective", bytes=int(nbytes), collective=op.lower())
    for r in range(int(npus)):
        write_trace(f"{prefix}.{r}.et", [node])
    return prefix


def hwsim_time(row, folder: Path) -> tuple[float, float, str]:
    """(hwsim's iteration time in seconds, its wall time, '') for a recorded run, or (nan, nan, why) when the
    import refuses it."""
    from hwsim.errors import ConfigError

    start = time.perf_counter()
    try:
        imported = astra_scenario(INPUTS / row.network, INPUTS / row.system, workload(row.workload, folder), MEMORY, row.backend)
    except ConfigError as err:
        return float("nan"), float("nan"), str(err).split("; expected ")[-1]
    path = folder / "imported.yaml"
    path.write_text(imported.yaml() + "report: {plots: false}\n", encoding="utf-8")
    scenario = load_scenario(path)
    check(scenario, str(path))
    outcome = simulate(scenario)
    return outcome.sim_time_s, time.perf_counter() - start, ""


def astra_rows(quick: bool = False) -> list[dict]:
    runs = astra_runs()
    if quick:
        runs = runs[runs.case.isin(QUICK)]
    rows = []
    for row in runs.itertuples(index=False):
        with tempfile.TemporaryDirectory() as folder:
            simulated, wall, refused = hwsim_time(row, Path(folder))
        astra_s = row.cycles * 1e-9
        error = (simulated / astra_s - 1) * 100
        rows.append(
            {
                "benchmark": f"ASTRA-sim side by side: {row.case} ({row.backend}, {row.npus} NPUs)",
                "ops": row.npus,
                "wall_s": wall,
                "ops_per_wall_s": row.npus / wall if wall == wall else float("nan"),
                "ratio": wall / row.wall_s,
                "note": (
                    f"refused: {refused}"
                    if refused
                    else f"iteration: hwsim {simulated * 1e6:,.3f} us, ASTRA-sim {astra_s * 1e6:,.3f} us ({error:+.2f} %); "
                    f"ratio = hwsim wall (import and run, in process) / ASTRA-sim's {row.wall_s:.3g} s (its whole process; "
                    "astra-sim 5f07824, same machine)"
                ),
            }
        )
    return rows
