"""hwsim: a hardware-in-the-loop simulator and cycle model for distributed training.

>>> import hwsim
>>> r = hwsim.run(hwsim.load_scenario("scenarios/quickstart.yaml"))
>>> r.utilization, r.summary["learning"], r.plot_timeline()
"""

from hwsim.config import Scenario, load_scenario
from hwsim.errors import ConfigError
from hwsim.result import RunResult, run

__all__ = ["ConfigError", "RunResult", "Scenario", "load_scenario", "run"]
