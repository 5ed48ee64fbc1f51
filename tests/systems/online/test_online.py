"""Online training: real-time vs full updates, serving-only prediction workers, conservation of
bytes, link outages, the stream's drift, determinism and configuration errors."""

import numpy as np
import pytest
import simpy

import hwsim
from hwsim.codecs import make_codec
from hwsim.config.fields import build
from hwsim.config.schema import StreamSpec
from hwsim.errors import ConfigError
from hwsim.hardware import Device
from hwsim.policies.updates import select
from hwsim.systems.online import system as online
from hwsim.systems.online.stream import Stream
from hwsim.systems.online.workers import TrainingWorker
from hwsim.systems.training import Settings
from hwsim.workloads import make_model

SHORT = ["system.duration=2.5 s", "system.stream.rate=600 /s"]


@pytest.fixture(scope="module")
def load(request):
    root = request.config.rootpath / "scenarios"
    return lambda name, *overrides: hwsim.load_scenario(root / f"{name}.yaml", list(overrides))


@pytest.fixture(scope="module")
def realtime(load):
    return hwsim.run(load("online_realtime", *SHORT))


@pytest.fixture(scope="module")
def link_down(load):
    return hwsim.run(load("online_link_down"))


def test_threshold_zero_realtime_updates_leave_workers_where_full_updates_do(load, monkeypatch):
    """With threshold 0 (fp32), every real-time update makes the server's mirror of the worker equal
    to the master, exactly as a full update does; the worker's copy equals its mirror at the end."""
    gaps = {"realtime": [], "full": []}
    send = online.Online._update

    def checked(self, worker, buf, tag):
        gaps[tag].append(float(np.max(np.abs(self.mirrors[worker.name] - self.master))))
        send(self, worker, buf, tag)

    monkeypatch.setattr(online.Online, "_update", checked)
    result = hwsim.run(load("online_realtime", *SHORT, "system.realtime.threshold=0"))
    assert len(gaps["realtime"]) > 100 and len(gaps["full"]) == 2 * 4
    assert max(gaps["realtime"]) == 0.0 and max(gaps["full"]) == 0.0
    system = result.outcome.system
    for p in system.predictors:
        np.testing.assert_array_equal(p.model, system.mirrors[p.name])
    # and a positive threshold leaves the mirror behind the master (the check above can fail)
    gaps["realtime"].clear()
    hwsim.run(load("online_realtime", *SHORT, "system.realtime.threshold=0.01"))
    assert max(gaps["realtime"]) > 0.0


def test_a_realtime_update_at_threshold_zero_equals_a_full_update():
    rng = np.random.default_rng()
    master = rng.standard_normal(3000).astype(np.float32)
    stale = master.copy()
    moved = rng.choice(3000, 500, replace=False)
    stale[moved] += rng.standard_normal(500).astype(np.float32)
    codec = make_codec("fp32")
    from types import SimpleNamespace

    idx = select(master - stale, SimpleNamespace(select="threshold", threshold=0.0))
    _, got, values = online.unpack(online.pack(idx, master[idx], 3000, codec, seed=0, stream=0), codec)
    by_realtime = stale.copy()
    by_realtime[got] = values
    _, every, values = online.unpack(online.pack(np.arange(3000, dtype=np.uint32), master, 3000, codec, seed=0, stream=1), codec)
    by_full = stale.copy()
    by_full[every] = values
    np.testing.assert_array_equal(by_realtime, by_full)
    assert idx.size == 500


def test_prediction_workers_never_train(realtime):
    busy = realtime.trace.busy
    served = busy[busy.unit.str.match(r"p\d\.") & ~busy.unit.str.contains(".nic.")]
    words = set(served.label.str.split(" ").str[0])
    assert words == {"serve", "apply", "write"}, words
    trained = busy[busy.unit.str.match(r"t\d\.")]
    assert {"fwd", "bwd", "update", "delta"} <= set(trained.label.str.split(" ").str[0])
    system = realtime.outcome.system
    for p in system.predictors:  # their weights are exactly what the server sent them
        np.testing.assert_array_equal(p.model, system.mirrors[p.name])
        assert not hasattr(p, "train")


def test_bytes_sent_equal_bytes_received_per_update_type(realtime, link_down):
    for kind, counts in realtime.summary["online"]["updates"].items():
        assert counts["sent_messages"] > 0, kind
        assert counts["sent_bytes"] == counts["delivered_bytes"] and counts["lost_bytes"] == 0, kind
        assert counts["sent_messages"] == counts["delivered_messages"]
    for kind, counts in link_down.summary["online"]["updates"].items():
        assert counts["sent_bytes"] == counts["delivered_bytes"] + counts["lost_bytes"], kind
    lost = link_down.summary["online"]["updates"]
    assert lost["realtime"]["lost_messages"] > 0 and lost["full"]["lost_messages"] == 2  # p0's at 2 s and 3 s
    assert lost["delta"]["lost_messages"] == 0


def test_a_cut_off_worker_serves_stale_and_catches_up_at_the_next_full_update(link_down):
    outage = link_down.summary["online"]["link_down"][0]
    assert outage["caught_up_s"] == 4.0
    assert outage["accuracy_cut_off"] < outage["accuracy_others"] - 0.1  # the dip (the drift at 2 s)
    assert abs(outage["accuracy_after"] - outage["accuracy_others_after"]) < 0.06
    p = link_down.predictions
    p0 = p[p.worker == "p0"]
    behind = p0[(p0.served_s > 2.0) & (p0.served_s < 4.0)]
    assert behind.staleness_s.min() > 0.5  # reflects the master of 1.5 s at best
    after = p0[p0.served_s > 4.01]
    assert after.staleness_s.max() < 0.06  # real-time updates keep it fresh again
    assert len(behind) > 0 and (behind.latency_s < 1e-3).all()  # it kept serving


def test_realtime_updates_beat_full_only_at_fewer_bytes(load):
    coarse = hwsim.run(load("online_realtime_coarse")).summary["online"]
    full = hwsim.run(load("online_full_only")).summary["online"]
    assert coarse["server_update_bytes"] < full["server_update_bytes"]
    assert coarse["prequential_accuracy"] > full["prequential_accuracy"] + 0.05


def test_same_scenario_and_seed_give_identical_results(load, realtime):
    again = hwsim.run(load("online_realtime", *SHORT))
    assert again.predictions.equals(realtime.predictions)
    np.testing.assert_array_equal(again.outcome.system.master, realtime.outcome.system.master)


def test_a_training_worker_keeps_unsent_change_when_an_update_arrives():
    env = simpy.Environment()
    scenario = hwsim.load_scenario("scenarios/online_realtime.yaml")
    model = make_model(scenario.model)
    rng = np.random.default_rng()
    n = model.num_params
    initial = rng.standard_normal(n).astype(np.float32)
    shapes = [[(i, o), (o,)] for i, o in model.shapes]
    settings = Settings(16, 0.05, 0.5, 64, "working", "working", "fp32")
    spec = scenario.system.delta.__class__(select="threshold", threshold=0.5)
    worker = TrainingWorker(
        env, Device(env, "t0", scenario.hardware), "working", initial, shapes, model, settings, 2, spec, make_codec("fp32"), 0, 0
    )
    worker.model += rng.standard_normal(n).astype(np.float32)  # local training since the snapshot
    unsent = worker.model.astype(np.float64) - worker.snapshot
    idx = np.sort(rng.choice(n, 100, replace=False)).astype(np.uint32)
    values = rng.standard_normal(100).astype(np.float32)
    worker.apply(idx, values)
    np.testing.assert_array_equal(worker.snapshot[idx], values)
    np.testing.assert_allclose(worker.model - worker.snapshot.astype(np.float64), unsent, atol=1e-5)

    before_model, before_snap = worker.model.copy(), worker.snapshot.copy()
    box = []
    env.process((lambda: box.append((yield from worker._delta())))())
    env.run()
    _, sent, delta = online.unpack(box[0], make_codec("fp32"))
    change = before_model.astype(np.float64) - before_snap
    np.testing.assert_array_equal(sent, np.flatnonzero(np.abs(before_model - before_snap) > 0.5))
    np.testing.assert_allclose(delta, change[sent], atol=1e-6)
    np.testing.assert_allclose(worker.snapshot[sent], before_model[sent], atol=1e-6)  # the snapshot moved by what was sent
    rest = np.setdiff1d(np.arange(n), sent)
    np.testing.assert_array_equal(worker.snapshot[rest], before_snap[rest])


def test_the_stream_drifts_by_cycles_of_the_chosen_classes():
    spec = build(StreamSpec, {"rate": "2000 /s", "drift_every": "0.5 s", "drift_classes": 4}, "system.stream", "test")
    stream = Stream(spec, 2.2, 1000, 10, np.random.default_rng(3))
    assert np.all(np.diff(stream.times) > 0) and stream.times[-1] < 2.2
    assert abs(len(stream) - 4400) < 4 * np.sqrt(4400)
    np.testing.assert_array_equal(stream.drift_times, [0.5, 1.0, 1.5, 2.0])
    for before, after in zip(stream.perms, stream.perms[1:], strict=False):
        assert sorted(after) == list(range(10))
        assert (before != after).sum() == 4
    i = int(np.searchsorted(stream.times, 1.2))
    assert stream.label(i, 7) == stream.perms[2][7] == stream.labels_at(1.2, np.array([7]))[0]


def test_arrivals_can_come_from_a_trace_file(load, tmp_path):
    times = np.sort(np.random.default_rng().uniform(0, 2.0, 700))
    (tmp_path / "arrivals.csv").write_text("time_s\n" + "\n".join(f"{t:.9f}" for t in times))
    result = hwsim.run(
        load(
            "online_realtime",
            "system.duration=1.5 s",
            "system.stream.arrivals=trace",
            f"system.stream.trace={tmp_path}/arrivals.csv",
        )
    )
    got = np.sort(result.predictions.arrival_s.to_numpy())
    np.testing.assert_allclose(got, times[times < 1.5], rtol=0, atol=1e-9)  # written with 9 decimals


def test_report_files_and_the_comparison(realtime, load, tmp_path):
    folder = realtime.write(tmp_path / "run")
    for name in ("online_training.png", "predictions.csv", "accuracy_over_time.csv", "report.html"):
        assert (folder / name).is_file(), name
    on = realtime.summary["online"]
    assert on["requests"] == len(realtime.predictions) > 1000
    assert 0.5 < on["prequential_accuracy"] < 1.0
    from hwsim.commands.compare import compare

    table = compare(["scenarios/online_realtime.yaml", "scenarios/online_full_only.yaml"], SHORT, tmp_path / "cmp")
    assert (tmp_path / "cmp" / "online.png").is_file()
    assert table.prequential_accuracy.notna().all() and (table.server_update_bytes > 0).all()


@pytest.mark.parametrize(
    "override,key,says",
    [
        ("system.realtime.period=2 s", "system.realtime.period", "at most the full period (1 s)"),
        ("system.prediction_workers=0", "system.prediction_workers", "at least 1"),
        ("system.realtime.threshold=-0.1", "system.realtime.threshold", "at least 0"),
        ("system.delta.threshold=-1", "system.delta.threshold", "at least 0"),
        ("system.realtime.select=biggest", "system.realtime.select", "no selection rule named 'biggest'"),
        ("system.full.codec=int3", "system.full.codec", "unknown codec 'int3'"),
        (
            "system.link_down=[{worker: p7, start: 1 s, end: 2 s}]",
            "system.link_down[0].worker",
            "one of the workers p0, p1, t0, t1",
        ),
        ("system.link_down=[{worker: p0, start: 2 s, end: 1 s}]", "system.link_down[0].end", "after its start"),
        ("system.stream.arrivals=trace", "system.stream.trace", "a CSV file of arrival times"),
        ("system.stream.trace=nowhere.csv", "system.stream.trace", None),
        ("run.mode=timing-only", "run.mode", "full, with an MLP"),
        ("system.stream.rate=1000", "system.stream.rate", "events per second"),
        (
            "system.prediction_hardware={memory: {working: {precision: int8}}}",
            "system.prediction_hardware.memory.working.precision",
            "fp32",
        ),
    ],
)
def test_bad_configuration_gets_a_clear_error(load, override, key, says):
    overrides = [override] + (["system.stream.arrivals=trace"] if "nowhere" in override else [])
    with pytest.raises(ConfigError) as err:
        hwsim.run(load("online_realtime", *overrides))
    assert err.value.key == key
    assert says is None or says in str(err.value), str(err.value)


def test_a_slower_realtime_period_is_allowed_when_asked_for(load):
    scenario = load("online_realtime", *SHORT, "system.realtime.period=2 s", "system.realtime.allow_slower=true")
    assert hwsim.run(scenario).status == "ok"
