"""The normalized error |x_hat - x|^2 / |x|^2 of each codec on Gaussian vectors (d = 2^16,
mean of at least 5 draws) against its published or closed-form value, within 3 %.
Each expected value carries its source."""

import numpy as np
import pytest
from scipy.stats import norm

from hwsim.codecs import make_codec

D = 2**16
rng = np.random.default_rng()
MAX_1960 = {1: 0.3634, 2: 0.1175, 3: 0.03454, 4: 0.009497}  # Lloyd-Max MSE of N(0,1), Max (1960) Table I


def nmse(codec, draws=5, expected=None):
    """Mean measured NMSE, and the mean of `expected(x)` (a closed form given the data) if given."""
    got, want = [], []
    for _ in range(draws):
        x = rng.standard_normal(D).astype(np.float32)
        y = codec.decode(codec.encode(x, seed=int(rng.integers(1 << 62)), stream=1)).astype(np.float64)
        x64 = x.astype(np.float64)
        got.append(np.sum((y - x64) ** 2) / np.sum(x64**2))
        if expected is not None:
            want.append(expected(x64))
    return np.mean(got), (np.mean(want) if want else None)


def test_scaled_sign():
    """(|x|_1 / d) sign(x) has NMSE 1 - |x|_1^2 / (d |x|^2) -> 1 - 2/pi for Gaussians
    (E|z| = sqrt(2/pi)); e.g. Karimireddy et al., ICML 2019, Sec. 3."""
    got, _ = nmse(make_codec("sign"))
    assert got == pytest.approx(1 - 2 / np.pi, rel=0.03)


@pytest.mark.parametrize(
    "scale,expected",
    [
        # DRIVE, Vargaftik et al., NeurIPS 2021: the biased (MSE-optimal) scale |Rx|_1 / d gives
        # 1 - 2/pi, the unbiased scale |x|^2 / |Rx|_1 gives pi/2 - 1 (Theorems 2 and 3, d -> inf)
        ("biased", 1 - 2 / np.pi),
        ("unbiased", np.pi / 2 - 1),
    ],
)
def test_drive(scale, expected):
    got, _ = nmse(make_codec("drive", scale=scale))
    assert got == pytest.approx(expected, rel=0.03)


@pytest.mark.parametrize("bits", [1, 2, 3, 4])
@pytest.mark.parametrize("scale", ["biased", "unbiased"])
def test_eden(bits, scale):
    """EDEN, Vargaftik et al., ICML 2022: after rotation, coordinates are ~N(0, 1), so the
    least-squares (biased) scale gives the Lloyd-Max distortion D_b of N(0, 1) (Max 1960), and
    the unbiased scale |x|^2 / <Rx, q> gives D_b / (1 - D_b) (their Sec. 4; 1 bit: pi/2 - 1)."""
    dist = MAX_1960[bits]
    got, _ = nmse(make_codec("eden", bits=bits, scale=scale))
    assert got == pytest.approx(dist if scale == "biased" else dist / (1 - dist), rel=0.03)


@pytest.mark.parametrize("ratio", [0.01, 0.1, 0.5])
def test_top_k(ratio):
    """Top-k of a Gaussian keeps |z| > t with t = Phi^-1(1 - ratio/2); the energy it drops is
    1 - E[z^2; |z| > t] = 1 - ratio - 2 t phi(t) (Gaussian tail integral)."""
    t = norm.ppf(1 - ratio / 2)
    got, _ = nmse(make_codec("topk", ratio=ratio))
    assert got == pytest.approx(1 - ratio - 2 * t * norm.pdf(t), rel=0.03)


@pytest.mark.parametrize("ratio", [0.01, 0.25])
def test_random_k(ratio):
    """Random-k (Stich et al., NeurIPS 2018; Wangni et al. 2018): keeping k of d coordinates
    leaves E NMSE = 1 - k/d unscaled, and d/k - 1 with the unbiased d/k scaling. The unbiased
    error of one draw varies by ~sqrt(2/k), so it averages 50 draws."""
    k = round(ratio * D)
    got, _ = nmse(make_codec("randk", ratio=ratio, scale="none"), draws=5)
    assert got == pytest.approx(1 - k / D, rel=0.03)
    got, _ = nmse(make_codec("randk", ratio=ratio), draws=50)
    assert got == pytest.approx(D / k - 1, rel=0.03)


@pytest.mark.parametrize("levels,bucket", [(1, 512), (4, 512), (16, 4096)])
def test_qsgd(levels, bucket):
    """QSGD (Alistarh et al., NeurIPS 2017): stochastic rounding of s|x_i|/|v| has variance
    (|v|/s)^2 f (1 - f), f its fraction; the sum over elements is the exact expected error
    given x, and Lemma 3.1 bounds it by min(n/s^2, sqrt(n)/s) |v|^2."""

    def closed_form(x):
        total = 0.0
        for s0 in range(0, D, bucket):
            v = x[s0 : s0 + bucket]
            r = np.sqrt(np.sum(v**2))
            f = np.mod(levels * np.abs(v) / r, 1)
            total += (r / levels) ** 2 * np.sum(f * (1 - f))
        return total / np.sum(x**2)

    got, want = nmse(make_codec("qsgd", levels=levels, bucket=bucket), expected=closed_form)
    assert got == pytest.approx(want, rel=0.03)
    assert got <= min(bucket / levels**2, np.sqrt(bucket) / levels)


def test_terngrad():
    """TernGrad (Wen et al., NeurIPS 2017): s sign(x) Bernoulli(|x|/s), s = max|x|, has
    variance s|x_i| - x_i^2 per element: NMSE = s |x|_1 / |x|^2 - 1 given x."""
    got, want = nmse(make_codec("terngrad"), expected=lambda x: np.abs(x).max() * np.sum(np.abs(x)) / np.sum(x**2) - 1)
    assert got == pytest.approx(want, rel=0.03)


@pytest.mark.parametrize("name,mantissa", [("bf16", 8), ("fp16", 11)])
def test_half_precision(name, mantissa):
    """Rounding to p significant bits leaves an error uniform within half a unit in the last
    place, so E err^2 = ulp(x)^2 / 12 (Widrow & Kollar 2008, ch. 12), summed over elements."""

    def closed_form(x):
        ulp = 2.0 ** (np.floor(np.log2(np.abs(x))) - (mantissa - 1))
        return np.sum(ulp**2 / 12) / np.sum(x**2)

    got, want = nmse(make_codec(name), expected=closed_form)
    assert got == pytest.approx(want, rel=0.03)


def test_uniform_stochastic_per_tensor_minmax_matches_its_closed_form():
    """Stochastic rounding onto levels lo + c step: variance step^2 f (1 - f) per element."""

    def closed_form(x):
        lo, hi = x.min(), x.max()
        step = (hi - lo) / 15
        f = np.mod((x - lo) / step, 1)
        return np.sum(step**2 * f * (1 - f)) / np.sum(x**2)

    got, want = nmse(make_codec("int4", rounding="stochastic", scheme="minmax", block=None), expected=closed_form)
    assert got == pytest.approx(want, rel=0.03)


@pytest.mark.parametrize(("name", "mantissa", "bias"), [("fp8_e4m3", 3, 7), ("fp8_e5m2", 2, 15)])
def test_fp8(name, mantissa, bias):
    """FP8 rounds each scaled value to the nearest of its format (OCP OFP8 1.0): uniform error within half
    a unit in the last place, E err^2 = ulp^2 / 12 (Widrow & Kollar 2008, ch. 12), the ulp of the scaled
    value 2^(floor(log2 |y|) - m) in the normal range and 2^(1 - bias - m) below it."""
    codec = make_codec(name)

    def closed_form(x):
        scale = float(np.float32(np.abs(x).max() / codec.largest))
        y = np.abs(x) / scale
        exponent = np.maximum(np.floor(np.log2(y)), 1 - bias)
        ulp = 2.0 ** (exponent - mantissa) * scale
        return np.sum(ulp**2 / 12) / np.sum(x**2)

    got, want = nmse(codec, expected=closed_form)
    assert got == pytest.approx(want, rel=0.03)


@pytest.mark.parametrize(("name", "largest", "smallest"), [("fp8_e4m3", 448.0, 2.0**-9), ("fp8_e5m2", 57344.0, 2.0**-16)])
def test_fp8_matches_the_ocp_tables_and_an_exhaustive_nearest(name, largest, smallest):
    """The format's largest finite and smallest subnormal values are the specification's; every element
    decodes to the representable value nearest its scaled input (an exhaustive float64 search over the
    256 codes, ties to the even code), times the scale."""
    codec = make_codec(name, block=64)
    assert codec.values[-1] == largest and codec.values[1] == smallest
    x = (np.random.default_rng().standard_normal(640) * 10.0 ** np.random.default_rng().uniform(-3, 3, 640)).astype(np.float32)
    out = codec.decode(codec.encode(x, seed=0, stream=0)).astype(np.float64)
    table = np.concatenate([-codec.values[::-1], codec.values])
    codes = np.concatenate([128 + np.arange(len(codec.values))[::-1], np.arange(len(codec.values))])
    for a in range(0, 640, 64):
        block = x[a : a + 64].astype(np.float64)
        scale = float(np.float32(np.abs(block).max() / largest))
        y = block / scale
        dist = np.abs(y[:, None] - table[None, :])
        best = dist.min(axis=1, keepdims=True)
        tied = dist == best
        pick = np.where(tied.sum(axis=1) > 1, np.argmax(tied & (codes % 2 == 0), axis=1), np.argmin(dist, axis=1))
        np.testing.assert_array_equal(out[a : a + 64], (table[pick] * scale).astype(np.float32))
