"""Bubble filling (mechanism M2): a second model instance in a pipeline's idle windows.

Before the run, the first instance's op times for one step come from the cycle
model (`Pipeline.predicted_times`, messages unloaded); their gaps on each device are
the idle windows, and the scenario's filling policy places the second instance's ops
into them (`policies.filling`). The second instance then runs in the same timeline,
on the same devices, units, NICs and banks (replica 0's devices when there are
several replicas):

- each device runs its planned ops in planned order; an op starts at its planned
  offset from the step's start once its inputs are there and the units are free, so
  whatever slows it (a message queued behind the first instance's) shows as a later
  start and, if it spills out of its window, as a delay of the first instance;
- it trains with real math: its own weights, micro-batches (its own sample stream)
  and SGD + momentum step, the step being an op of its own on the vector unit;
- its weights, velocity and gradients, its activations and the buffers that arrive
  for it are allocated in the pipeline's bank. The policy is given the bytes the
  first instance leaves free at its predicted peak (`primary_peaks`) and makes no
  placement that would not fit.

With data parallelism (D > 1) each device's windows end where its first gradient
all-reduce starts: from there the reduction's messages and adds use the NIC and the
vector unit, which the schedule's op times do not predict. `during_allreduce: true`
fills those windows too; second-instance ops there may then start late, and the
slowdown check says whether the first instance suffers.

A pipeline step ends when both instances have finished their step.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator

import numpy as np
import pandas as pd
import simpy

from hwsim.errors import InvalidSchedule
from hwsim.hardware import Device, Placeholder
from hwsim.network import Cluster
from hwsim.policies import Op, Timed, idle_windows
from hwsim.policies.filling import FillError, Job, Placement, check_placement, clip_windows, resolve_filler
from hwsim.systems.stages import UPDATE_OPS, split_layers, stage_backward, stage_costs, stage_forward, stage_update
from hwsim.systems.training import finite_loss
from hwsim.trace import Recorder
from hwsim.workloads.data import BatchStream

STATE_COPIES = 3  # weights, velocity, gradient accumulator


def primary_peaks(pipeline, times: dict[Op, Timed]) -> list[float]:
    """Predicted peak bank bytes of the first instance per device over a step: its stages' state,
    every micro-batch's activations from its forward's start, the buffers that arrive from other
    devices from their (unloaded) arrival, all until the backward's end (with a split backward,
    what its W needs from B's end to W's end); with replicas, two all-reduce chunks per stage."""
    shape, costs, elem = pipeline.shape, pipeline.costs, pipeline.elem
    peaks = []
    for d in range(shape.devices):
        static = sum(STATE_COPIES * costs[s].params for s in shape.stages_of(d)) * elem
        if pipeline.spec.data_parallel > 1:
            static += sum(2 * -(-costs[s].params // pipeline.spec.data_parallel) for s in shape.stages_of(d)) * elem
        events = []
        for op, t in times.items():
            if op.kind != "B" or t.device != d:
                continue
            s, j = op.stage, op.mb
            held = [(times[Op("F", s, j)].start, costs[s].activations)]
            if shape.first(s):
                held.append((times[Op("F", s, j)].start, costs[s].inputs))
            elif shape.device(s - 1) != d:
                held.append((times[Op("F", s - 1, j)].end + pipeline.message_time(costs[s].inputs * elem), costs[s].inputs))
            if not shape.last(s) and shape.device(s + 1) != d:
                held.append((times[Op("B", s + 1, j)].end + pipeline.message_time(costs[s].outputs * elem), costs[s].outputs))
            for begin, elements in held:
                events += [(begin, elements * elem), (t.end, -elements * elem)]
            if Op("W", s, j) in times:
                events += [(t.end, costs[s].weight_inputs * elem), (times[Op("W", s, j)].end, -costs[s].weight_inputs * elem)]
        level = peak = 0
        for _, change in sorted(events, key=lambda e: (e[0], e[1])):
            level += change
            peak = max(peak, level)
        peaks.append(float(static + peak))
    return peaks


def fill_stages(spec, model, devices: int) -> int:
    """Stages of the second instance: as set, else the most (up to one per device) that split its layers evenly."""
    if spec.stages:
        return spec.stages
    if spec.layers_per_stage:
        return len(spec.layers_per_stage)
    body = len(model.layer_names) - sum(model.edge_layers)
    return max(k for k in range(1, devices + 1) if body % k == 0)


def reduction_starts(shape, times: dict[Op, Timed]) -> list[float]:
    """Per device, the predicted end of the first of its stages to finish all its backwards (and W's),
    where that stage's gradient all-reduce starts to use the device's NIC and vector unit."""
    last = {}
    for op, t in times.items():
        if op.kind != "F":
            last[op.stage] = max(last.get(op.stage, 0.0), t.end)
    return [min(last[s] for s in shape.stages_of(d)) for d in range(shape.devices)]


class SecondInstance:
    """The second instance of a filled pipeline; `plan()` places it, `start()` runs its devices."""

    def __init__(self, pipeline, scenario, model, data, rng: np.random.Generator):
        self.pipeline, self.env, self.recorder = pipeline, pipeline.env, pipeline.recorder
        spec = self.spec = scenario.system.fill
        self.model, self.data, self.rng = model, data, rng
        self.math = data is not None
        self.stages = fill_stages(spec, model, pipeline.shape.devices)
        self.stage_layers = split_layers(model, self.stages, spec.layers_per_stage)
        self.costs = stage_costs(
            model.layer_ops(spec.microbatch), self.stage_layers, scenario.hardware, scenario.system.compute_precision
        )
        self.capacity = scenario.hardware.memory[scenario.system.bank].capacity
        self.initial = model.init_params(rng) if self.math else None
        self.placement = Placement(())
        self.windows: list[list[tuple[float, float]]] = []
        self.headroom: list[float] = []
        self.predicted: dict[Op, Timed] = {}
        self.params: dict[int, list] = {}
        self.velocity: dict[int, list] = {}
        self.grads: dict[int, list] = {}
        self.kept: dict[tuple[int, int], list] = {}
        self.step_samples: list[np.ndarray] = []
        self.losses: list[float] = []
        self.batches = None
        self.scenario = scenario
        self.alone_ops = pd.DataFrame()
        self.alone_step_s = float("nan")

    @property
    def microbatches(self) -> int:
        """Micro-batches placed per step."""
        return self.placement.microbatches

    @property
    def samples_per_step(self) -> int:
        return self.microbatches * self.spec.microbatch

    def job(self) -> Job:
        """The second instance as the filling policy sees it."""
        p, elem, costs = self.pipeline, self.pipeline.elem, self.costs
        vector = next(iter(p.devices.values())).vector
        return Job(
            forward=tuple(c.forward_s for c in costs),
            backward=tuple(c.backward_s for c in costs),
            update=tuple(vector.seconds(c.params, UPDATE_OPS) for c in costs),
            microbatches=self.spec.microbatches,
            send_forward=tuple(p.message_time(c.outputs * elem) for c in costs[:-1]),
            send_backward=tuple(p.message_time(c.inputs * elem) for c in costs[1:]),
            static_bytes=tuple(STATE_COPIES * c.params * elem for c in costs),
            held_bytes=tuple((c.activations + c.inputs + c.outputs) * elem for c in costs),
        )

    def place(self) -> Placement:
        """Predict the first instance's windows and headroom, and run the filling policy on them;
        raises InvalidSchedule if the policy fails or returns a placement that breaks the rules."""
        p = self.pipeline
        self.predicted = p.predicted_times(network=True)
        self.windows = idle_windows(self.predicted, p.shape.devices)
        if p.spec.data_parallel > 1 and not self.spec.during_allreduce:
            self.windows = clip_windows(self.windows, reduction_starts(p.shape, self.predicted))
        self.headroom = [self.capacity - peak for peak in primary_peaks(p, self.predicted)]
        job = self.job()
        try:
            placement = resolve_filler(self.spec.policy)(self.windows, job, self.headroom)
            found = check_placement(self.windows, job, placement, self.headroom)
        except (FillError, TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
            raise InvalidSchedule(f"filling policy {self.spec.policy!r} failed: {type(err).__name__}: {err}") from None
        if found:
            raise InvalidSchedule(f"filling policy {self.spec.policy!r}: " + "; ".join(found[:3]))
        return placement

    def plan(self) -> None:
        """Place the second instance, simulate the first alone for reference, and hold the state."""
        self.placement = self.place()
        self.alone_ops, self.alone_step_s = self._alone()
        if self.microbatches:
            self._hold_state()
            if self.math:
                self.batches = BatchStream(len(self.data.y_train), self.samples_per_step, self.rng)

    def _alone(self) -> tuple[pd.DataFrame, float]:
        """The first instance's ops of one step simulated without the second (timing-only, its own
        timeline): the reference for utilization before filling and for the slowdown."""
        scenario = self.scenario
        alone = dataclasses.replace(
            scenario,
            system=dataclasses.replace(scenario.system, fill=None, steps=1),
            run=dataclasses.replace(scenario.run, mode="timing-only"),
        )
        env, recorder = simpy.Environment(), Recorder()
        kind = type(self.pipeline)
        cluster = Cluster(env, alone.hardware, kind.npu_names(alone.system), recorder)
        pipeline = kind(alone, cluster, self.pipeline.model, None, np.random.default_rng(0))
        env.run(until=env.process(pipeline.run()))
        trace = recorder.trace()
        step = trace.metrics[trace.metrics.metric == "step_time_s"].value
        return trace.ops, float(step.iloc[0])

    def start(self, step_ready: list[simpy.Event]) -> list[simpy.Event]:
        """Start a controller on every device with planned ops; per step, the event of all of them done."""
        done = []
        for d in sorted({t.device for t in self.placement.times.values()}):
            events = [self.env.event() for _ in step_ready]
            self.env.process(self._controller(d, step_ready, events))
            done.append(events)
        return [simpy.AllOf(self.env, [events[k] for events in done]) for k in range(len(step_ready))]

    def next_step(self) -> None:
        if self.math and self.microbatches:
            self.step_samples.append(self.batches.next())

    # --- processes -------------------------------------------------------------------

    def _controller(self, d: int, step_ready: list[simpy.Event], done: list[simpy.Event]) -> Generator:
        device = self.pipeline.devices[0, d]
        mine = sorted((t.start, op) for op, t in self.placement.times.items() if t.device == d)
        for step, ready in enumerate(step_ready):
            yield ready
            begin = self.env.now
            for offset, op in mine:
                wait = begin + offset - self.env.now
                if wait > 0:
                    yield self.env.timeout(wait)
                if op.kind == "F":
                    yield from self._forward(step, op, device)
                elif op.kind == "B":
                    yield from self._backward(step, op, device)
                else:
                    yield from self._update(step, op.stage, device)
            done[step].succeed()

    def _forward(self, step: int, op: Op, device: Device) -> Generator:
        s, j = op.stage, op.mb
        cost, bank, elem = self.costs[s], device.bank(self.pipeline.spec.bank), self.pipeline.elem
        if s == 0:
            x = self.data.x_train[self._indices(step, j)] if self.math else None
            bank.allocate(f"fill in F0.{j}", nbytes=cost.inputs * elem)
        else:
            x = yield from self.pipeline.receive(("fF", 0, step, s - 1, j))
        bank.allocate(f"fill act {s}.{j}", nbytes=cost.activations * elem)
        start = yield from device.systolic.busy(cost.forward_systolic_s, f"fill fwd s{s} mb{j}", cost.forward_flops)
        yield from device.vector.busy(cost.forward_vector_s, f"fill fwd s{s} mb{j} act", cost.forward_vector_ops)
        out = None
        if self.math:
            out, self.kept[s, j] = stage_forward(self.model, self.stage_layers[s], self.params[s], x)
        self.recorder.op(device.name, step + 1, "fill forward", s, j, start, self.env.now)
        if s == self.stages - 1:
            grad = None
            if self.math:
                loss, grad = self.model.loss(out, self.data.y_train[self._indices(step, j)])
                self.losses.append(finite_loss(loss, f"{device.name}, second instance (step {step + 1}, micro-batch {j})"))
            self._deliver(step, "fB", s + 1, j, grad, 0, device)
        else:
            self._deliver(step, "fF", s, j, out, cost.outputs, device)

    def _backward(self, step: int, op: Op, device: Device) -> Generator:
        s, j = op.stage, op.mb
        cost, bank = self.costs[s], device.bank(self.pipeline.spec.bank)
        grad = yield from self.pipeline.receive(("fB", 0, step, s + 1, j))
        start = yield from device.systolic.busy(cost.backward_systolic_s, f"fill bwd s{s} mb{j}", cost.backward_flops)
        yield from device.vector.busy(cost.backward_vector_s, f"fill bwd s{s} mb{j} act", cost.backward_vector_ops)
        out = None
        if self.math:
            kept = self.kept.pop((s, j))
            out = stage_backward(self.model, self.stage_layers[s], self.params[s], self.grads[s], kept, grad)
        for name in (f"fill act {s}.{j}", f"fill in F{s}.{j}", f"fill in B{s + 1}.{j}"):
            if bank.holds(name):
                bank.free(name)
        self.recorder.op(device.name, step + 1, "fill backward", s, j, start, self.env.now)
        if s > 0:
            self._deliver(step, "fB", s, j, out, cost.inputs, device)

    def _update(self, step: int, s: int, device: Device) -> Generator:
        start = yield from device.vector.elementwise(self.costs[s].params, UPDATE_OPS, f"fill update s{s}")
        if self.math:
            stage_update(
                self.params[s], self.grads[s], self.velocity[s], 1.0 / self.microbatches, self.spec.lr, self.spec.momentum
            )
        self.recorder.op(device.name, step + 1, "fill update", s, -1, start, self.env.now)

    def _deliver(self, step: int, kind: str, s: int, j: int, payload, elements: int, device: Device) -> None:
        """Stage s's output to stage s + 1 (fF), or the gradient of its input to stage s - 1 (fB, keyed by s)."""
        p, mapping = self.pipeline, self.placement.mapping
        key = (kind, 0, step, s, j)
        consumer = s + 1 if kind == "fF" else s - 1
        if s == self.stages or mapping[consumer] == mapping[s]:
            p.mail_event(key).succeed(payload)
            return
        if payload is None:
            payload = Placeholder(elements * p.elem)
        tag = "fill act" if kind == "fF" else "fill grad"
        self.env.process(p.post(device, p.devices[0, mapping[consumer]], key, payload, tag))

    # --- state ------------------------------------------------------------------------

    def _hold_state(self) -> None:
        elem = self.pipeline.elem
        for s, d in enumerate(self.placement.mapping):
            bank = self.pipeline.devices[0, d].bank(self.pipeline.spec.bank)
            if self.math:
                self.params[s] = [tuple(a.copy() for a in self.initial[li]) for li in self.stage_layers[s]]
                self.velocity[s] = [tuple(np.zeros_like(a) for a in layer) for layer in self.params[s]]
                self.grads[s] = [tuple(np.zeros_like(a) for a in layer) for layer in self.params[s]]
            for what in ("weights", "velocity", "grad"):
                bank.allocate(f"fill s{s}.{what}", nbytes=self.costs[s].params * elem)

    def _indices(self, step: int, j: int) -> np.ndarray:
        mb = self.spec.microbatch
        return self.step_samples[step][j * mb : (j + 1) * mb]

    def final_params(self) -> list[tuple[np.ndarray, np.ndarray]]:
        return [layer for s in range(self.stages) for layer in self.params[s]]
