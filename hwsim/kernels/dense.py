"""Dense (fully connected) layers and ReLU: forward and backward. Arrays in, arrays out.

Shapes: x (batch, in), w (in, out), b (out,), y = x @ w + b (batch, out).
"""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def dense_forward(x: np.ndarray, w: np.ndarray, b: np.ndarray) -> np.ndarray:
    """y = x @ w + b."""
    y = x @ w
    for i in range(y.shape[0]):
        for j in range(y.shape[1]):
            y[i, j] += b[j]
    return y


@njit(cache=True)
def dense_backward(x: np.ndarray, w: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Gradients of y = x @ w + b given dL/dy: returns (dL/dx, dL/dw, dL/db)."""
    dx = dy @ w.T
    dw = x.T @ dy
    db = np.zeros(dy.shape[1], dtype=dy.dtype)
    for i in range(dy.shape[0]):
        for j in range(dy.shape[1]):
            db[j] += dy[i, j]
    return dx, dw, db


@njit(cache=True)
def dense_weight_grad(x: np.ndarray, dy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(dL/dw, dL/db) of y = x @ w + b given dL/dy: `dense_backward`'s weight gradients alone, the same
    arithmetic in the same order (a split backward's W)."""
    dw = x.T @ dy
    db = np.zeros(dy.shape[1], dtype=dy.dtype)
    for i in range(dy.shape[0]):
        for j in range(dy.shape[1]):
            db[j] += dy[i, j]
    return dw, db


@njit(cache=True)
def dense_input_grad(w: np.ndarray, dy: np.ndarray) -> np.ndarray:
    """dL/dx of y = x @ w + b given dL/dy (a frozen layer needs no weight gradient)."""
    return dy @ w.T


@njit(cache=True)
def dense_backward_sgd(x: np.ndarray, w: np.ndarray, b: np.ndarray, dy: np.ndarray, lr: float) -> None:
    """SGD on y = x @ w + b fused into its backward pass, in place: w -= lr * x^T dy, b -= lr * sum(dy),
    without materializing dL/dw (one row of w's gradient at a time: memory of one output row).
    Take dL/dx (`dense_input_grad`) first: it needs the old w."""
    batch, fan_in = x.shape
    fan_out = dy.shape[1]
    row = np.empty(fan_out, dtype=w.dtype)
    for i in range(fan_in):
        row[:] = 0
        for r in range(batch):
            xi = x[r, i]
            for j in range(fan_out):
                row[j] += xi * dy[r, j]
        for j in range(fan_out):
            w[i, j] -= lr * row[j]
    row[:] = 0
    for r in range(batch):
        for j in range(fan_out):
            row[j] += dy[r, j]
    for j in range(fan_out):
        b[j] -= lr * row[j]


@njit(cache=True)
def relu_forward(z: np.ndarray) -> np.ndarray:
    """max(z, 0), element-wise."""
    out = np.empty_like(z)
    flat_in = z.ravel()
    flat_out = out.ravel()
    for i in range(flat_in.size):
        flat_out[i] = flat_in[i] if flat_in[i] > 0 else 0
    return out


@njit(cache=True)
def relu_backward(dy: np.ndarray, z: np.ndarray) -> np.ndarray:
    """dL/dz of a = relu(z) given dL/da: dy where z > 0, else 0."""
    out = np.empty_like(dy)
    flat_dy = dy.ravel()
    flat_z = z.ravel()
    flat_out = out.ravel()
    for i in range(flat_dy.size):
        flat_out[i] = flat_dy[i] if flat_z[i] > 0 else 0
    return out
