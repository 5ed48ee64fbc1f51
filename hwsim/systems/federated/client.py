"""One federated client's device: it keeps the model compressed, trains it locally, and decompresses
each layer up front or on the fly (mechanism M6).

The compressed model lives in the parameter bank as the codec buffers the server sent
(`<layer>.params`). A local step on a batch:

- **upfront**: decompress every layer into the working bank (`<layer>.weights`), forward,
  backward, and after each trained layer's update compress it back into the parameter
  bank; the decompressed copies are freed at the end of the step.
- **on_the_fly**: decompress a layer just before its forward and free it right after; again
  just before its backward (where a trained layer is updated and compressed back) and
  free it right after. At most one decompressed layer is held at a time.

Backward stops at the lowest trained layer (frozen layers below it need no gradients).
The update is SGD fused into the backward pass (`dense_backward_sgd`: no weight-gradient
buffer). Both modes run the same math on the same decoded values, so they give the same
numbers, bit for bit; only the memory held and the decompression work differ.

With an uplink codec the client keeps each trained layer as it arrived (`<layer>.received`,
compressed, in the parameter bank) and uploads its update: the trained layer minus the
received one, encoded with the uplink codec (plus, with error feedback, what that codec lost
in the client's last upload of the layer, held as `<layer>.residual` while it takes part).

Every encoding has its own counter-RNG stream, `stream_of(round, client, layer, direction,
step)`, so randomized codecs are independent across clients, rounds, layers and steps.
"""

from __future__ import annotations

from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from hwsim.codecs import Codec, ErrorFeedback, stream_of
from hwsim.hardware import Device
from hwsim.kernels import dense_backward_sgd, dense_input_grad
from hwsim.systems.training import COMPRESS_OPS, DECOMPRESS_OPS, Held, finite_loss, flatten, unflatten

UPDATE_OPS = 2  # scale, subtract (plain SGD)
REBUILD_OPS = 4  # generate a frozen layer from the model seed: counter RNG, normal transform, scale, store
DIFF_OPS = 1  # trained - received (and + residual with error feedback)
DOWN, UP, STORE, REBUILD = 0, 1, 2, 3
"""The directions of an encoding, in its stream key."""
BROADCAST = (1 << 32) - 1
"""The client field of the server's encodings: one per round and layer, sent to every selected client."""


@dataclass(frozen=True)
class ClientSettings:
    """What a client's local training needs from the system's settings."""

    batch: int
    lr: float
    param_bank: str
    work_bank: str
    compute_precision: str
    on_the_fly: bool


class Client:
    """Client `index`'s device, its data (x, y) and the codec its model is stored with; `seed` is the
    run's seed, which (with the stream keys) keys every encoding."""

    def __init__(self, index: int, device: Device, model, settings: ClientSettings, codec: Codec, x, y, seed: int):
        self.index = index
        self.device = device
        self.model = model
        self.settings = settings
        self.codec = codec
        self.x, self.y = x, y
        self.seed = seed
        self.pbank = device.bank(settings.param_bank)
        self.wbank = device.bank(settings.work_bank)
        self.names = model.layer_names
        self.ops = model.layer_ops(settings.batch)
        self.round = 0
        self.steps = 0  # local steps in the current round
        self.feedback: dict[int, ErrorFeedback] = {}  # per layer, kept across rounds (error feedback)

    def begin(self, r: int) -> None:
        """Start taking part in round r: hold the error-feedback residuals kept since the last round."""
        self.round, self.steps = r, 0
        for li, ef in self.feedback.items():
            if ef.residual is not None:
                self.pbank.allocate(f"{self.names[li]}.residual", ef.residual)

    def key(self, li: int, direction: int, step: int = 0) -> dict:
        """seed and stream of one encoding by this client (for `Codec.encode(x, **key)`)."""
        return {"seed": self.seed, "stream": stream_of(self.round, self.index, li, direction, step)}

    # --- the compressed model ---------------------------------------------------

    def land(self, li: int, buffer: np.ndarray, keep: bool = False) -> Generator:
        """Write a received layer (a codec buffer) into the parameter bank; `keep` it also as received
        (the base of an update sent with an uplink codec)."""
        yield from self.pbank.write(buffer.nbytes, f"land {self.names[li]}")
        self.pbank.allocate(f"{self.names[li]}.params", buffer)
        if keep:
            self.pbank.allocate(f"{self.names[li]}.received", buffer)

    def rebuild(self, li: int, params: tuple[np.ndarray, ...]) -> Generator:
        """A frozen layer the server does not send: generated from the model seed (`params` are its
        values) and stored compressed."""
        n = self.ops[li].params
        yield from self.device.vector.elementwise(n, REBUILD_OPS + COMPRESS_OPS, f"rebuild {self.names[li]}")
        buffer = self.codec.encode(flatten(params), **self.key(li, REBUILD))
        yield from self.land(li, buffer)

    def update(self, li: int, uplink: Codec, error_feedback: bool) -> Generator:
        """Layer `li`'s update for the server: (trained - received), plus the residual with error
        feedback, encoded with `uplink`; returns the buffer."""
        name, n = self.names[li], self.ops[li].params
        stored, received = self.stored(li), self.pbank.get(f"{name}.received")
        yield from self.pbank.read(stored.nbytes + received.nbytes, f"read {name} for update")
        ops = 2 * DECOMPRESS_OPS + DIFF_OPS * (2 if error_feedback else 1) + COMPRESS_OPS
        yield from self.device.vector.elementwise(n, ops, f"compress {name} update")
        change = self.codec.decode(stored) - self.codec.decode(received)
        self.wbank.allocate(f"{name}.update", change)
        key = self.key(li, UP)
        if error_feedback:
            ef = self.feedback.setdefault(li, ErrorFeedback(uplink))
            buffer = ef.encode(change, **key)
            self.pbank.allocate(f"{name}.residual", ef.residual)
        else:
            buffer = uplink.encode(change, **key)
        self.wbank.free(f"{name}.update")
        return buffer

    def stored(self, li: int) -> np.ndarray:
        return self.pbank.get(f"{self.names[li]}.params")

    def clear(self) -> None:
        """Free everything this client holds (at the end of its part in a round)."""
        for bank in (self.pbank, self.wbank):
            for name in bank.buffer_names():
                bank.free(name)

    # --- a local step -------------------------------------------------------------

    def step(self, x: np.ndarray, y: np.ndarray, trained: tuple[int, ...]) -> Generator:
        """One SGD step on (x, y) that updates the `trained` layers; returns the loss."""
        names, model, otf = self.names, self.model, self.settings.on_the_fly
        lowest, layers = min(trained), range(len(self.ops))
        self.wbank.allocate("batch", x)
        weights: dict[int, tuple[np.ndarray, ...]] = {}
        if not otf:
            for li in layers:
                weights[li] = yield from self._decompress(li)
        acts, pre = [x], []
        for li in layers:
            w = (yield from self._decompress(li)) if otf else weights[li]
            yield from self._gemms(self.ops[li].forward, f"fwd {names[li]}")
            yield from self.device.vector.elementwise(self.ops[li].forward_vector_ops, 1, f"fwd {names[li]} act")
            z, a = model.forward_layer(li, acts[-1], *w)
            pre.append(z)
            acts.append(a)
            self.wbank.allocate(f"{names[li]}.act", Held((z,) if a is z else (z, a)))
            if otf:
                self.wbank.free(f"{names[li]}.weights")
        loss, grad = model.loss(acts[-1], y)
        finite_loss(loss, f"{self.device.name} (round {self.round}, local step {self.steps + 1})")
        self.wbank.allocate("grad", grad)
        for li in reversed(range(lowest, len(self.ops))):
            w = (yield from self._decompress(li)) if otf else weights[li]
            op, below = self.ops[li], li > lowest
            needed = {"input": below, "weight": li in trained}
            gemms = [g for g, kind in zip(op.backward, _backward_kinds(op), strict=True) if needed[kind]]
            yield from self._gemms(gemms, f"bwd {names[li]}")
            yield from self.device.vector.elementwise(op.backward_vector_ops, 1, f"bwd {names[li]} act")
            dz = model.output_grad(li, pre[li], grad)
            d_in = dense_input_grad(w[0], dz) if below else None
            if li in trained:
                yield from self.device.vector.elementwise(op.params, UPDATE_OPS, f"update {names[li]}")
                dense_backward_sgd(acts[li], w[0], w[1], dz, self.settings.lr)
                yield from self._compress(li, w)
            self.wbank.free(f"{names[li]}.act")
            if d_in is not None:
                self.wbank.allocate("grad", d_in)
                grad = d_in
            if otf:
                self.wbank.free(f"{names[li]}.weights")
        for li in range(lowest):
            self.wbank.free(f"{names[li]}.act")
        for name in ("grad", "batch", *(f"{names[li]}.weights" for li in weights)):
            self.wbank.free(name)
        self.steps += 1
        return loss

    def _decompress(self, li: int) -> Generator:
        """Read layer `li` from the parameter bank, decode it into the working bank; returns (w, b)."""
        buffer, n = self.stored(li), self.ops[li].params
        yield from self.pbank.read(buffer.nbytes, f"read {self.names[li]}")
        yield from self.device.vector.elementwise(n, DECOMPRESS_OPS, f"decompress {self.names[li]}")
        w = unflatten(self.codec.decode(buffer), self.model.param_shapes(li))
        self.wbank.allocate(f"{self.names[li]}.weights", Held(w))
        yield from self.wbank.write(4 * n, f"write {self.names[li]} weights")
        return w

    def _compress(self, li: int, w: tuple[np.ndarray, ...]) -> Generator:
        """Encode an updated layer with the model's codec back into the parameter bank."""
        yield from self.device.vector.elementwise(self.ops[li].params, COMPRESS_OPS, f"compress {self.names[li]}")
        buffer = self.codec.encode(flatten(w), **self.key(li, STORE, self.steps))
        yield from self.pbank.write(buffer.nbytes, f"store {self.names[li]}")
        self.pbank.allocate(f"{self.names[li]}.params", buffer)

    def _gemms(self, gemms, label: str) -> Generator:
        for g in gemms:
            yield from self.device.systolic.gemm(g.m, g.n, g.k, self.settings.compute_precision, label, g.count)


def _backward_kinds(op) -> tuple[str, ...]:
    """Which of a dense layer's backward GEMMs gives the input gradient and which the weight gradient
    (the first layer has only the weight gradient: see `Mlp.layer_ops`)."""
    return ("weight",) if len(op.backward) == 1 else ("input", "weight")
