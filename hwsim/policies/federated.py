"""Pure decisions of federated learning (mechanism M5): data partitions, client selection, FedAvg weights.

Partitions split the training labels over K clients:

| how       | each client gets                                                         |
|-----------|--------------------------------------------------------------------------|
| iid       | a near-equal share of a random permutation                                |
| dirichlet | per class, a share drawn from Dirichlet(alpha, ..., alpha) over the clients (Hsu et al., 2019): small alpha, few classes per client |
| shards    | `shards` shards of the label-sorted data (McMahan et al., 2017)           |

A selection policy picks the clients of a round from those available:
`policy(candidates, count, rng) -> client ids`. `random` takes `count` uniformly;
`fast` over-commits (takes `count` x (1 + `overcommit`)) and draws clients with
probability proportional to their speed (1 / estimated round time), so fast clients
are preferred but every available client has a chance.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from hwsim.policies.plugins import resolve


class FederatedError(ValueError):
    """An unknown or unloadable policy, or settings it cannot work with."""


def partition(
    labels: np.ndarray, clients: int, how: str, rng: np.random.Generator, alpha: float = 0.5, shards: int = 2
) -> list[np.ndarray]:
    """Indices into `labels` held by each of `clients` clients (every sample exactly once, ascending per client)."""
    n = len(labels)
    if how == "iid":
        parts = np.array_split(rng.permutation(n), clients)
    elif how == "dirichlet":
        if alpha <= 0:
            raise FederatedError(f"a Dirichlet partition needs alpha > 0; got {alpha}")
        held: list[list[np.ndarray]] = [[] for _ in range(clients)]
        for c in np.unique(labels):
            members = rng.permutation(np.flatnonzero(labels == c))
            shares = rng.dirichlet(np.full(clients, alpha))
            cuts = np.round(np.cumsum(shares)[:-1] * len(members)).astype(int)
            for k, part in enumerate(np.split(members, cuts)):
                held[k].append(part)
        parts = [np.concatenate(h) for h in held]
    elif how == "shards":
        count = clients * shards
        if count > n:
            raise FederatedError(f"{clients} clients x {shards} shards is more shards than the {n} samples")
        pieces = np.array_split(np.argsort(labels, kind="stable"), count)
        order = rng.permutation(count)
        parts = [np.concatenate([pieces[j] for j in order[k * shards : (k + 1) * shards]]) for k in range(clients)]
    else:
        raise FederatedError(f"no partition named {how!r}; known: iid, dirichlet, shards")
    return [np.sort(p) for p in parts]


@dataclass(frozen=True)
class Candidates:
    """The clients available this round: their ids and estimated round times (seconds)."""

    ids: np.ndarray
    est_time_s: np.ndarray


Selector = Callable[[Candidates, int, np.random.Generator], np.ndarray]
SELECTORS: dict[str, Selector] = {}


def register_selector(name: str) -> Callable[[Selector], Selector]:
    """Decorator: register `policy(candidates, count, rng) -> ids` under `name`."""

    def add(policy: Selector) -> Selector:
        SELECTORS[name] = policy
        return policy

    return add


def resolve_selector(name: str) -> Selector:
    """The registered selection policy `name`, or one named `module:function` / `path/file.py:function`."""
    return resolve(name, SELECTORS, "selection policy", FederatedError)


@register_selector("random")
def random_clients(candidates: Candidates, count: int, rng: np.random.Generator) -> np.ndarray:
    take = min(count, len(candidates.ids))
    return np.sort(rng.choice(candidates.ids, size=take, replace=False))


def fast_clients(overcommit: float = 0.3) -> Selector:
    """Over-commit by `overcommit` and prefer fast clients (probability proportional to 1 / time)."""

    def policy(candidates: Candidates, count: int, rng: np.random.Generator) -> np.ndarray:
        take = min(int(np.ceil(count * (1 + overcommit))), len(candidates.ids))
        speed = 1.0 / np.maximum(candidates.est_time_s, 1e-30)
        return np.sort(rng.choice(candidates.ids, size=take, replace=False, p=speed / speed.sum()))

    return policy


register_selector("fast")(fast_clients())


def fedavg_weights(samples: np.ndarray) -> np.ndarray:
    """FedAvg: each update weighted by its client's share of the samples trained on."""
    samples = np.asarray(samples, dtype=np.float64)
    total = samples.sum()
    if total <= 0:
        raise FederatedError("FedAvg needs at least one sample among the updates")
    return samples / total
