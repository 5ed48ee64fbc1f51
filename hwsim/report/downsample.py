"""Long tables boiled down to what a plot can show: busy fractions per pixel, level envelopes.

A whole-run Gantt chart of a long run has far more operations than pixels; drawing
every bar aliases into a moire. `busy_fractions` instead cuts [0, t_end] into `bins`
columns and gives, per unit and op category, the share of each column the unit was
busy, from the busy table read chunk by chunk. `level_envelope` does the same for
bank occupancy: the lowest and highest level held in each column.
"""

from __future__ import annotations

from collections.abc import Iterable

import numpy as np
import pandas as pd


def busy_fractions(
    chunks: Iterable[pd.DataFrame], units: list[str], categories: list[str], category_of, t_end: float, bins: int
) -> np.ndarray:
    """Array [category, unit, bin]: the share of bin b (of `bins` equal bins over [0, t_end]) that `unit`
    spent on ops of each category. `category_of(labels)` maps a Series of op labels to category
    names (one of `categories`). Chunks need columns unit, label, start_s, end_s."""
    n_units, n_cats = len(units), len(categories)
    acc = np.zeros(n_cats * n_units * bins)
    full = np.zeros((n_cats * n_units, bins + 1))  # difference array of bins covered whole
    unit_index = {u: i for i, u in enumerate(units)}
    cat_index = {c: i for i, c in enumerate(categories)}
    scale = bins / t_end if t_end > 0 else 0.0
    for chunk in chunks:
        rows = chunk[chunk.unit.isin(unit_index)]
        if rows.empty:
            continue
        row = (category_of(rows.label).map(cat_index).to_numpy() * n_units + rows.unit.map(unit_index).to_numpy()).astype(int)
        s = np.clip(rows.start_s.to_numpy() * scale, 0, bins)
        e = np.clip(rows.end_s.to_numpy() * scale, 0, bins)
        b0 = np.minimum(s.astype(int), bins - 1)
        b1 = np.minimum(e.astype(int), bins - 1)
        same = b0 == b1
        np.add.at(acc, row[same] * bins + b0[same], e[same] - s[same])
        cross = ~same
        r, c0, c1 = row[cross], b0[cross], b1[cross]
        np.add.at(acc, r * bins + c0, c0 + 1 - s[cross])
        np.add.at(acc, r * bins + c1, e[cross] - c1)
        np.add.at(full, (r, c0 + 1), 1.0)
        np.add.at(full, (r, c1), -1.0)
    covered = np.cumsum(full, axis=1)[:, :bins].reshape(-1)
    return (acc + covered).reshape(n_cats, n_units, bins)


def level_envelope(chunks: Iterable[pd.DataFrame], banks: list[str], t_end: float, bins: int) -> dict[str, np.ndarray]:
    """Per bank, an array [2, bins]: the lowest and highest occupancy held during each bin (the level
    carried into a bin counts). Chunks need columns bank, time_s, used_bytes, in time order."""
    scale = bins / t_end if t_end > 0 else 0.0
    parts = []
    for chunk in chunks:
        rows = chunk[chunk.bank.isin(banks)]
        if rows.empty:
            continue
        b = np.minimum((rows.time_s.to_numpy() * scale).astype(int), bins - 1)
        grouped = rows.assign(bin=b).groupby(["bank", "bin"], observed=True, sort=False).used_bytes
        parts.append(pd.DataFrame({"lo": grouped.min(), "hi": grouped.max(), "last": grouped.last()}))
    out = {}
    if not parts:
        return out
    stats = pd.concat(parts)
    stats = stats.groupby(level=[0, 1], observed=True).agg(lo=("lo", "min"), hi=("hi", "max"), last=("last", "last"))
    for bank, per_bin in stats.groupby(level=0, observed=True):
        per_bin = per_bin.droplevel(0).reindex(range(bins))
        carried = per_bin["last"].ffill().shift(1)  # the level a bin starts at
        lo = np.fmin(per_bin.lo.to_numpy(float), carried.to_numpy(float))
        hi = np.fmax(per_bin.hi.to_numpy(float), carried.to_numpy(float))
        first = int(np.argmax(~np.isnan(hi))) if np.any(~np.isnan(hi)) else bins
        lo[:first], hi[:first] = np.nan, np.nan  # nothing known before the bank's first event
        out[str(bank)] = np.vstack([lo, hi])
    return out
