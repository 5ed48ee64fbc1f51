"""hwsim's MoE all-to-all against DeepEP's published dispatch and combine bandwidths (a section of `hwsim
validate published`).

DeepEP (deepseek-ai/DeepEP, README at 567632d, 2026-02-03, now docs/legacy.md), "Normal kernels with NVLink and
RDMA forwarding": "We test normal kernels on H800 (~160 GB/s NVLink maximum bandwidth), with each connected to a
CX7 InfiniBand 400 Gb/s RDMA network card (~50 GB/s maximum bandwidth). And we follow the DeepSeek-V3/R1
pretraining setting (4096 tokens per batch, 7168 hidden, top-4 groups, top-8 experts, FP8 dispatching and BF16
combining)." Its "bottleneck bandwidth" (not defined further) is read here as the bytes a rank sends over the
bottleneck link (NVLink within a node, RDMA between nodes) over the time. hwsim runs the same dispatch and combine
as its 3D system does (`workloads.moe`: one all-to-all in a node; between nodes the two levels side by side, each
token once per node over InfiniBand, at most 4 nodes) on the h800_sxm preset's fabric, with an even router.
"""

from __future__ import annotations

import dataclasses

import pandas as pd

from hwsim.commands.nccl import _timer
from hwsim.config.load import PROJECT_ROOT, load_scenario
from hwsim.workloads.megatron import BlockContext, Kernel
from hwsim.workloads.moe import ExpertShare, moe_part

DEEPEP_NORMAL = (  # (EP ranks, dispatch GB/s, combine GB/s, bottleneck)
    (8, 153.0, 158.0, "NVLink"),
    (16, 43.0, 43.0, "RDMA"),
    (32, 58.0, 57.0, "RDMA"),
    (64, 51.0, 50.0, "RDMA"),
)
"""DeepEP's README (567632d), the normal kernels' table: Intranode 8: 153 / 158 GB/s (NVLink); Internode 16: 43 / 43,
32: 58 / 57, 64: 51 / 50 GB/s (RDMA)."""
TOKENS, GPUS_PER_NODE = 4096, 8


def _kernels(e: int) -> list[Kernel]:
    """DeepSeek-V3's MoE layer on one of e expert ranks (4,096 tokens, fp8 dispatch) as hwsim runs it."""
    model = load_scenario(PROJECT_ROOT / "scenarios" / "deepseek_v3_2048.yaml").model
    model = dataclasses.replace(model, seq_len=TOKENS)
    ctx = BlockContext(model, 1, 1, False, TOKENS, (), ())
    nodes = max(e // GPUS_PER_NODE, 1)
    part = moe_part(ctx, ExpertShare(e, 1.0, dispatch_bytes=1 + 4 / 128, nodes=nodes))
    return [k for k in part.forward if k.kind == "all_to_all"]


def all_to_alls() -> pd.DataFrame:
    """Per DeepEP row: its and hwsim's dispatch and combine bandwidth (bytes over the bottleneck link per second)."""
    rows = []
    for e, dispatch_gbs, combine_gbs, bottleneck in DEEPEP_NORMAL:
        timer = _timer("h800_sxm", max(e, GPUS_PER_NODE))
        ranks = tuple(range(e))
        groups = {"expert": ranks, "expert local": ranks[:GPUS_PER_NODE], "expert across": ranks[::GPUS_PER_NODE]}
        kernels = _kernels(e)
        for what, published in (("dispatch", dispatch_gbs), ("combine", combine_gbs)):
            mine = [k for k in kernels if k.name.startswith(what)]
            seconds = [timer.seconds("all_to_all", groups[k.group], k.bytes) for k in mine]
            seconds = max(seconds) if len(mine) == 2 else seconds[0]  # two levels side by side
            link = mine[0]  # the bottleneck's: the in-node all-to-all, or the one between nodes
            n = len(groups[link.group])
            sent = link.bytes * (n - 1) / n
            predicted = sent / seconds / 1e9
            rows.append(
                {
                    "ep": e,
                    "op": what,
                    "bottleneck": bottleneck,
                    "published_gbs": published,
                    "predicted_gbs": predicted,
                    "error": published / predicted - 1,  # on the time: hwsim's over the published
                }
            )
    return pd.DataFrame(rows)
