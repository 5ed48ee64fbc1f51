"""A scenario file: hardware, a model, a system that trains it, and how to run and report."""

from __future__ import annotations

from hwsim.config.fields import spec
from hwsim.config.schema.common import schema
from hwsim.config.schema.federated import FederatedSpec
from hwsim.config.schema.hardware import HardwareSpec
from hwsim.config.schema.jobs import JobsSpec
from hwsim.config.schema.megatron import MegatronSpec
from hwsim.config.schema.model import ModelSpec
from hwsim.config.schema.online import OnlineSpec
from hwsim.config.schema.pipeline import PipelineSpec
from hwsim.config.schema.run import ReportSpec, RunSpec
from hwsim.config.schema.systems import CompressedPsSpec, DataParallelSpec, ReplaySpec, SingleDeviceSpec
from hwsim.errors import ConfigError

TITLE_LENGTH = 100
"""The most characters of a scenario's `title`."""

SystemSpec = (
    SingleDeviceSpec
    | CompressedPsSpec
    | PipelineSpec
    | OnlineSpec
    | FederatedSpec
    | DataParallelSpec
    | MegatronSpec
    | ReplaySpec
    | JobsSpec
)


@schema
class Scenario:
    """A scenario file: hardware, a model, a system that trains it, and how to run and report."""

    name: str = spec(doc="scenario name (names the report folder)")
    title: str = spec(
        "",
        doc=f"a one-line title of at most {TITLE_LENGTH} characters that tells this scenario from its siblings "
        "(what `hwsim list` shows; without it, the description's start)",
    )
    description: str = spec("", doc="one line on what this scenario shows")
    seed: int = spec(0, doc="seed of every random stream in the run", min=0)
    hardware: HardwareSpec = spec(doc="a preset name, a path, or a mapping (with optional 'base')")
    model: ModelSpec = spec(doc="a model name from models/, a path, or a mapping (with optional 'base')")
    system: SystemSpec = spec(doc="the training system and its settings")
    run: RunSpec = spec(RunSpec, doc="run settings")
    report: ReportSpec = spec(ReportSpec, doc="report settings")

    def __post_init__(self) -> None:
        if len(self.title) > TITLE_LENGTH or "\n" in self.title:
            raise ConfigError("", "title", self.title, f"a one-line title of at most {TITLE_LENGTH} characters")
