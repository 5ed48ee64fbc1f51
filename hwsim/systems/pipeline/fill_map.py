"""Where bubble filling pays: predicted utilization before and after filling over micro-batches and devices.

Each point is the scenario with another number of pipeline devices p and
micro-batches m, placed exactly as a run would place it (`SecondInstance.place`:
cycle-model op times, unloaded messages, the scenario's filling policy); nothing is
simulated, so a grid of dozens of points takes well under a second.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import pandas as pd
import simpy

from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError, SimulatedFailure
from hwsim.network import Cluster
from hwsim.policies import ScheduleError, makespan
from hwsim.systems.pipeline.system import Pipeline
from hwsim.trace import Recorder
from hwsim.workloads import make_model

MICROBATCHES = (1, 2, 4, 8, 16, 32)
DEVICES = (2, 4, 8)


def fill_map(scenario: Scenario, microbatches=MICROBATCHES, devices=DEVICES) -> pd.DataFrame:
    """One row per (devices, microbatches): predicted utilization before and after filling, the gain,
    and the second instance's micro-batches placed; `note` says why a point has no figures."""
    spec = scenario.system
    rows = []
    model = make_model(scenario.model)
    for p in sorted({*devices, spec.devices}):
        for m in sorted({*microbatches, spec.microbatches}):
            system = dataclasses.replace(spec, devices=p, microbatches=m, steps=1)
            point = dataclasses.replace(scenario, system=system, run=dataclasses.replace(scenario.run, mode="timing-only"))
            row = {"devices": p, "microbatches": m}
            try:
                cluster = Cluster(simpy.Environment(), point.hardware, Pipeline.npu_names(system), Recorder())
                pipeline = Pipeline(point, cluster, model, None, np.random.default_rng(0))
                placement = pipeline.fill.place()
            except (ScheduleError, ValueError, SimulatedFailure, ConfigError) as err:
                rows.append(row | {"note": str(err)})
                continue
            span = makespan(pipeline.fill.predicted)
            busy = sum(t.end - t.start for t in pipeline.fill.predicted.values())
            extra = sum(t.end - t.start for t in placement.times.values())
            before, after = busy / (p * span), (busy + extra) / (p * span)
            rows.append(
                row
                | {
                    "utilization_before": before,
                    "utilization_after": after,
                    "utilization_gain": after - before,
                    "fill_microbatches": placement.microbatches,
                    "note": placement.reason,
                }
            )
    return pd.DataFrame(rows)
