"""The typed, frozen schema of scenario files, one module per section (hardware, network, model,
systems, run). All quantities are SI floats once parsed: seconds, bytes, bytes/s, Hz. `hwsim schema`
prints this as JSON Schema; `fields.build` checks files against it."""

from hwsim.config.schema.common import BANK_PRECISIONS, DATAFLOWS, PRECISIONS
from hwsim.config.schema.federated import (
    AvailabilitySpec,
    ClientsSpec,
    DeadlineSpec,
    DistSpec,
    FederatedSpec,
    PartitionSpec,
    ReductionSpec,
    SelectionSpec,
)
from hwsim.config.schema.hardware import BankSpec, HardwareSpec, MacsSpec, NicSpec, SystolicSpec, VectorSpec
from hwsim.config.schema.megatron import MegatronSpec, ParallelSpec
from hwsim.config.schema.model import ChakraSpec, LayerSpec, LayersSpec, MlaSpec, MlpSpec, ModelSpec, MoeSpec, TransformerSpec
from hwsim.config.schema.network import (
    SHARING,
    DimsNet,
    DimSpec,
    FabricSpec,
    FatTreeNet,
    FullyConnectedNet,
    LinkOverride,
    NetworkSpec,
    RingNet,
    SwitchNet,
    TorusNet,
    UniformNet,
)
from hwsim.config.schema.online import FullSpec, LinkDownSpec, OnlineSpec, RealtimeSpec, SelectSpec, StreamSpec
from hwsim.config.schema.pipeline import FillSpec, PipelineSpec
from hwsim.config.schema.run import ReportSpec, RunSpec
from hwsim.config.schema.scenario import Scenario, SystemSpec
from hwsim.config.schema.systems import (
    CollectiveSpec,
    CompressedPsSpec,
    DataParallelSpec,
    LocalTrainingSpec,
    ReplaySpec,
    SingleDeviceSpec,
)

__all__ = [
    "AvailabilitySpec",
    "BANK_PRECISIONS",
    "BankSpec",
    "ClientsSpec",
    "CollectiveSpec",
    "CompressedPsSpec",
    "DATAFLOWS",
    "ChakraSpec",
    "DataParallelSpec",
    "DeadlineSpec",
    "DimSpec",
    "DimsNet",
    "DistSpec",
    "FabricSpec",
    "FatTreeNet",
    "FederatedSpec",
    "FillSpec",
    "FullSpec",
    "FullyConnectedNet",
    "HardwareSpec",
    "LayerSpec",
    "LayersSpec",
    "ReplaySpec",
    "LinkDownSpec",
    "LinkOverride",
    "LocalTrainingSpec",
    "MacsSpec",
    "MegatronSpec",
    "MlaSpec",
    "MlpSpec",
    "MoeSpec",
    "ModelSpec",
    "NetworkSpec",
    "NicSpec",
    "OnlineSpec",
    "PRECISIONS",
    "ParallelSpec",
    "PartitionSpec",
    "PipelineSpec",
    "RealtimeSpec",
    "ReductionSpec",
    "ReportSpec",
    "RingNet",
    "RunSpec",
    "SHARING",
    "Scenario",
    "SelectSpec",
    "SelectionSpec",
    "SingleDeviceSpec",
    "StreamSpec",
    "SwitchNet",
    "SystemSpec",
    "SystolicSpec",
    "TorusNet",
    "TransformerSpec",
    "UniformNet",
    "VectorSpec",
]
