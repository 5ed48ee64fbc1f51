import numpy as np
import pytest
from scipy.linalg import hadamard

from hwsim.codecs.rotated import lloyd_max
from hwsim.kernels.hadamard import fwht, padded_size, rotate, unrotate

rng = np.random.default_rng()


def hadamard_times(x: np.ndarray) -> np.ndarray:
    """H_d x in float64 from the Sylvester matrix: the whole d x d matrix up to d = 4096; beyond, through
    H_ab = H_a (x) H_b, so (H_a (x) H_b) x = H_a X H_b^T for x = X row by row (d = 2**14 as one matrix
    held 4 GB and was the suite's peak memory)."""
    d = len(x)
    if d <= 4096:
        return hadamard(d).astype(np.float64) @ x.astype(np.float64)
    a = 1 << (d.bit_length() - 1) // 2
    b = d // a
    return (hadamard(a).astype(np.float64) @ x.astype(np.float64).reshape(a, b) @ hadamard(b).T.astype(np.float64)).ravel()


def test_the_factored_reference_is_the_matrix():
    x = rng.standard_normal(64)
    a, b = 8, 8
    np.testing.assert_allclose((hadamard(a) @ x.reshape(a, b) @ hadamard(b).T).ravel(), hadamard(64) @ x, atol=1e-12)


@pytest.mark.parametrize("d", [1, 2, 4, 8, 64, 512, 4096, 8192, 2**14])
def test_fwht_matches_the_hadamard_matrix(d):
    x = rng.standard_normal(d).astype(np.float32)
    y = x.copy()
    fwht(y)
    want = hadamard_times(x)
    np.testing.assert_allclose(y, want, atol=1e-5 * np.sqrt(d) * np.abs(want).max())


def test_fwht_of_a_large_vector_is_its_own_inverse_up_to_d():
    d = 2**19  # through the radix-8 passes
    x = rng.standard_normal(d).astype(np.float32)
    y = x.copy()
    fwht(y)
    fwht(y)
    np.testing.assert_allclose(y / d, x, atol=1e-4)


@pytest.mark.parametrize("n", [1, 3, 100, 1000, 5000])
def test_rotation_is_orthogonal_and_unrotate_inverts_it(n):
    x = rng.standard_normal(n).astype(np.float32)
    d = padded_size(n)
    y = rotate(x, d, 12345, 678)
    assert len(y) == d and (d & (d - 1)) == 0 and d >= n
    assert np.linalg.norm(y.astype(np.float64)) == pytest.approx(np.linalg.norm(x.astype(np.float64)), rel=1e-5)
    if n >= 100:  # another key, another rotation
        assert not np.allclose(rotate(x, d, 12346, 678), y)
    np.testing.assert_allclose(unrotate(y, n, 12345, 678), x, atol=1e-5)


def test_lloyd_max_levels_match_max_1960():
    """Levels and mean squared error of the optimal quantizer of N(0, 1):
    J. Max, "Quantizing for minimum distortion", IRE Trans. Inf. Theory 6, 1960, Table I."""
    published = {
        1: ([0.7980], 0.3634),
        2: ([0.4528, 1.510], 0.1175),
        3: ([0.2451, 0.7560, 1.344, 2.152], 0.03454),
        4: ([0.1284, 0.3881, 0.6568, 0.9424, 1.256, 1.618, 2.069, 2.733], 0.009497),
    }
    z = np.random.default_rng(0).standard_normal(2_000_000)
    for bits, (positive, mse) in published.items():
        levels, mids = lloyd_max(bits)
        np.testing.assert_allclose(levels[len(levels) // 2 :], positive, atol=1.5e-3)
        q = levels[np.searchsorted(mids, z)]
        assert np.mean((q - z) ** 2) == pytest.approx(mse, rel=0.01)
