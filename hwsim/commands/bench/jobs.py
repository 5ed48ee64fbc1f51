"""`hwsim bench engine`'s rows for a shared cluster (`system.kind: jobs`): the wall time of
`scenarios/cluster_jobs_fat_tree.yaml` (4 jobs on 32 NPUs), and of eight 16-NPU jobs of the 24-layer model
spread over a 128-NPU fat tree (16 leaves of 8, 4 spines, 2:1), each also run alone; every transfer
simulated (jobs run in exact mode). The issue's goal, eight jobs on 1,024 NPUs in 30 s, is out of reach of
exact mode: these rows are the measure of the gap."""

from __future__ import annotations

import time

from hwsim.config.load import PROJECT_ROOT, load_scenario

EIGHT = [
    "hardware.network={kind: fat_tree, leaves: 16, npus_per_leaf: 8, spines: 4, bandwidth: 100 Gb/s, latency: 1 us, "
    "spine_latency: 1 us, oversubscription: 2}",
    "model={kind: layers, layers: [{name: block, forward: 0.5 ms, backward: 1 ms, params: 25 MiB}], repeat: 24}",
    "system.jobs=["
    + ", ".join(f"{{name: j{i}, system: {{kind: data_parallel, replicas: 16, optimizer: 0.2 ms}}}}" for i in range(8))
    + "]",
    "report.plots=false",
    "report.trace=false",
]
"""Eight 16-NPU jobs of the 24-layer model on a 128-NPU fat tree."""


def jobs_rows(quick: bool = False) -> list[dict]:
    from hwsim.result import run

    path = PROJECT_ROOT / "scenarios" / "cluster_jobs_fat_tree.yaml"
    cases = [("4 jobs on 32 NPUs (cluster_jobs_fat_tree, spread)", ["report.plots=false"])]
    if not quick:
        cases.append(("8 jobs of 16 NPUs on a 128-NPU fat tree (24 layers, spread)", EIGHT))
    rows = []
    for name, overrides in cases:
        start = time.perf_counter()
        result = run(load_scenario(path, overrides))
        wall = time.perf_counter() - start
        jobs = result.summary["jobs"]["jobs"]
        worst = max(job["slowdown"] or 0.0 for job in jobs.values())
        rows.append(
            {
                "benchmark": f"jobs: {name}",
                "ops": len(jobs),
                "wall_s": wall,
                "ops_per_wall_s": len(jobs) / wall,
                "ratio": float("nan"),
                "note": f"whole run with each job alone too; worst slowdown x{worst:.2f} (goal: 8 jobs on 1,024 NPUs <= 30 s)",
            }
        )
    return rows
