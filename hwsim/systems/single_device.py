"""One device trains with its parameters stored at low precision (mechanism M1 on one device).

Every step, the device's controller:

1. reads the stored parameters from the parameter bank;
2. decompresses each layer on the vector unit into the working bank (fp32);
3. runs forward and backward on the systolic array (element-wise work on the
   vector unit), keeping activations and gradients in the working bank;
4. updates the weights with SGD + momentum (velocity stays in the working bank);
5. re-compresses each layer on the vector unit and writes it back to the parameter bank.

Each op costs its cycle-model time, and the real math runs when the op completes.
In timing-only mode the same ops run without math, buffers sized from the model.
Evaluation (test loss and accuracy) is an observer's measurement: it reads the
stored parameters and takes no simulated time.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from hwsim.config.schema import Scenario
from hwsim.hardware import Device
from hwsim.kernels import sgd_momentum
from hwsim.models.data import BatchStream, Dataset
from hwsim.systems.storage import decode, element_bytes, encode, stored_bytes

# Vector-unit element-operations per parameter.
DECOMPRESS_OPS = 1  # code x scale
COMPRESS_OPS = 3  # block max, scale, round
UPDATE_OPS = 3  # velocity, scale, subtract

Metric = Callable[[float, int, str, float], None]


class SingleDevice:
    """The controller process of one device; `run()` is the SimPy process."""

    def __init__(
        self,
        scenario: Scenario,
        device: Device,
        model,
        data: Dataset | None,
        rng: np.random.Generator,
        metric: Metric,
        progress: Callable[[int, int], None] | None = None,
    ):
        self.spec = scenario.system
        self.eval_every = scenario.run.eval_every
        self.device = device
        self.env = device.env
        self.model = model
        self.data = data
        self.math = data is not None
        self.metric = metric
        self.progress = progress
        self.pbank = device.bank(self.spec.param_bank)
        self.wbank = device.bank(self.spec.work_bank)
        self.ops = model.layer_ops(self.spec.batch)
        self.work_elem = element_bytes(self.wbank.precision)
        self.stored_sizes = [stored_bytes(op.params, self.pbank.precision, self.spec.block) for op in self.ops]
        if self.math:
            self.batches = BatchStream(len(data.y_train), self.spec.batch, rng)
            self.params = model.init_params(rng)
            self.params_shapes = [[p.shape for p in layer] for layer in self.params]

    # --- the process ----------------------------------------------------------

    def run(self) -> Generator:
        self._store_initial()
        for step in range(1, self.spec.steps + 1):
            start = self.env.now
            loss = yield from self._step()
            self.metric(self.env.now, step, "step_time_s", self.env.now - start)
            if self.math:
                self.metric(self.env.now, step, "loss", loss)
                if step % self.eval_every == 0 or step == self.spec.steps:
                    self._evaluate(step)
            if self.progress:
                self.progress(step, self.spec.steps)

    def _step(self) -> Generator:
        names = self.model.layer_names
        yield from self.pbank.read(sum(self.stored_sizes), "read params")
        weights = []
        for li, op in enumerate(self.ops):
            yield from self.device.vector.elementwise(op.params, DECOMPRESS_OPS, f"decompress {names[li]}")
            w = self._decode(li) if self.math else None
            weights.append(w)
            self._hold(self.wbank, f"{names[li]}.weights", w, op.params)
            yield from self.wbank.write(int(op.params * self.work_elem), f"write {names[li]} weights")

        x, y = self._batch()
        acts = [x]  # the input of each layer, then the logits
        pre = []
        for li, op in enumerate(self.ops):
            yield from self._gemms(op.forward, f"fwd {names[li]}")
            yield from self.device.vector.elementwise(op.forward_vector_ops, 1, f"fwd {names[li]} act")
            z, a = self.model.forward_layer(li, acts[-1], *weights[li]) if self.math else (None, None)
            pre.append(z)
            acts.append(a)
            kept = ((z,) if a is z else (z, a)) if self.math else None
            self._hold(self.wbank, f"{names[li]}.act", kept, op.activations)

        loss, grad = self.model.loss(acts[-1], y) if self.math else (float("nan"), None)
        for li in reversed(range(len(self.ops))):
            op = self.ops[li]
            yield from self._gemms(op.backward, f"bwd {names[li]}")
            yield from self.device.vector.elementwise(op.backward_vector_ops, 1, f"bwd {names[li]} act")
            grads = None
            if self.math:
                grad, dw, db = self.model.backward_layer(li, acts[li], pre[li], weights[li][0], grad)
                grads = (dw, db)
            self._hold(self.wbank, f"{names[li]}.grad", grads, op.params)
            self.wbank.free(f"{names[li]}.act")

        for li, op in enumerate(self.ops):
            yield from self.device.vector.elementwise(op.params, UPDATE_OPS, f"update {names[li]}")
            if self.math:
                dw, db = self.wbank.get(f"{names[li]}.grad").data
                vw, vb = self.wbank.get(f"{names[li]}.velocity").data
                sgd_momentum(weights[li][0], dw, vw, self.spec.lr, self.spec.momentum)
                sgd_momentum(weights[li][1], db, vb, self.spec.lr, self.spec.momentum)
            self.wbank.free(f"{names[li]}.grad")

        for li, op in enumerate(self.ops):
            yield from self.device.vector.elementwise(op.params, COMPRESS_OPS, f"compress {names[li]}")
            stored = encode(flatten(weights[li]), self.pbank.precision, self.spec.block) if self.math else None
            self.wbank.free(f"{names[li]}.weights")
            yield from self.pbank.write(self.stored_sizes[li], f"store {names[li]}")
            self._hold(self.pbank, f"{names[li]}.params", stored, self.stored_sizes[li], nbytes=True)
        self.wbank.free("batch")
        return loss

    # --- helpers ----------------------------------------------------------------

    def _gemms(self, gemms, label: str) -> Generator:
        for g in gemms:
            yield from self.device.systolic.gemm(g.m, g.n, g.k, self.spec.compute_precision, label, g.count)

    def _batch(self) -> tuple[np.ndarray | None, np.ndarray | None]:
        first = self.ops[0]
        # a layer with no GEMM first (an embedding) takes its output size as the input's
        inputs = first.forward[0].k * self.spec.batch if first.forward else first.activations
        if not self.math:
            self._hold(self.wbank, "batch", None, inputs)
            return None, None
        idx = self.batches.next()
        x, y = self.data.x_train[idx], self.data.y_train[idx]
        self.wbank.allocate("batch", x)
        return x, y

    def _hold(self, bank, name: str, data, size: int, nbytes: bool = False) -> None:
        """Allocate real `data` in `bank`, charged its real bytes; without data (timing-only),
        charge `size` bytes if `nbytes`, else `size` elements at the working precision."""
        if data is None:
            bank.allocate(name, nbytes=size if nbytes else int(size * self.work_elem))
        elif isinstance(data, tuple):
            bank.allocate(name, Held(data))
        else:
            bank.allocate(name, data)

    def _decode(self, li: int) -> tuple[np.ndarray, np.ndarray]:
        return unflatten(decode(self.pbank.get(f"{self.model.layer_names[li]}.params")), self.params_shapes[li])

    def _store_initial(self) -> None:
        for li, op in enumerate(self.ops):
            name = self.model.layer_names[li]
            stored = encode(flatten(self.params[li]), self.pbank.precision, self.spec.block) if self.math else None
            self._hold(self.pbank, f"{name}.params", stored, self.stored_sizes[li], nbytes=True)
            velocity = tuple(np.zeros_like(p) for p in self.params[li]) if self.math else None
            self._hold(self.wbank, f"{name}.velocity", velocity, op.params)

    def stored_params(self) -> list[tuple[np.ndarray, ...]]:
        """The parameters as the device holds them now, decoded to float32 (full mode)."""
        return [self._decode(li) for li in range(len(self.ops))]

    def _evaluate(self, step: int) -> None:
        params = self.stored_params()
        loss, acc = self.model.evaluate(params, self.data.x_test, self.data.y_test)
        self.metric(self.env.now, step, "test_loss", loss)
        self.metric(self.env.now, step, "test_accuracy", acc)


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
