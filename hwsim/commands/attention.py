"""The fused attention kernel's measured throughput and the presets' `systolic.attention_efficiency` fitted
on it.

hwsim times a fused (flash) attention as the GEMMs of `workloads.megatron.flash_attention` on the tile
model, at the arrays' rate times `attention_efficiency`: the fraction a real kernel reaches with its softmax,
rescaling and masking between the GEMMs. The measurements are the FlashAttention papers' benchmarks, causal,
head dimension 128, 16k tokens in all (batch 16k / seq, hidden 2048: 16 heads), with their FLOP count:
4 s^2 d heads batch / 2 forward, 2.5 times that backward.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from hwsim.config.load import PROJECT_ROOT, load_scenario
from hwsim.config.schema import TransformerSpec
from hwsim.systems.megatron.costs import gemm_seconds
from hwsim.workloads.megatron import flash_attention


@dataclass(frozen=True)
class AttentionRun:
    """A published fused-attention benchmark: forward and backward TFLOP/s at one shape."""

    preset: str
    kernel: str
    seq: int
    forward_tflops: float
    backward_tflops: float
    source: str
    head_dim: int = 128
    hidden: int = 2048
    tokens: int = 16384

    @property
    def both_tflops(self) -> float:
        """Forward and backward together: 3.5 forward FLOPs over the two times."""
        return 3.5 / (1 / self.forward_tflops + 2.5 / self.backward_tflops)


RUNS = (
    # FlashAttention-2 (Dao 2023, arXiv 2307.08691, Figure 4; Dao-AILab/flash-attention
    # assets/flash2_a100_fwd_bwd_benchmark.png): A100 80GB SXM4, causal, head dim 128, seq 8k, forward and
    # backward together 182 TFLOP/s (the forward and backward apart are not published as numbers)
    AttentionRun("a100_80gb", "FlashAttention-2", 8192, 182.0, 182.0, "Dao 2023, Fig. 4: fwd+bwd 182 TFLOP/s"),
    # cuDNN's fused attention, which Transformer Engine picks on Hopper (TE attention docs: "sm90: cuDNN
    # attention > flash-attention"), as FlashAttention-3 (Shah et al. 2024, arXiv 2407.08608) measured it on
    # H100 SXM5 at 1830 MHz, head dim 128, seq 8k: forward causal 529 TFLOP/s (Figure 5), backward 518
    # (Figure 6, non-causal: no causal backward is published)
    AttentionRun("h100_sxm", "cuDNN", 8192, 529.0, 518.0, "Shah et al. 2024, Fig. 5 (fwd, causal) and Fig. 6 (bwd)"),
)


def _shape(run: AttentionRun) -> tuple[TransformerSpec, int]:
    heads = run.hidden // run.head_dim
    model = TransformerSpec(layers=1, d_model=run.hidden, heads=heads, d_ff=run.hidden, vocab=1, seq_len=run.seq)
    return model, run.tokens // run.seq


def predicted_tflops(run: AttentionRun, efficiency: float) -> float:
    """hwsim's forward and backward attention rate on `run`'s shape and preset, with `attention_efficiency`
    `efficiency`, counted as the benchmark counts (the causal half)."""
    hardware = load_scenario(PROJECT_ROOT / "scenarios" / "megatron_gpt3_175b.yaml", [f"hardware={run.preset}"]).hardware
    array = dataclasses.replace(hardware.systolic, efficiency=hardware.systolic.efficiency * efficiency)
    bank = hardware.memory["hbm"]
    model, batch = _shape(run)
    kernels = flash_attention(model, 1, batch) + flash_attention(model, 1, batch, backward=True)
    seconds = sum(gemm_seconds(array, bank, k.gemm, "bf16", k.out_bytes, fused=True) for k in kernels)
    flops = 3.5 * 4 * run.seq**2 * run.head_dim * model.heads * batch / 2
    return flops / seconds / 1e12


def fit_attention_efficiency(run: AttentionRun) -> float:
    """The efficiency at which hwsim's rate is the measured one (bisection: it scales the arrays' cycles, not
    the exposed prologues and epilogues)."""
    low, high = 0.05, 1.0
    for _ in range(40):
        mid = (low + high) / 2
        if predicted_tflops(run, mid) < run.both_tflops:
            low = mid
        else:
            high = mid
    return (low + high) / 2
