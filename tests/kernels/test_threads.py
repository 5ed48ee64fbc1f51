"""Every parallel kernel's serial twin (what small inputs run) gives the same bits as the parallel
kernel, through every codec, on inputs of one task and of several."""

import numpy as np
import pytest

from hwsim.codecs import CODECS, make_codec
from hwsim.kernels import threads
from hwsim.kernels.gradq import count_nonfinite

PARAMS = {"int4": {"rounding": "stochastic"}, "uniform": {"bits": 2, "scheme": "minmax", "rounding": "stochastic"}}


def encode_decode(name: str, x: np.ndarray, monkeypatch, threshold: int) -> tuple[bytes, np.ndarray]:
    monkeypatch.setattr(threads, "PARALLEL_MIN_ELEMENTS", threshold)
    codec = make_codec(name, **PARAMS.get(name, {}))
    buf = codec.encode(x, seed=4, stream=7)
    return buf.tobytes(), codec.decode(buf)


@pytest.mark.parametrize("n", [1_000, 70_001])
@pytest.mark.parametrize("name", sorted(CODECS))
def test_serial_twins_give_the_parallel_kernels_bits(name, n, monkeypatch):
    x = np.random.default_rng(n).standard_normal(n).astype(np.float32)
    serial = encode_decode(name, x, monkeypatch, 1 << 40)
    parallel = encode_decode(name, x, monkeypatch, 0)
    assert serial[0] == parallel[0]
    np.testing.assert_array_equal(serial[1], parallel[1])


def test_the_size_picks_the_twin(monkeypatch):
    calls = []
    kernel = threads.BySize(lambda x: calls.append("parallel"), lambda x: calls.append("serial"), lambda x: x.size)
    monkeypatch.setattr(threads, "PARALLEL_MIN_ELEMENTS", 100)
    kernel(np.zeros(99))
    kernel(np.zeros(100))
    assert calls == ["serial", "parallel"]
    assert count_nonfinite(np.array([1.0, np.inf, np.nan], np.float32)) == 2
