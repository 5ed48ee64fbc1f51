"""Compressed-parameter training with a parameter server (mechanism M1 across a cluster).

Workers w0 .. w{N-1} and a server, each a device on the cluster's fabric (NPUs 0 .. N). Each
worker's controller cycles every step (`training.LocalTrainer` for 1-3):

1. read the compressed parameters from its parameter bank;
2. decompress them on the vector unit into the working bank;
3. forward, backward and update over its local batch (its shard of the data);
4. compress, layer by layer, its updated parameters (update: params) or its change
   this step (update: delta) with the uplink codec, after adding what the codec lost
   last time if error feedback is on;
5. send one message per layer through its NIC to the server;
6. the server lands each upload in its working bank; it decodes and aggregates, keeps
   the master copy in fp32, re-encodes with the downlink codec and sends it back;
7. the worker writes what it receives into its parameter bank: as is when the downlink
   codec is the bank's own codec, else decoded and re-encoded at the bank's precision.

Server modes:

- sync: a round ends when all N workers' uploads are in; the master becomes their mean
  (params) or moves by their mean (delta); every worker gets the new master.
- async (update: delta): each upload is applied on arrival (master += delta) and the
  worker gets the current master back; its staleness (master versions applied since
  the version it trained from) is recorded. A worker may run at most `max_staleness`
  steps ahead of the slowest: the server holds its reply until then.

- none: no server. Each step, once every worker has its update, the workers all-reduce
  it, layer by layer, with the collective library (`system.collective`: ring by default;
  every message is encoded with the uplink codec, `hwsim.collectives.executor`), and each
  worker takes the mean (params) or adds it to its starting weights (delta) and stores
  the result in its bank. Every worker ends the step with the same weights.

With `overlap` (sync), a worker does not wait for round s before step s+1: it trains
on its own weights and, once round s is back, continues from the master plus its own
change since (one round of delay, communication hidden behind compute).

Each worker step is split into phases (seconds, in the trace's `phases` table):
decompress (1-2), compute (3), compress (4, with overlap also merging the reply and
storing), send (5 until the last upload is delivered), wait (until the server starts
this worker's aggregation, plus any staleness hold), aggregate (the server's work on
this round or update), receive (the reply's transfer and writing it into the bank).
They add up to the step time.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import simpy

from hwsim.codecs import Codec, CodecError, ErrorFeedback, codec_from_setting, make_codec
from hwsim.collectives import CollectiveError, Send, plan, run
from hwsim.collectives.schedule import collective
from hwsim.config.fields import to_plain
from hwsim.config.schema import Scenario
from hwsim.errors import ConfigError
from hwsim.hardware import Message, Server
from hwsim.kernels.aggregate import weighted_sum
from hwsim.network import Cluster
from hwsim.systems.checks import check_batch, check_local_training
from hwsim.systems.storage import Stored, bank_codec, encode
from hwsim.systems.training import COMPRESS_OPS, DECOMPRESS_OPS, LocalTrainer, Settings, flatten, unflatten
from hwsim.workloads.data import Dataset

Progress = Callable[[int, int], None]
PHASES = ("decompress", "compute", "compress", "send", "wait", "aggregate", "receive")
SERVER = "server"


def shard(n: int, worker: int, workers: int) -> np.ndarray:
    """Training-set indices of `worker`: every `workers`-th sample from its own offset."""
    return np.arange(worker, n, workers)


def stream_id(step: int, device: int, layer: int, downlink: bool) -> int:
    """The counter-RNG stream of one encoding (unique per step, device, layer, direction)."""
    return ((step * 4096 + device) * 256 + layer) * 2 + int(downlink)


def check_scenario(scenario: Scenario, where: str) -> None:
    """The compressed parameter server's cross-field checks (besides local training's)."""
    check_local_training(scenario, where)
    system = scenario.system
    for key in ("uplink", "downlink"):
        try:
            codec_from_setting(getattr(system, key))
        except CodecError as err:
            raise ConfigError(where, f"system.{key}", to_plain(getattr(system, key)), f"a valid codec: {err}") from None
    if system.server == "async" and system.update != "delta":
        raise ConfigError(
            where,
            "system.update",
            system.update,
            "delta with server: async (an asynchronous server applies each change as it arrives)",
        )
    if system.server == "none":
        _check_serverless(scenario, where)
    if system.overlap and system.server != "sync":
        raise ConfigError(where, "system.overlap", True, "false with server: async (async workers never wait for a round)")
    for key in system.worker_hardware or {}:
        if not (key.isdigit() and int(key) < system.workers):
            raise ConfigError(where, f"system.worker_hardware.{key}", key, f"a worker index from 0 to {system.workers - 1}")
    for name, hardware in [
        ("server_hardware", system.server_hardware),
        *((f"worker_hardware.{k}", h) for k, h in (system.worker_hardware or {}).items()),
    ]:
        if hardware is None:
            continue
        for key in ("param_bank", "work_bank"):
            bank = getattr(system, key)
            if bank not in hardware.memory:
                raise ConfigError(where, f"system.{name}.memory", bank, f"a bank named {bank} (system.{key})")


def _check_serverless(scenario: Scenario, where: str) -> None:
    """`server: none`: no downlink, no server hardware, no error feedback; an all-reduce that runs on
    the workers."""
    system = scenario.system
    refused = [
        ("downlink", system.downlink is not None, to_plain(system.downlink), "null with server: none (nothing is sent down)"),
        ("server_hardware", system.server_hardware is not None, "set", "null with server: none"),
        ("error_feedback", system.error_feedback, True, "false with server: none (a rank re-encodes partial sums)"),
        ("overlap", system.overlap, True, "false with server: none"),
        (
            "collective.codec",
            system.collective.codec is not None,
            to_plain(system.collective.codec),
            "null: the uplink codec encodes the all-reduce",
        ),
        ("collective.hierarchical", system.collective.hierarchical, True, "false: a flat all-reduce over the workers"),
    ]
    for key, bad, value, expected in refused:
        if bad:
            raise ConfigError(where, f"system.{key}", value, expected)
    name = system.collective.algorithm
    if not isinstance(name, str):
        raise ConfigError(where, "system.collective.algorithm", to_plain(name), "one algorithm name")
    try:
        plan("all_reduce", name, system.workers)
    except CollectiveError as err:
        raise ConfigError(where, "system.collective.algorithm", name, str(err)) from None


@dataclass
class Round:
    """What the server knows about one round (sync) or one worker's update (async)."""

    uploads: dict[tuple[int, int], Message] = field(default_factory=dict)
    agg_start: float = 0.0
    agg_end: float = 0.0
    enc_start: float = 0.0
    enc_end: float = 0.0


class CompressedPs:
    """N worker controllers and the server's handler; `run()` is the SimPy process. Workers sit on NPUs
    0 to N - 1, the server on NPU N."""

    check = staticmethod(check_scenario)

    @staticmethod
    def npu_names(spec) -> list[str]:
        return [f"w{i}" for i in range(spec.workers)] + ([] if spec.server == "none" else [SERVER])

    @staticmethod
    def check_samples(spec, train: int) -> None:
        check_batch(spec, train, spec.workers)

    def __init__(
        self,
        scenario: Scenario,
        cluster: Cluster,
        model,
        data: Dataset | None,
        rng: np.random.Generator,
        progress: Progress | None = None,
    ):
        spec = self.spec = scenario.system
        env = cluster.env
        recorder = cluster.recorder
        self.cluster = cluster
        self.env, self.model, self.data = env, model, data
        self.seed = scenario.seed
        self.eval_every = scenario.run.eval_every
        self.recorder = recorder
        self.progress = progress
        self.math = data is not None
        self.n_workers = spec.workers
        self.up: Codec = codec_from_setting(spec.uplink)
        self.down: Codec = codec_from_setting(spec.downlink)
        self.ops = model.layer_ops(spec.batch)
        self.names = model.layer_names
        self.sizes = [op.params for op in self.ops]

        initial = model.init_params(rng) if self.math else None
        worker_rngs = rng.spawn(spec.workers)
        self.trainers: list[LocalTrainer] = []
        for i in range(spec.workers):
            hardware = (spec.worker_hardware or {}).get(str(i), scenario.hardware)
            device = cluster.add(i, f"w{i}", hardware)
            x = y = None
            if self.math:
                idx = shard(len(data.y_train), i, spec.workers)
                x, y = data.x_train[idx], data.y_train[idx]
            self.trainers.append(LocalTrainer(device, model, Settings.of(spec), x, y, worker_rngs[i]))
        self.serverless = spec.server == "none"
        self.server = self.sbank = None
        if not self.serverless:
            self.server = cluster.add_server(spec.workers, SERVER, spec.server_hardware or scenario.hardware, self._handle)
            self.sbank = self.server.bank(spec.work_bank)
        self.transport = cluster.transport("allreduce")
        self.reply = cluster.transport("down", in_order=True)
        self.pending: dict[int, list] = {}  # server: none, per step: [workers still to come, done event, updates]
        self.initial = initial
        self.feedback = [[ErrorFeedback(self.up) for _ in self.ops] for _ in range(spec.workers)]

        # server state
        self.master: list[np.ndarray | None] = [flatten(p) if self.math else None for p in (initial or self.ops)]
        self.rounds: dict[int, Round] = {}
        self.version = 0  # master updates applied (async)
        self.base_version = [0] * spec.workers  # the version each worker's weights came from
        self.done = [0] * spec.workers  # steps each worker has had applied (async)
        self.held: dict[int, Round] = {}  # async: workers whose reply waits for the staleness bound
        self.replies = [simpy.Store(env) for _ in range(spec.workers)]
        self.bytes_encoded = {"up": 0, "down": 0}

    # --- the run ----------------------------------------------------------------

    def run(self) -> Generator:
        for li, op in enumerate(self.ops if not self.serverless else ()):
            data = self.master[li]
            self.sbank.allocate(f"master {self.names[li]}", data, nbytes=None if self.math else op.params * 4)
        for trainer in self.trainers:
            trainer.store_initial(self.initial)
        workers = [self.env.process(self._worker(i)) for i in range(self.n_workers)]
        yield simpy.AllOf(self.env, workers)

    def summary(self, trace) -> dict:
        """Bytes up and down (sent, delivered, and what fp32 messages would have been)."""
        messages = trace.messages
        fp32 = make_codec("fp32")
        per_step = sum(fp32.wire_bytes(n) for n in self.sizes)
        exchanges = self.n_workers * self.spec.steps
        delivered = {tag: int(messages.bytes[messages.tag == tag].sum()) for tag in ("up", "down", "allreduce")}
        baseline = 2 * per_step * exchanges
        if self.serverless:  # the same all-reduce's messages in fp32; its bytes count as up
            delivered["up"] = delivered["allreduce"]
            baseline = self.spec.steps * sum(
                _allreduce_fp32_bytes(self.spec.collective.algorithm, self.n_workers, n) for n in self.sizes
            )
        return {
            "network": {
                "up_bytes": delivered["up"],
                "down_bytes": delivered["down"],
                "encoded_up_bytes": self.bytes_encoded["up"],
                "encoded_down_bytes": self.bytes_encoded["down"],
                "fp32_bytes": baseline,
                "fraction_of_fp32": (delivered["up"] + delivered["down"]) / baseline,
                "uplink": self.up.name,
                "downlink": self.down.name if not self.serverless else "none",
            }
        }

    def final_params(self) -> list[tuple[np.ndarray, ...]]:
        """The server's master copy as per-layer parameter tuples (full mode); server: none, worker 0's
        stored parameters (every worker holds the same)."""
        if self.serverless:
            return self.trainers[0].stored_params()
        shapes = self.trainers[0].shapes
        return [unflatten(self.master[li], shapes[li]) for li in range(len(self.ops))]

    def _worker(self, i: int) -> Generator:
        spec, tr, env = self.spec, self.trainers[i], self.env
        name = tr.device.name
        inbox_round = None  # overlap: the round whose reply is still to merge
        for step in range(1, spec.steps + 1):
            t0 = env.now
            weights = yield from tr.load()
            t1 = env.now
            start = [flatten(w).copy() for w in weights] if self.math else None
            self._hold_start(tr, start)
            loss = yield from tr.train(weights)
            t2 = env.now
            phases = {"decompress": t1 - t0, "compute": t2 - t1}
            if spec.overlap:
                yield from self._overlap_step(i, step, weights, start, inbox_round, phases)
                inbox_round = step
            elif self.serverless:
                yield from self._allreduce_step(i, step, weights, start, phases)
            else:
                yield from self._exchange(i, step, weights, start, phases)
            for phase in PHASES:
                self.recorder.phase(name, step, phase, phases.get(phase, 0.0), env.now)
            self.recorder.metric(env.now, step, "step_time_s", env.now - t0)
            if self.math:
                self.recorder.metric(env.now, step, "loss", loss)
            if self.progress and i == 0:
                self.progress(step, spec.steps)
        if spec.overlap and inbox_round is not None:
            t = env.now
            reply = yield from self._take_reply(i)
            yield from self._store_reply(tr, reply)
            self.recorder.phase(name, spec.steps, "receive", env.now - t, env.now)  # the last round's drain

    def _exchange(self, i: int, step: int, weights, start, phases: dict) -> Generator:
        """Steps 4-7 without overlap: send, wait for the server, store the reply."""
        tr, env = self.trainers[i], self.env
        t2 = env.now
        payloads = yield from self._compress(i, step, weights, start)
        tr.free_weights()
        self._free_start(tr)
        t3 = env.now
        yield from self._send(i, step, payloads)
        t4 = env.now
        reply = yield from self._take_reply(i)
        yield from self._store_reply(tr, reply)
        info = reply[0].meta
        phases.update(
            compress=t3 - t2,
            send=t4 - t3,
            wait=(info["agg_start"] - t4) + (info["enc_start"] - info["agg_end"]),
            aggregate=(info["agg_end"] - info["agg_start"]) + (info["enc_end"] - info["enc_start"]),
            receive=env.now - info["enc_end"],
        )

    def _allreduce_step(self, i: int, step: int, weights, start, phases: dict) -> Generator:
        """Server: none. Hand this worker's update (float32, per layer) to the step's all-reduce, which the
        last worker to get here starts; then weights = the mean (params) or start + the mean (delta),
        stored into the bank."""
        tr, env = self.trainers[i], self.env
        t2 = env.now
        update = None
        if self.math:
            update = [flatten(w) - start[li] if self.spec.update == "delta" else flatten(w) for li, w in enumerate(weights)]
        entry = self.pending.setdefault(step, [self.n_workers, env.event(), [None] * self.n_workers, 0.0])
        entry[0] -= 1
        entry[2][i] = update
        if entry[0] == 0:
            entry[3] = env.now
            env.process(self._allreduce(step, entry))
        yield entry[1]
        t3 = env.now
        for li, n in enumerate(self.sizes):
            yield from tr.device.vector.elementwise(n, 1 + (self.spec.update == "delta"), f"mean {self.names[li]}")
            if self.math:
                mean = entry[2][i][li] * np.float32(1.0 / self.n_workers)
                new = start[li] + mean if self.spec.update == "delta" else mean
                for dst, src in zip(weights[li], unflatten(new, tr.shapes[li]), strict=True):
                    dst[...] = src
        t4 = env.now
        yield from tr.store(weights)
        self._free_start(tr)
        if i == 0 and self.math and (step % self.eval_every == 0 or step == self.spec.steps):
            loss, acc = self.model.evaluate(self.final_params(), self.data.x_test, self.data.y_test)
            self.recorder.metric(env.now, step, "test_loss", loss)
            self.recorder.metric(env.now, step, "test_accuracy", acc)
        phases.update(wait=entry[3] - t2, send=t3 - entry[3], aggregate=t4 - t3, receive=env.now - t4)

    def _allreduce(self, step: int, entry: list) -> Generator:
        """The step's all-reduce of every layer's update over the workers, the layers side by side."""
        c = self.spec.collective
        reductions = [
            self.env.process(
                collective(
                    self.env,
                    self.cluster.fabric,
                    "all_reduce",
                    c.algorithm,
                    n * 4,
                    chunks=c.chunks,
                    in_flight=c.in_flight,
                    data=[updates[li] for updates in entry[2]] if self.math else None,
                    devices=[tr.device for tr in self.trainers],
                    npus=self.n_workers,
                    codec=self.up,
                    seed=self.seed,
                    stream=stream_id(step, 0, li, downlink=False),
                    transport=self.transport,
                    reduction_rate=c.reduction_rate,
                )
            )
            for li, n in enumerate(self.sizes)
        ]
        yield simpy.AllOf(self.env, reductions)
        for li, done in enumerate(reductions):
            self.bytes_encoded["up"] += sum(done.value.bytes_sent)
            name = f"all-reduce {self.names[li]} (step {step})"
            self.recorder.collective(name, "all_reduce", str(c.algorithm), self.sizes[li] * 4, entry[3], self.env.now)
        del self.pending[step]
        entry[1].succeed()

    def _overlap_step(self, i: int, step: int, weights, start, waiting: int | None, phases: dict) -> Generator:
        """Steps 4-7 with overlap: merge the previous round's reply, store, send in the background."""
        tr, env = self.trainers[i], self.env
        t2 = env.now
        if waiting is not None:
            reply = yield from self._take_reply(i)
            t3 = env.now
            phases["wait"] = t3 - t2
            t2 = t3
            yield from self._merge_reply(tr, reply, weights, start)
        payloads = yield from self._compress(i, step, weights, start)
        yield from tr.store(weights)
        self._free_start(tr)
        phases["compress"] = env.now - t2
        env.process(self._send(i, step, payloads))

    # --- worker pieces ----------------------------------------------------------

    def _hold_start(self, tr: LocalTrainer, start) -> None:
        """Keep the step's starting weights (fp32) when the change is needed."""
        if self.spec.update == "delta" or self.spec.overlap:
            tr.hold(tr.wbank, "start", tuple(start) if start else None, sum(self.sizes))

    def _free_start(self, tr: LocalTrainer) -> None:
        if tr.wbank.holds("start"):
            tr.wbank.free("start")

    def _compress(self, i: int, step: int, weights, start) -> Generator:
        """Encode each layer's upload with the uplink codec; returns the buffers (sizes without math)."""
        tr = self.trainers[i]
        payloads = []
        for li, n in enumerate(self.sizes):
            ops = COMPRESS_OPS + (self.spec.update == "delta") + 2 * self.spec.error_feedback
            yield from tr.device.vector.elementwise(n, ops, f"compress {self.names[li]} uplink")
            if not self.math:
                payloads.append(self.up.wire_bytes(n))
                continue
            x = flatten(weights[li])
            if self.spec.update == "delta":
                x = x - start[li]
            key = stream_id(step, i, li, downlink=False)
            codec = self.feedback[i][li] if self.spec.error_feedback else self.up
            buf = codec.encode(x, seed=self.seed, stream=key)
            payloads.append(buf)
        return payloads

    def _send(self, i: int, step: int, payloads) -> Generator:
        src = self.trainers[i].device
        sends = []
        for li, payload in enumerate(payloads):
            self.bytes_encoded["up"] += _nbytes(payload)
            sends.append(
                self.env.process(self.cluster.send(src, self.server, _wire(payload), "up", worker=i, step=step, layer=li))
            )
        yield simpy.AllOf(self.env, sends)

    def _take_reply(self, i: int) -> Generator:
        """Wait for all layers of the next reply; returns the messages by layer."""
        layers = {}
        while len(layers) < len(self.ops):
            message = yield self.trainers[i].device.nic.inbox.get()
            layers[message.meta["layer"]] = message
        return [layers[li] for li in range(len(self.ops))]

    def _store_reply(self, tr: LocalTrainer, reply: list[Message]) -> Generator:
        """Write the received master into the parameter bank (as is when the codecs match)."""
        bank = bank_codec(tr.pbank.precision, self.spec.block)
        same = bank.name == self.down.name and bank.params() == self.down.params()
        for li, message in enumerate(reply):
            n = self.sizes[li]
            if same:
                stored = Stored(bank, (n,), message.payload) if self.math else None
            else:
                yield from tr.device.vector.elementwise(n, DECOMPRESS_OPS + COMPRESS_OPS, f"recode {self.names[li]}")
                stored = None
                if self.math:
                    stored = encode(self.down.decode(message.payload), tr.pbank.precision, self.spec.block)
            yield from tr.put_stored(li, stored)

    def _merge_reply(self, tr: LocalTrainer, reply: list[Message], weights, start) -> Generator:
        """Overlap: weights = received master + this worker's change since its last upload."""
        for li, message in enumerate(reply):
            yield from tr.device.vector.elementwise(self.sizes[li], DECOMPRESS_OPS + 1, f"merge {self.names[li]}")
            if self.math:
                master = self.down.decode(message.payload)
                merged = master + (flatten(weights[li]) - start[li])
                for dst, src in zip(weights[li], unflatten(merged, tr.shapes[li]), strict=True):
                    dst[...] = src
                start[li] = master  # what this step's change is measured from now

    # --- the server ---------------------------------------------------------------

    def _handle(self, server: Server, message: Message) -> Generator:
        """Land one upload; aggregate when a round (sync) or a worker's update (async) is complete."""
        worker, step, layer = message.meta["worker"], message.meta["step"], message.meta["layer"]
        yield from self.sbank.write(message.nbytes, f"land w{worker} {self.names[layer]}")
        self.sbank.allocate(f"up w{worker} {self.names[layer]}", nbytes=message.nbytes)
        key = step if self.spec.server == "sync" else (worker, step)
        rnd = self.rounds.setdefault(key, Round())
        rnd.uploads[(worker, layer)] = message
        expected = len(self.ops) * (self.n_workers if self.spec.server == "sync" else 1)
        if len(rnd.uploads) < expected:
            return
        del self.rounds[key]
        if self.spec.server == "sync":
            yield from self._aggregate(step, rnd, list(range(self.n_workers)))
            payloads = yield from self._encode_master(step, self.n_workers, rnd)
            self._broadcast_reply(step, payloads, rnd)
            return
        yield from self._aggregate(step, rnd, [worker])
        self.recorder.metric(self.env.now, step, "staleness", self.version - 1 - self.base_version[worker])
        self.done[worker] = step
        self.held[worker] = rnd
        for w in sorted(self.held):
            if self.done[w] - min(self.done) <= self.spec.max_staleness:
                held = self.held.pop(w)
                payloads = yield from self._encode_master(self.done[w], self.n_workers + w, held)
                self._send_reply(w, self.done[w], payloads, held)

    def _aggregate(self, step: int, rnd: Round, workers: list[int]) -> Generator:
        """Decode the uploads of `workers` and move the master: to their mean (params) or by
        their mean change (delta); async applies one worker's change as it is."""
        rnd.agg_start = self.env.now
        for li, n in enumerate(self.sizes):
            yield from self.server.vector.elementwise(n * len(workers), DECOMPRESS_OPS + 1, f"aggregate {self.names[li]}")
            if self.math:
                decoded = np.stack([self.up.decode(rnd.uploads[(w, li)].payload) for w in workers])
                mean = np.empty(n, np.float32)
                weighted_sum(decoded, np.full(len(workers), 1.0 / len(workers)), mean)
                self.master[li] = mean if self.spec.update == "params" else self.master[li] + mean
                self.sbank.allocate(f"master {self.names[li]}", self.master[li])
            for w in workers:
                self.sbank.free(f"up w{w} {self.names[li]}")
        self.version += 1
        rnd.agg_end = self.env.now
        if self.math:
            self._maybe_evaluate(step)

    def _encode_master(self, step: int, device: int, rnd: Round) -> Generator:
        """Encode the master with the downlink codec; returns the buffers (sizes without math)."""
        rnd.enc_start = self.env.now
        payloads = []
        for li, n in enumerate(self.sizes):
            yield from self.server.vector.elementwise(n, COMPRESS_OPS, f"encode {self.names[li]} downlink")
            if self.math:
                payloads.append(
                    self.down.encode(self.master[li], seed=self.seed, stream=stream_id(step, device, li, downlink=True))
                )
            else:
                payloads.append(self.down.wire_bytes(n))
        rnd.enc_end = self.env.now
        return payloads

    def _broadcast_reply(self, step: int, payloads, rnd: Round) -> None:
        """Sync: the encoded master to every worker as one broadcast per layer (`system.reply`: direct or
        ring), from the server (rank 0) over the workers; each worker's reply lands in its inbox when its
        part of the broadcast is done."""
        self.base_version = [self.version] * self.n_workers
        times = {"agg_start": rnd.agg_start, "agg_end": rnd.agg_end, "enc_start": rnd.enc_start, "enc_end": rnd.enc_end}
        group = [self.n_workers, *range(self.n_workers)]
        p = plan("broadcast", self.spec.reply, len(group))
        for li, payload in enumerate(payloads):
            self.bytes_encoded["down"] += _nbytes(payload) * self.n_workers
            message = {"sent": self.env.now, "payload": _wire(payload), "layer": li, "step": step, **times}
            land = functools.partial(self._land_reply, message)
            label = f"reply {self.names[li]}"
            self.env.process(
                run(self.env, self.cluster.fabric, p, group, _nbytes(payload), label=label, transport=self.reply, finished=land)
            )

    def _land_reply(self, reply: dict, rank: int) -> None:
        if rank == 0:  # the server
            return
        worker = self.trainers[rank - 1].device
        meta = {k: v for k, v in reply.items() if k not in ("sent", "payload")}
        self.env.process(
            self._put(worker, Message(SERVER + ".nic", worker.nic.name, "down", reply["payload"], reply["sent"], meta))
        )

    @staticmethod
    def _put(device, message: Message) -> Generator:
        yield device.nic.inbox.put(message)

    def _send_reply(self, w: int, step: int, payloads, rnd: Round) -> None:
        """Send the encoded master to worker `w` in the background; its version is now the worker's base."""
        self.base_version[w] = self.version
        times = {"agg_start": rnd.agg_start, "agg_end": rnd.agg_end, "enc_start": rnd.enc_start, "enc_end": rnd.enc_end}
        dst = self.trainers[w].device
        for li, payload in enumerate(payloads):
            self.bytes_encoded["down"] += _nbytes(payload)
            self.env.process(self.cluster.send(self.server, dst, _wire(payload), "down", layer=li, step=step, **times))

    def _maybe_evaluate(self, step: int) -> None:
        """Test the master after every `eval_every` rounds (async: N updates make a round) and at the end."""
        per_round = 1 if self.spec.server == "sync" else self.n_workers
        last = self.version == self.spec.steps * per_round
        if self.version % (self.eval_every * per_round) and not last:
            return
        loss, acc = self.model.evaluate(self.final_params(), self.data.x_test, self.data.y_test)
        self.recorder.metric(self.env.now, step, "test_loss", loss)
        self.recorder.metric(self.env.now, step, "test_accuracy", acc)


def _allreduce_fp32_bytes(algorithm: str, n: int, elements: int) -> int:
    """The bytes every rank together sends in an all-reduce of `elements` float32 values over n ranks."""
    fp32, p = make_codec("fp32"), plan("all_reduce", algorithm, n)
    edge = [(b * elements) // p.blocks for b in range(p.blocks + 1)]
    return sum(
        fp32.wire_bytes(sum(edge[b + 1] - edge[b] for b in step.blocks))
        for steps in p.steps
        for step in steps
        if isinstance(step, Send)
    )


def _nbytes(payload) -> int:
    return payload if isinstance(payload, int) else int(payload.nbytes)


def _wire(payload):
    """What a message carries: the real buffer, or (timing-only) a placeholder of its size."""
    return payload if not isinstance(payload, int) else np.empty(payload, np.uint8)
