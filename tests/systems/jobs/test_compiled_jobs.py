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


def test_compiled_jobs_share_links_as_the_exact_messages_say():
    """The engine counts each job's bytes on each link; exact mode works them out from messages.csv's routes. (Job
    d takes the NPUs of whichever of b and c ends first: they end at the same instant, and the two engines take
    that instant's events in different orders, so only its total is compared.)"""
    tables = []
    for mode in ("exact", "compiled"):
        overrides = [*SMALL[:-1], SMALL[-1] % "flow"] + [f"system.jobs[{i}].system.mode={mode}" for i in range(4)]
        outcome = simulate(load_scenario(SCENARIO, overrides))
        tables.append(outcome.system.link_shares(outcome.trace))
    exact, compiled = tables
    placed = exact.job != "d"
    assert list(compiled.link[compiled.job != "d"]) == list(exact.link[placed])
    np.testing.assert_allclose(compiled.bytes[compiled.job != "d"], exact.bytes[placed], rtol=1e-12)
    totals = [table.groupby("job").bytes.sum() for table in tables]
    np.testing.assert_allclose(totals[1], totals[0], rtol=1e-12)
