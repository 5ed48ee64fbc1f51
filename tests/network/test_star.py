"""The star hwsim had before fabrics, now `SwitchNet` under `store_and_forward`: its figures by hand
(1000 B/s links, 0.5 s latency, 0.1 s NIC overhead), messages, observers and a serving device."""

import numpy as np
import pytest
import simpy

from hwsim.config.fields import build
from hwsim.config.load import PRESET_DIR, read_yaml
from hwsim.config.schema import HardwareSpec, NicSpec, SwitchNet
from hwsim.network import Cluster
from hwsim.trace import Recorder

SPEC = NicSpec(bandwidth=1000.0, latency=0.5, overhead=0.1)  # 1000 B/s


def hardware() -> HardwareSpec:
    edge = build(HardwareSpec, read_yaml(PRESET_DIR / "edge_npu.yaml"), "", "edge_npu")
    return HardwareSpec(
        name="h",
        systolic=edge.systolic,
        vector=edge.vector,
        memory=edge.memory,
        nic=SPEC,
        network=SwitchNet(model="store_and_forward"),
    )


def star(names: list[str]):
    env = simpy.Environment()
    cluster = Cluster(env, hardware(), names, Recorder())
    return env, cluster, {n: cluster.add(i, n, hardware()) for i, n in enumerate(names)}


def test_one_message_costs_overhead_plus_two_hops():
    env, cluster, d = star(["a", "b"])
    log = []

    def go():
        message = yield from cluster.send(d["a"], d["b"], b"x" * 100, tag="t")
        log.append((message.tag, message.nbytes, env.now))

    env.process(go())
    env.run()
    # 0.1 overhead + 0.1 serialize + 0.5 hop, then 0.1 serialize + 0.5 hop
    assert log == [("t", 100, pytest.approx(1.3))]


def test_two_senders_share_the_receivers_downlink_in_turn():
    env, cluster, d = star(["a", "b", "c"])
    log = []

    def receive():
        for _ in range(2):
            message = yield d["c"].nic.inbox.get()
            log.append((message.src, env.now))

    env.process(cluster.send(d["a"], d["c"], b"x" * 100))
    env.process(cluster.send(d["b"], d["c"], b"y" * 100))
    env.process(receive())
    env.run()
    # both reach the switch at 0.7; a's message holds c's downlink until 0.8, b's until 0.9
    assert log == [("a.nic", pytest.approx(1.3)), ("b.nic", pytest.approx(1.4))]


def test_one_sender_serializes_its_messages_fifo():
    env, cluster, d = star(["a", "b", "c"])
    log = []

    def go(dst):
        yield from cluster.send(d["a"], d[dst], np.zeros(25, np.float32))  # 100 bytes
        log.append((dst, env.now))

    env.process(go("b"))
    env.process(go("c"))
    env.run()
    # a's uplink: first 0..0.2, second 0.2..0.4; different downlinks, no further wait
    assert log == [("b", pytest.approx(1.3)), ("c", pytest.approx(1.5))]


def test_message_size_is_its_buffer_size_and_observers_see_it():
    env, cluster, d = star(["a", "b"])
    seen = []
    d["a"].nic.delivery_observers.append(lambda m, t: seen.append((m.src, m.dst, m.nbytes)))
    env.process(cluster.send(d["a"], d["b"], np.zeros((3, 7), np.float32)))
    env.run()
    assert seen == [("a.nic", "b.nic", 84)]


def test_server_controller_serves_and_replies():
    env = simpy.Environment()
    cluster = Cluster(env, hardware(), ["client", "srv"], Recorder())
    client = cluster.add(0, "client", hardware())

    def echo(server, message):
        yield from cluster.send(server, client, message.payload[::-1], tag="reply")

    srv = cluster.add_server(1, "srv", hardware(), echo)
    log = []

    def ask():
        yield from cluster.send(client, srv, b"abc" * 100)
        reply = yield client.nic.inbox.get()
        log.append((reply.payload[:3], env.now))

    env.process(ask())
    env.run()
    # 300 bytes take 0.3 s per hop plus overhead and latency: 1.7 s each way
    assert log == [(b"cba", pytest.approx(3.4))]


def test_a_link_down_loses_messages_sent_or_arriving_in_its_window():
    """b is down from 1.5 s to 2 s. A message is lost if its sender is down when it is sent, or its
    receiver when it arrives (the star used to drop it where it met the receiver's downlink; the
    cluster decides on arrival, the same in every link-sharing model). Each message takes 1.3 s."""
    env, cluster, d = star(["a", "b"])
    cluster.link_down("b", 1.5, 2.0)
    lost, got = [], []
    cluster.loss_observers.append(lambda m, t: lost.append((m.tag, t)))

    def go(src, dst, tag, at):
        yield env.timeout(at)
        message = yield from cluster.send(d[src], d[dst], b"x" * 100, tag=tag)
        got.append((tag, message is not None))

    for src, dst, tag, at in (
        ("a", "b", "early", 0.0),
        ("a", "b", "lands in", 0.5),
        ("b", "a", "sent in", 1.6),
        ("a", "b", "lands after", 0.8),
    ):
        env.process(go(src, dst, tag, at))
    env.run()
    assert sorted(got) == sorted([("early", True), ("lands in", False), ("sent in", False), ("lands after", True)])
    assert sorted(lost) == [("lands in", pytest.approx(1.8)), ("sent in", pytest.approx(1.6))]
    assert [m.tag for m in d["b"].nic.inbox.items] == ["early", "lands after"]
    with pytest.raises(ValueError, match="no device named 'c'"):
        cluster.link_down("c", 0.0, 1.0)
