"""Bubble filling with the real math on a 3D mlp (`system.fill` with `model.kind: mlp` and a pipeline): every
GPU trains its own replica of a second mlp in its predicted bubbles.

Before the run the main job is simulated alone for one step, timing-only: each pipeline device's gaps
between its ops (tensor rank 0 of replica 0 stands for its group) are its idle windows. The fill job is one
stage of the fill model on one GPU: forward and backward per micro-batch of `fill.microbatch` samples and,
after the step's last, an SGD + momentum step on their mean gradient (`system.lr`, `system.momentum`),
each priced by the cycle model (`stages.stage_costs`) and placed whole by the filling policy within the
bank bytes the main job leaves free. In the run each rank plays its device's placement on its own units
(they queue behind the main job's work: no lock is needed, and none is taken), on its own samples.
Nothing of the main job's math depends on timing, so its weights are the same bits with and without a
fill job (a test holds it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator

import numpy as np
import simpy

from hwsim.network import Cluster
from hwsim.policies import Op, Timed, idle_windows
from hwsim.policies.filling import Job, Placement
from hwsim.systems.megatron.checks import layout
from hwsim.systems.megatron.fill import place_per_device
from hwsim.systems.stages import stage_backward, stage_costs, stage_forward, stage_update
from hwsim.systems.training import finite_loss
from hwsim.trace import Recorder
from hwsim.workloads import make_model
from hwsim.workloads.data import BatchStream

STATE_COPIES = 3  # weights, velocity, gradient accumulator (fp32)
OP_NAMES = {"F": "fill forward", "B": "fill backward", "U": "fill update"}


class MlpFill:
    """The fill job of a 3D mlp: `plan()` predicts and places, `run_step()` plays one step on every rank."""

    def __init__(self, system, scenario, data, rng: np.random.Generator):
        self.system, self.scenario, self.spec = system, scenario, scenario.system.fill
        self.model = make_model(self.spec.model)
        self.data, self.env = data, system.env
        layers = list(range(len(self.model.shapes)))
        self.layers = layers
        self.cost = stage_costs(self.model.layer_ops(self.spec.microbatch), [layers], scenario.hardware, "fp32")[0]
        self.math = data is not None
        initial = self.model.init_params(rng) if self.math else None
        self.params = {r: [(w.copy(), b.copy()) for w, b in initial] for r in system.ranks} if self.math else {}
        self.velocity = {r: [(np.zeros_like(w), np.zeros_like(b)) for w, b in initial] for r in system.ranks} if self.math else {}
        self.grads = {r: [(np.zeros_like(w), np.zeros_like(b)) for w, b in initial] for r in system.ranks} if self.math else {}
        self.streams = (
            {
                r: BatchStream(len(data.y_train), self.spec.microbatch, np.random.default_rng([scenario.seed, *r]))
                for r in system.ranks
            }
            if self.math
            else {}
        )
        self.placements: list[Placement] = []
        self.losses: list[list[float]] = []  # per step, the fill job's micro-batch losses (every rank)

    def job(self) -> Job:
        c, vector = self.cost, self.scenario.hardware.vector
        update = c.params * 3 / vector.lanes / vector.clock  # SGD + momentum: 3 element operations each
        train = self.spec.mode == "train"
        return Job(
            forward=(c.forward_systolic_s + c.forward_vector_s,),
            backward=((c.backward_systolic_s + c.backward_vector_s) if train else 0.0,),
            update=(update if train else 0.0,),
            microbatches=self.spec.microbatches,
            static_bytes=(STATE_COPIES * c.params * 4,),
            held_bytes=((c.activations + c.inputs) * 4,),
        )

    def plan(self) -> None:
        """The main job alone for a step (timing-only): its windows; then each device's placement."""
        scenario = self.scenario
        alone = dataclasses.replace(scenario, system=dataclasses.replace(scenario.system, fill=None, steps=1))
        env, recorder = simpy.Environment(), Recorder()
        kind = type(self.system)
        place = layout(alone.system.parallel)
        names = [""] * len(place)
        for (i, j, k), npu in place.items():
            names[npu] = f"t{i}.p{j}.d{k}"
        cluster = Cluster(env, alone.hardware, names, recorder)
        main = kind(alone, cluster, self.system.model, None, np.random.default_rng(0))
        env.run(until=env.process(main.run()))
        ops = recorder.trace().ops
        times = {
            Op(row.op[0].upper(), row.stage, row.microbatch): Timed(int(row.device[1:]), row.start_s, row.end_s)
            for row in ops[ops.device.str.match(r"^d\d+$")].itertuples()
        }
        self.windows = idle_windows(times, self.system.p)
        bank = scenario.hardware.memory[scenario.system.bank]
        held = max(d.bank(scenario.system.bank).peak for d in main.devices.values())
        headroom = [bank.capacity - held] * self.system.p
        self.placements = place_per_device(self.spec.policy, self.windows, self.job(), headroom)

    def allocate(self) -> None:
        """The fill job's weights, velocity and gradients in every rank's bank, where it was placed."""
        for r, device in self.system.devices.items():
            if self.placements[r[1]].microbatches:
                device.bank(self.scenario.system.bank).allocate("fill state", nbytes=STATE_COPIES * self.cost.params * 4)

    def run_step(self, step: int) -> list[simpy.Process]:
        begin = self.env.now
        self.losses.append([])
        return [self.env.process(self._rank(step, r, begin)) for r in self.system.ranks if self.placements[r[1]].times]

    def _rank(self, step: int, rank, begin: float) -> Generator:
        i, j, k = rank
        device, c = self.system.devices[rank], self.cost
        train = self.spec.mode == "train"
        kept: dict[int, tuple] = {}
        placed = self.placements[j].microbatches
        for offset, op in sorted((t.start, op) for op, t in self.placements[j].times.items()):
            if not train and op.kind != "F":
                continue
            wait = begin + offset - self.env.now
            if wait > 0:
                yield self.env.timeout(wait)
            start = self.env.now
            if op.kind == "F":
                yield from device.systolic.busy(c.forward_systolic_s, f"fill fwd {op.mb}", c.forward_flops)
                yield from device.vector.busy(c.forward_vector_s, f"fill fwd {op.mb} act", c.forward_vector_ops)
                if self.math:
                    rows = self.streams[rank].next()
                    out, saved = stage_forward(self.model, self.layers, self.params[rank], self.data.x_train[rows])
                    loss, grad = self.model.loss(out, self.data.y_train[rows])
                    self.losses[-1].append(finite_loss(loss, f"{device.name}, fill job"))
                    kept[op.mb] = (saved, grad)
            elif op.kind == "B":
                yield from device.systolic.busy(c.backward_systolic_s, f"fill bwd {op.mb}", c.backward_flops)
                yield from device.vector.busy(c.backward_vector_s, f"fill bwd {op.mb} act", c.backward_vector_ops)
                if self.math:
                    saved, grad = kept.pop(op.mb)
                    stage_backward(self.model, self.layers, self.params[rank], self.grads[rank], saved, grad)
            else:
                yield from device.vector.elementwise(c.params, 3, "fill update")
                if self.math:
                    scale = 1.0 / placed
                    stage_update(
                        self.params[rank],
                        self.grads[rank],
                        self.velocity[rank],
                        scale,
                        self.system.spec.lr,
                        self.system.spec.momentum,
                    )
            if i == 0:
                name = f"d{j}" if k == 0 else f"r{k}.d{j}"
                self.system.cluster.recorder.op(name, step, OP_NAMES[op.kind], 0, max(op.mb, 0), start, self.env.now)

    def summary(self) -> dict:
        losses = [float(np.mean(x)) for x in self.losses if x]
        return {
            "model": self.spec.model.name,
            "mode": self.spec.mode,
            "microbatches_placed": [p.microbatches for p in self.placements],
            "why_not_more": next((f"device {j}: {p.reason}" for j, p in enumerate(self.placements) if p.reason), ""),
            "first_loss": losses[0] if losses else None,
            "last_loss": losses[-1] if losses else None,
        }
