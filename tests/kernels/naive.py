"""Plain NumPy float64 references of the kernels."""

import numpy as np


def dense_forward(x, w, b):
    return x.astype(np.float64) @ w.astype(np.float64) + b.astype(np.float64)


def dense_backward(x, w, dy):
    x, w, dy = (a.astype(np.float64) for a in (x, w, dy))
    return dy @ w.T, x.T @ dy, dy.sum(axis=0)


def softmax_xent(logits, labels):
    z = logits.astype(np.float64)
    z = z - z.max(axis=1, keepdims=True)
    log_norm = np.log(np.exp(z).sum(axis=1))
    p = np.exp(z - log_norm[:, None])
    n = len(labels)
    loss = (log_norm - z[np.arange(n), labels]).mean()
    grad = p.copy()
    grad[np.arange(n), labels] -= 1
    return loss, grad / n


def sgd_momentum(w, g, v, lr, mu):
    v = mu * v.astype(np.float64) + g
    return w - lr * v, v


def quantize_int8_blocks(x, block):
    x = x.astype(np.float64)
    n = len(x)
    scales = np.array([np.abs(x[i : i + block]).max() / 127 for i in range(0, n, block)])
    codes = np.empty(n, np.int64)
    for bi, i in enumerate(range(0, n, block)):
        s = scales[bi]
        codes[i : i + block] = np.rint(x[i : i + block] / s) if s > 0 else 0
    return codes, scales
