import numpy as np
import pytest

from hwsim.config.schema import MlpSpec, TransformerSpec
from hwsim.workloads import Gemm, make_model

GPT2_SMALL = TransformerSpec(name="gpt2_small", layers=12, d_model=768, heads=12, d_ff=3072, vocab=50257, seq_len=1024)


def test_gpt2_small_has_its_published_parameter_count():
    # 124,439,808 with tied input/output embeddings (Radford et al. 2019; the Hugging Face "gpt2" checkpoint)
    assert make_model(GPT2_SMALL).num_params == 124_439_808


def test_transformer_gemm_flops_match_megatrons_closed_form():
    """GEMM FLOPs of one training iteration, forward + backward, with d_ff = 4h and full
    attention: 72 B s l h^2 (1 + s / (6 h) + V / (12 l h))  (Narayanan et al., SC'21, eq. 3,
    without activation recomputation, hence 72 rather than 96)."""
    s = GPT2_SMALL
    batch, seq, layers, h, vocab = 2, s.seq_len, s.layers, s.d_model, s.vocab
    expected = 72 * batch * seq * layers * h**2 * (1 + seq / (6 * h) + vocab / (12 * layers * h))
    got = sum(op.flops for op in make_model(GPT2_SMALL).layer_ops(batch))
    assert got == pytest.approx(expected, rel=1e-9)


def test_gemm_backward_shapes():
    assert Gemm(8, 16, 32).backward() == (Gemm(8, 32, 16), Gemm(32, 16, 8))
    assert Gemm(2, 3, 4, count=5).flops == 2 * 2 * 3 * 4 * 5


def test_mlp_layer_ops_follow_the_shapes():
    model = make_model(MlpSpec(inputs=64, hidden=(128, 64), classes=10))
    ops = model.layer_ops(32)
    assert [op.params for op in ops] == [64 * 128 + 128, 128 * 64 + 64, 64 * 10 + 10]
    assert ops[0].forward == (Gemm(32, 128, 64),)
    assert ops[0].backward == (Gemm(64, 128, 32),)  # no input gradient for the data
    assert ops[1].backward == (Gemm(32, 128, 64), Gemm(128, 64, 32))
    assert sum(op.params for op in ops) == model.num_params


def test_mlp_init_is_seeded():
    model = make_model(MlpSpec(inputs=4, hidden=(3,), classes=2))
    a = model.init_params(np.random.default_rng(5))
    b = model.init_params(np.random.default_rng(5))
    for (wa, ba), (wb, _bb) in zip(a, b, strict=True):
        np.testing.assert_array_equal(wa, wb)
        assert wa.dtype == np.float32 and not ba.any()
