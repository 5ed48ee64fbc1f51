"""Pipeline-parallel training (mechanism M4): a schedule of stage ops on devices, with data parallelism.

The model is cut into S = p v stages (`stages.split_layers`); stage s runs on the
device the schedule's placement names. Each device's controller runs its ops in
the schedule's order, every step:

- F(s, j) waits for the activations of stage s - 1 (stage 0 reads its micro-batch),
  runs the stage's forward GEMMs on the systolic array and its element-wise work on
  the vector unit, keeps its activations in the bank until B(s, j), and sends its
  output to the next stage's device through the NICs (same device: handed over);
- B(s, j) waits for the gradient from stage s + 1 (the last stage starts from the
  loss), runs the backward and adds the weight gradient into the stage's
  accumulator, frees the activations and sends the input gradient back;
- in a schedule with a split backward (zero bubble, `policies.zero_bubble`), B(s, j)
  runs only the input-gradient GEMMs, sends the gradient back and keeps what the
  weight gradient needs (each GEMM's input and output gradient, buffer "wgt s.j") in
  place of the activations; W(s, j) runs the weight-gradient GEMMs and the bias sums,
  adds them into the accumulator and frees that buffer.

With D replicas, when a stage's last backward (or W) of the step ends its gradient is
all-reduced over the replicas by the collective library's ring (`hwsim.collectives`:
reduce-scatter, then all-gather: 2 (D - 1) messages of 1/D of the gradient per device,
each reduce step an add on the vector unit) while the device goes on with its other
ops. The optimizer (SGD + momentum on the mean gradient over the D m micro-batches)
follows the reductions. With `replicas: one` only replica 0 is simulated and its ring
partners mirror it: each ring message leaves on the device's uplink and the partner's
identical message arrives on its downlink (the executor's `mirror`; exact when the
replicas are identical, as in timing-only runs).

Real math runs when each op completes (full mode); timing-only runs move
placeholders of the real sizes. `network: free` hands everything over at once (the
setting the closed-form makespans assume).

With `fill`, a second model instance runs in the idle windows predicted for this
schedule (mechanism M2, `filling.SecondInstance`).
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
import simpy

from hwsim.collectives import plan, run
from hwsim.collectives.executor import InstantTransport
from hwsim.config.schema import Scenario
from hwsim.errors import InvalidSchedule
from hwsim.hardware import Device, Placeholder
from hwsim.network import Cluster
from hwsim.policies import Op, ScheduleError, execute
from hwsim.systems.pipeline.checks import check_pipeline, check_samples, stage_plan
from hwsim.systems.pipeline.filling import SecondInstance
from hwsim.systems.stages import (
    UPDATE_OPS,
    stage_backward,
    stage_forward,
    stage_input_backward,
    stage_update,
    stage_weight_backward,
)
from hwsim.systems.storage import element_bytes
from hwsim.systems.training import finite_loss
from hwsim.workloads import make_model
from hwsim.workloads.data import BatchStream, Dataset

Progress = Callable[[int, int], None]
FILL_STREAM = 2  # the second instance's random stream: seed children 0 and 1 are the run's data and model


def buffer_name(key: tuple) -> str:
    """The bank buffer a message keyed (kind, replica, step, stage, micro-batch) lands in, named
    for the op that consumes it. Kinds: F, B, AR, T (DualPipe's twin gradient); fF, fB for the second
    instance of a filled pipeline."""
    kind, _, _, s, j = key
    prefix = "fill " if kind.startswith("f") else ""
    if kind.endswith("F"):
        return f"{prefix}in F{s + 1}.{j}"
    return f"{prefix}in {kind.removeprefix('f')}{s}.{j}"


class Pipeline:
    """Devices "d{i}" (or "r{r}.d{i}" with several simulated replicas) on the cluster's fabric, replica r's
    device d on NPU r p + d; `run()` is the SimPy process."""

    check = staticmethod(check_pipeline)
    check_samples = staticmethod(check_samples)

    @staticmethod
    def npu_names(spec) -> list[str]:
        """The simulated replicas' devices (`replicas: one`: replica 0's alone)."""
        p, D = spec.devices, spec.data_parallel if spec.replicas == "all" else 1
        return [f"d{d}" if D == 1 else f"r{r}.d{d}" for r in range(D) for d in range(p)]

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
        env, recorder = cluster.env, cluster.recorder
        self.cluster = cluster
        self.env, self.model, self.data, self.recorder, self.progress = env, model, data, recorder, progress
        self.eval_every = scenario.run.eval_every
        plan = stage_plan(scenario, model)
        self.shape, self.schedule, self.split = plan.shape, plan.schedule, plan.split
        self.stage_layers, self.costs = plan.stage_layers, plan.costs
        self.layer_ops = model.layer_ops(spec.microbatch)
        self.math = data is not None
        self.replicas = spec.data_parallel if spec.replicas == "all" else 1
        self.elem = element_bytes(scenario.hardware.memory[spec.bank].precision)
        self.samples_per_step = spec.data_parallel * spec.microbatches * spec.microbatch
        self.devices: dict[tuple[int, int], Device] = {}
        names = self.npu_names(spec)
        for r in range(self.replicas):
            for d in range(self.shape.devices):
                npu = r * self.shape.devices + d
                device = cluster.add(npu, names[npu], scenario.hardware)
                self.devices[r, d] = device
                env.process(self._dispatch(device))
        self._mail: dict[tuple, simpy.Event] = {}
        self._reductions: dict[tuple[int, int], list] = {}  # (step, stage) -> [replicas still to come, done]
        self._flat: dict[tuple[int, int], np.ndarray] = {}  # (replica, stage) -> its gradient, flat, while reduced
        p = self.shape.devices
        self.transport = (
            InstantTransport()
            if spec.network == "free"
            else cluster.transport("allreduce", lambda npu: f"r{npu // p}.d{npu % p}")
        )
        self.params: dict[tuple[int, int], list] = {}  # (replica, stage) -> [(w, b) per layer]
        self.velocity: dict[tuple[int, int], list] = {}
        self.grads: dict[tuple[int, int], list] = {}
        self.initial = model.init_params(rng) if self.math else None
        self.batches = BatchStream(len(data.y_train), self.samples_per_step, rng) if self.math else None
        self.kept: dict[tuple[int, int, int], list] = {}  # (replica, stage, micro-batch) -> (input, z) per layer
        self.saved: dict[tuple[int, int, int], list] = {}  # the same -> (input, dL/dz) per layer, from B to W
        self.step_samples: list[np.ndarray] = []  # indices of each step: replica r, micro-batch j at (r m + j) * microbatch
        self.losses: list[float] = []
        self.fill = None
        if spec.fill is not None:
            fill_rng = np.random.default_rng(np.random.SeedSequence(scenario.seed, spawn_key=(FILL_STREAM,)))
            self.fill = SecondInstance(self, scenario, make_model(spec.fill.model), data, fill_rng)

    # --- processes ------------------------------------------------------------------

    def run(self) -> Generator:
        try:
            self.predicted_times()
        except ScheduleError as err:  # a deadlock or malformed op lists: a result with a diagnosis
            raise InvalidSchedule(f"schedule {self.spec.schedule!r}: {err}") from None
        self._hold_state()
        if self.fill:
            self.fill.plan()
        done = {key: [self.env.event() for _ in range(self.spec.steps)] for key in self.devices}
        for (r, d), events in done.items():
            self.env.process(self._controller(r, d, events))
        fill_done = self.fill.start(self._step_ready) if self.fill else []
        for step in range(self.spec.steps):
            start = self.env.now
            if self.math:
                self.step_samples.append(self.batches.next())
            if self.fill:
                self.fill.next_step()
            self._step_ready[step].succeed()
            yield simpy.AllOf(self.env, [events[step] for events in done.values()] + fill_done[step : step + 1])
            self.recorder.metric(self.env.now, step + 1, "step_time_s", self.env.now - start)
            if self.math:
                evaluate = (step + 1) % self.eval_every == 0 or step + 1 == self.spec.steps
                self._learning_metrics(step, "", self.losses, evaluate, self.model, self.final_params)
                if self.fill and self.fill.microbatches:
                    self._learning_metrics(step, "fill_", self.fill.losses, evaluate, self.fill.model, self.fill.final_params)
            if self.progress:
                self.progress(step + 1, self.spec.steps)

    def _learning_metrics(self, step: int, prefix: str, losses: list[float], evaluate: bool, model, params) -> None:
        """Mean training loss of the step (then cleared) and, when `evaluate`, test loss and accuracy."""
        self.recorder.metric(self.env.now, step + 1, f"{prefix}loss", float(np.mean(losses)))
        losses.clear()
        if evaluate:
            loss, acc = model.evaluate(params(), self.data.x_test, self.data.y_test)
            self.recorder.metric(self.env.now, step + 1, f"{prefix}test_loss", loss)
            self.recorder.metric(self.env.now, step + 1, f"{prefix}test_accuracy", acc)

    def _controller(self, r: int, d: int, done: list[simpy.Event]) -> Generator:
        device = self.devices[r, d]
        mine = self.shape.stages_of(d)
        for step in range(self.spec.steps):
            yield self._step_ready[step]
            backwards = dict.fromkeys(mine, 0)  # ops that have added into the stage's gradient
            reductions = []
            last = "W" if self.split else "B"
            for op in self.schedule[d]:
                if op.kind == "F":
                    yield from self._forward(r, step, op, device)
                elif op.kind == "B":
                    yield from self._backward(r, step, op, device)
                else:
                    yield from self._weight(r, step, op, device)
                if op.kind == last:
                    backwards[op.stage] += 1
                    if backwards[op.stage] == len(self.shape.microbatches_of(op.stage)):
                        reductions.append(self.env.process(self._allreduce(r, d, step, op.stage)))
            yield simpy.AllOf(self.env, reductions)
            for s in mine:
                yield from self._update(r, step, s, device)
            done[step].succeed()

    def _forward(self, r: int, step: int, op: Op, device: Device) -> Generator:
        s, j = op.stage, op.mb
        cost = self.costs[s]
        bank = device.bank(self.spec.bank)
        if self.shape.first(s):
            x = self._microbatch(step, r, j)
            bank.allocate(f"in F{s}.{j}", nbytes=cost.inputs * self.elem)
        else:
            x = yield from self.receive(("F", r, step, s - 1, j))
        bank.allocate(f"act {s}.{j}", nbytes=cost.activations * self.elem)  # the op writes them as it runs
        start = yield from device.systolic.busy(cost.forward_systolic_s, f"fwd s{s} mb{j}", cost.forward_flops)
        yield from device.vector.busy(cost.forward_vector_s, f"fwd s{s} mb{j} act", cost.forward_vector_ops)
        out = None
        if self.math:
            out, self.kept[r, s, j] = stage_forward(self.model, self.stage_layers[s], self.params[r, s], x)
        self.recorder.op(device.name, step + 1, "forward", s, j, start, self.env.now)
        if self.shape.last(s):
            grad = None
            if self.math:
                labels = self.data.y_train[self._indices(step, r, j)]
                loss, grad = self.model.loss(out, labels)
                self.losses.append(finite_loss(loss, f"{device.name} (step {step + 1}, micro-batch {j})"))
            self.mail_event(("B", r, step, s + 1, j)).succeed(grad)  # the loss's gradient, for this device's B
        else:
            self._deliver(r, step, "F", s, j, out, cost.outputs, device)

    def _backward(self, r: int, step: int, op: Op, device: Device) -> Generator:
        s, j = op.stage, op.mb
        cost = self.costs[s]
        bank = device.bank(self.spec.bank)
        grad = yield from self.receive(("B", r, step, s + 1, j))
        if self.split:
            systolic, vector, flops = cost.input_systolic_s, cost.input_vector_s, cost.backward_flops - cost.weight_flops
            elements = cost.input_vector_ops
        else:
            systolic, vector, flops = cost.backward_systolic_s, cost.backward_vector_s, cost.backward_flops
            elements = cost.backward_vector_ops
        start = yield from device.systolic.busy(systolic, f"bwd s{s} mb{j}", flops)
        yield from device.vector.busy(vector, f"bwd s{s} mb{j} act", elements)
        out = None
        if self.math:
            kept = self.kept.pop((r, s, j))
            layers, params = self.stage_layers[s], self.params[r, s]
            if self.split:
                out, self.saved[r, s, j] = stage_input_backward(self.model, layers, params, kept, grad)
            else:
                out = stage_backward(self.model, layers, params, self.grads[r, s], kept, grad)
        for name in (f"act {s}.{j}", f"in F{s}.{j}", f"in B{s + 1}.{j}"):
            if bank.holds(name):  # inputs handed over on the same device hold no buffer of their own
                bank.free(name)
        if self.split:  # what W needs (layer inputs, dL/dz written over z) stays in the activations' place
            bank.allocate(f"wgt {s}.{j}", nbytes=cost.weight_inputs * self.elem)
        self.recorder.op(device.name, step + 1, "backward", s, j, start, self.env.now)
        if not self.shape.first(s):
            self._deliver(r, step, "B", s, j, out, cost.inputs, device)

    def _weight(self, r: int, step: int, op: Op, device: Device) -> Generator:
        """W(s, j) of a split backward: the weight-gradient GEMMs and bias sums, added into the accumulator."""
        s, j = op.stage, op.mb
        cost = self.costs[s]
        start = yield from device.systolic.busy(cost.weight_systolic_s, f"wgt s{s} mb{j}", cost.weight_flops)
        yield from device.vector.busy(cost.weight_vector_s, f"wgt s{s} mb{j} acc", cost.weight_vector_ops)
        if self.math:
            stage_weight_backward(self.model, self.grads[r, s], self.saved.pop((r, s, j)))
        device.bank(self.spec.bank).free(f"wgt {s}.{j}")
        self.recorder.op(device.name, step + 1, "weight", s, j, start, self.env.now)

    def _allreduce(self, r: int, d: int, step: int, s: int) -> Generator:
        """Replica r's part in the all-reduce of stage `s`'s accumulated gradient over the D replicas; the
        last replica to get there starts it (they all do at once when the replicas are identical). With
        dual placement the stage's two copies first sum their gradients (`_twin_sum`)."""
        device = self.devices[r, d]
        if self.shape.placement == "dual":
            yield from self._twin_sum(r, step, s, device)
        if self.spec.data_parallel == 1:
            return
        start = self.env.now
        if self.math:
            self._flat[r, s] = self._flat_grads(r, s)
        key = (step, s)
        if key not in self._reductions:
            self._reductions[key] = [self.replicas, self.env.event()]
        entry = self._reductions[key]
        entry[0] -= 1
        if entry[0] == 0:
            self.env.process(self._ring(step, d, s, entry[1]))
        yield entry[1]
        if self.math:
            self._unflatten(r, s, self._flat.pop((r, s)))
        self.recorder.op(device.name, step + 1, "allreduce", s, -1, start, self.env.now)

    def _ring(self, step: int, d: int, s: int, done: simpy.Event) -> Generator:
        """The ring all-reduce (`hwsim.collectives`) of stage `s` over the replicas' devices d: 2 (D - 1)
        messages of 1/D of the gradient per device, each reduce step an add on the vector unit. With
        `replicas: one` replica 0 plays its part alone, its partners mirrored."""
        D, p, start = self.spec.data_parallel, self.shape.devices, self.env.now
        nbytes = self.costs[s].params * self.elem
        out = yield from run(
            self.env,
            self.cluster.fabric,
            plan("all_reduce", "ring", D, self.replicas == 1),
            self._npus([r * p + d for r in range(D)]),
            nbytes,
            data=[self._flat[r, s] for r in range(D)] if self.math else None,
            devices=[self.devices[r, d] for r in range(self.replicas)],
            label=f"allreduce s{s}",
            mirror=self.replicas == 1,
            transport=self.transport,
            element_bytes=self.elem,
        )
        self.recorder.collective(f"all-reduce s{s} (step {step + 1})", "all_reduce", "ring", nbytes, start, self.env.now)
        self._reductions.pop((step, s))
        done.succeed(out)

    def _npus(self, local: list[int]) -> list[int]:
        """The fabric's NPUs of the system's NPUs `local` (a placed job's are elsewhere: `cluster.placement`)."""
        placement = self.cluster.placement
        return local if placement is None else [placement[n] for n in local]

    def _twin_sum(self, r: int, step: int, s: int, device: Device) -> Generator:
        """DualPipe: each model stage's parameters live on two devices (stage s and its twin s +- p, the
        same model stage in the other pipeline). When a copy's last backward of the step ends it sends its
        gradient to the other and adds the one it gets, so both hold the sum (the same bits: a + b = b + a)
        and take the same optimizer step; other ops go on meanwhile."""
        p = self.shape.devices
        twin = s + p if s < p else s - p
        payload = self._flat_grads(r, s).copy() if self.math else Placeholder(self.costs[s].params * self.elem)
        self.env.process(self.post(device, self.devices[r, self.shape.device(twin)], ("T", r, step, twin, -1), payload, "grad"))
        start = self.env.now
        theirs = yield from self.receive(("T", r, step, s, -1))
        yield from device.vector.elementwise(self.costs[s].params, 1, f"twin sum s{s}")
        if self.math:
            self._unflatten(r, s, self._flat_grads(r, s) + theirs)
        device.bank(self.spec.bank).free(buffer_name(("T", r, step, s, -1)))
        self.recorder.op(device.name, step + 1, "allreduce", s, -1, start, self.env.now)

    def _flat_grads(self, r: int, s: int) -> np.ndarray:
        return np.concatenate([g.ravel() for layer in self.grads[r, s] for g in layer])

    def _unflatten(self, r: int, s: int, flat: np.ndarray) -> None:
        at = 0
        for layer in self.grads[r, s]:
            for g in layer:
                g.ravel()[:] = flat[at : at + g.size]
                at += g.size

    def _update(self, r: int, step: int, s: int, device: Device) -> Generator:
        start = yield from device.vector.elementwise(self.costs[s].params, UPDATE_OPS, f"update s{s}")
        if self.math:
            scale = 1.0 / (self.spec.data_parallel * self.shape.microbatches)
            stage_update(self.params[r, s], self.grads[r, s], self.velocity[r, s], scale, self.spec.lr, self.spec.momentum)
        self.recorder.op(device.name, step + 1, "update", s, -1, start, self.env.now)

    # --- messages ---------------------------------------------------------------------

    def _dispatch(self, device: Device) -> Generator:
        """Hand each message that lands in `device`'s inbox to whoever waits for it."""
        while True:
            message = yield device.nic.inbox.get()
            key = message.meta["key"]
            self._arrive(device, key, message.payload)

    def _arrive(self, device: Device, key: tuple, payload) -> None:
        """Land `payload` in `device`'s bank and wake the op waiting for it."""
        device.bank(self.spec.bank).allocate(buffer_name(key), nbytes=payload.nbytes)
        self.mail_event(key).succeed(payload)

    def _deliver(self, r: int, step: int, kind: str, s: int, j: int, payload, elements: int, device: Device) -> None:
        """Pass the output of stage `s` (F: to stage s + 1; B: the gradient to stage s - 1, keyed by its sender s)."""
        consumer = s + 1 if kind == "F" else s - 1
        key = (kind, r, step, s, j)
        if self.shape.device(consumer) == self.shape.device(s):
            self.mail_event(key).succeed(payload)  # the same device: the buffer stays where it is
            return
        if payload is None:
            payload = Placeholder(elements * self.elem)
        dst = self.devices[r, self.shape.device(consumer)]
        tag = "act" if kind == "F" else "grad"
        self.env.process(self.post(device, dst, key, payload, tag))

    def post(self, src: Device, dst: Device, key: tuple, payload, tag: str) -> Generator:
        if self.spec.network == "free":
            self._arrive(dst, key, payload)
            return
        yield from self.cluster.send(src, dst, payload, tag, key=key)

    def receive(self, key: tuple) -> Generator:
        """Wait for what `key` names, then forget its event (each is consumed once)."""
        payload = yield self.mail_event(key)
        del self._mail[key]
        return payload

    def mail_event(self, key: tuple) -> simpy.Event:
        event = self._mail.get(key)
        if event is None:
            event = self._mail[key] = self.env.event()
        return event

    # --- state and math -------------------------------------------------------------

    def _hold_state(self) -> None:
        """Each stage's weights, velocity and gradient accumulator in its device's bank."""
        self._step_ready = [self.env.event() for _ in range(self.spec.steps)]
        for (r, d), device in self.devices.items():
            bank = device.bank(self.spec.bank)
            for s in self.shape.stages_of(d):
                if self.math:
                    self.params[r, s] = [tuple(a.copy() for a in self.initial[li]) for li in self.stage_layers[s]]
                    self.velocity[r, s] = [tuple(np.zeros_like(a) for a in layer) for layer in self.params[r, s]]
                    self.grads[r, s] = [tuple(np.zeros_like(a) for a in layer) for layer in self.params[r, s]]
                n = self.costs[s].params * self.elem
                for what in ("weights", "velocity", "grad"):
                    bank.allocate(f"s{s}.{what}", nbytes=n)

    def _indices(self, step: int, r: int, j: int) -> np.ndarray:
        mb = self.spec.microbatch
        at = (r * self.shape.microbatches + j) * mb
        return self.step_samples[step][at : at + mb]

    def _microbatch(self, step: int, r: int, j: int):
        return self.data.x_train[self._indices(step, r, j)] if self.math else None

    def final_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        """Replica 0's weights, layer by layer (full mode)."""
        return [layer for s in range(self.shape.model_stages) for layer in self.params[0, s]]

    def message_time(self, nbytes: float, src: int = 0, dst: int = 1) -> float:
        """An unloaded message's time from replica 0's device `src` to its device `dst` (0 with
        `network: free`, or on one device)."""
        if self.spec.network == "free" or src == dst or self.shape.devices < 2:
            return 0.0
        return self.cluster.unloaded(src, dst, nbytes)  # replica 0's device d is NPU d

    def predicted_times(self, network: bool = False):
        """Op times of one step from the cycle model (`policies.timing.execute`); with `network`,
        each transfer adds an unloaded message's time (no contention)."""

        def transfer(src: int, dst: int) -> float:
            elements = self.costs[src].outputs if dst > src else self.costs[src].inputs
            return self.message_time(elements * self.elem, self.shape.device(src), self.shape.device(dst))

        forward = [c.forward_s for c in self.costs].__getitem__
        if self.split:  # B is the input gradient alone
            backward, weight = [c.input_s for c in self.costs].__getitem__, [c.weight_s for c in self.costs].__getitem__
        else:
            backward, weight = [c.backward_s for c in self.costs].__getitem__, None
        return execute(self.shape, self.schedule, forward, backward, transfer if network else None, weight)
