"""Pure decisions, no simulator: pipeline schedules (data), their predicted timing and checks, bubble filling."""

from hwsim.policies import vshape, zero_bubble  # noqa: F401  (register zb_v, v_half, v_min; zb_h1, zb_h2)
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
    is_split,
    register_schedule,
    resolve_schedule,
)
from hwsim.policies.timing import (
    Deadlock,
    Timed,
    bubbles,
    dependencies,
    execute,
    idle_windows,
    makespan,
    peak_activations,
    problems,
)

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
    "bubbles",
    "build_schedule",
    "dependencies",
    "execute",
    "idle_windows",
    "is_split",
    "makespan",
    "peak_activations",
    "problems",
    "register_filler",
    "register_schedule",
    "resolve_filler",
    "resolve_schedule",
]
