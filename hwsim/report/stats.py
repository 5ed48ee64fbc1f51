"""Small statistics shared by the report sections."""

from __future__ import annotations

import pandas as pd


def spread(values: pd.Series) -> dict:
    """Mean, median, 95th and 99th percentiles and maximum (all None without values)."""
    if values.empty:
        return {"mean": None, "p50": None, "p95": None, "p99": None, "max": None}
    q = values.quantile([0.5, 0.95, 0.99])
    return {
        "mean": float(values.mean()),
        "p50": float(q[0.5]),
        "p95": float(q[0.95]),
        "p99": float(q[0.99]),
        "max": float(values.max()),
    }
