"""Pure decisions of federated learning (mechanism M5): data partitions, client selection, model
reduction, aggregation weights and deadlines.

Partitions split the training labels over K clients:

| how       | each client gets                                                         |
|-----------|--------------------------------------------------------------------------|
| iid       | a near-equal share of a random permutation                                |
| dirichlet | per class, a share drawn from Dirichlet(alpha, ..., alpha) over the clients (Hsu et al., 2019): small alpha, few classes per client |
| shards    | `shards` shards of the label-sorted data (McMahan et al., 2017)           |

Policies are registered by kind and name (`register_policy`), or named `module:function` /
`path/file.py:function` in a scenario:

| kind        | signature                                                  | registered                        |
|-------------|------------------------------------------------------------|-----------------------------------|
| selection   | `(candidates, count, rng) -> client ids`                   | random; fast (p proportional to 1 / estimated time) |
| reduction   | `(round, layer_names, train) -> names of layers to train`  | subset (`train`, or all); rotate (one layer per round) |
| aggregation | `(samples, staleness) -> weights summing to 1`             | fedavg (samples / (1 + staleness)), uniform |
| deadline    | `(estimated_times_s, setting) -> seconds (inf: none)`      | none; fixed (`setting.seconds`); quantile |

Over-commitment is the system's: it asks a selection policy for count x (1 + overcommit)
clients and aggregates the first `count` that report (Bonawitz et al., 2019).
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


KINDS = ("selection", "reduction", "aggregation", "deadline")
POLICIES: dict[str, dict[str, Callable]] = {kind: {} for kind in KINDS}


def register_policy(kind: str, name: str) -> Callable[[Callable], Callable]:
    """Decorator: register a policy of `kind` (selection, reduction, aggregation, deadline) under `name`."""
    if kind not in POLICIES:
        raise FederatedError(f"no policy kind {kind!r}; known: {', '.join(KINDS)}")

    def add(policy: Callable) -> Callable:
        POLICIES[kind][name] = policy
        return policy

    return add


def resolve_policy(kind: str, name: str) -> Callable:
    """The registered `kind` policy `name`, or one named `module:function` / `path/file.py:function`."""
    return resolve(name, POLICIES[kind], f"{kind} policy", FederatedError)


# --- selection ------------------------------------------------------------------------


@register_policy("selection", "random")
def random_clients(candidates: Candidates, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` of the available clients, uniformly."""
    take = min(count, len(candidates.ids))
    return np.sort(rng.choice(candidates.ids, size=take, replace=False))


@register_policy("selection", "fast")
def fast_clients(candidates: Candidates, count: int, rng: np.random.Generator) -> np.ndarray:
    """`count` clients drawn with probability proportional to 1 / estimated round time: fast
    clients are preferred, but every available client has a chance."""
    take = min(count, len(candidates.ids))
    speed = 1.0 / np.maximum(candidates.est_time_s, 1e-30)
    return np.sort(rng.choice(candidates.ids, size=take, replace=False, p=speed / speed.sum()))


# --- model reduction --------------------------------------------------------------------


@register_policy("reduction", "subset")
def subset_layers(round_: int, names: tuple[str, ...], train: tuple[str, ...] | None) -> tuple[str, ...]:
    """The configured layers every round (all without a subset)."""
    return tuple(names) if train is None else tuple(n for n in names if n in train)


@register_policy("reduction", "rotate")
def rotate_layers(round_: int, names: tuple[str, ...], train: tuple[str, ...] | None) -> tuple[str, ...]:
    """One layer per round, in turn over `train` (or every layer)."""
    pool = subset_layers(round_, names, train)
    return (pool[round_ % len(pool)],)


# --- aggregation --------------------------------------------------------------------------


@register_policy("aggregation", "fedavg")
def fedavg(samples: np.ndarray, staleness: np.ndarray) -> np.ndarray:
    """FedAvg: each update weighted by the samples it trained on; a late (buffered) update by
    samples / (1 + staleness), staleness in rounds (Xie et al., 2019)."""
    samples = np.asarray(samples, dtype=np.float64) / (1.0 + np.asarray(staleness, dtype=np.float64))
    total = samples.sum()
    if total <= 0:
        raise FederatedError("FedAvg needs at least one sample among the updates")
    return samples / total


@register_policy("aggregation", "uniform")
def uniform(samples: np.ndarray, staleness: np.ndarray) -> np.ndarray:
    """Every update counts the same."""
    return np.full(len(samples), 1.0 / len(samples))


def fedavg_weights(samples: np.ndarray) -> np.ndarray:
    """FedAvg weights of fresh updates: each client's share of the samples trained on."""
    return fedavg(samples, np.zeros(len(samples)))


# --- deadlines -------------------------------------------------------------------------------


@register_policy("deadline", "none")
def no_deadline(est_times_s: np.ndarray, setting) -> float:
    return float("inf")


@register_policy("deadline", "fixed")
def fixed_deadline(est_times_s: np.ndarray, setting) -> float:
    return float(setting.seconds)


@register_policy("deadline", "quantile")
def quantile_deadline(est_times_s: np.ndarray, setting) -> float:
    """The `setting.quantile` of the selected clients' estimated times, times (1 + `setting.slack`)."""
    return float(np.quantile(est_times_s, setting.quantile) * (1 + setting.slack))


# --- per-client draws -------------------------------------------------------------------------


def draw_factors(dist: str, n: int, rng: np.random.Generator, value=1.0, low=0.5, high=1.0, sigma=0.5) -> np.ndarray:
    """`n` factors: fixed `value`; uniform on [low, high]; lognormal with median `value`."""
    if dist == "fixed":
        return np.full(n, float(value))
    if dist == "uniform":
        if high < low:
            raise FederatedError(f"a uniform draw needs low <= high; got low {low}, high {high}")
        return rng.uniform(low, high, n)
    if dist == "lognormal":
        return value * np.exp(sigma * rng.standard_normal(n))
    raise FederatedError(f"no distribution named {dist!r}; known: fixed, uniform, lognormal")


def local_batches(n: int, batch: int, epochs: int, rng: np.random.Generator) -> list[np.ndarray]:
    """A client's steps in one round: per epoch, a permutation of its `n` samples cut into
    batches of `batch` (the last one smaller)."""
    steps = []
    for _ in range(epochs):
        order = rng.permutation(n)
        steps.extend(order[i : i + batch] for i in range(0, n, batch))
    return steps
