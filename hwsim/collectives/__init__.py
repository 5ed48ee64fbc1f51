"""Collectives as data (`algorithms`: per NPU, the ordered steps) and their executor on a fabric."""

from hwsim.collectives.algorithms import ALGORITHMS, BUILDERS, OPERATIONS, CollectiveError, Plan, Recv, Send, plan
from hwsim.collectives.executor import Outcome, run

__all__ = ["ALGORITHMS", "BUILDERS", "OPERATIONS", "CollectiveError", "Outcome", "Plan", "Recv", "Send", "plan", "run"]
