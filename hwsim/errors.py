"""The one exception type for user mistakes, and the simulated failures a run can end in."""

from __future__ import annotations

from types import MappingProxyType


class ConfigError(Exception):
    """A mistake in a scenario, model, preset or command-line override.

    The message names where (file and dotted key path), what was found and what was
    expected, so the command line can print it as is and exit 2.
    """

    def __init__(self, where: str, key: str, got: object, expected: str):
        self.where = where
        self.key = key
        self.got = got
        self.expected = expected
        location = f"{shorten(where)}: {shorten(key)}" if key else shorten(where)
        shown = "" if got is NOTHING else f": got {brief(got)}"
        super().__init__(f"{location}{shown}; expected {expected}")


SHOWN = 160
"""The most characters of a value (or file name, or key) an error message repeats."""


def shorten(text: str) -> str:
    """`text`, cut in the middle to at most about SHOWN characters, saying how long it was."""
    if len(text) <= SHOWN:
        return text
    return f"{text[: SHOWN - 50]}...{text[-30:]} ({len(text):,} characters)"


def brief(value: object) -> str:
    """`repr(value)` shortened as `shorten` does, but a list or mapping is walked only until about SHOWN
    characters are out (a YAML alias bomb, or a recursive list, would otherwise be expanded whole)."""
    parts: list[str] = []
    budget = [4 * SHOWN]

    def put(text: str) -> None:
        parts.append(text)
        budget[0] -= len(text)
        if budget[0] < 0:
            raise _Full

    def walk(item: object, seen: tuple[int, ...]) -> None:
        if isinstance(item, (list, tuple, dict, MappingProxyType)) and id(item) in seen:
            put("[...]" if isinstance(item, list) else "(...)" if isinstance(item, tuple) else "{...}")
        elif isinstance(item, (dict, MappingProxyType)):
            put("{")
            for i, (key, sub) in enumerate(item.items()):
                put(", " * bool(i))
                walk(key, seen + (id(item),))
                put(": ")
                walk(sub, seen + (id(item),))
            put("}")
        elif isinstance(item, (list, tuple)) and type(item) in (list, tuple):
            put("[" if isinstance(item, list) else "(")
            for i, sub in enumerate(item):
                put(", " * bool(i))
                walk(sub, seen + (id(item),))
            put("]" if isinstance(item, list) else ",)" if len(item) == 1 else ")")
        else:
            put(shorten(repr(item)))

    try:
        walk(value, ())
    except _Full:
        return "".join(parts)[: SHOWN - 20] + "... (cut)"
    return parts[0] if len(parts) == 1 else shorten("".join(parts))  # one part: a value `shorten` has cut


class _Full(Exception):
    """`brief` has written enough."""


class _Nothing:
    def __repr__(self) -> str:
        return "<nothing>"


NOTHING = _Nothing()
"""Passed as `got` when there is no value to show (a missing file, a syntax error)."""


class ReportWriteError(Exception):
    """A report (or part of one) that could not be written: a full disk, a folder gone, no permission.
    The message names the folder, the reason and the files that were written whole; the command line
    prints it in one line and exits 3 (`WRITE_FAILED`)."""

    def __init__(self, folder: object, reason: str, written: list[str]):
        self.folder, self.reason, self.written = folder, reason, list(written)
        done = ", ".join(written) if written else "nothing"
        super().__init__(f"could not write the report to {folder}: {reason}; written so far: {done}")


WRITE_FAILED = 3
"""The command line's exit code when a report could not be written (`ReportWriteError`)."""


class SimulatedFailure(Exception):
    """A failure of the simulated hardware (out of memory, deadlock): a result, not a crash.

    Raised inside the simulation and caught by the run, which ends with
    `status` set to `kind` and `diagnosis` set to the message.
    """

    kind = "failed"


class OutOfMemory(SimulatedFailure):
    kind = "out_of_memory"


class Diverged(SimulatedFailure):
    """The training diverged: a loss, or a tensor a codec was given, is NaN or infinite."""

    kind = "diverged"


class InvalidSchedule(SimulatedFailure):
    """A schedule whose ops cannot all run: one missing, repeated or misplaced, or a deadlock."""

    kind = "invalid_schedule"
