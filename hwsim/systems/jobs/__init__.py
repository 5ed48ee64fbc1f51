"""Several jobs on one cluster (`system.kind: jobs`)."""

from hwsim.systems.jobs.system import Jobs

__all__ = ["Jobs"]
