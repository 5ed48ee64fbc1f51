"""Update policies of online training: selection rules against NumPy, and indexed update buffers."""

from types import SimpleNamespace

import numpy as np
import pytest

from hwsim.codecs import make_codec
from hwsim.codecs.indexed import indexed_bytes, pack, unpack
from hwsim.policies.updates import UpdateError, kept, resolve_rule, select


def setting(**kw):
    return SimpleNamespace(**({"select": "threshold", "threshold": 0.0, "ratio": 0.05} | kw))


@pytest.mark.parametrize("threshold", [0.0, 0.01, 0.5, 10.0])
def test_threshold_sends_every_change_above_it(threshold):
    rng = np.random.default_rng()
    change = (rng.standard_normal(5000) * 0.3).astype(np.float32)
    change[rng.integers(0, 5000, 300)] = 0.0
    idx = select(change, setting(threshold=threshold))
    assert idx.dtype == np.uint32
    np.testing.assert_array_equal(idx, np.flatnonzero(np.abs(change.astype(np.float64)) > np.float32(threshold)))


@pytest.mark.parametrize("ratio", [1e-4, 0.05, 0.5, 1.0])
def test_topk_sends_the_largest_changes(ratio):
    rng = np.random.default_rng()
    change = rng.standard_normal(4000).astype(np.float32)
    idx = select(change, setting(select="topk", ratio=ratio))
    k = kept(change.size, ratio)
    assert idx.size == k == max(1, round(ratio * 4000))
    np.testing.assert_array_equal(idx, np.sort(np.argsort(-np.abs(change.astype(np.float64)), kind="stable")[:k]))


def test_all_sends_everything_and_unknown_rules_are_named():
    change = np.ones(7, np.float32)
    np.testing.assert_array_equal(select(change, setting(select="all")), np.arange(7))
    with pytest.raises(UpdateError, match="no selection rule named 'biggest'; known: threshold, topk, all"):
        resolve_rule("biggest")


def test_a_users_rule_is_loaded_and_checked(tmp_path):
    (tmp_path / "rules.py").write_text(
        "import numpy as np\n"
        "def evens(change, setting):\n    return np.arange(0, change.size, 2)\n"
        "def backwards(change, setting):\n    return np.array([3, 1])\n"
    )
    change = np.ones(9, np.float32)
    np.testing.assert_array_equal(select(change, setting(select=f"{tmp_path}/rules.py:evens")), [0, 2, 4, 6, 8])
    with pytest.raises(UpdateError, match="not ascending"):
        select(change, setting(select=f"{tmp_path}/rules.py:backwards"))


@pytest.mark.parametrize("codec", ["fp32", "fp16", "int8"])
@pytest.mark.parametrize("k", [0, 1, 300, 1000])
def test_indexed_updates_round_trip_at_their_exact_size(codec, k):
    rng = np.random.default_rng()
    n, c = 1000, make_codec(codec)
    idx = np.sort(rng.choice(n, k, replace=False)).astype(np.uint32)
    values = rng.standard_normal(k).astype(np.float32)
    buf = pack(idx, values, n, c, seed=1, stream=2)
    assert buf.size == indexed_bytes(n, k, c) == 8 + (0 if k == n else 4 * k) + c.wire_bytes(k)
    got_n, got_idx, got_values = unpack(buf, c)
    assert got_n == n
    np.testing.assert_array_equal(got_idx, idx)
    np.testing.assert_array_equal(got_values, c.decode(c.encode(values, seed=1, stream=2)))
    if codec == "fp32":
        np.testing.assert_array_equal(got_values, values)
