"""Federated policies: partitions keep every sample once and have the skew they promise; selection; FedAvg."""

import numpy as np
import pytest

from hwsim.policies.federated import (
    Candidates,
    FederatedError,
    draw_factors,
    fedavg_weights,
    local_batches,
    partition,
    resolve_policy,
)

LABELS = np.random.default_rng(0).integers(0, 10, 1500)


@pytest.mark.parametrize("how", ["iid", "dirichlet", "shards"])
@pytest.mark.parametrize("clients", [1, 7, 100])
def test_every_sample_is_held_by_exactly_one_client(how, clients):
    parts = partition(LABELS, clients, how, np.random.default_rng())
    assert len(parts) == clients
    np.testing.assert_array_equal(np.sort(np.concatenate(parts)), np.arange(len(LABELS)))


def test_iid_shares_are_near_equal_and_dirichlet_skew_grows_as_alpha_falls():
    parts = partition(LABELS, 10, "iid", np.random.default_rng())
    assert max(map(len, parts)) - min(map(len, parts)) <= 1

    def classes_per_client(alpha):
        parts = partition(LABELS, 20, "dirichlet", np.random.default_rng(1), alpha=alpha)
        return np.mean([len(np.unique(LABELS[p])) for p in parts if len(p)])

    assert classes_per_client(100.0) > 9.5
    assert classes_per_client(0.05) < 3.0


def test_shards_give_each_client_few_classes():
    parts = partition(LABELS, 50, "shards", np.random.default_rng(), shards=2)
    assert max(len(np.unique(LABELS[p])) for p in parts) <= 4  # 2 label-sorted shards, each at most 2 classes
    with pytest.raises(FederatedError, match="more shards than"):
        partition(LABELS, 1000, "shards", np.random.default_rng(), shards=2)


def test_bad_partition_settings_are_named():
    with pytest.raises(FederatedError, match="alpha > 0"):
        partition(LABELS, 5, "dirichlet", np.random.default_rng(), alpha=0.0)
    with pytest.raises(FederatedError, match="no partition named 'zipf'"):
        partition(LABELS, 5, "zipf", np.random.default_rng())


def test_random_selection_is_uniform_over_available_clients():
    candidates = Candidates(np.arange(0, 200, 2), np.ones(100))
    counts = np.zeros(200)
    rng = np.random.default_rng()
    for _ in range(2000):
        chosen = resolve_policy("selection", "random")(candidates, 10, rng)
        assert len(set(chosen)) == 10 and set(chosen) <= set(candidates.ids)
        counts[chosen] += 1
    assert counts[1::2].sum() == 0
    assert np.abs(counts[::2] / 2000 - 0.1).max() < 0.04  # each is chosen 10 % of the time


def test_fast_selection_prefers_fast_clients():
    times = np.where(np.arange(100) < 50, 1.0, 4.0)  # half are 4x slower
    candidates = Candidates(np.arange(100), times)
    rng = np.random.default_rng()
    fast = 0
    for _ in range(500):
        chosen = resolve_policy("selection", "fast")(candidates, 13, rng)
        assert len(chosen) == 13 and len(set(chosen)) == 13
        fast += (chosen < 50).sum()
    assert fast / (500 * 13) > 0.7  # 4:1 odds per draw (without replacement it is a little less)


def test_fedavg_weights_are_sample_shares():
    np.testing.assert_allclose(fedavg_weights([1, 3, 4]), [0.125, 0.375, 0.5])
    with pytest.raises(FederatedError):
        fedavg_weights([0, 0])


def test_stale_updates_weigh_less_and_uniform_ignores_samples():
    w = resolve_policy("aggregation", "fedavg")(np.array([10, 10, 20]), np.array([0, 1, 0]))
    np.testing.assert_allclose(w, np.array([10, 5, 20]) / 35)
    np.testing.assert_allclose(resolve_policy("aggregation", "uniform")(np.array([1, 9]), np.zeros(2)), [0.5, 0.5])


def test_reduction_policies_pick_layers_by_name():
    names = ("dense0", "dense1", "dense2")
    assert resolve_policy("reduction", "subset")(0, names, None) == names
    assert resolve_policy("reduction", "subset")(5, names, ("dense2", "dense0")) == ("dense0", "dense2")
    rotate = resolve_policy("reduction", "rotate")
    assert [rotate(r, names, None) for r in range(4)] == [("dense0",), ("dense1",), ("dense2",), ("dense0",)]


def test_deadline_policies():
    class Setting:
        seconds, quantile, slack = 3.0, 0.5, 0.1

    times = np.array([1.0, 2.0, 3.0, 10.0])
    assert resolve_policy("deadline", "none")(times, Setting) == np.inf
    assert resolve_policy("deadline", "fixed")(times, Setting) == 3.0
    assert resolve_policy("deadline", "quantile")(times, Setting) == pytest.approx(2.5 * 1.1)


def test_unknown_policies_name_what_exists():
    with pytest.raises(FederatedError, match="random"):
        resolve_policy("selection", "fastest")


def test_local_batches_cover_each_sample_once_per_epoch():
    steps = local_batches(10, 4, 2, np.random.default_rng())
    assert [len(b) for b in steps] == [4, 4, 2, 4, 4, 2]
    for epoch in (steps[:3], steps[3:]):
        np.testing.assert_array_equal(np.sort(np.concatenate(epoch)), np.arange(10))


def test_factor_draws():
    rng = np.random.default_rng()
    assert np.all(draw_factors("fixed", 5, rng, value=2.0) == 2.0)
    u = draw_factors("uniform", 1000, rng, low=0.5, high=2.0)
    assert u.min() >= 0.5 and u.max() <= 2.0
    logn = draw_factors("lognormal", 20000, rng, value=3.0, sigma=0.5)
    assert abs(np.median(logn) / 3.0 - 1) < 0.03  # the median of 20,000 draws is within 1 % (sd) x 3
