"""The cluster: messages on a described fabric, in order per pair, lost to outages in every model,
and the star reproducing the figures hwsim had before fabrics (store_and_forward)."""

import dataclasses

import pytest
import simpy

import hwsim
from hwsim.config.schema import DimsNet, DimSpec, FatTreeNet, LinkOverride, SwitchNet
from hwsim.errors import ConfigError
from hwsim.hardware import Placeholder
from hwsim.network import Cluster
from hwsim.network.cluster import build_topology
from hwsim.trace import Recorder

MODELS = ("flow", "ideal", "store_and_forward")


@pytest.fixture
def hardware(root):
    return hwsim.load_scenario(root / "scenarios" / "compressed_ps_int8.yaml").hardware


def cluster(hardware, network, npus: int) -> tuple[simpy.Environment, Cluster, list]:
    env = simpy.Environment()
    spec = dataclasses.replace(hardware, network=network)
    names = [f"d{i}" for i in range(npus)]
    c = Cluster(env, spec, names, Recorder())
    return env, c, [c.add(i, name, spec) for i, name in enumerate(names)]


def deliver(env, c, sends) -> list[tuple[float, int]]:
    """Start each (time, src device, dst device, bytes) send; return (arrival, index) per delivered message,
    in arrival order."""
    arrived = []

    def one(k, at, a, b, nbytes):
        yield env.timeout(at)
        message = yield from c.send(a, b, Placeholder(nbytes), tag=f"m{k}")
        if message is not None:
            arrived.append((env.now, k))

    for k, send in enumerate(sends):
        env.process(one(k, *send))
    env.run()
    return arrived


@pytest.mark.parametrize("model", MODELS)
def test_messages_between_a_pair_arrive_in_the_order_they_were_sent(hardware, model):
    """1 MB then 1 kB from d0 to d1 at once: under max-min sharing the small one would finish first if it
    went beside the big one; one connection per pair keeps them in order in every model."""
    net = FatTreeNet(leaves=2, npus_per_leaf=2, spines=1, bandwidth=1e9, latency=1e-6, spine_latency=1e-6, model=model)
    env, c, d = cluster(hardware, net, 4)
    arrived = deliver(env, c, [(0.0, d[0], d[3], 1_000_000), (0.0, d[0], d[3], 1_000)])
    assert [k for _, k in arrived] == [0, 1]
    assert arrived[1][0] > arrived[0][0]
    # another pair is not held back by d0 -> d3: d1 -> d2 shares no link with it
    env, c, d = cluster(hardware, net, 4)
    arrived = dict((k, t) for t, k in deliver(env, c, [(0.0, d[0], d[3], 1_000_000), (0.0, d[1], d[2], 1_000)]))
    assert arrived[1] < arrived[0]


@pytest.mark.parametrize("model", MODELS)
def test_a_link_outage_loses_the_messages_it_cuts_off_in_every_model(hardware, model):
    """d1 is down from 1 ms to 2 ms: a message sent to it that lands in the window is lost, one sent by
    it in the window is lost, the others arrive."""
    env, c, d = cluster(hardware, SwitchNet(bandwidth=1e9, latency=1e-6, model=model), 3)
    c.link_down("d1", 1e-3, 2e-3)
    sends = [
        (0.0, d[0], d[1], 1000),
        (1.5e-3, d[0], d[1], 1000),
        (1.5e-3, d[1], d[2], 1000),
        (2.5e-3, d[1], d[0], 1000),
        (1.5e-3, d[0], d[2], 1000),
    ]
    assert sorted(k for _, k in deliver(env, c, sends)) == [0, 3, 4]


def test_store_and_forward_on_the_default_star_keeps_the_old_closed_form(hardware):
    """No hardware.network: one switch, each device's own NIC. Store-and-forward pays the NIC overhead
    once and serializes on both hops: o + 2 (B / b + a); flow and ideal serialize once: o + 2a + B / b."""
    nic = hardware.nic
    nbytes = 123_456
    for model, want in [
        ("store_and_forward", nic.overhead + 2 * (nbytes / nic.bandwidth + nic.latency)),
        ("flow", nic.overhead + 2 * nic.latency + nbytes / nic.bandwidth),
        ("ideal", nic.overhead + 2 * nic.latency + nbytes / nic.bandwidth),
    ]:
        env, c, d = cluster(hardware, SwitchNet(model=model), 2)
        [(t, _)] = deliver(env, c, [(0.0, d[0], d[1], nbytes)])
        assert t == pytest.approx(want, rel=1e-12), model


def test_a_slow_nic_override_slows_only_its_npu(hardware):
    net = SwitchNet(bandwidth=1e9, latency=0.0, overrides=(LinkOverride(npu=2, bandwidth=1e8),))
    env, c, d = cluster(hardware, net, 3)
    times = dict((k, t) for t, k in deliver(env, c, [(0.0, d[0], d[1], 10**6), (0.0, d[1], d[2], 10**6)]))
    o = hardware.nic.overhead
    assert times[0] == pytest.approx(o + 1e-3) and times[1] == pytest.approx(o + 1e-2)


def test_an_override_of_one_dimension_changes_only_that_nics_links(hardware):
    """`dim: 1` on a dims fabric: NPU 5's scale-out links slow down, its NVSwitch links and every other NPU's stay."""
    dims = (
        DimSpec(kind="switch", size=4, bandwidth=4e11, latency=1e-6),
        DimSpec(kind="switch", size=2, bandwidth=5e10, latency=2e-6),
    )
    net = DimsNet(dims=dims, overrides=(LinkOverride(npu=5, dim=1, bandwidth=1e9),))
    t = build_topology(dataclasses.replace(hardware, network=net), 8)
    for npu in range(8):
        for link in t.npu_links(npu):
            level = t.level[link]
            want = 1e9 if (npu == 5 and level == "dim1") else (5e10 if level == "dim1" else 4e11)
            assert t.bandwidth[link] == want, (npu, level)
    bad = DimsNet(dims=dims, overrides=(LinkOverride(npu=5, dim=2, bandwidth=1e9),))
    with pytest.raises(ConfigError, match=r"overrides\[0\]\.dim"):
        build_topology(dataclasses.replace(hardware, network=bad), 8)


@pytest.mark.parametrize("model", MODELS)
def test_the_8x16_cluster_runs_the_parameter_server_with_its_scale_out_port_hottest(root, model):
    """127 workers and a server on 16 nodes of 8 NPUs: uploads reach the server over rank 7's scale-out
    switch (dimension-ordered routes), so the server's scale-out downlink is the busiest link, and the
    same bytes cross it in every model."""
    scenario = hwsim.load_scenario(
        root / "scenarios" / "cluster_8x16_ps.yaml", ["system.steps=2", f"hardware.network.model={model}"]
    )
    result = hwsim.run(scenario)
    assert result.status == "ok", result.diagnosis
    links = result.links.set_index("link")
    assert links.util.idxmax() == "server.nic1.down"
    upload = links.loc["w0.nic0.up", "bytes"] / 2  # w0 sends one upload a step on its NVSwitch port
    assert upload > 0
    assert links.loc["server.nic1.down", "bytes"] == 2 * (127 - 7) * upload  # all but the server's node's 7
