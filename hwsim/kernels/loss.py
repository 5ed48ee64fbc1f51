"""Softmax cross-entropy: mean loss over a batch and its gradient with respect to the logits."""

from __future__ import annotations

import numpy as np
from numba import njit


@njit(cache=True)
def softmax_xent(logits: np.ndarray, labels: np.ndarray) -> tuple[float, np.ndarray]:
    """Mean cross-entropy of softmax(logits) (batch, classes) against integer `labels`.

    Returns (loss, dL/dlogits) with dL/dlogits = (softmax - onehot) / batch. The
    softmax subtracts each row's maximum first, so large logits do not overflow.
    """
    n, k = logits.shape
    grad = np.empty_like(logits)
    total = 0.0
    for i in range(n):
        top = logits[i, 0]
        for j in range(1, k):
            top = max(top, logits[i, j])
        norm = 0.0
        for j in range(k):
            e = np.exp(logits[i, j] - top)
            grad[i, j] = e
            norm += e
        total += np.log(norm) + top - logits[i, labels[i]]
        for j in range(k):
            grad[i, j] = grad[i, j] / norm / n
        grad[i, labels[i]] -= 1.0 / n
    return total / n, grad
