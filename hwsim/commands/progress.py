"""Progress on stderr for commands that take a while."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """A one-line progress bar with ETA on stderr when stderr is a terminal (or `enabled=True`).

    A long command in several parts names each (`what`): on a terminal the name shows in the bar; elsewhere
    (a log, CI) each new part is one line, "label [3/9] what", so a long run is never silent. With
    `enabled=False` nothing is written."""

    def __init__(self, label: str, enabled: bool | None = None, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.quiet = enabled is False
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self._last = 0.0
        self._what = ""

    def __call__(self, done: int, total: int, what: str = "") -> None:
        now = time.perf_counter()
        elapsed = now - self.start
        if what and what != self._what and not self.enabled and not self.quiet:
            self.stream.write(f"{self.label} [{done}/{total}] {what} ({elapsed:.0f} s elapsed)\n")
            self.stream.flush()
        self._what = what or self._what
        if not self.enabled or (done < total and now - self._last < 0.1):
            return
        self._last = now
        eta = elapsed / done * (total - done) if done else 0.0
        filled = int(30 * done / total) if total else 30
        bar = "#" * filled + "-" * (30 - filled)
        end = "\n" if done >= total else ""
        shown = f" {self._what[:40]}" if self._what and done < total else ""
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total}{shown}  {elapsed:5.1f}s elapsed, ETA {eta:5.1f}s\033[K{end}")
        self.stream.flush()


def stages(label: str, enabled: bool | None = None, stream=None):
    """A maker of bars, one per named part of a command (each simulation `validate` or `compare` runs):
    `make(what)` is a bar for that part; where stderr is not a terminal, it writes one line as the part
    starts instead, so a log shows what the command is doing."""
    out = stream or sys.stderr

    def make(what: str) -> ProgressBar:
        bar = ProgressBar(f"{label}: {what}" if label else what, enabled, out)
        if not bar.enabled and not bar.quiet:
            out.write(f"{bar.label} ...\n")
            out.flush()
        return bar

    return make
