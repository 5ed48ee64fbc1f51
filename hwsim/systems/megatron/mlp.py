"""Megatron's tensor and data parallelism with real math, on an MLP (the `megatron` system with `model.kind: mlp`).

The layers pair up as Megatron pairs a transformer's MLP (Shoeybi et al. 2019, §3): the
first of a pair is split by columns (rank i of the t tensor ranks holds W[:, i-th
block] and that block of the bias, and applies the ReLU to its own columns), the second
by rows (rank i holds W[i-th block, :]); the row layer's partial products are summed by
a real all-reduce over the tensor group before its bias and activation. In backward the
row layer's input gradient stays on its rank (its columns), and the column layer's input
gradient is summed by an all-reduce (the `f` operator); a last unpaired layer is held
whole by every rank. Each of the d data-parallel replicas takes b/d of the step's b
samples; after the backward every rank all-reduces its gradient over its data group (the
ranks of the same tensor index), every rank applies SGD + momentum to the mean, so all
replicas stay identical and the whole trains as one device with batch b (to float32
rounding: the GEMMs' sums are split differently; a test holds it). With
`system.compression.gradients` the data-parallel all-reduce's messages are the codec's real
encodings (each partial sum encoded at each hop, as the collectives library runs it): every rank of
a data group still ends with the same bits, since each decodes the same messages.

Every collective runs on the fabric (`collectives.executor`, ring, the reductions on the
vector unit); every GEMM on the systolic array's cycle model at its shard's shape.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
import simpy

from hwsim.codecs import codec_from_setting, stream_of
from hwsim.collectives import plan
from hwsim.collectives.executor import run as run_plan
from hwsim.config.schema import Scenario
from hwsim.kernels import dense_forward, dense_input_grad, dense_weight_grad, relu_forward, sgd_momentum
from hwsim.network import Cluster
from hwsim.systems.megatron.checks import layout, roles
from hwsim.systems.stages import UPDATE_OPS
from hwsim.systems.training import finite_loss, flatten, unflatten
from hwsim.workloads.data import BatchStream

Progress = Callable[[int, int], None]


class MegatronMlp:
    """t x d ranks training an MLP with tensor and data parallelism; `run()` is the SimPy process."""

    def __init__(self, scenario: Scenario, cluster: Cluster, model, data, rng: np.random.Generator, progress: Progress | None):
        self.spec = spec = scenario.system
        par = spec.parallel
        self.t, self.d = par.tensor, par.data
        self.env, self.cluster, self.model, self.data, self.progress = cluster.env, cluster, model, data, progress
        self.place = layout(par)
        self.ranks = [(i, k) for k in range(self.d) for i in range(self.t)]
        self.devices = {(i, k): cluster.add(self.place[(i, 0, k)], f"t{i}.p0.d{k}", scenario.hardware) for i, k in self.ranks}
        self.roles = roles(len(model.shapes))
        self.math = data is not None
        self.eval_every = scenario.run.eval_every
        full = model.init_params(rng) if self.math else None
        self.batches = BatchStream(len(data.y_train), spec.batch, rng) if self.math else None
        self.params = {r: self._shard(full, r[0]) for r in self.ranks} if self.math else None
        self.velocity = (
            {r: [tuple(np.zeros_like(a) for a in layer) for layer in self.params[r]] for r in self.ranks} if self.math else None
        )
        self.samples_per_step = spec.batch
        setting = spec.compression.gradients
        self.codec = None if setting is None else codec_from_setting(setting)  # the data-parallel all-reduce's
        self.seed = scenario.seed
        self.wire_bytes = 0.0  # what the data-parallel all-reduces sent, every rank
        self.pending: dict[tuple, list] = {}
        self.losses: list[float] = []
        for r in self.ranks:  # weights, velocity and gradient of each rank's shards, fp32
            bank = self.devices[r].bank(spec.bank)
            for li in range(len(self.roles)):
                for what in ("weights", "velocity", "grad"):
                    bank.allocate(f"{model.layer_names[li]}.{what}", nbytes=self._shard_elements(li) * 4)

    # --- shards -------------------------------------------------------------------------

    def _cols(self, li: int, i: int) -> slice:
        """Rank i's block of layer li's split dimension (a col layer's outputs, a row layer's inputs)."""
        width = self.model.shapes[li][1] if self.roles[li] == "col" else self.model.shapes[li][0]
        step = width // self.t
        return slice(i * step, (i + 1) * step)

    def _shard(self, full, i: int) -> list[tuple[np.ndarray, np.ndarray]]:
        out = []
        for li, (w, b) in enumerate(full):
            role = self.roles[li]
            if role == "col":
                cols = self._cols(li, i)
                out.append((w[:, cols].copy(), b[cols].copy()))  # copies: no two ranks share an array
            elif role == "row":
                out.append((w[self._cols(li, i), :].copy(), b.copy()))
            else:
                out.append((w.copy(), b.copy()))
        return out

    def _shard_elements(self, li: int) -> int:
        fan_in, fan_out = self.model.shapes[li]
        role = self.roles[li]
        return (
            fan_in * fan_out // self.t + (fan_out // self.t if role == "col" else fan_out)
            if role != "rep"
            else fan_in * fan_out + fan_out
        )

    def _holder(self, i: int, li: int) -> tuple:
        """The rank of tensor index i in replica 0 that holds layer li."""
        return (i, 0)

    def final_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """The whole model, gathered from replica 0's tensor ranks."""
        out = []
        for li, role in enumerate(self.roles):
            shards = [self.params[self._holder(i, li)][li] for i in range(self.t)]
            if role == "col":
                out.append((np.concatenate([w for w, _ in shards], axis=1), np.concatenate([b for _, b in shards])))
            elif role == "row":
                out.append((np.concatenate([w for w, _ in shards], axis=0), shards[0][1].copy()))
            else:
                out.append((shards[0][0].copy(), shards[0][1].copy()))
        return out

    # --- the run ------------------------------------------------------------------------

    def run(self) -> Generator:
        for step in range(1, self.spec.steps + 1):
            start = self.env.now
            samples = self.batches.next() if self.math else None
            yield simpy.AllOf(self.env, [self.env.process(self._rank(step, r, samples)) for r in self.ranks])
            self.cluster.recorder.metric(self.env.now, step, "step_time_s", self.env.now - start)
            if self.math:
                self._learning_metrics(step)
            if self.progress:
                self.progress(step, self.spec.steps)

    def _rank(self, step: int, rank: tuple[int, int], samples) -> Generator:
        i, k = rank
        device, precision = self.devices[rank], self.spec.precision
        b = self.spec.batch // self.d
        x = self.data.x_train[samples[k * b : (k + 1) * b]] if self.math else None
        params = self.params[rank] if self.math else None
        inputs, pre = [], []
        for li, role in enumerate(self.roles):
            fan_in, fan_out = self.model.shapes[li]
            n = fan_out // self.t if role == "col" else fan_out
            m_in = fan_in // self.t if role == "row" else fan_in
            yield from device.systolic.gemm(b, n, m_in, precision, f"fwd {self.model.layer_names[li]}")
            inputs.append(x)
            if role == "row":
                z = dense_forward(x, params[li][0], np.zeros_like(params[li][1])) if self.math else None
                z = yield from self._all_reduce(("fwd", step, li, k), "tensor", rank, z, b * fan_out)
                if self.math:
                    z += params[li][1]
            else:
                z = dense_forward(x, *params[li]) if self.math else None
            last = li == len(self.roles) - 1
            yield from device.vector.elementwise(b * n, 1, f"fwd {self.model.layer_names[li]} act")
            pre.append(z)
            x = z if (last or not self.math) else relu_forward(z)
        grad = None
        if self.math:
            loss, grad = self.model.loss(x, self.data.y_train[samples[k * b : (k + 1) * b]])
            if i == 0:
                self.losses.append(finite_loss(loss, device.name))
        grads = [None] * len(self.roles)
        for li in reversed(range(len(self.roles))):
            role = self.roles[li]
            fan_in, fan_out = self.model.shapes[li]
            n = fan_out // self.t if role == "col" else fan_out
            m_in = fan_in // self.t if role == "row" else fan_in
            for g in ((b, m_in, n), (m_in, n, b)):
                yield from device.systolic.gemm(*g, precision, f"bwd {self.model.layer_names[li]}")
            if not self.math:
                if role == "col" and li > 0:
                    yield from self._all_reduce(("bwd", step, li, k), "tensor", rank, None, b * fan_in)
                continue
            dz = self.model.output_grad(li, pre[li], grad)
            grads[li] = flatten(dense_weight_grad(inputs[li], dz))
            if li == 0:
                continue
            grad = dense_input_grad(params[li][0], dz)
            if role == "col":  # each rank's input gradient is a partial sum over its columns
                grad = yield from self._all_reduce(("bwd", step, li, k), "tensor", rank, grad, b * fan_in)
        for li in range(len(self.roles)):
            flat = grads[li]
            size = self._shard_elements(li)
            flat = yield from self._all_reduce(("grad", step, li, i), "data", rank, flat, size)
            yield from device.vector.elementwise(size, UPDATE_OPS, f"update {self.model.layer_names[li]}")
            if self.math:
                mean = flat * np.float32(1.0 / self.d)
                w, bias = params[li]
                dw, db = unflatten(mean, [w.shape, bias.shape])
                vw, vb = self.velocity[rank][li]
                sgd_momentum(w, dw, vw, self.spec.lr, self.spec.momentum)
                sgd_momentum(bias, db, vb, self.spec.lr, self.spec.momentum)

    def _all_reduce(self, key: tuple, axis: str, rank: tuple[int, int], array, elements: int) -> Generator:
        """Sum `array` over the rank's tensor or data group (a real ring all-reduce on the fabric once every
        member has arrived); returns the rank's summed array (None timing-only)."""
        i, k = rank
        members = [(j, k) for j in range(self.t)] if axis == "tensor" else [(i, j) for j in range(self.d)]
        npus = [self.place[(m[0], 0, m[1])] for m in members]
        codec = self.codec if axis == "data" else None
        out = yield from when_all_arrive(self, "all_reduce", key, rank, array, elements, members, npus, axis, codec, "all-reduce")
        return None if array is None else out.reshape(np.shape(array))

    def summary(self, trace) -> dict:
        """The `megatron_mlp` section of summary.json: the data-parallel all-reduce's codec and its bytes."""
        return {
            "megatron_mlp": {
                "layout": {"tensor": self.t, "data": self.d},
                "gradient_codec": None if self.codec is None else repr(self.codec),
                "data_wire_bytes": self.wire_bytes,
            }
        }

    def _learning_metrics(self, step: int) -> None:
        learning_metrics(self, step)


def when_all_arrive(
    system, op: str, key: tuple, rank, array, elements: int, members, npus, axis: str, codec, label: str
) -> Generator:
    """A real ring `op` over `members` (on fabric NPUs `npus`) of an mlp system's group, once every member has
    arrived with its array under `key`; returns the rank's flat array after it (None timing-only; a group of
    one: `array` as it is). The data group's wire bytes are added to `system.wire_bytes`."""
    if len(members) == 1:
        return array
    held, done = system.pending.setdefault(key, [{}, system.env.event()])
    held[rank] = np.ascontiguousarray(array, dtype=np.float32).ravel().copy() if array is not None else None
    if len(held) == len(members):
        out = yield from run_plan(
            system.env,
            system.cluster.fabric,
            plan(op, "ring", len(members)),
            npus,
            elements * 4,
            data=[held[m] for m in members] if system.math else None,
            devices=[system.devices[m] for m in members],
            transport=system.cluster.transport(f"{axis} {label}", lambda npu: f"npu{npu}"),
            codec=codec,
            seed=system.seed,
            stream=stream_of(*key[1:]) if codec is not None else 0,
        )
        if axis == "data":
            system.wire_bytes += sum(out.bytes_sent)
        done.succeed()
        del system.pending[key]
    else:
        yield done
    return held[rank]


def learning_metrics(system, step: int) -> None:
    """An mlp system's step: the mean training loss of its ranks, and every `eval_every` steps (and the last)
    the test loss and accuracy of its gathered weights."""
    system.cluster.recorder.metric(system.env.now, step, "loss", float(np.mean(system.losses)))
    system.losses.clear()
    if step % system.eval_every == 0 or step == system.spec.steps:
        loss, acc = system.model.evaluate(system.final_params(), system.data.x_test, system.data.y_test)
        system.cluster.recorder.metric(system.env.now, step, "test_loss", loss)
        system.cluster.recorder.metric(system.env.now, step, "test_accuracy", acc)
