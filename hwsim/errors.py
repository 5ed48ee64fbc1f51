"""The one exception type for user mistakes, and the simulated failures a run can end in."""

from __future__ import annotations


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
        shown = "" if got is NOTHING else f": got {shorten(repr(got))}"
        super().__init__(f"{location}{shown}; expected {expected}")


SHOWN = 160
"""The most characters of a value (or file name, or key) an error message repeats."""


def shorten(text: str) -> str:
    """`text`, cut in the middle to at most about SHOWN characters, saying how long it was."""
    if len(text) <= SHOWN:
        return text
    return f"{text[: SHOWN - 50]}...{text[-30:]} ({len(text):,} characters)"


class _Nothing:
    def __repr__(self) -> str:
        return "<nothing>"


NOTHING = _Nothing()
"""Passed as `got` when there is no value to show (a missing file, a syntax error)."""


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
