"""`hwsim bench` rows for Megatron 3D runs: the wall time of each `validate published` row and of a 1T
model on 3,072 GPUs (the simulation alone, no report)."""

from __future__ import annotations

from hwsim.build import simulate
from hwsim.commands.published import BASE, KORTHIKANTI_2022
from hwsim.config.load import PROJECT_ROOT, load_scenario


def megatron_rows(quick: bool = False) -> list[dict]:
    runs = [
        (
            f"megatron {row.model} t{row.tensor} p{row.pipeline} v{row.virtual}, {recompute}",
            BASE,
            row.overrides(recompute, sequence),
        )
        for row in KORTHIKANTI_2022[: 1 if quick else None]
        for recompute, sequence in (("full", False), ("selective", True))
    ]
    if not quick:
        runs.append(
            ("megatron 1T on 3,072 GPUs (t8 p64 d6, symmetric)", PROJECT_ROOT / "scenarios" / "megatron_1t_3072.yaml", [])
        )
    rows = []
    for name, path, overrides in runs:
        outcome = simulate(load_scenario(path, overrides))
        ops = len(outcome.trace.ops)
        rows.append(
            {
                "benchmark": name,
                "ops": ops,
                "wall_s": outcome.wall_time_s,
                "ops_per_wall_s": ops / outcome.wall_time_s,
                "ratio": float("nan"),
                "note": f"simulation only ({outcome.status}); simulated step {outcome.sim_time_s:.4g} s",
            }
        )
    return rows
