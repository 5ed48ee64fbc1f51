"""Jobs whose data-parallel collectives run in the compiled engine (one engine per cluster, shared by the jobs):
the same step times as exact, job by job, with their interference; refusals."""

from __future__ import annotations

import numpy as np
import pytest

from hwsim.build import check, simulate
from hwsim.config.load import PROJECT_ROOT, load_scenario
from hwsim.errors import ConfigError

SCENARIO = PROJECT_ROOT / "scenarios" / "cluster_jobs_fat_tree.yaml"
SMALL = ["model.repeat=2", "report.plots=false", "hardware.network.model=%s"]


def _steps(mode: str, model: str, jobs: int = 4) -> dict:
    overrides = [*SMALL[:-1], SMALL[-1] % model] + [f"system.jobs[{i}].system.mode={mode}" for i in range(jobs)]
    scenario = load_scenario(SCENARIO, overrides)
    check(scenario, str(SCENARIO))
    outcome = simulate(scenario)
    return {job.spec.name: job.steps for job in outcome.system.jobs}


@pytest.mark.parametrize("model", ["flow", "store_and_forward"])
def test_compiled_jobs_take_the_exact_step_times_in_the_mix(model):
    exact, compiled = _steps("exact", model), _steps("compiled", model)
    assert exact.keys() == compiled.keys()
    for name in exact:
        np.testing.assert_allclose(compiled[name], exact[name], rtol=1e-9)


def test_compiled_and_exact_jobs_do_not_mix():
    scenario = load_scenario(SCENARIO, ["system.jobs[0].system.mode=compiled"])
    with pytest.raises(ConfigError, match="every job a compiled data_parallel job, or none"):
        check(scenario, str(SCENARIO))
