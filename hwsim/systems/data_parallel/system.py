"""Data parallelism over the fabric: R replicas, a gradient all-reduce per layer overlapped with backward.

Replica r sits on NPU r (device `r<r>`). Every step each replica runs the forward of
every layer, then the backward from the last layer to the first. A layer's gradient
all-reduce (`system.collective`: algorithm, chunks, hierarchical, codec;
`hwsim.collectives`) starts as soon as every replica has finished that layer's backward,
and runs while the backward of the layers before it goes on; concurrent all-reduces
share the fabric's links under its sharing model, and with `order: fifo` or `lifo` also
share the `in_flight` chunk slots of each dimension, oldest or newest collective first
(ASTRA-sim's scheduling policy). The optimizer runs after the last all-reduce.

Two workloads:

- `model.kind: layers`: each layer holds the systolic unit for its given times, or runs
  its GEMM shape (`gemm: [m, n, k]`; the backward is the GEMM's two) through the
  systolic array's cycle model; timing-only, the gradient is the layer's `params` bytes;
- `model.kind: mlp`: each layer's GEMMs on the systolic array and its element-wise work
  on the vector unit (the cycle model), and in full mode the real math: replica r takes
  samples r b .. (r + 1) b - 1 of the step's R b, its float32 gradient is all-reduced as
  real arrays (reductions on the vector unit; with a codec, every message is the encoded
  buffer), and every replica applies SGD + momentum to the mean, so the replicas stay
  identical and train as one device with batch R b (to float32 rounding without a codec:
  a test holds them to it). Weights, velocity, gradients and activations sit in
  `system.bank`.

`mode: lockstep` simulates every replica but moves each all-reduce round's messages
together (`executor.run`'s `lockstep`): exact where every message of a round lands at
once (a test holds it to `exact` where `symmetric` is), far fewer events at scale.

`mode: symmetric` simulates replica 0 alone: its compute, and its part in each
all-reduce with its partners mirrored (`hwsim.collectives.executor`, `mirror`); exact for
identical replicas on a symmetric switch fabric (a test holds it to `exact` on 16 NPUs and
on 4 x 4 in every link-sharing model), refused otherwise, and timing-only.

`mode: compiled` plays every transfer of every replica as `exact` does, in the compiled engine
(`hwsim.collectives.compiled`, a Numba event loop), and the compute of one replica per compute class (the
healthy, the stragglers), as symmetric mode does: it accepts what the mirrored modes refuse (a slow or down
link, any algorithm, any fabric), timing-only. A test holds it to `exact` to float rounding on 16 and 64 NPUs
with stragglers and a slow NIC in every sharing model. messages.csv gets every message up to a million in a
run, beyond that those of NPU 0.

`collectives` holds one row per all-reduce: step, layer, bytes (of the gradient; `wire_bytes`
what replica 0 sent), start, end, and its exposed time (the part after the step's last
backward).
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Generator

import numpy as np
import pandas as pd
import simpy

from hwsim.codecs import CodecError, codec_from_setting
from hwsim.collectives.compiled import MESSAGES, engine_of, recorder
from hwsim.collectives.schedule import Slots, collective, phases
from hwsim.config.fields import to_plain
from hwsim.config.schema import Scenario
from hwsim.config.units import format_quantity
from hwsim.errors import ConfigError
from hwsim.kernels import sgd_momentum
from hwsim.network import Cluster
from hwsim.systems.checks import (
    check_bank,
    check_collective,
    check_stragglers,
    check_symmetric,
    slowed_compute,
    stragglers,
)
from hwsim.systems.stages import UPDATE_OPS
from hwsim.systems.training import finite_loss, flatten, unflatten
from hwsim.workloads.data import BatchStream

Progress = Callable[[int, int], None]
GRADIENT_BYTES = 4  # an mlp's gradients are all-reduced in float32


def check_scenario(scenario: Scenario, where: str) -> None:
    """A layers model (timing-only) or an mlp, a collective the fabric can run, a codec that exists."""
    system, model = scenario.system, scenario.model
    if model.kind not in ("layers", "mlp"):
        raise ConfigError(where, "model.kind", model.kind, "layers or mlp (data_parallel runs timed layers or an MLP)")
    full = scenario.run.mode == "full"
    if model.kind == "layers" and full:
        raise ConfigError(where, "run.mode", scenario.run.mode, "timing-only (a layers model has times, not math)")
    if model.kind == "mlp":
        check_bank(scenario.hardware.memory, "bank", system.bank, full, where)
    spec = system.collective
    if spec.codec is not None:
        try:
            codec_from_setting(spec.codec)
        except CodecError as err:
            raise ConfigError(where, "system.collective.codec", to_plain(spec.codec), f"a valid codec: {err}") from None
    check_stragglers(system, where)
    t, groups, sizes, names = check_collective(scenario, system.replicas, ("all_reduce",), where)
    if system.mode in ("symmetric", "lockstep", "compiled") and full:
        raise ConfigError(where, "system.mode", system.mode, "exact in full mode (the math runs transfer by transfer)")
    if system.mode == "exact":
        _check_exact_size(scenario, t, groups, sizes, names, where)
    elif system.mode == "compiled":
        check_compiled(scenario, sizes, names, where)
    else:
        check_symmetric(scenario, t, groups, names, system.replicas, where)


EXACT_TRANSFERS = 30_000_000
"""The most transfers an exact run may simulate: about 53 minutes at EXACT_TRANSFERS_PER_S. Measured here
(2 cores shared with other work) with `/usr/bin/time hwsim run scenarios/data_parallel_8x16.yaml
system.replicas=R "hardware.network.dims=[{...size: 8...}, {...size: R/8...}]" system.mode=exact`, the
simulation's wall time (the run's "wall") for its 2 steps of 24 hierarchical ring all-reduces:
R = 64: 86,016 transfers in 5.0 s (17,200/s), max RSS 0.46 GB; R = 256: 933,888 in 52.4 s (17,800/s),
0.58 GB; R = 1,024: 13,172,736 in 1,392 s (9,460/s), 2.7 GB (the report's tables of 13 million
messages). 65,536 replicas would be 5.2e10 transfers: two months."""
EXACT_PLAN_BYTES = 4 * 2**30
"""The most memory the collective plans of an exact run may take (every rank's steps, built once per
algorithm and group size): measured 190 B a step (a ring's or direct's Send or Recv), and 24 B more for
every block past the first a halving-doubling step names. (65,536 replicas on 8 x 8,192: a ring plan of
268 million steps, 51 GB: the MemoryError reported after 92 s.)"""
EXACT_TRANSFERS_PER_S = 9_500
"""Transfers an exact run simulates per second of wall time, measured here at 1,024 replicas (EXACT_TRANSFERS;
faster at fewer: 17,000 at 64 and 256)."""


COMPILED_TRANSFERS = 500_000_000
"""The most transfers a compiled run may simulate: about 8 minutes at COMPILED_TRANSFERS_PER_S."""
COMPILED_TRANSFERS_PER_S = 1_000_000
"""Transfers the compiled engine plays per second of wall time, measured here (`hwsim bench`'s compiled rows, one
step of the 24-layer job, flow): 3.1 million on 256 NPUs on one switch in 3.2 s; 6.6 million on 1,024 on 8 x 128
in 4.5 s with 1 % stragglers and 5.4 s with a slow NIC. Slower where many flows share one max-min component
(eight 128-NPU jobs backed up on a 2:1 fat tree: about 400,000 a second)."""


def check_compiled(scenario: Scenario, sizes: list[int], names: list[str], where: str) -> None:
    """Compiled mode plays what exact plays, timing-only: no codec, and a size it finishes."""
    system = scenario.system
    if system.collective.codec is not None:
        raise ConfigError(where, "system.mode", "compiled", "exact with a codec (compiled moves bytes, not encoded buffers)")
    transfers, _ = exact_cost(scenario, sizes, names)
    if transfers > COMPILED_TRANSFERS:
        raise ConfigError(
            where,
            "system.mode",
            "compiled",
            f"at most {COMPILED_TRANSFERS:,} transfers (about {COMPILED_TRANSFERS / COMPILED_TRANSFERS_PER_S / 60:.0f} "
            f"minutes); here {transfers:,.0f}: symmetric or lockstep where they apply, or fewer replicas, layers, chunks or steps",
        )


def _sends_per_rank(op: str, algorithm: str, n: int) -> float:
    """Messages each rank sends in `op` by `algorithm` on n ranks (a double binary tree: on average)."""
    if n < 2:
        return 0.0
    if algorithm == "double_binary_tree":
        return 4 * (n - 1) / n  # two trees, each edge carries one message up and one down
    per_phase = math.log2(n) if algorithm == "halving_doubling" else n - 1  # ring, direct
    return 2 * per_phase if op == "all_reduce" else per_phase


def exact_cost(scenario: Scenario, sizes: list[int], names: list[str]) -> tuple[float, float]:
    """(transfers, bytes of collective plans) of `scenario` in exact mode: every rank's every send of every
    chunk of every layer's all-reduce in every step; and the plans (each built once) those sends come from.
    `sizes`: the group size in each dimension (one: the flat all-reduce), `names`: the algorithm of each."""
    system, model = scenario.system, scenario.model
    layers = len(model.layers) * model.repeat if model.kind == "layers" else len(model.hidden) + 1
    steps = phases("all_reduce", len(sizes)) if len(sizes) > 1 else [("all_reduce", 0)]
    algorithm = [names[j] if len(names) > 1 else names[0] for j in range(len(sizes))]
    per_rank = sum(_sends_per_rank(op, algorithm[j], sizes[j]) for op, j in steps)
    transfers = system.steps * layers * system.collective.chunks * system.replicas * per_rank
    plan_bytes = 0.0
    for op, j in sorted(set(steps)):
        n, name = sizes[j], algorithm[j]
        sends = n * _sends_per_rank(op, name, n)
        blocks = 2 * n * (n - 1) * (2 if op == "all_reduce" else 1) if name == "halving_doubling" else 0
        plan_bytes += 2 * sends * 190 + max(blocks - 2 * sends, 0) * 24
    return transfers, plan_bytes


def _check_exact_size(scenario: Scenario, t, groups, sizes: list[int], names: list[str], where: str) -> None:
    """Refuse an exact run this machine cannot finish in reasonable time or memory (`EXACT_TRANSFERS`,
    `EXACT_PLAN_BYTES`), before it starts, saying which of the modes that scale applies here."""
    transfers, plan_bytes = exact_cost(scenario, sizes, names)
    if transfers <= EXACT_TRANSFERS and plan_bytes <= EXACT_PLAN_BYTES:
        return
    plans = format_quantity(plan_bytes, "size")
    verdicts = []
    for mode in ("symmetric", "lockstep"):
        trial = dataclasses.replace(scenario, system=dataclasses.replace(scenario.system, mode=mode))
        try:
            check_symmetric(trial, t, groups, names, scenario.system.replicas, where)
        except ConfigError as err:
            verdicts.append(f"{mode} does not apply ({err.expected.removeprefix('exact ')})")
            continue
        if mode == "lockstep" and plan_bytes > EXACT_PLAN_BYTES:
            verdicts.append(f"lockstep builds the same {plans} of plans")
        else:
            verdicts.append(f"{mode} applies")
    timing = " (in timing-only mode)" if scenario.run.mode == "full" else ""
    raise ConfigError(
        where,
        "system.mode",
        "exact",
        f"symmetric (replica 0 alone, its partners mirrored) or lockstep (every replica, each round's messages "
        f"together) at {scenario.system.replicas:,} replicas{timing}: exact simulates every transfer, here "
        f"{transfers:,.0f} (about {transfers / EXACT_TRANSFERS_PER_S / 3600:,.1f} hours at the "
        f"{EXACT_TRANSFERS_PER_S:,} a second measured) from {plans} of collective plans, and is refused beyond "
        f"{EXACT_TRANSFERS:,} transfers or {format_quantity(EXACT_PLAN_BYTES, 'size')} of plans. Here "
        f"{'; '.join(verdicts)}; else fewer replicas, layers, chunks or steps",
    )


class DataParallel:
    """R replicas and their per-layer gradient all-reduces; `run()` is the SimPy process."""

    check = staticmethod(check_scenario)
    takes_layers = True

    @staticmethod
    def npu_names(spec) -> list[str]:
        return [f"r{r}" for r in range(spec.replicas)]

    @staticmethod
    def check_samples(spec, train: int) -> None:
        """Each step takes replicas x batch distinct samples."""
        if spec.batch * spec.replicas > train:
            raise ConfigError(
                "scenario",
                "system.batch",
                spec.batch,
                f"at most {train // spec.replicas} ({train} training samples / {spec.replicas} replicas)",
            )

    def __init__(
        self, scenario: Scenario, cluster: Cluster, model, data, rng: np.random.Generator, progress: Progress | None = None
    ):
        self.spec = spec = scenario.system
        self.env, self.cluster, self.model, self.data, self.progress = cluster.env, cluster, model, data, progress
        self.metric = cluster.recorder.metric
        self.eval_every = scenario.run.eval_every
        self.seed = scenario.seed
        self.slow = stragglers(spec, scenario.seed)  # the replicas that compute slower
        slow_hw = slowed_compute(scenario.hardware, spec.stragglers.slowdown) if self.slow else None
        # symmetric: one replica per compute class stands for its class (replica 0, and the first of the other)
        classes = (
            [0, next(r for r in range(spec.replicas) if (r in self.slow) != (0 in self.slow))]
            if self.slow and len(self.slow) < spec.replicas
            else [0]
        )
        by_class = spec.mode in ("symmetric", "compiled")
        self.simulated = classes if by_class else list(range(spec.replicas))
        names = self.npu_names(spec)
        self.devices = [cluster.add(r, names[r], slow_hw if r in self.slow else scenario.hardware) for r in self.simulated]
        self.factor = [spec.stragglers.slowdown if r in self.slow else 1.0 for r in self.simulated]
        count = {names[r]: (len(self.slow) if r in self.slow else spec.replicas - len(self.slow)) for r in classes}
        self.represented = lambda device: count[device] if by_class else 1  # NPUs it stands for
        self.samples_per_step = spec.batch * spec.replicas
        self.timed = scenario.model.kind == "layers"
        self.ops = None if self.timed else model.layer_ops(spec.batch)
        self.names = [x.name for x in model.layers] if self.timed else list(model.layer_names)
        self.grad_bytes = [x.param_bytes for x in model.layers] if self.timed else [op.params * GRADIENT_BYTES for op in self.ops]
        self.codec = None if spec.collective.codec is None else codec_from_setting(spec.collective.codec)
        order = spec.collective.order
        self.slots = None if order == "none" else Slots(self.env, spec.collective.in_flight, order)
        rank = {npu: r for r, npu in enumerate(cluster.placement)} if cluster.placement else {}
        self.transport = cluster.transport("allreduce", lambda npu: f"r{rank.get(npu, npu)}")
        self.engine = engine_of(cluster) if spec.mode == "compiled" else None
        self.record = recorder(cluster, self.transport) if self.engine is not None else None
        self.watch = None  # compiled: messages.csv gets every message, or beyond MESSAGES the first NPU's
        if self.engine is not None:
            shape = check_collective(scenario, spec.replicas, ("all_reduce",), "")[2:]
            if exact_cost(scenario, *shape)[0] > MESSAGES:
                self.watch = (cluster.placement or [0])[0]
        self.math = data is not None
        self.initial = model.init_params(rng) if self.math else None
        self.batches = BatchStream(len(data.y_train), self.samples_per_step, rng) if self.math else None
        self.params = [[tuple(a.copy() for a in layer) for layer in self.initial] for _ in self.devices] if self.math else None
        self.velocity = (
            [[tuple(np.zeros_like(a) for a in layer) for layer in self.initial] for _ in self.devices] if self.math else None
        )
        self.grads: list[list] = [[None] * len(self.names) for _ in self.devices]
        self.step_samples: list[np.ndarray] = []
        self.losses: list[float] = []
        self.rows: list[list] = []
        self.exposed: list[float] = []  # per step: the last all-reduce's end - the last backward's
        self.holds_memory = not self.timed
        """Whether the banks hold what the run needs (a layers model's times say nothing of its memory)."""
        if self.ops is not None:
            for device in self.devices:
                bank = device.bank(spec.bank)
                for name, nbytes in zip(self.names, self.grad_bytes, strict=True):
                    for what in ("weights", "velocity"):
                        bank.allocate(f"{name}.{what}", nbytes=nbytes)

    def run(self) -> Generator:
        for step in range(1, self.spec.steps + 1):
            start = self.env.now
            if self.math:
                self.step_samples.append(self.batches.next())
            ready = [self.env.event() for _ in self.names]  # every replica has layer l's gradient
            waiting = [len(self.devices)] * len(self.names)
            computing = [self.env.process(self._replica(r, ready, waiting)) for r in range(len(self.devices))]
            reduces = [self.env.process(self._reduce(step, li, ready[li])) for li in reversed(range(len(self.names)))]
            yield simpy.AllOf(self.env, computing)
            computed = self.env.now
            yield simpy.AllOf(self.env, reduces)
            self.exposed.append(self.env.now - computed)
            for row in self.rows:
                if row[0] == step:
                    row[-1] = max(0.0, row[6] - max(row[5], computed))
            yield simpy.AllOf(self.env, [self.env.process(self._optimizer(r)) for r in range(len(self.devices))])
            self.metric(self.env.now, step, "step_time_s", self.env.now - start)
            if self.math:
                self._learning_metrics(step)
            if self.progress:
                self.progress(step, self.spec.steps)

    def _replica(self, r: int, ready: list[simpy.Event], waiting: list[int]) -> Generator:
        """One replica's forward and backward; the last replica to finish a layer's backward releases its
        all-reduce."""
        device, last, factor = self.devices[r], len(self.names) - 1, self.factor[r]
        if self.timed:
            for layer in self.model.layers:
                yield from self._timed(device, layer, "forward", factor)
        else:
            acts, pre = yield from self._forward(r)
            grad = self._loss(r, acts[-1])
        for li in reversed(range(last + 1)):
            if self.timed:
                yield from self._timed(device, self.model.layers[li], "backward", factor)
            else:
                grad = yield from self._backward(r, li, acts, pre, grad)
            waiting[li] -= 1
            if waiting[li] == 0:
                ready[li].succeed()

    def _timed(self, device, layer, what: str, factor: float = 1.0) -> Generator:
        """A `layers` model's forward or backward of `layer`: its given time (times a straggler's `factor`), or
        its GEMMs on the systolic array (the backward of a GEMM is its two GEMMs)."""
        label = f"{'fwd' if what == 'forward' else 'bwd'} {layer.name}"
        if layer.gemm is None:
            yield from device.systolic.busy((layer.forward_s if what == "forward" else layer.backward_s) * factor, label)
        else:
            for g in (layer.gemm,) if what == "forward" else layer.gemm.backward():
                yield from device.systolic.gemm(g.m, g.n, g.k, self.spec.compute_precision, label, g.count)

    def _forward(self, r: int) -> Generator:
        """An mlp's forward on replica r: the cycle model's ops, and the math on its share of the batch."""
        device, bank = self.devices[r], self.devices[r].bank(self.spec.bank)
        x = None
        if self.math:
            b = self.spec.batch
            x = self.data.x_train[self.step_samples[-1][r * b : (r + 1) * b]]
        acts, pre = [x], []
        for li, op in enumerate(self.ops):
            for g in op.forward:
                yield from device.systolic.gemm(g.m, g.n, g.k, self.spec.compute_precision, f"fwd {op.name}", g.count)
            yield from device.vector.elementwise(op.forward_vector_ops, 1, f"fwd {op.name} act")
            z, a = self.model.forward_layer(li, acts[-1], *self.params[r][li]) if self.math else (None, None)
            pre.append(z)
            acts.append(a)
            bank.allocate(f"{op.name}.act", nbytes=op.activations * GRADIENT_BYTES)
        return acts, pre

    def _loss(self, r: int, logits):
        if not self.math:
            return None
        b = self.spec.batch
        loss, grad = self.model.loss(logits, self.data.y_train[self.step_samples[-1][r * b : (r + 1) * b]])
        self.losses.append(finite_loss(loss, self.devices[r].name))
        return grad

    def _backward(self, r: int, li: int, acts, pre, grad) -> Generator:
        """An mlp layer's backward on replica r; keeps its flat float32 gradient for the all-reduce and
        returns the gradient of its input."""
        device, op = self.devices[r], self.ops[li]
        for g in op.backward:
            yield from device.systolic.gemm(g.m, g.n, g.k, self.spec.compute_precision, f"bwd {op.name}", g.count)
        yield from device.vector.elementwise(op.backward_vector_ops, 1, f"bwd {op.name} act")
        bank = device.bank(self.spec.bank)
        bank.free(f"{op.name}.act")
        bank.allocate(f"{op.name}.grad", nbytes=self.grad_bytes[li])
        if not self.math:
            return None
        d_input, dw, db = self.model.backward_layer(li, acts[li], pre[li], self.params[r][li][0], grad)
        self.grads[r][li] = flatten((dw, db))
        return d_input

    def _reduce(self, step: int, li: int, ready: simpy.Event) -> Generator:
        yield ready
        c = self.spec.collective
        names = [c.algorithm] if isinstance(c.algorithm, str) else list(c.algorithm)
        start = self.env.now
        if self.engine is not None:
            members = self.cluster.placement or range(self.spec.replicas)
            ended, wire = self.engine.launch(
                "all_reduce",
                names[0] if len(names) == 1 else names,
                self.grad_bytes[li],
                members,
                chunks=c.chunks,
                in_flight=c.in_flight,
                hierarchical=c.hierarchical,
                order=c.order,
                reduction_rate=c.reduction_rate,
                record=self.record,
                watch=self.watch,
                account=getattr(self.cluster, "account", 0),
            )
            yield ended
            self._row(step, li, wire, start)
            return
        out = yield from collective(
            self.env,
            self.cluster.fabric,
            "all_reduce",
            names[0] if len(names) == 1 else names,
            self.grad_bytes[li],
            chunks=c.chunks,
            in_flight=c.in_flight,
            hierarchical=c.hierarchical,
            data=[g[li] for g in self.grads] if self.math else None,
            devices=None if self.timed else self.devices,
            npus=self.spec.replicas,
            symmetric=self.spec.mode == "symmetric",
            codec=self.codec,
            seed=self.seed,
            stream=step * len(self.names) + li,
            slots=self.slots,
            transport=self.transport,
            reduction_rate=c.reduction_rate,
            lockstep=self.spec.mode == "lockstep",
            members=self.cluster.placement,
        )
        self._row(step, li, out.bytes_sent[0], start)

    def _row(self, step: int, li: int, wire: int, start: float) -> None:
        """An all-reduce's row (`collectives`) and its entry in the trace."""
        algorithm = str(self.spec.collective.algorithm)
        self.rows.append([step, self.names[li], self.grad_bytes[li], wire, algorithm, start, self.env.now, 0.0])
        name = f"all-reduce {self.names[li]} (step {step})"
        self.cluster.recorder.collective(name, "all_reduce", algorithm, self.grad_bytes[li], start, self.env.now)

    def _optimizer(self, r: int) -> Generator:
        """The update after the last all-reduce: an mlp's SGD + momentum on the mean gradient (vector unit),
        then `system.optimizer`'s time."""
        device = self.devices[r]
        for li, op in enumerate(self.ops or []):
            yield from device.vector.elementwise(op.params, UPDATE_OPS, f"update {op.name}")
            device.bank(self.spec.bank).free(f"{op.name}.grad")
            if self.math:
                mean = self.grads[r][li] * np.float32(1.0 / self.spec.replicas)
                dw, db = unflatten(mean, [p.shape for p in self.params[r][li]])
                (w, b), (vw, vb) = self.params[r][li], self.velocity[r][li]
                sgd_momentum(w, dw, vw, self.spec.lr, self.spec.momentum)
                sgd_momentum(b, db, vb, self.spec.lr, self.spec.momentum)
        if self.spec.optimizer > 0:
            yield from device.vector.busy(self.spec.optimizer * self.factor[r], "optimizer")

    def _learning_metrics(self, step: int) -> None:
        """The step's mean training loss over the replicas and, every eval_every steps, test loss and accuracy."""
        self.metric(self.env.now, step, "loss", float(np.mean(self.losses)))
        self.losses.clear()
        if step % self.eval_every == 0 or step == self.spec.steps:
            loss, acc = self.model.evaluate(self.final_params(), self.data.x_test, self.data.y_test)
            self.metric(self.env.now, step, "test_loss", loss)
            self.metric(self.env.now, step, "test_accuracy", acc)

    def final_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Replica 0's weights, layer by layer (full mode; every replica holds the same)."""
        return self.params[0]

    @property
    def collectives(self) -> pd.DataFrame:
        """One row per all-reduce: step, layer, bytes, wire bytes (replica 0 sent), algorithm, start, end,
        exposed seconds."""
        columns = ["step", "layer", "bytes", "wire_bytes", "algorithm", "start_s", "end_s", "exposed_s"]
        return pd.DataFrame(self.rows, columns=columns)

    def mirrored_links(self, links: pd.DataFrame) -> pd.DataFrame:
        """Symmetric mode: every replica's links carry what replica 0's carry (the symmetry the mode
        rests on), so they get its bytes, busy time and utilization, and `mirrored` says which did."""
        links = links.assign(mirrored=False)
        if self.spec.mode != "symmetric":
            return links
        npu = links.src.str.fullmatch(r"r\d+") | links.dst.str.fullmatch(r"r\d+")
        own = links.link.str.replace(r"^r\d+\.", "r0.", regex=True)
        copy = npu & ~links.link.str.startswith("r0.")
        values = links.set_index("link").loc[own[copy], ["bytes", "busy_s", "util"]].to_numpy()
        links.loc[copy, ["bytes", "busy_s", "util"]] = values
        links.loc[copy, "mirrored"] = True
        return links

    def summary(self, trace) -> dict:
        """The `data_parallel` section of summary.json (per step: compute, all-reduce time summed over
        layers, the exposed part after the last backward, the bytes replica 0 sent)."""
        table = self.collectives
        steps = max(len(self.exposed), 1)
        c = self.spec.collective
        section = {
            "replicas": self.spec.replicas,
            "compute_s": self._compute_s(),
            "allreduce_s": float((table.end_s - table.start_s).sum()) / steps,
            "exposed_allreduce_s": float(np.mean(self.exposed)) if self.exposed else 0.0,
            "optimizer_s": self.spec.optimizer,
            "gradient_bytes": sum(self.grad_bytes),
            "wire_bytes": float(table.wire_bytes.sum()) / steps,
            "collective": {
                "algorithm": c.algorithm,
                "hierarchical": c.hierarchical,
                "codec": to_plain(c.codec),
                "order": c.order,
            },
        }
        if self.slow:  # compute-only stragglers: the healthy replicas wait out the difference at each all-reduce
            slowdown = self.spec.stragglers.slowdown
            section["stragglers"] = {
                "count": len(self.slow),
                "replicas": sorted(self.slow),
                "slowdown": slowdown,
                "compute_s": section["compute_s"] * slowdown,
                "healthy_wait_s": section["compute_s"] * (slowdown - 1),
            }
        return {"data_parallel": section}

    def _compute_s(self) -> float:
        """One healthy replica's forward and backward time per step (given, or the cycle model's)."""
        device = next((d for d, f in zip(self.devices, self.factor, strict=True) if f == 1.0), self.devices[0])

        def gemms(gemms) -> float:
            return sum(device.systolic.seconds(g.m, g.n, g.k, self.spec.compute_precision, g.count) for g in gemms)

        if self.timed:
            return sum(
                x.forward_s + x.backward_s if x.gemm is None else gemms((x.gemm, *x.gemm.backward())) for x in self.model.layers
            )
        vector = sum(
            device.vector.seconds(op.forward_vector_ops) + device.vector.seconds(op.backward_vector_ops) for op in self.ops
        )
        return sum(gemms(op.forward + op.backward) for op in self.ops) + vector
