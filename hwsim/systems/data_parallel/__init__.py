"""Data parallelism: replicas, gradient all-reduce on the fabric, exact or symmetric execution."""

from hwsim.systems.data_parallel.system import DataParallel

__all__ = ["DataParallel"]
