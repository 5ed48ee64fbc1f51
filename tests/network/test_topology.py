"""Topologies: link and hop counts against hand counts, routes, and fabrics a scenario cannot use."""

import math

import pytest

import hwsim
from hwsim.config.schema import DimsNet, DimSpec, FatTreeNet, HardwareSpec, TorusNet
from hwsim.errors import ConfigError
from hwsim.network import topology as topo


def cables(t):
    return t.links // 2


def test_a_switch_is_a_star_of_two_hop_routes():
    t = topo.star(5, [1.0] * 5, [0.0] * 5)
    assert cables(t) == 5 and len(t.nodes) == 6
    assert all(t.hops(a, b) == 2 for a in range(5) for b in range(5) if a != b)
    assert t.route(3, 3) == ()


@pytest.mark.parametrize("n", [3, 4, 7, 8])
def test_a_ring_of_n_has_n_cables_and_takes_the_shorter_way(n):
    t = topo.ring(n, 1.0, 0.0)
    assert cables(t) == n
    for a in range(n):
        for b in range(n):
            assert t.hops(a, b) == min((b - a) % n, (a - b) % n)
    # the route really walks neighbour to neighbour
    path = t.route(0, n // 2)
    assert [t.src[path[0]], t.dst[path[-1]]] == [0, n // 2]
    assert all(t.dst[i] == t.src[j] for i, j in zip(path, path[1:], strict=False))


@pytest.mark.parametrize("shape", [(4, 4), (3, 5), (4, 4, 4), (3, 3, 3)])
def test_a_torus_of_k_to_the_d_has_d_cables_per_npu_and_dimension_ordered_routes(shape):
    t = topo.torus(shape, 1.0, 0.0)
    n = math.prod(shape)
    assert t.npus == n and cables(t) == len(shape) * n  # one cable per NPU and dimension (k >= 3)
    for a in range(0, n, 5):
        for b in range(n):
            ca, cb = t.coords[a], t.coords[b]
            want = sum(min((y - x) % k, (x - y) % k) for x, y, k in zip(ca, cb, shape, strict=True))
            assert t.hops(a, b) == want
    # dimension order: the first hops change the innermost coordinate
    a, b = 0, n - 1
    first = t.dst[t.route(a, b)[0]]
    assert t.coords[first][1:] == t.coords[a][1:]


def test_a_fat_tree_has_leaves_spines_and_oversubscribed_uplinks():
    t = topo.fat_tree(leaves=4, per_leaf=8, spines=2, bandwidth=100.0, latency=1e-6, spine_latency=2e-6, oversubscription=2.0)
    assert t.npus == 32 and len(t.nodes) == 32 + 4 + 2
    assert cables(t) == 32 + 4 * 2
    uplinks = [b for b, level in zip(t.bandwidth, t.level, strict=True) if level == "spine"]
    assert set(uplinks) == {8 * 100.0 / (2 * 2.0)}  # a leaf's 800 down over 2 spines, oversubscribed 2:1
    assert t.hops(0, 7) == 2 and t.hops(0, 8) == 4
    assert sum(t.latency[i] for i in t.route(0, 31)) == pytest.approx(2 * 1e-6 + 2 * 2e-6)


def test_an_8x128_cluster_of_two_switch_dimensions():
    """8 NPUs per node on an NVSwitch (dimension 0), 128 nodes on a scale-out switch per rank (dimension 1)."""
    t = topo.dims([("switch", 8, 400e9, 1e-6), ("switch", 128, 50e9, 2e-6)])
    assert t.npus == 1024
    assert len(t.nodes) - t.npus == 128 + 8  # a switch per node, a switch per rank
    assert cables(t) == 1024 + 1024  # every NPU: one port into its node, one into its rank's switch
    assert t.hops(0, 7) == 2 and t.hops(0, 8) == 2 and t.hops(0, 9) == 4  # same node; same rank; neither
    path = t.route(0, 9)
    assert [t.bandwidth[i] for i in path] == [400e9, 400e9, 50e9, 50e9]  # innermost dimension first
    names = [f"npu{i}" for i in range(1024)] + t.nodes[1024:]
    assert t.link_name(path[0], names) == "npu0.nic0.up" and t.link_name(path[-1], names) == "npu9.nic1.down"


def test_rings_and_all_to_all_dimensions_compose():
    t = topo.dims([("ring", 4, 1.0, 0.0), ("fully_connected", 3, 1.0, 0.0)])
    assert t.npus == 12 and len(t.nodes) == 12
    assert cables(t) == 3 * 4 + 4 * 3  # 3 rings of 4; 4 all-to-all groups of 3
    assert t.hops(0, 2) == 2 and t.hops(0, 4) == 1 and t.hops(0, 6) == 3


def test_routes_go_round_npus_that_are_down():
    t = topo.ring(6, 1.0, 0.0)
    topo.without(t, {1})
    assert t.hops(0, 2) == 4  # the long way round
    assert all(1 not in (t.src[i], t.dst[i]) for i in t.route(0, 2))
    assert topo.cut_off(t, [0, 2, 3]) is None
    topo.without(t, {1, 4})
    assert topo.cut_off(t, [0, 2, 3]) == (0, 2)


@pytest.mark.parametrize(
    "override, key, words",
    [
        (
            "hardware.network={dims: [{kind: switch, size: 2, bandwidth: 1 GB/s, latency: 1 us}]}",
            "hardware.network",
            "at least the 5 NPUs",
        ),
        (
            "hardware.network={kind: torus, shape: [8], bandwidth: 1 GB/s, latency: 1 us}",
            "hardware.network.shape",
            "2 or 3 dimensions",
        ),
        ("hardware.network={kind: ring, bandwidth: 0 GB/s, latency: 1 us}", "hardware.network.bandwidth", "greater than 0"),
        ("hardware.network={kind: ring, bandwidth: -1 GB/s, latency: 1 us}", "hardware.network.bandwidth", ""),
        ("hardware.network={kind: mesh, bandwidth: 1 GB/s}", "hardware.network.kind", "one of switch, ring"),
        ("hardware.network={dims: []}", "hardware.network.dims", "at least one dimension"),
        (  # a used NPU down: the graph is disconnected
            "hardware.network={kind: ring, bandwidth: 1 GB/s, latency: 1 us, overrides: [{npu: 2, down: true}]}",
            "hardware.network.overrides",
            "NPUs 0 and 2 are cut apart",
        ),
        (
            "hardware.network={kind: ring, bandwidth: 1 GB/s, latency: 1 us, overrides: [{npu: 9}]}",
            "hardware.network.overrides[0].npu",
            "0 to 4",
        ),
    ],
)
def test_bad_fabrics_get_one_clear_error(root, override, key, words):
    """compressed_ps_int8: 4 workers and a server, 5 NPUs."""
    with pytest.raises(ConfigError) as err:
        hwsim.run(hwsim.load_scenario(root / "scenarios" / "compressed_ps_int8.yaml", [override]))
    assert key in str(err.value) and words in str(err.value)


def test_mirrored_replicas_need_a_single_switch(root):
    fabric = "hardware.network={kind: ring, bandwidth: 1 GB/s, latency: 1 us}"
    with pytest.raises(ConfigError, match="system.replicas.*single switch"):
        hwsim.run(hwsim.load_scenario(root / "scenarios" / "gpt3_pipeline_timing.yaml", [fabric]))


def test_schema_objects_build_the_same_topologies():
    from hwsim.network import build_topology

    base = hwsim.load_scenario("scenarios/quickstart.yaml").hardware
    import dataclasses

    fat = dataclasses.replace(
        base, network=FatTreeNet(leaves=2, npus_per_leaf=4, spines=2, bandwidth=1e9, latency=1e-6, spine_latency=1e-6)
    )
    assert build_topology(fat, 8).npus == 8
    assert build_topology(dataclasses.replace(base, network=TorusNet(shape=(3, 3), bandwidth=1e9, latency=0.0)), 9).npus == 9
    dims = DimsNet(dims=(DimSpec(kind="switch", size=4, bandwidth=1e9, latency=0.0),))
    assert build_topology(dataclasses.replace(base, network=dims), 3).npus == 4
    assert isinstance(base, HardwareSpec)
