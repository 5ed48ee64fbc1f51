import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim import kernels
from tests.kernels import naive

rng = np.random.default_rng()  # fresh inputs every run


def rand(*shape):
    return rng.standard_normal(shape).astype(np.float32)


@settings(deadline=None, max_examples=30)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40))
def test_dense_forward_and_backward_match_float64(batch, fan_in, fan_out):
    x, w, b, dy = rand(batch, fan_in), rand(fan_in, fan_out), rand(fan_out), rand(batch, fan_out)
    np.testing.assert_allclose(kernels.dense_forward(x, w, b), naive.dense_forward(x, w, b), rtol=1e-4, atol=1e-4)
    for got, want in zip(kernels.dense_backward(x, w, dy), naive.dense_backward(x, w, dy), strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-4)


@settings(deadline=None, max_examples=30)
@given(st.integers(1, 40), st.integers(1, 40), st.integers(1, 40))
def test_fused_sgd_backward_matches_float64(batch, fan_in, fan_out):
    """w -= lr x^T dy and b -= lr sum(dy) in place, without a gradient buffer; dx from the old w."""
    x, w, b, dy = rand(batch, fan_in), rand(fan_in, fan_out), rand(fan_out), rand(batch, fan_out)
    lr = 0.05
    dx_want, dw, db = naive.dense_backward(x, w, dy)
    w_want, b_want = w.astype(np.float64) - lr * dw, b.astype(np.float64) - lr * db
    np.testing.assert_allclose(kernels.dense_input_grad(w, dy), dx_want, rtol=1e-4, atol=1e-4)
    kernels.dense_backward_sgd(x, w, b, dy, lr)
    np.testing.assert_allclose(w, w_want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(b, b_want, rtol=1e-5, atol=1e-5)


def test_relu_forward_and_backward():
    z, dy = rand(7, 9), rand(7, 9)
    np.testing.assert_array_equal(kernels.relu_forward(z), np.maximum(z, 0))
    np.testing.assert_array_equal(kernels.relu_backward(dy, z), np.where(z > 0, dy, 0))


@pytest.mark.parametrize("scale", [1.0, 30.0, 1e3])
def test_softmax_xent_matches_float64_even_for_large_logits(scale):
    logits = rand(16, 10) * scale
    labels = rng.integers(0, 10, 16)
    loss, grad = kernels.softmax_xent(logits, labels)
    want_loss, want_grad = naive.softmax_xent(logits, labels)
    assert np.isfinite(loss)
    assert loss == pytest.approx(want_loss, rel=1e-5)
    np.testing.assert_allclose(grad, want_grad, rtol=1e-4, atol=1e-6)


def test_softmax_xent_gradient_is_the_numerical_derivative():
    logits = rand(4, 5).astype(np.float64)
    labels = rng.integers(0, 5, 4)
    _, grad = kernels.softmax_xent(logits, labels)
    eps = 1e-6
    for i, j in [(0, 0), (1, 3), (3, 4)]:
        up, down = logits.copy(), logits.copy()
        up[i, j] += eps
        down[i, j] -= eps
        numeric = (naive.softmax_xent(up, labels)[0] - naive.softmax_xent(down, labels)[0]) / (2 * eps)
        assert grad[i, j] == pytest.approx(numeric, abs=1e-6)


def test_sgd_momentum_updates_in_place():
    w, g, v = rand(33), rand(33), rand(33)
    want_w, want_v = naive.sgd_momentum(w, g, v, 0.1, 0.9)
    kernels.sgd_momentum(w, g, v, 0.1, 0.9)
    np.testing.assert_allclose(w, want_w, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(v, want_v, rtol=1e-5, atol=1e-6)
