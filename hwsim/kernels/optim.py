"""Optimizers, updating parameters in place."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def sgd_momentum(w: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float) -> None:
    """Heavy-ball SGD, in place: v = momentum * v + grad; w -= lr * v (any shape, same for all three)."""
    wf = w.ravel()
    gf = grad.ravel()
    vf = velocity.ravel()
    for i in range(wf.size):
        vf[i] = momentum * vf[i] + gf[i]
        wf[i] -= lr * vf[i]
