"""hwsim: a hardware-in-the-loop simulator and cycle model for distributed training.

>>> import hwsim
>>> r = hwsim.run(hwsim.load_scenario("scenarios/quickstart.yaml"))
>>> r.utilization, r.summary["learning"], r.plot_timeline()

The names below are imported when first used, so `import hwsim` (and `hwsim --help`) does not
pay for NumPy, pandas, matplotlib and Numba until a run needs them.
"""

from __future__ import annotations

import importlib

from hwsim.errors import ConfigError

_LAZY = {
    "Scenario": "hwsim.config.schema",
    "load_scenario": "hwsim.config.load",
    "RunResult": "hwsim.result",
    "run": "hwsim.result",
}

__all__ = ["ConfigError", "RunResult", "Scenario", "load_scenario", "run"]


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
        globals()[name] = value
        return value
    try:  # a subpackage used as an attribute (`hwsim.policies.Op`)
        return importlib.import_module(f"{__name__}.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *_LAZY])
