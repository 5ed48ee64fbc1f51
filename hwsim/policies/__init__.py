"""Pure decisions, no simulator: pipeline schedules (data), their predicted timing and checks."""

from hwsim.policies.pipeline import (
    PLACEMENTS,
    SCHEDULES,
    Op,
    Schedule,
    ScheduleError,
    ScheduleKind,
    Shape,
    build_schedule,
    register_schedule,
    resolve_schedule,
)
from hwsim.policies.timing import Deadlock, Timed, dependencies, execute, idle_windows, makespan, peak_activations, problems

__all__ = [
    "PLACEMENTS",
    "SCHEDULES",
    "Deadlock",
    "Op",
    "Schedule",
    "ScheduleError",
    "ScheduleKind",
    "Shape",
    "Timed",
    "build_schedule",
    "dependencies",
    "execute",
    "idle_windows",
    "makespan",
    "peak_activations",
    "problems",
    "register_schedule",
    "resolve_schedule",
]
