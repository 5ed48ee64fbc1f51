"""Online training (mechanism M3): a drifting stream, training workers, prediction workers and a
parameter server that sends real-time and full updates.

Devices t0 .. t{T-1} (training workers), p0 .. p{P-1} (prediction workers) and a server,
each a device on the cluster's fabric, share one timeline:

1. Arrival i of the stream (`stream.Stream`) is a prediction request to p{i mod P}; it
   queues on that worker, which answers it with its current copy of the model.
2. Its label arrives `label_delay` later (under the labelling function at its arrival):
   it scores the prediction (prequential accuracy) and goes to t{i mod T}, which trains
   on batches of what it gets and every `window` steps sends its change since its
   snapshot to the server (`online_workers`).
3. The server adds each change to its master copy as it arrives, in arrival order.
4. Every `realtime.period` the server sends each worker (prediction and training) the
   weights where the master differs from the server's mirror of that worker (what it
   last sent it), selected by the real-time rule; every `full.period` it sends every
   weight to every worker. Mirrors follow what was sent: a lost message (a link down)
   leaves the worker behind its mirror until the next full update.

Every message carries a real encoded buffer (`codecs.indexed`); message tags are
`delta`, `realtime` and `full`. Staleness of a prediction is the time since the master
that its worker's copy reflects was built (an update reflects the master it was built
from unless one before it, since the last full update, was lost).
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
import pandas as pd
import simpy

from hwsim.codecs import CodecError, codec_from_setting
from hwsim.codecs.indexed import pack, unpack
from hwsim.config.fields import to_plain
from hwsim.config.schema import Scenario
from hwsim.config.units import format_quantity
from hwsim.errors import ConfigError
from hwsim.hardware import Device, Message, Server
from hwsim.kernels.sparse import subtract
from hwsim.network import Cluster
from hwsim.policies.updates import UpdateError, resolve_rule, select
from hwsim.systems.checks import check_bank
from hwsim.systems.online.stream import Stream, read_arrivals
from hwsim.systems.online.workers import DELTA_OPS, PredictionWorker, TrainingWorker, views
from hwsim.systems.training import COMPRESS_OPS, DECOMPRESS_OPS, Settings, flatten

Progress = Callable[[int, int], None]
SERVER = "server"
KINDS = ("delta", "realtime", "full")
PREDICTION_COLUMNS = ["request", "worker", "arrival_s", "served_s", "scored_s", "latency_s", "staleness_s", "correct"]


def check_scenario(scenario: Scenario, where: str) -> None:
    """Online training's cross-field checks."""
    system = scenario.system
    if scenario.run.mode != "full" or scenario.model.kind != "mlp":
        raise ConfigError(
            where, "run.mode", scenario.run.mode, "full, with an MLP (online training is scored by its predictions)"
        )
    for key in ("hardware", "system.prediction_hardware", "system.training_hardware", "system.server_hardware"):
        hardware = scenario.hardware if key == "hardware" else getattr(system, key.split(".")[1])
        if hardware is not None:
            check_bank(hardware.memory, "bank", system.bank, True, where, key)
    rt, stream = system.realtime, system.stream
    if rt is not None and rt.period > system.full.period and not rt.allow_slower:
        raise ConfigError(
            where,
            "system.realtime.period",
            format_quantity(rt.period, "time"),
            f"at most the full period ({format_quantity(system.full.period, 'time')}); real-time updates are the frequent "
            "ones (set system.realtime.allow_slower: true if you mean it)",
        )
    for key, setting in [("delta", system.delta), *([("realtime", rt)] if rt else [])]:
        try:
            resolve_rule(setting.select)
        except UpdateError as err:
            raise ConfigError(where, f"system.{key}.select", setting.select, str(err)) from None
    for key, setting in [("delta", system.delta), ("realtime", rt), ("full", system.full)]:
        if setting is None:
            continue
        try:
            codec_from_setting(setting.codec)
        except CodecError as err:
            raise ConfigError(where, f"system.{key}.codec", to_plain(setting.codec), f"a valid codec: {err}") from None
    names = [f"p{i}" for i in range(system.prediction_workers)] + [f"t{i}" for i in range(system.training_workers)]
    for i, window in enumerate(system.link_down):
        if window.worker not in names:
            raise ConfigError(where, f"system.link_down[{i}].worker", window.worker, f"one of the workers {', '.join(names)}")
        if window.end <= window.start:
            raise ConfigError(where, f"system.link_down[{i}].end", format_quantity(window.end, "time"), "a time after its start")
    if stream.arrivals == "trace":
        if stream.trace is None:
            raise ConfigError(where, "system.stream.trace", None, "a CSV file of arrival times (arrivals: trace)")
        try:
            read_arrivals(stream.trace)
        except ValueError as err:
            raise ConfigError(where, "system.stream.trace", stream.trace, str(err)) from None


class Online:
    """The stream, the workers and the server's handler; `run()` is the SimPy process. Training workers
    sit on NPUs 0 to T - 1, prediction workers on T to T + P - 1, the server on T + P."""

    check = staticmethod(check_scenario)

    @staticmethod
    def npu_names(spec) -> list[str]:
        return [f"t{i}" for i in range(spec.training_workers)] + [f"p{i}" for i in range(spec.prediction_workers)] + [SERVER]

    @staticmethod
    def check_samples(spec, train: int) -> None:
        """A stream draws from the whole training set: any size will do."""

    def __init__(self, scenario: Scenario, cluster: Cluster, model, data, rng: np.random.Generator, progress=None):
        spec = self.spec = scenario.system
        env, recorder = cluster.env, cluster.recorder
        self.cluster = cluster
        self.env, self.model, self.data = env, model, data
        self.seed = scenario.seed
        self.recorder, self.progress = recorder, progress
        stream_rng, init_rng = rng.spawn(2)
        self.stream = Stream(spec.stream, spec.duration, len(data.y_train), model.spec.classes, stream_rng)
        initial = model.init_params(init_rng)
        shapes = [[p.shape for p in layer] for layer in initial]
        flat = np.concatenate([flatten(layer) for layer in initial])
        self.n = flat.size
        self.codecs = {
            "delta": codec_from_setting(spec.delta.codec),
            "realtime": codec_from_setting(spec.realtime.codec if spec.realtime else None),
            "full": codec_from_setting(spec.full.codec),
        }
        cluster.loss_observers.append(self._on_loss)
        settings = Settings(spec.batch, spec.lr, spec.momentum, 64, spec.bank, spec.bank, spec.compute_precision)
        train_hw = spec.training_hardware or scenario.hardware
        serve_hw = spec.prediction_hardware or scenario.hardware
        delta = (spec.window, spec.delta, self.codecs["delta"], self.seed)
        self.trainers = [
            TrainingWorker(env, self._device(f"t{i}", train_hw), spec.bank, flat, shapes, model, settings, *delta, i)
            for i in range(spec.training_workers)
        ]
        serving = (model, spec.serve_batch, spec.compute_precision)
        self.predictors = [
            PredictionWorker(env, self._device(f"p{i}", serve_hw), spec.bank, flat, shapes, *serving)
            for i in range(spec.prediction_workers)
        ]
        self.server = cluster.add_server(
            spec.training_workers + spec.prediction_workers, SERVER, spec.server_hardware or scenario.hardware, self._handle
        )
        self.sbank = self.server.bank(spec.bank)
        self.master = flat.copy()
        self.master_layers = views(self.master, shapes)
        self.mirrors = {w.name: flat.copy() for w in self.workers}
        self.seq = dict.fromkeys(self.mirrors, 0)
        for window in spec.link_down:
            cluster.link_down(window.worker, window.start, window.end)
        self.sent = {k: [0, 0] for k in KINDS}  # messages, bytes
        self.lost = {k: [0, 0] for k in KINDS}
        self.deltas_applied = 0
        self.sends: list[simpy.Process] = []
        self.records: list[tuple] = []
        self.encodings = 0
        self.drained: simpy.Event | None = None
        self.delivered_deltas = 0

    @property
    def workers(self) -> list:
        return [*self.predictors, *self.trainers]

    def _device(self, name: str, hardware) -> Device:
        return self.cluster.add(self.npu_names(self.spec).index(name), name, hardware)

    # --- the run ----------------------------------------------------------------

    def run(self) -> Generator:
        env = self.env
        self.sbank.allocate("master", self.master)
        for name, mirror in self.mirrors.items():
            self.sbank.allocate(f"mirror {name}", mirror)
        x = self.data.x_train
        serving = [env.process(p.serve(x, self._answered)) for p in self.predictors]
        training = [env.process(t.train(x, self.spec.batch, self._send_delta, self._stepped)) for t in self.trainers]
        for w in self.workers:
            env.process(w.receive(self.codecs))
        updaters = [env.process(self._full())]
        if self.spec.realtime is not None:
            updaters.append(env.process(self._realtime()))
        yield simpy.AllOf(env, [env.process(self._arrivals()), env.process(self._labels())])
        for queue in [*(t.samples for t in self.trainers), *(p.requests for p in self.predictors)]:
            queue.put(None)
        yield simpy.AllOf(env, [*training, *serving, *updaters])
        yield simpy.AllOf(env, self.sends)
        self.delivered_deltas = sum(p.value is not None and p.value.tag == "delta" for p in self.sends)
        if self.deltas_applied < self.delivered_deltas:  # the server finishes what it received
            self.drained = env.event()
            yield self.drained

    def _arrivals(self) -> Generator:
        """Each arrival becomes a request to a prediction worker."""
        stream, env = self.stream, self.env
        for i, t in enumerate(stream.times):
            yield env.timeout(t - env.now)
            self.predictors[i % len(self.predictors)].requests.put((i, int(stream.samples[i]), t))

    def _labels(self) -> Generator:
        """Each label, `label_delay` after its arrival, goes to a training worker."""
        stream, env, delay = self.stream, self.env, self.spec.stream.label_delay
        y = self.data.y_train
        for i, t in enumerate(stream.times):
            yield env.timeout(t + delay - env.now)
            sample = int(stream.samples[i])
            self.trainers[i % len(self.trainers)].samples.put((sample, stream.label(i, int(y[sample]))))
            if self.progress and ((i + 1) % 256 == 0 or i + 1 == len(stream)):
                self.progress(i + 1, len(stream))

    def _answered(self, worker: PredictionWorker, batch, predicted: np.ndarray) -> None:
        """Score each answer against its label (prequential), when both exist."""
        now, delay, y = self.env.now, self.spec.stream.label_delay, self.data.y_train
        staleness = now - worker.synced.master_s
        for (i, sample, arrived), guess in zip(batch, predicted, strict=True):
            label = self.stream.label(i, int(y[sample]))
            scored = max(now, arrived + delay)
            self.records.append((i, worker.name, arrived, now, scored, now - arrived, staleness, int(guess == label)))

    def _stepped(self, worker: TrainingWorker, loss: float, seconds: float) -> None:
        self.recorder.metric(self.env.now, worker.steps, "step_time_s", seconds)
        self.recorder.metric(self.env.now, worker.steps, "loss", loss)

    # --- messages -----------------------------------------------------------------

    def _send(self, src: Device, dst: Device, buf: np.ndarray, tag: str, **meta) -> None:
        self.sent[tag][0] += 1
        self.sent[tag][1] += buf.nbytes
        self.sends.append(self.env.process(self.cluster.send(src, dst, buf, tag, **meta)))

    def _send_delta(self, worker: TrainingWorker, buf: np.ndarray) -> None:
        self._send(worker.device, self.server, buf, "delta", worker=worker.name)

    def _on_loss(self, message: Message, lost_s: float) -> None:
        self.lost[message.tag][0] += 1
        self.lost[message.tag][1] += message.nbytes

    # --- the server -----------------------------------------------------------------

    def _handle(self, server: Server, message: Message) -> Generator:
        """Add a training worker's change to the master."""
        self.recorder.metric(self.env.now, self.deltas_applied, "server_queue", len(server.nic.inbox.items))
        _, idx, values = unpack(message.payload, self.codecs["delta"])
        yield from self.sbank.write(message.nbytes, f"land {message.meta['worker']}")
        yield from server.vector.elementwise(idx.size, DECOMPRESS_OPS + 1, "apply delta")
        self.master[idx] += values
        self.deltas_applied += 1
        if self.drained is not None and self.deltas_applied == self.delivered_deltas:
            self.drained.succeed()

    def _realtime(self) -> Generator:
        """Process: every real-time period, each worker gets the weights where the master moved
        away from its mirror (by the real-time rule)."""
        rt, codec, server = self.spec.realtime, self.codecs["realtime"], self.server
        change = np.empty(self.n, np.float32)
        for tick in self._ticks(rt.period):
            yield tick
            for w in self.workers:
                mirror = self.mirrors[w.name]
                yield from server.vector.elementwise(self.n, DELTA_OPS, f"realtime select {w.name}")
                subtract(self.master, mirror, change)
                idx = select(change, rt)
                yield from server.vector.elementwise(idx.size, COMPRESS_OPS, f"realtime encode {w.name}")
                buf = pack(idx, self.master[idx], self.n, codec, seed=self.seed, stream=self._stream_id())
                mirror[idx] = unpack(buf, codec)[2]
                self._update(w, buf, "realtime")

    def _full(self) -> Generator:
        """Process: every full period, each worker gets every weight."""
        codec, server = self.codecs["full"], self.server
        every = np.arange(self.n, dtype=np.uint32)
        for tick in self._ticks(self.spec.full.period):
            yield tick
            yield from server.vector.elementwise(self.n, COMPRESS_OPS, "full encode")
            buf = pack(every, self.master, self.n, codec, seed=self.seed, stream=self._stream_id())
            values = unpack(buf, codec)[2]
            self._evaluate()
            for w in self.workers:
                self.mirrors[w.name][:] = values
                self._update(w, buf, "full")

    def _ticks(self, period: float):
        """The timeouts up to each multiple of `period` within the stream."""
        k = 1
        while k * period <= self.spec.duration + 1e-12:
            yield self.env.timeout(max(0.0, k * period - self.env.now))
            k += 1

    def _stream_id(self) -> int:
        """A fresh counter-RNG stream for each encoding the server makes (odd: the workers' are even)."""
        self.encodings += 1
        return 2 * self.encodings + 1

    def _update(self, worker, buf: np.ndarray, tag: str) -> None:
        seq = self.seq[worker.name]
        self.seq[worker.name] += 1
        self._send(self.server, worker.device, buf, tag, seq=seq, built_s=self.env.now)

    def _evaluate(self) -> None:
        """The master's test accuracy under the labelling function now."""
        labels = self.stream.labels_at(self.env.now, self.data.y_test)
        loss, acc = self.model.evaluate(self.master_layers, self.data.x_test, labels)
        self.recorder.metric(self.env.now, 0, "test_loss", loss)
        self.recorder.metric(self.env.now, 0, "test_accuracy", acc)

    # --- results --------------------------------------------------------------------

    @property
    def predictions(self) -> pd.DataFrame:
        """One row per answered request, in answer order."""
        return pd.DataFrame(self.records, columns=PREDICTION_COLUMNS)

    def final_params(self) -> list[tuple[np.ndarray, ...]]:
        """The server's master copy as per-layer parameter tuples."""
        return [tuple(p.copy() for p in layer) for layer in self.master_layers]
