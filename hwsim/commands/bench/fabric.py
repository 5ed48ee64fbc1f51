"""`hwsim bench engine`'s fabric rows: 10,000 random point-to-point messages on a 1,024-NPU fat tree.

1,000 senders (NPUs 0-999) each send 10 messages of 1 MiB, one after another, to
destinations drawn at random, so about 1,000 flows are in flight at once. The same
messages run under each link-sharing model, and as bare SimPy: a process per sender
that waits one timeout per message (the ideal model's time), which is the least any
simulation of these messages can do. Ratios compare walls measured in the same run.

The fat tree: 32 leaves of 32 NPUs, 16 spines, 400 Gb/s NPU links, 2:1 oversubscribed
(leaf-spine links of 400 Gb/s), 1 us per NPU link and 2 us per spine link.
"""

from __future__ import annotations

import time

import numpy as np
import simpy

from hwsim.network import Fabric
from hwsim.network import topology as topo

SENDERS, PER_SENDER, NBYTES = 1000, 10, 1 << 20


def fat_tree() -> topo.Topology:
    return topo.fat_tree(32, 32, 16, bandwidth=50e9, latency=1e-6, spine_latency=2e-6, oversubscription=2.0)


def destinations(npus: int, senders: int = SENDERS, per_sender: int = PER_SENDER, seed: int = 0) -> np.ndarray:
    """Row i: the NPUs sender i sends to, in order (never itself)."""
    rng = np.random.default_rng(seed)
    dst = rng.integers(0, npus, size=(senders, per_sender))
    own = dst == np.arange(senders)[:, None]
    dst[own] = (dst[own] + 1) % npus
    return dst


def run_model(t: topo.Topology, dst: np.ndarray, model: str) -> tuple[float, float, dict]:
    """(wall seconds, simulated seconds, extras) of the messages under `model`."""
    env = simpy.Environment()
    fabric = Fabric(env, t, model, [f"npu{i}" for i in range(t.npus)])

    def sender(i: int):
        for b in dst[i]:
            yield from fabric.transfer(i, int(b), NBYTES, "m")

    for i in range(len(dst)):
        env.process(sender(i))
    start = time.perf_counter()
    env.run()
    wall = time.perf_counter() - start
    extra = {
        "solves": getattr(fabric.model, "solves", 0),
        "peak_util": float(fabric.bytes.max() / (fabric.bandwidth.max() * env.now)),
    }
    return wall, env.now, extra


def run_bare(t: topo.Topology, dst: np.ndarray) -> float:
    """Wall seconds of bare SimPy: one timeout per message (its ideal time)."""
    env = simpy.Environment()
    fabric = Fabric(env, t, "ideal", [f"npu{i}" for i in range(t.npus)])
    times = [[fabric.unloaded(i, int(b), NBYTES) for b in dst[i]] for i in range(len(dst))]

    def sender(i: int):
        for seconds in times[i]:
            yield env.timeout(seconds)

    for i in range(len(dst)):
        env.process(sender(i))
    start = time.perf_counter()
    env.run()
    return time.perf_counter() - start


def fabric_rows(repeats: int = 3, senders: int = SENDERS, per_sender: int = PER_SENDER) -> list[dict]:
    """The bench rows: bare SimPy, then each model, best of `repeats` walls each, alternating."""
    t = fat_tree()
    dst = destinations(t.npus, senders, per_sender)
    for i in range(senders):  # routes and their costs once, before any measurement
        for b in dst[i]:
            t.cost(t.route(i, int(b)))
    run_model(t, dst[:, :1], "flow")  # compile the kernels outside the measurement
    messages = senders * per_sender
    best = {name: float("inf") for name in ("bare", "ideal", "flow", "store_and_forward")}
    results = {}
    for _ in range(repeats):
        best["bare"] = min(best["bare"], run_bare(t, dst))
        for model in ("ideal", "flow", "store_and_forward"):
            wall, sim, extra = run_model(t, dst, model)
            best[model] = min(best[model], wall)
            results[model] = (sim, extra)
    rows = [
        {
            "benchmark": f"fabric: {messages:,} messages on a 1,024-NPU fat tree, bare SimPy",
            "ops": messages,
            "wall_s": best["bare"],
            "ops_per_wall_s": messages / best["bare"],
            "ratio": 1.0,
            "note": f"baseline: one timeout per message; {senders:,} senders x {per_sender} messages of 1 MiB",
        }
    ]
    for model in ("ideal", "flow", "store_and_forward"):
        sim, extra = results[model]
        note = f"ratio = wall / bare SimPy's; simulated {sim * 1e3:.3g} ms"
        if model == "flow":
            note += f"; flow / ideal = {best['flow'] / best['ideal']:.3g}; {extra['solves']:,} rate solves, up to {senders:,} flows at once"
        rows.append(
            {
                "benchmark": f"fabric: {messages:,} messages on a 1,024-NPU fat tree, {model}",
                "ops": messages,
                "wall_s": best[model],
                "ops_per_wall_s": messages / best[model],
                "ratio": best[model] / best["bare"],
                "note": note,
            }
        )
    return rows
