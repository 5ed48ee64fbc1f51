"""The two kinds of worker of online training (mechanism M3), each a device on the switch.

Both hold their model as one flat float32 vector in their bank (`model`), seen layer by
layer through views. A lock (one holder at a time) keeps a training step or a batch of
predictions from seeing an update half applied: updates from the server wait for it,
and so does the math.

- `TrainingWorker`: trains on the labelled samples it is given (batches of `batch`,
  real SGD through `LocalTrainer`); every `window` steps it sends its change since its
  snapshot (selected and encoded by the delta settings) and moves the snapshot by what
  it sent. An update from the server sets snapshot[i] = v and moves model[i] by
  v - snapshot[i], so changes not yet sent are kept.
- `PredictionWorker`: only serves. Requests queue; it answers up to `serve_batch` at a
  time with one forward pass on its units. Its weights change only when an update
  from the server sets them.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np
import simpy

from hwsim.codecs import Codec
from hwsim.codecs.indexed import pack, unpack
from hwsim.hardware import Device, Message
from hwsim.kernels.sparse import subtract
from hwsim.policies.updates import select
from hwsim.systems.training import COMPRESS_OPS, DECOMPRESS_OPS, LocalTrainer, Settings, unflatten

DELTA_OPS = 2  # subtract, compare
APPLY_OPS = DECOMPRESS_OPS + 1  # decode, write (training workers: + move the model)


@dataclass
class Synced:
    """What a worker knows of the master: the time of the newest master it reflects, the
    next update number it expects, and whether one since its last full update was lost."""

    master_s: float = 0.0
    expected: int = 0
    gap: bool = False

    def receive(self, message: Message) -> None:
        seq = message.meta["seq"]
        if message.tag == "full":
            self.gap = False
        elif seq != self.expected:
            self.gap = True
        self.expected = seq + 1
        if not self.gap:
            self.master_s = message.meta["built_s"]


class Worker:
    """A device holding a flat model copy, and the lock its math and its updates share."""

    apply_ops = APPLY_OPS
    """Vector-unit element operations per weight an update carries."""

    def __init__(self, env: simpy.Environment, device: Device, bank: str, initial: np.ndarray, shapes):
        self.env, self.device = env, device
        self.name = device.name
        self.bank = device.bank(bank)
        self.model = initial.copy()
        self.layers = views(self.model, shapes)
        self.bank.allocate("model", self.model)
        self.lock = simpy.Resource(env, capacity=1)
        self.synced = Synced()
        self.applied = {"realtime": 0, "full": 0}

    def receive(self, codecs: dict[str, Codec]) -> Generator:
        """Process: apply each update from the server as it arrives (`codecs` by message tag)."""
        while True:
            message = yield self.device.nic.inbox.get()
            _, idx, values = unpack(message.payload, codecs[message.tag])
            with self.lock.request() as turn:
                yield turn
                yield from self.device.vector.elementwise(idx.size, self.apply_ops, f"apply {message.tag}")
                yield from self.bank.write(idx.size * 4, f"write {message.tag}")
                self.apply(idx, values)
            self.synced.receive(message)
            self.applied[message.tag] += 1

    def apply(self, idx: np.ndarray, values: np.ndarray) -> None:
        self.model[idx] = values


class PredictionWorker(Worker):
    """Serves requests with its model copy; never trains."""

    def __init__(self, env, device, bank, initial, shapes, model, serve_batch: int, precision: str):
        super().__init__(env, device, bank, initial, shapes)
        self.net = model
        self.serve_batch = serve_batch
        self.precision = precision
        self.requests = simpy.Store(env)

    def serve(self, x_all: np.ndarray, on_answer) -> Generator:
        """Process: answer queued requests (arrival index, arrival time) until a None arrives;
        `on_answer(requests, predictions)` gets each batch."""
        while True:
            first = yield self.requests.get()
            if first is None:
                return
            batch = [first]
            while len(batch) < self.serve_batch and self.requests.items and self.requests.items[0] is not None:
                batch.append((yield self.requests.get()))
            with self.lock.request() as turn:
                yield turn
                predicted = yield from self._forward(x_all[[r[1] for r in batch]])
            on_answer(self, batch, predicted)

    def _forward(self, x: np.ndarray) -> Generator:
        net, b = self.net, len(x)
        self.bank.allocate("requests", x)
        for li, op in enumerate(net.layer_ops(b)):
            for g in op.forward:
                yield from self.device.systolic.gemm(g.m, g.n, g.k, self.precision, f"serve {op.name}", g.count)
            yield from self.device.vector.elementwise(op.forward_vector_ops, 1, f"serve {op.name} act")
            x = net.forward_layer(li, x, *self.layers[li])[1]
        self.bank.free("requests")
        return np.argmax(x, axis=1)


class TrainingWorker(Worker):
    """Trains on what it is given; sends its change since the snapshot every `window` steps.
    `seed` and (step, `index`) key the delta codec's random stream."""

    apply_ops = APPLY_OPS + 1

    def __init__(
        self,
        env,
        device,
        bank,
        initial,
        shapes,
        model,
        settings: Settings,
        window: int,
        delta,
        codec: Codec,
        seed: int,
        index: int,
    ):
        super().__init__(env, device, bank, initial, shapes)
        self.seed, self.index = seed, index
        self.snapshot = initial.copy()
        self.bank.allocate("snapshot", self.snapshot)
        self.trainer = LocalTrainer(device, model, settings, np.empty((0, 0)), np.empty(0))
        for li, name in enumerate(model.layer_names):
            self.trainer.hold(self.bank, f"{name}.velocity", tuple(np.zeros_like(p) for p in self.layers[li]), 0)
        self.samples = simpy.Store(env)
        self.window, self.delta, self.codec = window, delta, codec
        self.steps = 0

    def apply(self, idx: np.ndarray, values: np.ndarray) -> None:
        self.model[idx] += values - self.snapshot[idx]
        self.snapshot[idx] = values

    def train(self, x_all: np.ndarray, batch: int, send, on_step) -> Generator:
        """Process: train on (sample index, label) pairs until a None arrives; `send(worker, buffer)`
        ships a delta, `on_step(worker, loss, seconds)` reports a step."""
        pending: list[tuple[int, int]] = []
        since = 0
        while True:
            item = yield self.samples.get()
            if item is None:
                break
            pending.append(item)
            if len(pending) < batch:
                continue
            idx = np.array([p[0] for p in pending])
            y = np.array([p[1] for p in pending], dtype=np.int64)
            pending.clear()
            with self.lock.request() as turn:
                yield turn
                start = self.env.now
                loss = yield from self.trainer.train(self.layers, (x_all[idx], y))
            self.steps += 1
            since += 1
            on_step(self, loss, self.env.now - start)
            if since == self.window:
                since = 0
                send(self, (yield from self._delta()))
        if since:
            send(self, (yield from self._delta()))

    def _delta(self) -> Generator:
        """Select and encode the change since the snapshot; move the snapshot by what is sent."""
        with self.lock.request() as turn:
            yield turn
            n = self.model.size
            yield from self.device.vector.elementwise(n, DELTA_OPS, "delta select")
            change = np.empty(n, np.float32)
            subtract(self.model, self.snapshot, change)
            idx = select(change, self.delta)
            yield from self.device.vector.elementwise(idx.size, COMPRESS_OPS + 1, "delta encode")
            buf = pack(idx, change[idx], n, self.codec, seed=self.seed, stream=2 * (self.steps * 4096 + self.index))
            _, sent, values = unpack(buf, self.codec)
            self.snapshot[sent] += values
        return buf


def views(flat: np.ndarray, shapes) -> list[tuple[np.ndarray, ...]]:
    """Per-layer parameter views into one flat vector."""
    out, pos = [], 0
    for layer in shapes:
        size = sum(int(np.prod(s)) for s in layer)
        out.append(unflatten(flat[pos : pos + size], layer))
        pos += size
    return out
