import numpy as np
import pytest
import simpy

from hwsim.config.schema import BankSpec
from hwsim.errors import OutOfMemory
from hwsim.hardware import MemoryBank


def bank(env, capacity=1000, bandwidth=100.0, latency=0.5):
    return MemoryBank(env, "b", BankSpec(precision="int8", capacity=capacity, bandwidth=bandwidth, latency=latency))


def test_reads_and_writes_cost_latency_plus_bytes_over_bandwidth_and_queue():
    env = simpy.Environment()
    b = bank(env)
    log = []

    def job(name, op, nbytes):
        yield from getattr(b, op)(nbytes, name)
        log.append((name, env.now))

    env.process(job("read", "read", 200))  # 0.5 + 2
    env.process(job("write", "write", 50))  # waits, then 0.5 + 0.5
    env.run()
    assert log == [("read", 2.5), ("write", 3.5)]


def test_buffers_hold_real_arrays_and_track_levels():
    env = simpy.Environment()
    b = bank(env)
    levels = []
    b.level_observers.append(lambda bank_, t, used, label: levels.append((label, used)))
    w = np.arange(100, dtype=np.int8)
    b.allocate("w", w)
    b.allocate("scratch", nbytes=300)
    assert b.get("w") is w
    b.allocate("w", np.zeros(50, np.int8))  # replacing resizes
    b.free("scratch")
    assert levels == [("alloc w", 100), ("alloc scratch", 400), ("alloc w", 350), ("free scratch", 50)]
    assert b.peak == 400 and b.used == 50


def test_out_of_memory_names_bank_request_and_holders():
    env = simpy.Environment()
    b = bank(env, capacity=1000)
    b.allocate("weights", nbytes=600)
    b.allocate("grads", nbytes=300)
    with pytest.raises(OutOfMemory) as caught:
        b.allocate("activations", nbytes=200)
    message = str(caught.value)
    for part in (
        "bank 'b'",
        "capacity 1000 B",
        "'activations' needs 200 B",
        "only 100 B is free",
        "weights 600 B",
        "grads 300 B",
    ):
        assert part in message
    assert b.used == 900  # a refused allocation changes nothing


def test_out_of_memory_growing_a_held_buffer_counts_it_once():
    env = simpy.Environment()
    b = bank(env, capacity=1000)
    b.allocate("weights", nbytes=600)
    b.allocate("grads", nbytes=300)
    with pytest.raises(OutOfMemory) as caught:
        b.allocate("weights", nbytes=800)  # its own 600 B are free for it: 700 B in all
    message = str(caught.value)
    assert "'weights' grows from 600 B to 800 B but only 700 B is free for it; held by grads 300 B" in message
    assert message.count("weights") == 1  # not also listed as a holder "on top of" itself
    other = bank(env, capacity=1000)
    other.allocate("solo", nbytes=100)
    with pytest.raises(
        OutOfMemory, match="'solo' grows from 100 B to 1.953 KiB but only 1000 B is free for it; nothing else is held"
    ):
        other.allocate("solo", nbytes=2000)
