"""The compiled engine against `schedule.collective` in SimPy: overlapping collectives of every algorithm, flat and
hierarchical with chunks and a reduction rate, a slow NPU, in every sharing model: the same end times and link
bytes to float rounding; the bytes a rank sends."""

from __future__ import annotations

import numpy as np
import pytest
import simpy

from hwsim.collectives.compiled import Engine
from hwsim.collectives.executor import FabricTransport
from hwsim.collectives.schedule import collective
from hwsim.network import topology as topo
from hwsim.network.fabric import Fabric

OVERHEAD = 2e-7
LAUNCHES = [
    (0.0, 1 << 20, "ring"),
    (1e-5, 3 << 20, "ring"),
    (2e-5, 1 << 19, "direct"),
    (2.5e-5, 1 << 20, "halving_doubling"),
    (3e-5, 1 << 20, "double_binary_tree"),
]


def _fabric(model: str, hierarchical: bool, slow: int | None):
    env = simpy.Environment()
    t = (
        topo.dims([("switch", 4, 400e9, 0.5e-6), ("switch", 4, 50e9, 2e-6)])
        if hierarchical
        else topo.star(16, [50e9] * 16, [1e-6] * 16)
    )
    if slow is not None:
        for link in t.npu_links(slow):
            t.bandwidth[link] /= 4
    return env, Fabric(env, t, model, [f"n{i}" for i in range(t.npus)])


def _play(model: str, compiled: bool, hierarchical: bool, slow: int | None, chunks: int, rate: float):
    env, fabric = _fabric(model, hierarchical, slow)
    engine = Engine(env, fabric, lambda npu: OVERHEAD) if compiled else None
    ends, sent = {}, {}

    def one(i: int, at: float, nbytes: int, algorithm: str):
        yield env.timeout(at)
        names = [algorithm, algorithm] if hierarchical else algorithm
        common = {"chunks": chunks, "hierarchical": hierarchical, "reduction_rate": rate}
        if compiled:
            event, sent[i] = engine.launch("all_reduce", names, nbytes, range(16), **common)
            yield event
        else:
            out = yield from collective(
                env, fabric, "all_reduce", names, nbytes, transport=FabricTransport(fabric, OVERHEAD), **common
            )
            sent[i] = out.bytes_sent[0]
        ends[i] = env.now

    for i, (at, nbytes, algorithm) in enumerate(LAUNCHES):
        if not (hierarchical and algorithm == "double_binary_tree"):
            env.process(one(i, at, nbytes, algorithm))
    env.run()
    return ends, sent, fabric.bytes


@pytest.mark.parametrize("model", ["ideal", "flow", "store_and_forward"])
@pytest.mark.parametrize(("hierarchical", "slow", "chunks", "rate"), [(False, 3, 1, 0.0), (True, 5, 3, 100e9)])
def test_the_engine_ends_every_collective_when_simpy_does(model, hierarchical, slow, chunks, rate):
    ends, sent, link_bytes = _play(model, False, hierarchical, slow, chunks, rate)
    ends_c, sent_c, link_bytes_c = _play(model, True, hierarchical, slow, chunks, rate)
    assert ends.keys() == ends_c.keys() and len(ends) >= 4
    for i in ends:
        assert ends_c[i] == pytest.approx(ends[i], rel=1e-12)
    assert sent_c == sent
    np.testing.assert_array_equal(link_bytes_c, link_bytes)
