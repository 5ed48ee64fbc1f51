"""The digits dataset (scikit-learn's bundled 8x8 images) split into train and test."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class Dataset:
    """Features scaled to [0, 1] as float32 (n, features); labels int64 (n,)."""

    x_train: np.ndarray
    y_train: np.ndarray
    x_test: np.ndarray
    y_test: np.ndarray


def load_dataset(name: str, test_fraction: float, rng: np.random.Generator) -> Dataset:
    """Load `name` and split it with a permutation drawn from `rng`."""
    if name != "digits":
        raise ValueError(f"unknown dataset {name!r}")
    from sklearn.datasets import load_digits

    digits = load_digits()
    x = (digits.data / 16.0).astype(np.float32)
    y = digits.target.astype(np.int64)
    order = rng.permutation(len(y))
    n_test = int(round(test_fraction * len(y)))
    test, train = order[:n_test], order[n_test:]
    return Dataset(x[train], y[train], x[test], y[test])


class BatchStream:
    """Endless mini-batches: each epoch a fresh permutation from `rng`; the last partial batch is dropped."""

    def __init__(self, n: int, batch: int, rng: np.random.Generator):
        if batch > n:
            raise ValueError(f"batch {batch} is larger than the {n} training samples")
        self.n, self.batch, self.rng = n, batch, rng
        self._order = np.empty(0, dtype=np.int64)
        self._pos = 0

    def next(self) -> np.ndarray:
        """Indices of the next batch."""
        if self._pos + self.batch > len(self._order):
            self._order = self.rng.permutation(self.n)
            self._pos = 0
        idx = self._order[self._pos : self._pos + self.batch]
        self._pos += self.batch
        return idx
