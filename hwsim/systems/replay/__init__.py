"""Replay: a recorded workload (Chakra execution traces) run node by node on the cluster."""

from hwsim.systems.replay.system import Replay

__all__ = ["Replay"]
