"""SimPy hardware components. They know nothing about training."""

from hwsim.hardware.arithmetic import (
    ArithmeticUnit,
    VectorUnit,
    array_cycles,
    gemm_cycles,
    tile_traffic,
    tile_waves,
    tiled_gemm_cycles,
)
from hwsim.hardware.device import Device, Server
from hwsim.hardware.memory import MemoryBank
from hwsim.hardware.network import Link, Message, Nic, Placeholder
from hwsim.hardware.unit import Unit

__all__ = [
    "ArithmeticUnit",
    "Device",
    "Link",
    "MemoryBank",
    "Message",
    "Nic",
    "Placeholder",
    "Server",
    "Unit",
    "VectorUnit",
    "array_cycles",
    "gemm_cycles",
    "tile_traffic",
    "tile_waves",
    "tiled_gemm_cycles",
]
