"""The compressed parameter server: exactness against NumPy, conservation, compression, async, errors."""

import numpy as np
import pytest

import hwsim
from hwsim.errors import ConfigError
from hwsim.systems.compressed_ps.system import shard
from hwsim.workloads import make_model
from hwsim.workloads.data import BatchStream, load_dataset
from tests.kernels import naive


@pytest.fixture(scope="module")
def load(request):
    root = request.config.rootpath / "scenarios"
    return lambda name, *overrides: hwsim.load_scenario(root / f"{name}.yaml", list(overrides))


@pytest.fixture(scope="module")
def int8_run(load):
    return hwsim.run(load("compressed_ps_int8", "system.steps=40"))


@pytest.fixture(scope="module")
def fp32_run(load):
    return hwsim.run(load("compressed_ps_fp32", "system.steps=40"))


def numpy_data_parallel_sgd(scenario):
    """Plain NumPy float64 data-parallel SGD with momentum: each worker takes a momentum step from
    the shared weights on its own batch (the same data order as the simulator), then the
    weights are averaged."""
    spec = scenario.system
    data_seed, model_seed = np.random.SeedSequence(scenario.seed).spawn(2)
    data = load_dataset("digits", scenario.run.test_fraction, np.random.default_rng(data_seed))
    rng = np.random.default_rng(model_seed)
    weights = [[p.astype(np.float64) for p in layer] for layer in make_model(scenario.model).init_params(rng)]
    shards = [shard(len(data.y_train), i, spec.workers) for i in range(spec.workers)]
    streams = [BatchStream(len(s), spec.batch, r) for s, r in zip(shards, rng.spawn(spec.workers), strict=True)]
    velocity = [[[np.zeros_like(p) for p in layer] for layer in weights] for _ in range(spec.workers)]
    for _ in range(spec.steps):
        new = []
        for i in range(spec.workers):
            idx = shards[i][streams[i].next()]
            grads = mlp_gradients(weights, data.x_train[idx], data.y_train[idx])
            local = []
            for li, layer in enumerate(weights):
                for pi in range(len(layer)):
                    velocity[i][li][pi] = spec.momentum * velocity[i][li][pi] + grads[li][pi]
                local.append([p - spec.lr * velocity[i][li][pi] for pi, p in enumerate(layer)])
            new.append(local)
        weights = [[np.mean([n[li][pi] for n in new], axis=0) for pi in range(2)] for li in range(len(weights))]
    return weights


def mlp_gradients(weights, x, y):
    acts, pre = [x.astype(np.float64)], []
    for li, (w, b) in enumerate(weights):
        z = naive.dense_forward(acts[-1], w, b)
        pre.append(z)
        acts.append(z if li == len(weights) - 1 else np.maximum(z, 0))
    _, grad = naive.softmax_xent(acts[-1], y)
    grads = [None] * len(weights)
    for li in reversed(range(len(weights))):
        if li < len(weights) - 1:
            grad = grad * (pre[li] > 0)
        d_in, dw, db = naive.dense_backward(acts[li], weights[li][0], grad)
        grads[li] = (dw, db)
        grad = d_in
    return grads


def test_without_compression_the_weights_equal_numpy_data_parallel_sgd(load):
    scenario = load("compressed_ps_fp32", "system.steps=25", "system.workers=3")
    result = hwsim.run(scenario)
    got = np.concatenate([p.ravel() for layer in result.outcome.system.final_params() for p in layer])
    want = np.concatenate([p.ravel() for layer in numpy_data_parallel_sgd(scenario) for p in layer])
    assert np.linalg.norm(got - want) <= 1e-6 * np.linalg.norm(want)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


@pytest.mark.parametrize("run_name", ["fp32_run", "int8_run"])
def test_bytes_sent_equal_bytes_received_and_the_encoded_buffers(run_name, request):
    result = request.getfixturevalue(run_name)
    net = result.summary["network"]
    messages = result.trace.messages
    assert net["up_bytes"] == net["encoded_up_bytes"] == messages.bytes[messages.dst == "server.nic"].sum()
    assert net["down_bytes"] == net["encoded_down_bytes"] == messages.bytes[messages.src == "server.nic"].sum()
    layers, workers, steps = 3, 4, 40
    assert (messages.tag == "up").sum() == (messages.tag == "down").sum() == layers * workers * steps


def test_fewer_bits_send_fewer_bytes_and_shorten_the_step_on_a_slow_network(fp32_run, int8_run, load):
    four = hwsim.run(load("compressed_ps_4bit", "system.steps=40"))
    runs = [fp32_run, int8_run, four]
    sent = [r.summary["bytes_moved"]["network"] for r in runs]
    step = [r.summary["step_time_s"] for r in runs]
    assert sent[0] > 3.5 * sent[1] and sent[1] > 1.6 * sent[2]
    assert step[0] > 2 * step[1] > 2 * 1.2 * step[2] / 2
    # the phases that grow with bytes are the network ones
    assert fp32_run.phases.send_s.mean() > 3 * int8_run.phases.send_s.mean()
    for r in runs:  # what it costs in accuracy is reported
        assert 0.8 < r.summary["learning"]["final_test_accuracy"] <= 1


def test_phases_add_up_to_the_step_time(int8_run):
    phases = int8_run.trace.phases.groupby(["device", "step"]).seconds.sum().groupby("device").mean()
    steps = int8_run.metrics[int8_run.metrics.metric == "step_time_s"].value
    assert phases.mean() == pytest.approx(steps.mean(), rel=1e-9)
    assert set(int8_run.trace.phases.phase) == {"decompress", "compute", "compress", "send", "wait", "aggregate", "receive"}


def test_workers_store_the_broadcast_as_is_when_the_downlink_is_the_bank_codec(int8_run):
    system = int8_run.outcome.system
    first = [t.pbank.get(f"{name}.params").buffer for t in system.trainers[:1] for name in system.names]
    for trainer in system.trainers[1:]:
        for name, buf in zip(system.names, first, strict=True):
            np.testing.assert_array_equal(trainer.pbank.get(f"{name}.params").buffer, buf)


def test_a_slow_nic_makes_the_others_wait(load):
    result = hwsim.run(load("compressed_ps_stragglers", "system.steps=20"))
    wait = result.phases.set_index("device").wait_s
    assert wait["w0"] > 5 * wait["w3"]
    assert result.summary["step_time_s"] > 1.5 * hwsim.run(load("compressed_ps_int8", "system.steps=20")).summary["step_time_s"]


def test_async_mode_records_staleness_and_learns_differently(load):
    sync = hwsim.run(load("compressed_ps_stragglers", "system.steps=30", "system.update=delta"))
    async_ = hwsim.run(load("compressed_ps_async", "system.steps=30"))
    staleness = async_.metrics[async_.metrics.metric == "staleness"].value
    assert len(staleness) == 4 * 30 and staleness.max() >= 1
    assert async_.summary["status"] == "ok"
    a = np.concatenate([p.ravel() for layer in sync.outcome.system.final_params() for p in layer])
    b = np.concatenate([p.ravel() for layer in async_.outcome.system.final_params() for p in layer])
    assert not np.allclose(a, b)


def test_bounded_staleness_holds_fast_workers_back(load):
    tight = hwsim.run(load("compressed_ps_async", "system.steps=20", "system.max_staleness=0"))
    loose = hwsim.run(load("compressed_ps_async", "system.steps=20", "system.max_staleness=100"))
    fast_wait = [r.phases.set_index("device").wait_s["w0"] for r in (tight, loose)]
    assert fast_wait[0] > 10 * fast_wait[1]
    # with no bound, the fast workers finish long before the slow one
    done = loose.trace.phases.groupby("device").end_s.max()
    assert done["w0"] < 0.5 * done["w3"]


def test_overlap_hides_compute_behind_communication(load):
    plain = hwsim.run(load("compressed_ps_int8", "system.steps=20"))
    overlap = hwsim.run(load("compressed_ps_int8", "system.steps=20", "system.overlap=true"))
    assert overlap.summary["step_time_s"] < plain.summary["step_time_s"]
    assert overlap.summary["learning"]["final_test_accuracy"] > 0.5


def test_timing_only_mode_has_the_same_timeline(int8_run, load):
    timing = hwsim.run(load("compressed_ps_int8", "system.steps=40", "run.mode=timing-only"))
    assert timing.sim_time_s == int8_run.sim_time_s
    assert timing.summary["network"]["up_bytes"] == int8_run.summary["network"]["up_bytes"]


@pytest.mark.parametrize(
    "override,key,says",
    [
        ("system.uplink={name: uniform, bits: 3}", "system.uplink", "bits must be one of 1, 2, 4, 8"),
        ("system.downlink=int3", "system.downlink", "unknown codec 'int3'"),
        ("system.workers=0", "system.workers", "at least 1"),
        ("system.server=async", "system.update", "delta with server: async"),
        ("system.worker_hardware={7: {nic: {bandwidth: 1 Gb/s}}}", "system.worker_hardware.7", "worker index from 0 to 3"),
        ("system.uplink={levels: 4}", "system.uplink", "'name' key"),
        ("system.server=none", "system.downlink", "null with server: none"),
        (("system.server=none", "system.downlink=null", "system.error_feedback=true"), "system.error_feedback", "false"),
        (
            ("system.server=none", "system.downlink=null", "system.workers=3", "system.collective.algorithm=halving_doubling"),
            "system.collective.algorithm",
            "power-of-two",
        ),
    ],
)
def test_bad_configuration_gets_a_clear_error(load, override, key, says):
    with pytest.raises(ConfigError) as err:
        scenario = load("compressed_ps_int8", *(override if isinstance(override, tuple) else (override,)))
        hwsim.run(scenario)
    assert err.value.key == key and says in str(err.value)


def test_a_bank_too_small_for_the_model_is_a_simulated_out_of_memory(load):
    result = hwsim.run(load("compressed_ps_int8", "hardware.memory.params.capacity=8 KiB"))
    assert result.status == "out_of_memory"
    assert "w0.params" in result.diagnosis and "8 KiB" in result.diagnosis


@pytest.mark.parametrize("algorithm", ["ring", "direct"])
def test_without_a_server_the_workers_all_reduce_to_the_same_numpy_data_parallel_sgd(load, algorithm):
    """server: none, fp32: the all-reduced mean of the workers' weights is the server's mean."""
    scenario = load(
        "compressed_ps_fp32",
        "system.steps=25",
        "system.workers=3",
        "system.server=none",
        "system.downlink=null",
        f"system.collective.algorithm={algorithm}",
    )
    result = hwsim.run(scenario)
    got = np.concatenate([p.ravel() for layer in result.outcome.system.final_params() for p in layer])
    want = np.concatenate([p.ravel() for layer in numpy_data_parallel_sgd(scenario) for p in layer])
    assert np.linalg.norm(got - want) <= 1e-6 * np.linalg.norm(want)
    assert np.max(np.abs(got - want)) <= 1e-5 * np.max(np.abs(want))


def test_without_a_server_int8_workers_stay_identical_and_send_the_encoded_all_reduce(load, int8_run):
    result = hwsim.run(load("compressed_ps_int8", "system.steps=40", "system.server=none", "system.downlink=null"))
    system = result.outcome.system
    first = [system.trainers[0].pbank.get(f"{name}.params").buffer for name in system.names]
    for trainer in system.trainers[1:]:
        for name, buf in zip(system.names, first, strict=True):
            np.testing.assert_array_equal(trainer.pbank.get(f"{name}.params").buffer, buf)
    net, messages = result.summary["network"], result.trace.messages
    assert set(messages.tag) == {"allreduce"} and "server.nic" not in set(messages.src) | set(messages.dst)
    assert net["up_bytes"] == net["encoded_up_bytes"] == messages.bytes.sum() and net["down_bytes"] == 0
    assert 0.25 < net["fraction_of_fp32"] < 0.3  # int8 with a 4-byte scale per 64 elements: 9 / 32 at most
    # a ring among 4 workers beats the server's incast on the same NICs, and learns as well
    assert result.summary["step_time_s"] < 0.6 * int8_run.summary["step_time_s"]
    assert result.summary["learning"]["final_test_accuracy"] > 0.9
    phases = result.trace.phases.groupby(["device", "step"]).seconds.sum().groupby("device").mean()
    steps = result.metrics[result.metrics.metric == "step_time_s"].value
    assert phases.mean() == pytest.approx(steps.mean(), rel=1e-9)


def test_a_ring_reply_relieves_the_servers_link_and_changes_no_weight(int8_run, load):
    """system.reply: ring forwards the master worker to worker (a chain broadcast): the server sends each
    layer once instead of once per worker, the step is shorter on these NICs, the math is the same."""
    ring = hwsim.run(load("compressed_ps_int8", "system.steps=40", "system.reply=ring"))
    for a, b in zip(ring.outcome.system.final_params(), int8_run.outcome.system.final_params(), strict=True):
        np.testing.assert_array_equal(a[0], b[0])
    sent = {r: r.trace.messages for r in (ring, int8_run)}
    from_server = {r: m.bytes[(m.src == "server.nic") & (m.tag == "down")].sum() for r, m in sent.items()}
    assert from_server[int8_run] == 4 * from_server[ring]
    assert ring.summary["network"]["down_bytes"] == int8_run.summary["network"]["down_bytes"]
    assert ring.summary["step_time_s"] < 0.9 * int8_run.summary["step_time_s"]
