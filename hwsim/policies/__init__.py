"""Pure decisions, no simulator: pipeline schedules (data), their predicted timing and checks, bubble filling."""

from hwsim.policies.filling import FILLERS, FillError, Job, Placement, register_filler, resolve_filler
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
    "FILLERS",
    "PLACEMENTS",
    "SCHEDULES",
    "Deadlock",
    "FillError",
    "Job",
    "Op",
    "Placement",
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
    "register_filler",
    "register_schedule",
    "resolve_filler",
    "resolve_schedule",
]
