"""Megatron's 3D parallelism with real math on an MLP: tensor x pipeline x data (`megatron` with `model.kind:
mlp` and `parallel.pipeline` > 1).

The layers are cut into the schedule's model stages, each a run of whole column/row pairs (a pair is never
split between stages: `megatron_mlp`'s tensor split inside each stage). Every rank (tensor i, pipeline
device j, replica k) runs device j's ops of the schedule (`system.schedule`, any placement) on its
replica's b/d samples, in micro-batches of `system.microbatch`:

- F: the stage's layers forward (the row layers' partial products summed by a real all-reduce over the
  tensor group); its output goes to the next stage's device (the fabric's unloaded time for the
  activation, which every tensor rank holds whole after a row layer), or, on the last stage, into the loss;
- B: the stage's layers backward from the next stage's input gradient (or the loss's), the column layers'
  input gradients summed over the tensor group; a fused backward adds the weight gradients into the
  step's accumulators, a split one keeps dL/dz for its W, which adds them later.

After its last op a rank reduces each of its layers' accumulated gradients (with DualPipe's dual placement,
first summed with the mirrored device's copy of the model stage, which ran the other half of the
micro-batches) over its data group (the ranks of the same tensor index and pipeline device), scaled by
1 / (d m), and applies SGD + momentum: with
`optimizer: allreduce` a ring all-reduce and the whole update on every rank; with `distributed` (ZeRO-1)
a ring reduce-scatter, the update of the rank's block of the flattened layer (its block of the momentum
too), and a ring all-gather of the updated weights (a ring all-reduce is this reduce-scatter and this
all-gather, so the reduced values are the same bits); with `sharded` (ZeRO-3) each run of a chunk's ops
(`sharded.runs`) first all-gathers the chunk's weights from the data group, and a run that finished weight
gradients reduce-scatters them into the rank's block, which the step's update then uses. With
`compression.gradients` the reductions' messages are the codec's real encodings. Replicas stay identical
and the whole trains as one device with the whole batch, to float32 rounding (a test holds it for every
schedule of these placements and each optimizer).
"""

from __future__ import annotations

from collections.abc import Generator

import numpy as np
import simpy

from hwsim.codecs import codec_from_setting
from hwsim.collectives.executor import bounds
from hwsim.kernels import dense_forward, dense_input_grad, dense_weight_grad, relu_forward, sgd_momentum
from hwsim.policies import build_schedule, is_split
from hwsim.systems.megatron.checks import layout, megatron_schedule, roles
from hwsim.systems.megatron.mlp import MegatronMlp, when_all_arrive
from hwsim.systems.megatron.mlp_fill import MlpFill
from hwsim.systems.megatron.sharded import runs
from hwsim.systems.stages import UPDATE_OPS
from hwsim.systems.training import finite_loss, flatten, unflatten
from hwsim.workloads.data import BatchStream

FILL_STREAM = 7  # the fill job's random stream, apart from the main job's


class MegatronMlp3D(MegatronMlp):
    """t x p x d ranks training an MLP; `run()` is the SimPy process."""

    def __init__(self, scenario, cluster, model, data, rng: np.random.Generator, progress=None):
        self.spec = spec = scenario.system
        par = spec.parallel
        self.t, self.p, self.d = par.tensor, par.pipeline, par.data
        self.env, self.cluster, self.model, self.data, self.progress = cluster.env, cluster, model, data, progress
        self.place = layout(par)
        self.schedule_name, self.shape = megatron_schedule(spec)
        self.schedule = build_schedule(self.schedule_name, self.shape)
        self.split = is_split(self.schedule)
        self.microbatches = spec.batch // (self.d * spec.microbatch)
        layers = len(model.shapes)
        per = layers // self.shape.model_stages
        self.stage_layers = [list(range(s * per, (s + 1) * per)) for s in range(self.shape.model_stages)]
        self.roles = roles(layers)
        self.ranks = [(i, j, k) for k in range(self.d) for j in range(self.p) for i in range(self.t)]
        self.devices = {r: cluster.add(self.place[r], f"t{r[0]}.p{r[1]}.d{r[2]}", scenario.hardware) for r in self.ranks}
        self.math = data is not None
        self.eval_every = scenario.run.eval_every
        setting = spec.compression.gradients  # the data-parallel reduction's messages
        self.codec = None if setting is None else codec_from_setting(setting)
        self.seed, self.wire_bytes = scenario.seed, 0.0
        full = model.init_params(rng) if self.math else None
        self.batches = BatchStream(len(data.y_train), spec.batch, rng) if self.math else None
        # each device's layers, in one order for all (DualPipe's mirrored devices reduce them in turn)
        self.mine = {
            j: sorted({li for s in self.shape.stages_of(j) for li in self.stage_layers[self.shape.model_stage(s)]})
            for j in range(self.p)
        }
        shards = {i: self._shard(full, i) for i in range(self.t)} if self.math else None
        self.params = (
            {r: {li: tuple(a.copy() for a in shards[r[0]][li]) for li in self.mine[r[1]]} for r in self.ranks}
            if self.math
            else None
        )
        self.velocity = (
            {r: {li: [np.zeros(a.size, np.float32) for a in self.params[r][li]] for li in self.mine[r[1]]} for r in self.ranks}
            if self.math
            else None
        )
        self.samples_per_step = spec.batch
        self.pending: dict[tuple, list] = {}
        self.mail: dict[tuple, simpy.Event] = {}
        self.losses: list[float] = []
        for r in self.ranks:
            bank = self.devices[r].bank(spec.bank)
            for li in self.mine[r[1]]:
                for what in ("weights", "velocity", "grad"):
                    bank.allocate(f"{model.layer_names[li]}.{what}", nbytes=self._shard_elements(li) * 4)
        self.fill = None
        if spec.fill is not None:  # a second mlp on every GPU in its predicted bubbles, with its own samples
            fill_rng = np.random.default_rng(np.random.SeedSequence(scenario.seed, spawn_key=(FILL_STREAM,)))
            self.fill = MlpFill(self, scenario, data, fill_rng)
            self.fill.plan()
            self.fill.allocate()

    @property
    def replicas(self) -> int:
        """Data-parallel replicas, each recording its ops (`r<k>.d<j>`), as a pipeline's do."""
        return self.d

    def summary(self, trace) -> dict:
        out = super().summary(trace)
        out["megatron_mlp"]["layout"]["pipeline"] = self.p
        if self.fill is not None:
            out["megatron_mlp"]["fill"] = self.fill.summary()
        return out

    def _holder(self, i: int, li: int) -> tuple:
        """The rank of tensor index i in replica 0 on the first device that holds layer li."""
        return (i, next(j for j in range(self.p) if li in self.mine[j]), 0)

    # --- the run ------------------------------------------------------------------------

    def run(self) -> Generator:
        for step in range(1, self.spec.steps + 1):
            start = self.env.now
            samples = self.batches.next() if self.math else None
            filling = self.fill.run_step(step) if self.fill is not None else []
            yield simpy.AllOf(self.env, [self.env.process(self._rank(step, r, samples)) for r in self.ranks])
            yield simpy.AllOf(self.env, filling)  # a fill op past its window delays the next step
            self.cluster.recorder.metric(self.env.now, step, "step_time_s", self.env.now - start)
            if self.math:
                self._learning_metrics(step)
            if self.progress:
                self.progress(step, self.spec.steps)

    def _rows(self, k: int, mb: int, samples) -> np.ndarray:
        b, size = self.spec.batch // self.d, self.spec.microbatch
        return samples[k * b + mb * size : k * b + (mb + 1) * size]

    def _rank(self, step: int, rank: tuple[int, int, int], samples) -> Generator:
        i, j, k = rank
        device, shape = self.devices[rank], self.shape
        grads = {li: None for li in self.mine[j]}
        kept: dict[tuple[int, int], tuple] = {}  # (stage, mb): inputs, pre-activations, output, dL/dz
        sharded = self.spec.optimizer == "sharded" and self.d > 1
        chunks = runs(self.schedule[j], self.split) if sharded else []
        starts, ends = {r.first: r for r in chunks}, {r.last: r for r in chunks}
        shard = {li: None for li in self.mine[j]}  # sharded: the rank's block of each layer's reduced gradients
        for index, op in enumerate(self.schedule[j]):
            s, mb = op.stage, op.mb
            layers = self.stage_layers[shape.model_stage(s)]
            if index in starts and starts[index].gathers:  # the chunk's weights, gathered from the data group
                for li in layers:
                    yield from self._gather(step, rank, li, index)
            if op.kind == "F":
                if shape.first(s):
                    x = self.data.x_train[self._rows(k, mb, samples)] if self.math else None
                else:
                    x = yield from self._receive(("F", step, s - 1, mb, i, k))
                begin = self.env.now
                inputs, pre, x = yield from self._forward(step, rank, layers, mb, x)
                kept[s, mb] = [inputs, pre, x, {}]
                self._record(rank, step, "forward", s, mb, begin)
                if not shape.last(s):
                    width = self.model.shapes[layers[-1]][1]
                    self._send(("F", step, s, mb, i, k), x, j, shape.device(s + 1), width)
            elif op.kind == "B":
                inputs, pre, out, dz = kept[s, mb]
                if shape.last(s):
                    grad = None
                    if self.math:
                        loss, grad = self.model.loss(out, self.data.y_train[self._rows(k, mb, samples)])
                        if i == 0:
                            self.losses.append(finite_loss(loss, device.name))
                else:
                    grad = yield from self._receive(("B", step, s + 1, mb, i, k))
                begin = self.env.now
                grad = yield from self._backward(step, rank, layers, mb, s, inputs, pre, grad, dz, grads)
                self._record(rank, step, "backward", s, mb, begin)
                if not shape.first(s):
                    self._send(("B", step, s, mb, i, k), grad, j, shape.device(s - 1), self.model.shapes[layers[0]][0])
            else:
                inputs, _, _, dz = kept[s, mb]
                begin = self.env.now
                for li in layers:
                    yield from self._weight_grad(rank, li, inputs, dz, grads)
                self._record(rank, step, "weight", s, mb, begin)
            if op.kind == ("W" if self.split else "B"):
                kept.pop((s, mb), None)
            if index in ends and ends[index].reduces:  # the run's gradients, reduce-scattered into the shard
                for li in layers:
                    part = yield from self._collective(
                        "reduce_scatter", ("rs", step, li, index, i, j), rank, grads[li], self._shard_elements(li)
                    )
                    grads[li] = None
                    if self.math:
                        shard[li] = part if shard[li] is None else shard[li] + part
        for li in self.mine[j]:
            grad = shard[li] if sharded else grads[li]
            if self.shape.placement == "dual":  # the model stage's other copy, on the mirrored device, ran the other half
                size = len(grad) if grad is not None else self._shard_elements(li)
                grad = yield from self._collective("all_reduce", ("mirror", step, li, i, k), rank, grad, size, "mirror")
            yield from self._update(step, rank, li, grad, reduced=sharded)

    def _record(self, rank, step: int, kind: str, stage: int, mb: int, begin: float) -> None:
        """The op in the trace, once per replica (tensor rank 0 stands for its group), named as the pipeline
        report reads devices: d<j>, r<k>.d<j>."""
        i, j, k = rank
        if i == 0:
            self.cluster.recorder.op(f"d{j}" if k == 0 else f"r{k}.d{j}", step, kind, stage, mb, begin, self.env.now)

    def _forward(self, step, rank, layers, mb, x) -> Generator:
        i, j, k = rank
        device, b, precision = self.devices[rank], self.spec.microbatch, self.spec.precision
        params = self.params[rank] if self.math else None
        inputs, pre = {}, {}
        for li in layers:
            role = self.roles[li]
            fan_in, fan_out = self.model.shapes[li]
            n = fan_out // self.t if role == "col" else fan_out
            m_in = fan_in // self.t if role == "row" else fan_in
            yield from device.systolic.gemm(b, n, m_in, precision, f"fwd {self.model.layer_names[li]} mb{mb}")
            inputs[li] = x
            if role == "row":
                z = dense_forward(x, params[li][0], np.zeros_like(params[li][1])) if self.math else None
                z = yield from self._all_reduce(("fwd", step, li, mb, j, k), "tensor", rank, z, b * fan_out)
                if self.math:
                    z += params[li][1]
            else:
                z = dense_forward(x, *params[li]) if self.math else None
            yield from device.vector.elementwise(b * n, 1, f"fwd {self.model.layer_names[li]} act")
            pre[li] = z
            x = z if (li == len(self.roles) - 1 or not self.math) else relu_forward(z)
        return inputs, pre, x

    def _backward(self, step, rank, layers, mb, s, inputs, pre, grad, dz_kept, grads) -> Generator:
        i, j, k = rank
        device, b, precision = self.devices[rank], self.spec.microbatch, self.spec.precision
        params = self.params[rank] if self.math else None
        for li in reversed(layers):
            role = self.roles[li]
            fan_in, fan_out = self.model.shapes[li]
            n = fan_out // self.t if role == "col" else fan_out
            m_in = fan_in // self.t if role == "row" else fan_in
            yield from device.systolic.gemm(b, m_in, n, precision, f"bwd {self.model.layer_names[li]} mb{mb}")
            dz = self.model.output_grad(li, pre[li], grad) if self.math else None
            if self.split:
                dz_kept[li] = dz
            else:
                yield from self._weight_grad(rank, li, inputs, {li: dz}, grads)
            if li == 0:
                grad = None
                continue
            grad = dense_input_grad(params[li][0], dz) if self.math else None
            if role == "col":  # each rank's input gradient is a partial sum over its columns
                grad = yield from self._all_reduce(("bwd", step, li, mb, j, k), "tensor", rank, grad, b * fan_in)
        return grad

    def _weight_grad(self, rank, li, inputs, dz, grads) -> Generator:
        fan_in, fan_out = self.model.shapes[li]
        role = self.roles[li]
        n = fan_out // self.t if role == "col" else fan_out
        m_in = fan_in // self.t if role == "row" else fan_in
        yield from self.devices[rank].systolic.gemm(m_in, n, self.spec.microbatch, self.spec.precision, f"wgrad {li}")
        if self.math:
            flat = flatten(dense_weight_grad(inputs[li], dz[li]))
            grads[li] = flat if grads[li] is None else grads[li] + flat

    def _send(self, key: tuple, array, src: int, dst: int, width: int) -> None:
        """Deliver `array` (micro-batch x `width`, fp32) to device dst's rank after the fabric's unloaded time
        (the sender goes on)."""
        i, k = key[-2], key[-1]
        a, b = self.place[(i, src, k)], self.place[(i, dst, k)]
        nbytes = self.spec.microbatch * width * 4
        delay = self.cluster.unloaded(a, b, nbytes) if a != b else 0.0
        event = self.mail.setdefault(key, self.env.event())

        def deliver() -> Generator:
            if delay > 0:
                yield self.env.timeout(delay)
            event.succeed(None if array is None else np.array(array, copy=True))

        self.env.process(deliver())

    def _receive(self, key: tuple) -> Generator:
        event = self.mail.setdefault(key, self.env.event())
        value = yield event
        del self.mail[key]
        return value

    def _gather(self, step: int, rank, li: int, index: int) -> Generator:
        """Sharded: all-gather layer li's weights from the ranks' blocks (every rank's copy is the same)."""
        weights = flatten(self.params[rank][li]) if self.math else None
        weights = yield from self._collective(
            "all_gather", ("ag", step, li, index, *rank[:2]), rank, weights, self._shard_elements(li)
        )
        if self.math:
            w, b = self.params[rank][li]
            nw, nb = unflatten(weights, [w.shape, b.shape])
            w[...], b[...] = nw, nb

    def _update(self, step: int, rank: tuple[int, int, int], li: int, grad, reduced: bool = False) -> Generator:
        """Reduce layer li's accumulated gradient over the data group, then SGD + momentum (distributed: on
        the rank's block, then an all-gather of the updated weights; sharded: `grad` is already the rank's
        reduced block)."""
        i, j, k = rank
        device, size = self.devices[rank], self._shard_elements(li)
        distributed = self.spec.optimizer in ("distributed", "sharded") and self.d > 1
        scale = np.float32(1.0 / (self.d * self.microbatches))
        if not distributed:
            flat = yield from self._collective("all_reduce", ("grad", step, li, i, j), rank, grad, size)
            yield from device.vector.elementwise(size, UPDATE_OPS, f"update {self.model.layer_names[li]}")
            if self.math:
                self._sgd(rank, li, flat * scale, slice(0, size))
            return
        flat = grad if reduced else (yield from self._collective("reduce_scatter", ("grad", step, li, i, j), rank, grad, size))
        edges = bounds(size, self.d)
        block = slice(edges[k], edges[k + 1])
        yield from device.vector.elementwise(block.stop - block.start, UPDATE_OPS, f"update {self.model.layer_names[li]}")
        weights = None
        if self.math:
            self._sgd(rank, li, flat[block] * scale, block)
            weights = flatten(self.params[rank][li])
        weights = yield from self._collective("all_gather", ("weights", step, li, i, j), rank, weights, size)
        if self.math:
            w, b = self.params[rank][li]
            nw, nb = unflatten(weights, [w.shape, b.shape])
            w[...], b[...] = nw, nb

    def _sgd(self, rank, li: int, mean: np.ndarray, block: slice) -> None:
        """SGD + momentum on `block` of layer li's flattened (w, b), from the mean gradient of that block."""
        w, b = self.params[rank][li]
        vw, vb = self.velocity[rank][li]
        flat_w, flat_b = w.reshape(-1), b.reshape(-1)
        cut = w.size
        for params, velocity, lo, hi in ((flat_w, vw, 0, cut), (flat_b, vb, cut, cut + b.size)):
            a, z = max(block.start, lo), min(block.stop, hi)
            if a < z:
                p, v = params[a - lo : z - lo], velocity[a - lo : z - lo]
                sgd_momentum(
                    p, np.ascontiguousarray(mean[a - block.start : z - block.start]), v, self.spec.lr, self.spec.momentum
                )

    def _collective(self, op: str, key: tuple, rank, array, elements: int, axis: str = "data") -> Generator:
        """A real ring `op` over the rank's data (or tensor) group, once every member has arrived; returns the
        rank's array after it (None timing-only)."""
        i, j, k = rank
        if axis == "mirror":  # the two devices that hold the same model stage (dual placement)
            members = sorted({(i, j, k), (i, self.p - 1 - j, k)})
        else:
            members = [(i, j, r) for r in range(self.d)] if axis == "data" else [(r, j, k) for r in range(self.t)]
        codec = self.codec if axis == "data" and op != "all_gather" else None  # gradients, not weights
        npus = [self.place[m] for m in members]
        return (yield from when_all_arrive(self, op, key, rank, array, elements, members, npus, axis, codec, op))

    def _all_reduce(self, key: tuple, axis: str, rank, array, elements: int) -> Generator:
        """Sum `array` over the rank's tensor group."""
        out = yield from self._collective("all_reduce", key, rank, array, elements, axis)
        return None if array is None else out.reshape(np.shape(array))
