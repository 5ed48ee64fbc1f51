"""One device's local training with its parameters stored at low precision (the M1 controller).

`LocalTrainer` holds the ops every system that trains on a device repeats:

1. `load`: read the stored parameters from the parameter bank and decompress each
   layer on the vector unit into the working bank (fp32);
2. `train`: forward and backward on the systolic array (element-wise work on the
   vector unit), activations and gradients in the working bank, then SGD + momentum
   (the velocity stays in the working bank);
3. `store`: re-compress each layer on the vector unit and write it to the parameter
   bank (or `store_buffers`: write buffers that arrive already encoded).

Each op costs its cycle-model time and the real math runs when the op completes. In
timing-only mode the same ops run without math, buffers sized from the model.
"""

from __future__ import annotations

import math
from collections.abc import Generator
from dataclasses import dataclass

import numpy as np

from hwsim.errors import Diverged
from hwsim.hardware import Device
from hwsim.kernels import sgd_momentum
from hwsim.systems.storage import Stored, decode, element_bytes, encode, stored_bytes
from hwsim.workloads.data import BatchStream

# Vector-unit element-operations per parameter.
DECOMPRESS_OPS = 1  # code x scale
COMPRESS_OPS = 3  # block max, scale, round
UPDATE_OPS = 3  # velocity, scale, subtract


@dataclass(frozen=True)
class Settings:
    """What local training needs from a system's settings."""

    batch: int
    lr: float
    momentum: float
    block: int
    param_bank: str
    work_bank: str
    compute_precision: str

    @classmethod
    def of(cls, spec) -> Settings:
        """The local-training settings of a system spec (a `LocalTrainingSpec`)."""
        return cls(spec.batch, spec.lr, spec.momentum, spec.block, spec.param_bank, spec.work_bank, spec.compute_precision)


class LocalTrainer:
    """Local training on `device`; `x`, `y` are its training data (None in timing-only mode).
    Without `rng` it draws no batches of its own: each `train` call is given its batch."""

    def __init__(self, device: Device, model, settings: Settings, x=None, y=None, rng: np.random.Generator | None = None):
        self.device = device
        self.model = model
        self.settings = settings
        self.math = x is not None
        self.x, self.y = x, y
        self.pbank = device.bank(settings.param_bank)
        self.wbank = device.bank(settings.work_bank)
        self.ops = model.layer_ops(settings.batch)
        self.names = model.layer_names
        self.work_elem = element_bytes(self.wbank.precision)
        self.stored_sizes = [stored_bytes(op.params, self.pbank.precision, settings.block) for op in self.ops]
        self.batches = BatchStream(len(y), settings.batch, rng) if self.math and rng is not None else None
        self.shapes: list[list[tuple[int, ...]]] = []

    # --- state ------------------------------------------------------------------

    def store_initial(self, params) -> None:
        """Hold the initial parameters (encoded) and zero velocities; no simulated time."""
        if self.math:
            self.shapes = [[p.shape for p in layer] for layer in params]
        for li, op in enumerate(self.ops):
            stored = encode(flatten(params[li]), self.pbank.precision, self.settings.block) if self.math else None
            self.hold(self.pbank, f"{self.names[li]}.params", stored, self.stored_sizes[li], nbytes=True)
            velocity = tuple(np.zeros_like(p) for p in params[li]) if self.math else None
            self.hold(self.wbank, f"{self.names[li]}.velocity", velocity, op.params)

    def stored_params(self) -> list[tuple[np.ndarray, ...]]:
        """The parameters as the device holds them now, decoded to float32 (full mode)."""
        return [self.decode_layer(li) for li in range(len(self.ops))]

    def decode_layer(self, li: int) -> tuple[np.ndarray, ...]:
        return unflatten(decode(self.pbank.get(f"{self.names[li]}.params")), self.shapes[li])

    # --- ops (SimPy process steps) ----------------------------------------------

    def load(self) -> Generator:
        """Read and decompress every layer into the working bank; returns the weights (None each without math)."""
        yield from self.pbank.read(sum(self.stored_sizes), "read params")
        weights = []
        for li, op in enumerate(self.ops):
            yield from self.device.vector.elementwise(op.params, DECOMPRESS_OPS, f"decompress {self.names[li]}")
            w = self.decode_layer(li) if self.math else None
            weights.append(w)
            self.hold(self.wbank, f"{self.names[li]}.weights", w, op.params)
            yield from self.wbank.write(int(op.params * self.work_elem), f"write {self.names[li]} weights")
        return weights

    def train(self, weights, batch: tuple[np.ndarray, np.ndarray] | None = None) -> Generator:
        """One step on a local batch (or on `batch` = (x, y), for example from a stream): forward,
        backward, update `weights` in place; returns the batch loss."""
        names = self.names
        x, y = self._batch(batch)
        acts = [x]  # the input of each layer, then the logits
        pre = []
        for li, op in enumerate(self.ops):
            yield from self._gemms(op.forward, f"fwd {names[li]}")
            yield from self.device.vector.elementwise(op.forward_vector_ops, 1, f"fwd {names[li]} act")
            z, a = self.model.forward_layer(li, acts[-1], *weights[li]) if self.math else (None, None)
            pre.append(z)
            acts.append(a)
            kept = ((z,) if a is z else (z, a)) if self.math else None
            self.hold(self.wbank, f"{names[li]}.act", kept, op.activations)

        loss, grad = self.model.loss(acts[-1], y) if self.math else (float("nan"), None)
        if self.math:
            finite_loss(loss, self.device.name)
        for li in reversed(range(len(self.ops))):
            op = self.ops[li]
            yield from self._gemms(op.backward, f"bwd {names[li]}")
            yield from self.device.vector.elementwise(op.backward_vector_ops, 1, f"bwd {names[li]} act")
            grads = None
            if self.math:
                grad, dw, db = self.model.backward_layer(li, acts[li], pre[li], weights[li][0], grad)
                grads = (dw, db)
            self.hold(self.wbank, f"{names[li]}.grad", grads, op.params)
            self.wbank.free(f"{names[li]}.act")

        s = self.settings
        for li, op in enumerate(self.ops):
            yield from self.device.vector.elementwise(op.params, UPDATE_OPS, f"update {names[li]}")
            if self.math:
                dw, db = self.wbank.get(f"{names[li]}.grad").data
                vw, vb = self.wbank.get(f"{names[li]}.velocity").data
                sgd_momentum(weights[li][0], dw, vw, s.lr, s.momentum)
                sgd_momentum(weights[li][1], db, vb, s.lr, s.momentum)
            self.wbank.free(f"{names[li]}.grad")
        self.wbank.free("batch")
        return loss

    def store(self, weights) -> Generator:
        """Re-compress every layer into the parameter bank and free the working copies."""
        for li in range(len(self.ops)):
            yield from self.device.vector.elementwise(self.ops[li].params, COMPRESS_OPS, f"compress {self.names[li]}")
            stored = encode(flatten(weights[li]), self.pbank.precision, self.settings.block) if self.math else None
            yield from self.put_stored(li, stored)
        self.free_weights()

    def put_stored(self, li: int, stored: Stored | None) -> Generator:
        """Write layer `li`'s encoded parameters into the parameter bank."""
        yield from self.pbank.write(self.stored_sizes[li], f"store {self.names[li]}")
        self.hold(self.pbank, f"{self.names[li]}.params", stored, self.stored_sizes[li], nbytes=True)

    def free_weights(self) -> None:
        for name in self.names:
            self.wbank.free(f"{name}.weights")

    # --- helpers ----------------------------------------------------------------

    def _gemms(self, gemms, label: str) -> Generator:
        for g in gemms:
            yield from self.device.systolic.gemm(g.m, g.n, g.k, self.settings.compute_precision, label, g.count)

    def _batch(self, given=None) -> tuple[np.ndarray | None, np.ndarray | None]:
        first = self.ops[0]
        # a layer with no GEMM first (an embedding) takes its output size as the input's
        inputs = first.forward[0].k * self.settings.batch if first.forward else first.activations
        if not self.math:
            self.hold(self.wbank, "batch", None, inputs)
            return None, None
        if given is None:
            idx = self.batches.next()
            given = self.x[idx], self.y[idx]
        x, y = given
        self.wbank.allocate("batch", x)
        return x, y

    def hold(self, bank, name: str, data, size: int, nbytes: bool = False) -> None:
        """Allocate real `data` in `bank`, charged its real bytes; without data (timing-only),
        charge `size` bytes if `nbytes`, else `size` elements at the working precision."""
        if data is None:
            bank.allocate(name, nbytes=size if nbytes else int(size * self.work_elem))
        elif isinstance(data, tuple):
            bank.allocate(name, Held(data))
        else:
            bank.allocate(name, data)


def finite_loss(loss: float, where: str) -> float:
    """`loss`, or Diverged (a simulated failure: the run ends with status diverged) if it is NaN or infinite."""
    if not math.isfinite(loss):
        raise Diverged(f"the training diverged: the loss on {where} is {loss}")
    return loss


class Held:
    """Several arrays held as one bank buffer, charged the sum of their bytes."""

    __slots__ = ("data", "nbytes")

    def __init__(self, data: tuple[np.ndarray, ...]):
        self.data = data
        self.nbytes = sum(a.nbytes for a in data)


def flatten(arrays) -> np.ndarray:
    """A layer's parameters as one flat float32 tensor (how the bank stores a layer)."""
    return np.concatenate([a.ravel() for a in arrays])


def unflatten(flat: np.ndarray, shapes: list[tuple[int, ...]]) -> tuple[np.ndarray, ...]:
    out, pos = [], 0
    for shape in shapes:
        size = int(np.prod(shape))
        out.append(flat[pos : pos + size].reshape(shape))
        pos += size
    return tuple(out)
