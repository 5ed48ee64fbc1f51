"""A drifting stream of labelled samples for online training (drawn up front, from one random stream).

Arrivals come from a Poisson process at `rate`, or from a trace file's `time_s`
column. Each arrival is a training-split sample drawn uniformly at random. The
labelling function is a permutation of the classes: the identity until the first
drift point, then at each drift point `drift_classes` classes chosen at random
swap labels in a cycle (each of them gets the next one's label), on top of what
earlier drift points did.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from hwsim.config.schema import StreamSpec


def read_arrivals(path: str | Path) -> np.ndarray:
    """The `time_s` column of a trace CSV (ascending, non-negative seconds); ValueError says what is wrong."""
    try:
        table = pd.read_csv(path)
    except FileNotFoundError:
        raise ValueError("an existing CSV file (no such file)") from None
    except (OSError, pd.errors.ParserError, pd.errors.EmptyDataError, UnicodeDecodeError) as err:
        raise ValueError(f"a readable CSV file ({str(err).splitlines()[0]})") from None
    if "time_s" not in table.columns:
        raise ValueError(f"a CSV file with a column time_s (it has: {', '.join(map(str, table.columns)) or 'none'})")
    times = pd.to_numeric(table.time_s, errors="coerce").to_numpy(np.float64)
    bad = np.flatnonzero(~np.isfinite(times) | (times < 0))
    if bad.size:
        raise ValueError(f"non-negative numbers in column time_s (row {bad[0] + 2} is {table.time_s.iloc[bad[0]]!r})")
    if np.any(np.diff(times) < 0):
        row = int(np.flatnonzero(np.diff(times) < 0)[0]) + 3
        raise ValueError(f"ascending times in column time_s (row {row} goes back in time)")
    return times


class Stream:
    """Every arrival of a run: `times` (s), `samples` (training-split indices), `segment` (the drift
    segment each arrival falls in); `perms[j]` is the labelling function of segment j."""

    def __init__(self, spec: StreamSpec, duration: float, n_train: int, classes: int, rng: np.random.Generator):
        if spec.arrivals == "poisson":
            gaps = rng.exponential(1.0 / spec.rate, size=int(spec.rate * duration * 1.2) + 16)
            times = np.cumsum(gaps)
            while times[-1] < duration:  # rare: more arrivals than expected
                times = np.concatenate([times, times[-1] + np.cumsum(rng.exponential(1.0 / spec.rate, size=len(gaps)))])
        else:
            times = read_arrivals(spec.trace)
        self.times = times[times < duration]
        self.samples = rng.integers(0, n_train, size=self.times.size)
        every = spec.drift_every
        self.drift_times = np.arange(every, duration, every) if every is not None else np.empty(0)
        self.perms = [np.arange(classes)]
        for _ in self.drift_times:
            chosen = rng.choice(classes, size=spec.drift_classes, replace=False)
            step = np.arange(classes)
            step[chosen] = np.roll(chosen, -1)
            self.perms.append(step[self.perms[-1]])
        self.segment = np.searchsorted(self.drift_times, self.times, side="right")

    def __len__(self) -> int:
        return self.times.size

    def label(self, i: int, y_true: int) -> int:
        """The label of arrival i: its true class under the labelling function when it arrived."""
        return int(self.perms[self.segment[i]][y_true])

    def labels_at(self, t: float, y_true: np.ndarray) -> np.ndarray:
        """The labels of `y_true` under the labelling function at time t."""
        return self.perms[int(np.searchsorted(self.drift_times, t, side="right"))][y_true]
