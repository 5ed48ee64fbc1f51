"""Bubble filling at scale (`system.fill` on `megatron`, mechanism M2 as PipeFill does it): a second job in
the pipeline's idle windows, on every GPU.

Before the run, the main job's idle windows on each pipeline device come from the cost model and the
schedule, not from a measurement: `policies.timing.execute` plays the device's ops at their costed
durations (an op and the synchronous send after it as one, as the run plays them) and
`idle_windows` takes the gaps between them within the step's first op and last op, each device's cut
where its optimizer step may start (its last op's end, plus its gradient reduction when that follows). The fill job is
another transformer of `models/`, the whole model on one GPU (no tensor or pipeline parallelism of its
own): every GPU of the layout runs its own replica of it, so the tensor ranks and data replicas of a
pipeline position, which share its windows, each do the same fill work. `mode: inference` runs
forward passes only (batch inference); `mode: train` adds each micro-batch's backward and, after the
step's last, an Adam step (fine-tuning). Its micro-batches are placed whole by the filling policy of
`policies.filling` (first_fit, best_fit, reverse, best_mapping, or a user's) into one device's windows,
within the bank bytes the main job leaves free at its peak (measured by a run of the main job alone:
the headroom); what does not fit is a result with the reason, not an error.

In the run, a device's ops and its fill ops take turns on the device (one lock): a fill op starts at
its planned offset from the step's start, runs whole, and if it runs past its window the main job's
next op waits for it; that delay is the slowdown `hwsim validate` holds to `fill.budget`. The fill
job's weights (and, training, its gradients and Adam state) stay in the bank; each micro-batch's
activations are held from its forward to its backward (inference: one block's, during the forward).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Generator

import numpy as np
import simpy

from hwsim.errors import InvalidSchedule, OutOfMemory
from hwsim.network import Cluster
from hwsim.policies import execute, idle_windows, is_split
from hwsim.policies.filling import FillError, Job, Placement, check_placement, clip_windows, resolve_filler
from hwsim.systems.megatron.costs import ADAM_BYTES, GRAD_BYTES, WEIGHT_BYTES, Part, StageCosts, optimizer_bytes, stage_params
from hwsim.trace import Recorder
from hwsim.workloads.megatron import activation_bytes, model_flops

OP_NAMES = {"F": "fill forward", "B": "fill backward", "U": "fill update"}


@dataclasses.dataclass(frozen=True)
class FillWork:
    """One micro-batch of the fill job on one GPU: its forward and backward (as Parts), the update's seconds
    and bytes, the bytes it keeps (static) and holds per micro-batch, its model FLOPs per sample."""

    forward: Part
    backward: Part
    update_s: float
    update_bytes: float
    static_bytes: float
    held_bytes: float
    flops_per_sample: float
    swap_s: float = 0.0  # a job not resident: its weights copied in from the host before each forward
    swap_bytes: float = 0.0


def fill_work(system, spec) -> FillWork:
    """What the fill model costs on one GPU of `system` (its hardware, bank, precision; a tensor group of one)."""
    m, train = spec.model, spec.mode == "train"
    one = (system.place[(0, 0, 0)],)
    costs = StageCosts(
        system.hardware,
        system.spec.bank,
        m,
        one,
        system.timer,
        microbatch=spec.microbatch,
        sequence=False,
        recompute="none",
        precision=system.spec.precision,
        framework=system.spec.framework,
    )
    edge = costs.edge(True, True)
    forward = costs.block["forward"].times(m.layers) + edge["forward"]
    backward = Part()
    if train:
        backward = costs.block["backward"].times(m.layers) + edge["backward"]
    params = stage_params(m, m.layers, 1, True, True)
    rate = system.hardware.memory[system.spec.bank].rate
    update = params * sum(optimizer_bytes(system.spec.precision)) if train else 0.0
    per_block = activation_bytes(m, 1, spec.microbatch, False, "none", system.spec.framework.flash_attention)
    weights = params * WEIGHT_BYTES
    swapped = not spec.resident  # its weights copied in for each forward and held during it, not kept
    return FillWork(
        forward=forward,
        backward=backward,
        update_s=update / rate,
        update_bytes=update,
        static_bytes=0.0 if swapped else params * (WEIGHT_BYTES + GRAD_BYTES + ADAM_BYTES if train else WEIGHT_BYTES),
        held_bytes=per_block * (m.layers if train else 1) + (weights if swapped else 0.0),
        flops_per_sample=model_flops(m, 1) if train else model_flops(m, 1) / 3,
        swap_s=weights / spec.host_bandwidth if swapped else 0.0,
        swap_bytes=weights if swapped else 0.0,
    )


class Fill:
    """The fill job of a megatron run: `plan()` predicts the windows and places it, `run_step()` plays it."""

    def __init__(self, system, scenario):
        self.system, self.scenario, self.spec = system, scenario, scenario.system.fill
        self.work = fill_work(system, self.spec)
        self.env = system.env
        self.locks = [simpy.Resource(self.env, 1) for _ in range(system.p)]
        self.placements: list[Placement] = []
        self.windows: list[list[tuple[float, float]]] = []
        self.headroom: list[float] = []
        self.alone: dict = {}
        self.samples = 0  # fill samples run on the simulated GPUs so far

    # --- before the run -------------------------------------------------------------

    def predicted_windows(self) -> list[list[tuple[float, float]]]:
        """Each pipeline device's idle windows in one step, from the costed op times and the schedule."""
        s = self.system
        durations = {key: seconds + (send or 0.0) for key, (_, seconds, send, _, _) in s.per_stage.items()}
        times = execute(
            s.shape,
            s.schedule,
            lambda stage: durations["F", stage],
            lambda stage: durations["B", stage],
            weight=(lambda stage: durations["W", stage]) if is_split(s.schedule) else None,
        )
        last = [max(t.end for t in times.values() if t.device == j) for j in range(s.p)]
        return clip_windows(idle_windows(times, s.p), [last[j] + self.reduce_s(j) for j in range(s.p)])

    def reduce_s(self, j: int) -> float:
        """How long device j's arrays stay idle after its last op for certain: its gradient reduction over the
        data group when that comes after the last op (the optimizer step, which needs the arrays, follows)."""
        s = self.system
        if s.overlap or s.sharded:
            return 0.0
        reduce = "all_reduce" if s.spec.optimizer == "allreduce" else "reduce_scatter"
        nbytes = s.wire.total(s.wire.gradients, s.params[j], GRAD_BYTES, s.d)
        return s.timer.seconds(reduce, s.group("data", j, 0), nbytes)

    def job(self) -> Job:
        w = self.work
        return Job(
            forward=(w.forward.total_s + w.swap_s,),
            backward=(w.backward.total_s,),
            update=(w.update_s,),
            microbatches=self.spec.microbatches,
            static_bytes=(int(w.static_bytes),),
            held_bytes=(int(w.held_bytes),),
        )

    def plan(self) -> None:
        """Run the main job alone (its step time, peak memory and bubbles: the reference), predict the windows
        and place the fill job's micro-batches on each device; raises InvalidSchedule if the policy fails."""
        self.alone = self._alone()
        self.windows = self.predicted_windows()
        capacity = self.system.hardware.memory[self.system.spec.bank].capacity
        self.headroom = [capacity - peak for peak in self.alone["peak_bytes"]]
        self.placements = place_per_device(self.spec.policy, self.windows, self.job(), self.headroom)

    def _alone(self) -> dict:
        """The main job's first step without the fill job, on its own timeline."""
        scenario = self.scenario
        alone = dataclasses.replace(scenario, system=dataclasses.replace(scenario.system, fill=None, steps=1))
        env, recorder = simpy.Environment(), Recorder()
        kind = type(self.system)
        cluster = Cluster(env, alone.hardware, kind.npu_names(alone.system), recorder)
        system = kind(alone, cluster, None, None, np.random.default_rng(0))
        env.run(until=env.process(_counting(system.run())))
        rows = [r for r in system.records if r["step"] == 1]
        memory = system.memory()
        return {
            "step_s": max(r["step_s"] for r in rows),
            "bubble_s": [r["bubble_s"] for r in rows],
            "busy_s": [busy_s(r) for r in rows],
            "peak_bytes": [m["total_bytes"] for m in memory],
        }

    # --- the run --------------------------------------------------------------------

    def allocate(self) -> None:
        """The fill job's weights (training: gradients and Adam state too) in every device's bank."""
        s = self.system
        for j in range(s.p):
            if self.placements[j].microbatches:
                s._allocate(j, s.devices[j].bank(s.spec.bank), "fill weights", self.work.static_bytes, kind="fill")

    def run_step(self, step: int) -> list[simpy.Process]:
        """Start each device's fill ops of this step, each at its planned offset from now."""
        begin = self.env.now
        return [self.env.process(self._device(step, j, begin)) for j in range(self.system.p) if self.placements[j].times]

    def _device(self, step: int, j: int, begin: float) -> Generator:
        s, w, env = self.system, self.work, self.env
        bank = s.devices[j].bank(s.spec.bank)
        train = self.spec.mode == "train"
        planned = sorted((t.start, op) for op, t in self.placements[j].times.items())
        for offset, op in planned:
            if not train and op.kind != "F":  # inference: the policy's zero-length backwards and update
                continue
            wait = begin + offset - env.now
            if wait > 0:
                yield env.timeout(wait)
            name = f"fill act {op.mb}"
            if op.kind == "F":
                s._allocate(j, bank, name, w.held_bytes, kind="fill")
            part = {"F": w.forward, "B": w.backward}.get(op.kind)
            swap = w.swap_s if op.kind == "F" else 0.0
            seconds = part.total_s + swap if part is not None else w.update_s
            with self.locks[j].request() as turn:
                yield turn
                start = env.now
                if seconds > 0:
                    yield env.timeout(seconds)
            label = f"{OP_NAMES[op.kind]} {op.mb}" if op.kind != "U" else "fill update"
            if swap:  # the weights from the host, into the bank
                s.devices[j].bank(s.spec.bank).record(f"fill swap-in {op.mb}", start, start + swap, w.swap_bytes)
            if part is not None:
                s._record(j, label, start + swap, part, False)
            elif seconds > 0:
                s.devices[j].bank(s.spec.bank).record(label, start, env.now, w.update_bytes)
            s.cluster.recorder.op(f"d{j}", step, OP_NAMES[op.kind], 0, max(op.mb, 0), start, env.now)
            if op.kind == "B" or not train:
                s._free(j, bank, name, w.held_bytes, kind="fill")
            if op.kind == "F":
                self.samples += self.spec.microbatch

    # --- results --------------------------------------------------------------------

    def summary(self, step_s: float, rows: list[dict]) -> dict:
        """The `fill` part of the megatron summary: what was placed, the fill job's throughput over every GPU
        of the layout, the main job's slowdown, each device's pipeline bubble alone (a fraction of the step),
        its idle fraction (no main-job work: the bubble and the data-parallel reduction) alone and with the
        fill job, the utilization gain (fill seconds over main-job seconds), the headroom the fill job used.
        `rows`: each device's breakdown of the last step, with its `fill_s`."""
        s, w = self.system, self.work
        gpus = s.t * s.p * s.d  # every GPU runs its own replica of the fill job
        per_step = self.samples / s.spec.steps * s.t * s.d  # the simulated ranks' fill samples, for all GPUs
        alone = self.alone["step_s"]
        idle_before = [1 - b / alone for b in self.alone["busy_s"]]
        idle_after = [max(0.0, 1 - (busy_s(r) + r["fill_s"]) / step_s) for r in rows]
        gain = sum(r["fill_s"] for r in rows) / sum(busy_s(r) for r in rows)
        peak = [w.static_bytes + w.held_bytes if p.microbatches else 0.0 for p in self.placements]
        reasons = [f"device {j}: {p.reason}" for j, p in enumerate(self.placements) if p.reason]
        return {
            "model": self.spec.model.name,
            "mode": self.spec.mode,
            "policy": self.spec.policy,
            "resident": self.spec.resident,
            "swap_s_per_microbatch": w.swap_s,
            "microbatches_requested": self.spec.microbatches,
            "microbatches_placed": [p.microbatches for p in self.placements],
            "why_not_more": reasons[0] if reasons else "",
            "gpus": gpus,
            "samples_per_s": per_step / step_s if step_s else 0.0,
            "flop_per_s": per_step * w.flops_per_sample / step_s if step_s else 0.0,
            "step_alone_s": self.alone["step_s"],
            "slowdown": step_s / self.alone["step_s"] - 1,
            "budget": self.spec.budget,
            "bubble_before": [b / alone for b in self.alone["bubble_s"]],
            "bubble_before_mean": float(np.mean(self.alone["bubble_s"])) / alone,
            "idle_before": idle_before,
            "idle_after": idle_after,
            "idle_before_mean": float(np.mean(idle_before)),
            "idle_after_mean": float(np.mean(idle_after)),
            "utilization_gain": gain,
            "headroom_bytes": self.headroom,
            "headroom_used": [peak[j] / self.headroom[j] if self.headroom[j] > 0 else 0.0 for j in range(s.p)],
        }


def busy_s(row: dict) -> float:
    """A device's seconds running the main job's work in a step: its ops (with the sends they wait for) and
    the optimizer step; the rest of the step its arrays idle (the bubble, the data-parallel reduction)."""
    parts = ("compute_s", "decompress_s", "recompute_s", "tensor_comm_s", "pipeline_comm_s", "optimizer_s")
    return sum(row[part] for part in parts)


def place_per_device(policy: str, windows, job: Job, headroom: list[float]) -> list[Placement]:
    """Each device's own fill replica placed by `policy` in that device's windows and headroom; raises
    InvalidSchedule if the policy fails or breaks the placement rules."""
    filler, out = resolve_filler(policy), []
    for gaps, room in zip(windows, headroom, strict=True):
        try:
            placement = filler([gaps], job, [room])
            found = check_placement([gaps], job, placement, [room])
        except (FillError, TypeError, ValueError, KeyError, IndexError, AttributeError) as err:
            raise InvalidSchedule(f"filling policy {policy!r} failed: {type(err).__name__}: {err}") from None
        if found:
            raise InvalidSchedule(f"filling policy {policy!r}: " + "; ".join(found[:3]))
        out.append(placement)
    return out


def _counting(run: Generator) -> Generator:
    """A megatron run whose out-of-memory ending still leaves its counts (the reference needs its peaks)."""
    try:
        yield from run
    except OutOfMemory:  # the alone run's counts are what is wanted, not its ending
        pass
