"""`hwsim bench` row for Chakra traces: a 1,024-NPU data-parallel iteration (`data_parallel_8x16`'s 24-layer job
on 8 x 128 NPUs) exported as trace files, then read and replayed in symmetric mode (goal: at most 10 s)."""

from __future__ import annotations

import tempfile
import time
from pathlib import Path

from hwsim.build import check, simulate
from hwsim.commands.export import export_chakra
from hwsim.config.load import PROJECT_ROOT, load_scenario

DIMS = "[{kind: switch, size: 8, bandwidth: 450 GB/s, latency: 0.5 us}, {kind: switch, size: 128, bandwidth: 400 Gb/s, latency: 2 us}]"
"""cluster_8x16's two levels, with 128 nodes."""


def replay_row(quick: bool = False) -> dict:
    """The row; `quick`: 128 NPUs (a smoke run)."""
    nodes = 16 if quick else 128
    dims = DIMS.replace("size: 128", f"size: {nodes}")
    with tempfile.TemporaryDirectory() as folder:
        out = Path(folder)
        job = load_scenario(
            PROJECT_ROOT / "scenarios" / "data_parallel_8x16.yaml",
            [f"system.replicas={8 * nodes}", f"hardware.network.dims={dims}"],
        )
        start = time.perf_counter()
        files = export_chakra(job, out)
        exported = time.perf_counter() - start
        path = out / "replay.yaml"
        path.write_text(
            f"name: replay\nhardware: {{base: cluster_8x16, network: {{dims: {dims}}}}}\n"
            f"model: {{kind: chakra, traces: {job.name}}}\n"
            "system: {kind: replay, mode: symmetric, collective: {algorithm: ring, hierarchical: true}}\n"
            "run: {mode: timing-only}\n",
            encoding="utf-8",
        )
        start = time.perf_counter()
        scenario = load_scenario(path)
        check(scenario, str(path))
        outcome = simulate(scenario)
        wall = time.perf_counter() - start
    return {
        "benchmark": f"chakra: {len(files):,}-NPU data-parallel trace set, read and replayed (symmetric)",
        "ops": len(files),
        "wall_s": wall,
        "ops_per_wall_s": len(files) / wall,
        "ratio": float("nan"),
        "note": f"trace files per wall second; {outcome.sim_time_s * 1e3:.2f} ms simulated; export {exported:.1f} s; goal: at most 10 s",
    }
