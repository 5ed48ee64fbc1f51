"""Optimizers, updating parameters in place (any shape; all arrays the same shape, float32)."""

from __future__ import annotations

import numpy as np
from numba import float32, njit


@njit(cache=True)
def sgd(w: np.ndarray, grad: np.ndarray, lr: float) -> None:
    """Plain SGD: w -= lr * grad."""
    wf = w.ravel()
    gf = grad.ravel()
    for i in range(wf.size):
        wf[i] -= lr * gf[i]


@njit(cache=True)
def sgd_momentum(w: np.ndarray, grad: np.ndarray, velocity: np.ndarray, lr: float, momentum: float) -> None:
    """Heavy-ball SGD, in place: v = momentum * v + grad; w -= lr * v."""
    wf = w.ravel()
    gf = grad.ravel()
    vf = velocity.ravel()
    for i in range(wf.size):
        vf[i] = momentum * vf[i] + gf[i]
        wf[i] -= lr * vf[i]


@njit(cache=True)
def adam(w, grad, m, v, step, lr, beta1, beta2, eps):
    """Adam (Kingma & Ba, ICLR 2015), in place, for update number `step` (1, 2, ...):
    m = b1 m + (1 - b1) g;  v = b2 v + (1 - b2) g^2;
    w -= lr * (m / (1 - b1^step)) / (sqrt(v / (1 - b2^step)) + eps)."""
    wf = w.ravel()
    gf = grad.ravel()
    mf = m.ravel()
    vf = v.ravel()
    c1 = float32(1.0 / (1.0 - beta1**step))
    c2 = float32(1.0 / (1.0 - beta2**step))
    b1 = float32(beta1)
    b2 = float32(beta2)
    for i in range(wf.size):
        g = gf[i]
        mf[i] = b1 * mf[i] + (float32(1.0) - b1) * g
        vf[i] = b2 * vf[i] + (float32(1.0) - b2) * g * g
        wf[i] -= float32(lr) * (mf[i] * c1) / (np.sqrt(vf[i] * c2) + float32(eps))
