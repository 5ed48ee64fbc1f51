"""Megatron runs: where each simulated NPU's step goes, and what its memory holds against the capacity."""

from __future__ import annotations

from matplotlib.figure import Figure

from hwsim.report.console import layout_label

TIME_COLOURS = {
    "compute_s": "#4C72B0",
    "decompress_s": "#64B5CD",  # stored weights to 16-bit (compression.storage)
    "recompute_s": "#8172B2",
    "tensor_comm_s": "#DD8452",
    "pipeline_comm_s": "#937860",
    "bubble_s": "#CCCCCC",
    "data_comm_s": "#C44E52",
    "optimizer_s": "#55A868",
}
FILL_COLOUR = "#DA8BC3"
MEMORY_COLOURS = {
    "weights_bytes": "#4C72B0",
    "gradients_bytes": "#8172B2",
    "optimizer_bytes": "#55A868",
    "activations_bytes": "#DD8452",
    "gathered_bytes": "#64B5CD",  # sharded: the full weights and gradient buffers of the chunks in use
    "fill_bytes": "#DA8BC3",  # a fill job's weights and activations
}
GIB = 2**30


def megatron_figure(section: dict) -> Figure:
    """Left: per simulated NPU (one per pipeline position), its step time by part; right: its memory by
    kind, with the bank's capacity as a line. Title: layout, step time, MFU and HFU."""
    devices = section["devices"]
    names = [d["device"] for d in devices]
    fig = Figure(figsize=(12, max(3.5, 0.3 * min(len(names), 64) + 2.6)))
    left, right = fig.subplots(1, 2, sharey=True)
    y = range(len(names))
    at = [0.0] * len(names)
    for key, colour in TIME_COLOURS.items():
        widths = [d[key] - d.get("fill_s", 0.0) if key == "bubble_s" else d[key] for d in devices]
        left.barh(y, widths, left=at, color=colour, label=key.removesuffix("_s").replace("_", " "))
        at = [a + w for a, w in zip(at, widths, strict=True)]
        if key == "bubble_s" and any("fill_s" in d for d in devices):  # the fill job's work, in the bubble
            widths = [d.get("fill_s", 0.0) for d in devices]
            left.barh(y, widths, left=at, color=FILL_COLOUR, label="fill job (in the bubble)")
            at = [a + w for a, w in zip(at, widths, strict=True)]
    left.set_yticks(list(y), names)
    left.invert_yaxis()
    left.set_xlabel("seconds per step")
    left.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
    at = [0.0] * len(names)
    for key, colour in MEMORY_COLOURS.items():
        widths = [m.get(key, 0.0) / GIB for m in section["memory"]]
        right.barh(y, widths, left=at, color=colour, label=key.removesuffix("_bytes"))
        at = [a + w for a, w in zip(at, widths, strict=True)]
    right.axvline(section["memory"][0]["capacity_bytes"] / GIB, color="black", linestyle="--", label="capacity")
    right.set_xlabel("GiB per NPU at its activations' peak")
    right.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=3)
    lay = section["layout"]
    fig.suptitle(
        f"{layout_label(lay)}, "
        f"recompute {section['recompute']}: step {section['step_s']:.4g} s, MFU {section['mfu']:.1%}, HFU {section['hfu']:.1%}"
    )
    fig.tight_layout()
    return fig
