import numpy as np
import pytest
import simpy

from hwsim.config.fields import build
from hwsim.config.load import PRESET_DIR, read_yaml
from hwsim.config.schema import HardwareSpec, NicSpec
from hwsim.hardware import Nic, Server, Switch

SPEC = NicSpec(bandwidth=1000.0, latency=0.5, overhead=0.1)  # 1000 B/s


def network(env, names):
    switch = Switch(env)
    nics = {n: Nic(env, n, SPEC) for n in names}
    for nic in nics.values():
        switch.connect(nic)
    return switch, nics


def test_one_message_costs_overhead_plus_two_hops():
    env = simpy.Environment()
    switch, _ = network(env, ["a", "b"])
    log = []

    def go():
        message = yield from switch.send("a", "b", b"x" * 100, tag="t")
        log.append((message.tag, message.nbytes, env.now))

    env.process(go())
    env.run()
    # 0.1 overhead + 0.1 serialize + 0.5 hop, then 0.1 serialize + 0.5 hop
    assert log == [("t", 100, pytest.approx(1.3))]


def test_two_senders_share_the_receivers_downlink_in_turn():
    env = simpy.Environment()
    switch, nics = network(env, ["a", "b", "c"])
    log = []

    def receive():
        for _ in range(2):
            message = yield nics["c"].inbox.get()
            log.append((message.src, env.now))

    env.process(switch.send("a", "c", b"x" * 100))
    env.process(switch.send("b", "c", b"y" * 100))
    env.process(receive())
    env.run()
    # both reach the switch at 0.7; a's message holds c's downlink until 0.8, b's until 0.9
    assert log == [("a", pytest.approx(1.3)), ("b", pytest.approx(1.4))]


def test_one_sender_serializes_its_messages_fifo():
    env = simpy.Environment()
    switch, nics = network(env, ["a", "b", "c"])
    log = []

    def go(dst):
        yield from switch.send("a", dst, np.zeros(25, np.float32))  # 100 bytes
        log.append((dst, env.now))

    env.process(go("b"))
    env.process(go("c"))
    env.run()
    # a's uplink: first 0..0.2, second 0.2..0.4; different downlinks, no further wait
    assert log == [("b", pytest.approx(1.3)), ("c", pytest.approx(1.5))]


def test_message_size_is_its_buffer_size_and_observers_see_it():
    env = simpy.Environment()
    switch, nics = network(env, ["a", "b"])
    seen = []
    nics["a"].delivery_observers.append(lambda m, t: seen.append((m.src, m.dst, m.nbytes)))
    env.process(switch.send("a", "b", np.zeros((3, 7), np.float32)))
    env.run()
    assert seen == [("a", "b", 84)]


def test_server_controller_serves_and_replies():
    env = simpy.Environment()
    switch = Switch(env)
    client = Nic(env, "client", SPEC)
    switch.connect(client)
    spec = build(HardwareSpec, read_yaml(PRESET_DIR / "edge_npu.yaml"), "", "edge_npu")
    spec = HardwareSpec(name="s", systolic=spec.systolic, vector=spec.vector, memory=spec.memory, nic=SPEC)

    def echo(server, message):
        yield from server.switch.send(server.nic.name, message.src, message.payload[::-1], tag="reply")

    Server(env, "srv", spec, switch, echo)
    log = []

    def ask():
        yield from switch.send("client", "srv.nic", b"abc" * 100)
        reply = yield client.inbox.get()
        log.append((reply.payload[:3], env.now))

    env.process(ask())
    env.run()
    # 300 bytes take 0.3 s per hop plus overhead and latency: 1.7 s each way
    assert log == [(b"cba", pytest.approx(3.4))]


def test_a_link_down_loses_messages_sent_or_arriving_in_its_window():
    env = simpy.Environment()
    switch, nics = network(env, ["a", "b"])
    switch.link_down("b", 1.0, 2.0)
    lost, got = [], []
    switch.loss_observers.append(lambda m, t: lost.append((m.tag, t)))

    def go(tag, at):
        yield env.timeout(at)
        message = yield from switch.send("a", "b", b"x" * 100, tag=tag)
        got.append((tag, message is not None))

    # reaches the switch at 0.2 + 0.5 = 0.7 (up), 1.7 (down: lost), 2.7 (up again)
    for tag, at in (("early", 0.0), ("during", 1.0), ("after", 2.0)):
        env.process(go(tag, at))
    env.run()
    assert got == [("early", True), ("during", False), ("after", True)]
    assert lost == [("during", pytest.approx(1.7))]
    assert [m.tag for m in nics["b"].inbox.items] == ["early", "after"]
    with pytest.raises(ValueError, match="no NIC named 'c'"):
        switch.link_down("c", 0.0, 1.0)
