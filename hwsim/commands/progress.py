"""Progress on stderr for commands that take a while."""

from __future__ import annotations

import sys
import time


class ProgressBar:
    """A one-line progress bar with ETA on stderr (only when stderr is a terminal, or forced)."""

    def __init__(self, label: str, enabled: bool | None = None, stream=None):
        self.label = label
        self.stream = stream or sys.stderr
        self.enabled = self.stream.isatty() if enabled is None else enabled
        self.start = time.perf_counter()
        self._last = 0.0

    def __call__(self, done: int, total: int) -> None:
        now = time.perf_counter()
        if not self.enabled or (done < total and now - self._last < 0.1):
            return
        self._last = now
        elapsed = now - self.start
        eta = elapsed / done * (total - done) if done else 0.0
        filled = int(30 * done / total)
        bar = "#" * filled + "-" * (30 - filled)
        end = "\n" if done >= total else ""
        self.stream.write(f"\r{self.label} [{bar}] {done}/{total}  {elapsed:5.1f}s elapsed, ETA {eta:5.1f}s{end}")
        self.stream.flush()
