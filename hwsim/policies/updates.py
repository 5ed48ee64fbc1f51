"""Update policies of online training (mechanism M3): which weights an update carries.

A selection rule looks at a change (a training worker's model minus its snapshot, or
the server's master minus what a worker last received) and picks the indices to
send: `rule(change, setting) -> indices`, ascending uint32. `setting` is the
scenario's selection settings (`threshold`, `ratio`, ...). Rules are registered by
name; a user's rule is named `file.py:function`.

| rule      | sends                                                  |
|-----------|--------------------------------------------------------|
| threshold | every weight whose \\|change\\| exceeds `threshold` (0: every changed weight) |
| topk      | the round(`ratio` n) largest \\|change\\| (at least one), ties in index order |
| all       | every weight                                          |
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from hwsim.kernels.sparse import above_threshold, top_k
from hwsim.policies.plugins import resolve

Rule = Callable[[np.ndarray, object], np.ndarray]
RULES: dict[str, Rule] = {}


class UpdateError(ValueError):
    """An unknown or unloadable selection rule, or one that returns bad indices."""


def register_rule(name: str) -> Callable[[Rule], Rule]:
    """Decorator: register `rule(change, setting) -> indices` under `name`."""

    def add(rule: Rule) -> Rule:
        RULES[name] = rule
        return rule

    return add


def resolve_rule(name: str) -> Rule:
    """The registered rule `name`, or one named `module:function` / `path/file.py:function`."""
    return resolve(name, RULES, "selection rule", UpdateError)


def select(change: np.ndarray, setting) -> np.ndarray:
    """The indices `setting.select` picks from `change` (float32, flat), checked: ascending, distinct, in range."""
    idx = np.asarray(resolve_rule(setting.select)(change, setting))
    if idx.ndim != 1 or idx.dtype.kind not in "iu":
        raise UpdateError(f"selection rule {setting.select!r} returned {idx.dtype} of shape {idx.shape}; expected 1-d integers")
    if idx.size and (idx[0] < 0 or idx[-1] >= change.size or np.any(np.diff(idx.astype(np.int64)) <= 0)):
        raise UpdateError(
            f"selection rule {setting.select!r} returned indices that are not ascending, distinct and in [0, {change.size})"
        )
    return idx.astype(np.uint32, copy=False)


def kept(n: int, ratio: float) -> int:
    """How many of n weights a top-k rule with `ratio` sends."""
    return min(n, max(1, round(ratio * n))) if n else 0


@register_rule("threshold")
def threshold(change: np.ndarray, setting) -> np.ndarray:
    return above_threshold(change, np.float32(setting.threshold))[0]


@register_rule("topk")
def topk(change: np.ndarray, setting) -> np.ndarray:
    k = kept(change.size, setting.ratio)
    idx, vals = np.empty(k, np.uint32), np.empty(k, np.float32)
    top_k(change, k, idx, vals)
    return idx


@register_rule("all")
def every(change: np.ndarray, setting) -> np.ndarray:
    return np.arange(change.size, dtype=np.uint32)
