"""`hwsim validate`: check a scenario's run against what every run must hold, and a pipeline scenario's
schedule policy against invariants and closed forms.

Every scenario: one run, and the checks any run must pass (`run_checks`: it ends ok, no two ops
overlap on a unit, memory within capacity, work within each unit's peak, spans inside the
run, messages delivered after they were sent). A pipeline scenario adds three kinds of
evidence, each a row of PASS / FAIL / n/a:

- the schedule as data (`policies`): every op exactly once on the device its stage is
  placed on; it runs without deadlock; with uniform stages (the mean of the cycle
  model's stage times) and free communication its makespan and its bubble (the most
  idle time of a device between its first and last op) equal the schedule's closed
  forms;
- the scenario as simulated: the devices ran the schedule's order; each op exactly
  once per step; every forward after the one upstream, every backward after its
  forward and the backward downstream, every W after its B; the peak of micro-batch
  activations per device; the breadth-first ordering property;
- one step with free communication and one replica, whose simulated op times must
  equal the times predicted from the cycle model, and (full mode) whose trained
  weights must equal one device processing the same micro-batches in sequence, to
  float32 rounding.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import numpy as np

from hwsim.build import Outcome, simulate
from hwsim.commands.run_checks import Check, check, run_checks
from hwsim.config.schema import Scenario, SwitchNet
from hwsim.kernels import sgd_momentum
from hwsim.policies import (
    Deadlock,
    Op,
    Timed,
    bubbles,
    dependencies,
    execute,
    idle_windows,
    is_split,
    makespan,
    peak_activations,
    problems,
    resolve_schedule,
)
from hwsim.policies.filling import dependencies as fill_dependencies
from hwsim.report.pipeline import PIPELINE_OPS, device_index, op_times
from hwsim.systems.pipeline.checks import stage_plan

MATH_RTOL = 1e-5  # of the largest weight: float32 rounding of a few hundred accumulated terms
TIME_RTOL = 1e-9  # of the makespan: float rounding of sums of op times


def validate(scenario: Scenario, progress: Callable[[str], Callable] | None = None) -> list[Check]:
    """Every check for `scenario` (see the module docstring)."""
    return validate_run(scenario, progress)[0]


def validate_run(scenario: Scenario, progress: Callable[[str], Callable] | None = None) -> tuple[list[Check], Outcome | None]:
    """The checks, and the outcome of the scenario's own run (None when the schedule itself is invalid)."""
    if scenario.system.kind == "megatron" and scenario.model.kind == "transformer":
        outcome = simulate(scenario, progress("simulate") if progress else None)
        return run_checks(scenario, outcome) + _megatron_checks(scenario, outcome), outcome
    if scenario.system.kind == "megatron" and scenario.system.parallel.pipeline > 1:  # a 3D mlp: its schedule as run
        outcome = simulate(scenario, progress("simulate") if progress else None)
        checks = run_checks(scenario, outcome)
        return checks + (_trace_checks(scenario, outcome) if outcome.status == "ok" else []), outcome
    if scenario.system.kind == "jobs":
        outcome = simulate(scenario, progress("simulate") if progress else None)
        return run_checks(scenario, outcome) + (_jobs_checks(outcome.system) if outcome.status == "ok" else []), outcome
    if scenario.system.kind != "pipeline":
        outcome = simulate(scenario, progress("simulate") if progress else None)
        return run_checks(scenario, outcome), outcome
    checks = _policy_checks(scenario)
    if any(c.result == "FAIL" for c in checks):
        return checks + [Check("simulation", "n/a", "not run: the schedule itself is invalid")], None
    outcome = simulate(scenario, progress("simulate") if progress else None)
    checks += run_checks(scenario, outcome)
    checks += _trace_checks(scenario, outcome)
    one_step = _with(scenario, steps=1, data_parallel=1, network="free", replicas="all")
    free = simulate(one_step, progress("one step, free network") if progress else None)
    checks.append(_predicted_times(free))
    if scenario.run.mode == "full":
        step = simulate(_with(scenario, steps=1), progress("one step") if progress else None)
        checks.append(_mathcheck(step))
    else:
        checks.append(Check("schedule-invariance of the math", "n/a", "timing-only run: no math"))
    if scenario.system.fill is not None:
        checks += _fill_checks(scenario, outcome, progress)
    return checks, outcome


def _jobs_checks(system) -> list[Check]:
    """A shared cluster's jobs: no NPU held by two jobs at once; each started at or after its arrival; under
    fifo, in arrival order."""
    jobs = [job for job in system.jobs if job.start_s is not None]
    clash = next(
        (
            f"{a.name} and {b.name} both on NPU {min(set(a.npus) & set(b.npus))}"
            for i, a in enumerate(jobs)
            for b in jobs[i + 1 :]
            if set(a.npus) & set(b.npus) and a.start_s < b.end_s and b.start_s < a.end_s
        ),
        None,
    )
    early = [job.name for job in jobs if job.start_s < job.spec.start]
    out = [
        check("jobs: no NPU held by two jobs at once", clash is None, clash or f"{len(jobs)} jobs"),
        check("jobs: none started before it arrived", not early, ", ".join(early) or "every start >= its arrival"),
    ]
    if system.spec.scheduler == "fifo":
        by_arrival = sorted(jobs, key=lambda job: (job.spec.start, job.index))
        starts = [job.start_s for job in by_arrival]
        ordered = all(a <= b for a, b in zip(starts, starts[1:], strict=False))
        out.append(check("jobs: fifo starts them in arrival order", ordered, " <= ".join(j.name for j in by_arrival)))
    return out


def _megatron_checks(scenario: Scenario, outcome) -> list[Check]:
    """A 3D run's pipeline: its schedule as data (with the cost model's mean stage times) and as simulated."""
    system = outcome.system
    ops = system.ops
    means = {kind: float(np.mean([part["both"].total_s for part in ops[kind]])) for kind in ("F", "B", "W")}
    tw = means["W"] if system.split else 0.0
    out = schedule_checks(system.schedule_name, system.shape, system.schedule, means["F"], means["B"], tw)
    if outcome.status in ("ok", "out_of_memory"):  # an out-of-memory run still runs every op (it keeps counting)
        out += _trace_checks(scenario, outcome)
        out += _state_checks(system)
    if system.fill is not None and outcome.status == "ok":
        out += _megatron_fill_checks(system, outcome)
    return out


def _megatron_fill_checks(system, outcome) -> list[Check]:
    """A filled 3D run: every placed fill op ran, and the main job's step stayed within `fill.budget` of its
    step alone."""
    fill = system.summary(outcome.trace)["megatron"]["fill"]
    ops = outcome.trace.ops
    ran = int(ops.op.str.startswith("fill").sum())
    kinds = ("F",) if system.fill.spec.mode == "inference" else ("F", "B", "U")
    planned = system.spec.steps * sum(sum(op.kind in kinds for op in p.times) for p in system.fill.placements)
    return [
        check("fill: every placed fill op ran, each step", ran == planned, f"{ran} of {planned} ops"),
        check(
            "fill: the main job's slowdown within fill.budget",
            fill["slowdown"] <= fill["budget"] + 1e-12,
            f"{fill['slowdown']:.3%} over its step alone ({fill['step_alone_s']:.6g} s); budget {fill['budget']:.1%}",
        ),
    ]


def _state_checks(system) -> list[Check]:
    """What each NPU holds of weights, gradients and Adam state, against the optimizer's formula (16-bit
    weights or the storage codec's bytes, fp32 gradients, 12 bytes of Adam state per parameter; ZeRO-1
    shards the state over d, the routed experts' over the d / e ranks that hold them, ZeRO-3 all three);
    sharded, the gathered chunks at most two chunks' full weights and gradients."""
    from hwsim.systems.megatron.costs import ADAM_BYTES, GRAD_BYTES, WEIGHT_BYTES

    d, optimizer = system.d, system.spec.optimizer
    kept = 1 / d if optimizer == "sharded" else 1.0
    state = 1.0 if optimizer == "allreduce" else 1 / d
    bad, over = [], []
    for j, mem in enumerate(system.memory()):
        params = system.params[j]
        second = 1 / system.secondary if system.secondary else 0.0  # hierarchical partitioning's second copy
        stored = system.weight_bytes[j]  # per weight as the bank holds it (compression.storage)
        weights = params * (stored * kept + WEIGHT_BYTES * second)
        routed = system.routed[j]
        adam = (params - routed) * state + routed * (1.0 if optimizer == "allreduce" else system.e / d)
        want = (weights, params * GRAD_BYTES * kept, adam * ADAM_BYTES)
        got = (mem["weights_bytes"], mem["gradients_bytes"], mem["optimizer_bytes"])
        if not np.allclose(got, want, rtol=1e-9):
            bad.append(mem["device"])
        chunk = max((system.stage_params[s] for s in system.shape.stages_of(j)), default=0.0)
        if mem["gathered_bytes"] > 2 * chunk * (WEIGHT_BYTES + GRAD_BYTES) * (1 + 1e-9):
            over.append(mem["device"])
    out = [
        check(
            f"memory: weights, gradients and optimizer state as {optimizer} holds them",
            not bad,
            f"differ on {', '.join(bad[:3])}" if bad else f"{system.p} devices, d = {d}",
        )
    ]
    if optimizer == "sharded":
        out.append(
            check(
                "memory: sharded, at most two chunks gathered (the one running, the one prefetched)",
                not over,
                f"more on {', '.join(over[:3])}" if over else f"{system.p} devices",
            )
        )
    return out


def _with(scenario: Scenario, **system) -> Scenario:
    return dataclasses.replace(scenario, system=dataclasses.replace(scenario.system, **system))


# --- the schedule as data -----------------------------------------------------------


def _policy_checks(scenario: Scenario) -> list[Check]:
    """The schedule as data, with the pipeline's stage times from the cycle model."""
    spec = scenario.system
    plan = stage_plan(scenario)
    shape, schedule, split, costs = plan.shape, plan.schedule, plan.split, plan.costs
    tf = float(np.mean([c.forward_s for c in costs]))
    if split:  # B the input gradient, W the weight gradient
        tb, tw = float(np.mean([c.input_s for c in costs])), float(np.mean([c.weight_s for c in costs]))
    else:  # B does both
        tb, tw = float(np.mean([c.backward_s for c in costs])), 0.0
    return schedule_checks(spec.schedule, shape, schedule, tf, tb, tw)


def schedule_checks(name: str, shape, schedule, tf: float, tb: float, tw: float) -> list[Check]:
    """The schedule as data: every op once on its device, no deadlock, and with uniform stages of the mean
    times `tf`, `tb`, `tw` (seconds per stage and micro-batch; `tw` 0 for a fused backward) and free
    communication, its makespan and bubble against the schedule's closed forms."""
    kind = resolve_schedule(name)
    split = is_split(schedule)
    found = problems(shape, schedule)
    out = [
        check(
            "schedule: every op exactly once, on its stage's device",
            not found,
            "; ".join(found[:3]) or f"{sum(map(len, schedule))} ops",
        )
    ]
    if found:
        return out
    try:
        execute(shape, schedule, lambda s: 1.0, lambda s: 2.0, weight=(lambda s: 1.0) if split else None)
    except Deadlock as err:
        return out + [check("schedule: runs without deadlock", False, str(err))]
    out.append(
        check("schedule: runs without deadlock", True, f"p={shape.devices}, v={shape.stages_per_device}, m={shape.microbatches}")
    )
    times = execute(shape, schedule, lambda s: tf, lambda s: tb, weight=(lambda s: tw) if split else None)
    v = shape.stages_per_device
    means = f"t_f={v * tf:.4g} s, t_b={v * tb:.4g} s" + (f", t_w={v * tw:.4g} s" if split else "")
    means += " per device and micro-batch: cycle-model means"
    measured = {"makespan": makespan(times), "bubble": max(bubbles(times, shape.devices))}
    for what, form in (("makespan", kind.closed_form), ("bubble", kind.bubble)):
        label = f"{what} = closed form (uniform stages, free communication)"
        closed = form(shape, v * tf, v * tb, v * tw) if form else None
        if closed is None:
            why = (
                "no closed form registered"
                if form is None
                else f"the closed form does not apply to p={shape.devices}, v={v}, m={shape.microbatches}, {shape.placement}"
            )
            out.append(Check(label, "n/a", f"{name}: {why}; measured {measured[what]:.6g} s"))
            continue
        got, scale = measured[what], makespan(times)
        out.append(check(label, abs(got - closed) <= TIME_RTOL * scale, f"{got:.6g} s vs {closed:.6g} s ({means})"))
    return out


# --- the simulated run ----------------------------------------------------------------


def _trace_checks(scenario: Scenario, outcome) -> list[Check]:
    """The schedule as the simulation ran it (a pipeline's, or a 3D run's: `schedule_name`, one replica)."""
    system, trace = outcome.system, outcome.trace
    shape, spec = system.shape, scenario.system
    name = getattr(system, "schedule_name", None) or spec.schedule
    kind = resolve_schedule(name)
    out = []
    ops = trace.ops[trace.ops.op.isin(list(PIPELINE_OPS))]
    keyed = ops.assign(replica=[device_index(d)[0] for d in ops.device], dev=[device_index(d)[1] for d in ops.device])
    counts = keyed.groupby(["replica", "step", "op", "stage", "microbatch"]).size()
    expected = getattr(system, "replicas", 1) * spec.steps * sum(map(len, system.schedule))
    misplaced = int((keyed.dev != [shape.device(s) for s in keyed.stage]).sum())
    once = len(counts) == expected and (counts == 1).all() and misplaced == 0
    out.append(
        check(
            "simulation: each op once per step, on its device",
            once,
            f"{len(counts)} of {expected} ops, {int((counts > 1).sum())} repeated, {misplaced} misplaced",
        )
    )
    order_ok, deps_ok, bf_ok, worst_peak = True, True, True, {}
    late = ""
    for (replica, step), rows in keyed.groupby(["replica", "step"]):
        times = op_times(trace.ops, step, replica)
        for d in range(shape.devices):
            ran = rows[rows.dev == d].sort_values("start_s")
            ran_ops = [Op(PIPELINE_OPS[o], int(s), int(j)) for o, s, j in zip(ran.op, ran.stage, ran.microbatch, strict=True)]
            order_ok &= ran_ops == system.schedule[d]
        for op, t in times.items():
            for dep in dependencies(shape, op):
                if dep not in times or times[dep].end > t.start:
                    deps_ok = False
                    late = late or f"{op} started before {dep} ended (step {step})"
        if kind.breadth_first_groups:
            bf_ok &= _breadth_first(shape, times, kind.breadth_first_groups(shape))
        for d, peak in enumerate(peak_activations(shape, times)):
            worst_peak[d] = max(worst_peak.get(d, 0.0), peak)
    out.append(check("simulation: devices ran the schedule's order", order_ok, "per device, ops sorted by start time"))
    out.append(
        check(
            "simulation: dependencies (F after upstream F; B after its F and downstream B; W after its B)",
            deps_ok,
            late or "all ops",
        )
    )
    measured = ", ".join(f"d{d}: {p:g}" for d, p in sorted(worst_peak.items()))
    if kind.peak_activations:
        want = {d: float(kind.peak_activations(shape, d)) for d in range(shape.devices)}
        out.append(
            check(
                "simulation: peak micro-batches of activations per device",
                worst_peak == want,
                f"measured {measured}; expected " + ", ".join(f"d{d}: {p:g}" for d, p in want.items()),
            )
        )
    else:
        out.append(
            Check(
                "simulation: peak micro-batches of activations per device",
                "n/a",
                f"no formula for {name}; measured {measured}",
            )
        )
    if kind.breadth_first_groups:
        out.append(
            check(
                "simulation: breadth-first order (each stage's backwards of a group before any earlier stage's)",
                bf_ok,
                f"{len(kind.breadth_first_groups(shape))} group(s) of {len(kind.breadth_first_groups(shape)[0])} micro-batches",
            )
        )
    else:
        out.append(Check("simulation: breadth-first order", "n/a", f"{name} is not breadth-first"))
    return out


def _breadth_first(shape, times, groups: list[list[int]]) -> bool:
    for d in range(shape.devices):
        stages = shape.stages_of(d)
        for mbs in groups:
            for later, earlier in zip(stages[1:], stages[:-1], strict=True):
                if max(times[Op("B", later, j)].end for j in mbs) > min(times[Op("B", earlier, j)].start for j in mbs):
                    return False
    return True


# --- one step: predicted times and the math -------------------------------------------


def _predicted_times(outcome) -> Check:
    name = "one step, free network, D=1: simulated op times = cycle-model prediction"
    if outcome.status != "ok":
        return check(name, False, outcome.diagnosis)
    predicted = outcome.system.predicted_times()
    simulated = op_times(outcome.trace.ops, 1)
    span = makespan(predicted)
    worst = max(max(abs(simulated[op].start - t.start), abs(simulated[op].end - t.end)) for op, t in predicted.items())
    return check(name, worst <= TIME_RTOL * span, f"largest difference {worst:.3g} s over a makespan of {span:.6g} s")


# --- bubble filling ------------------------------------------------------------------


def _fill_checks(scenario: Scenario, outcome, progress) -> list[Check]:
    """The second instance: windows predicted = simulated alone; its placement; the first
    instance's op times with and without it; the second's dependencies and planned starts."""
    if outcome.status != "ok":
        return [check("fill: simulation ends ok", False, outcome.diagnosis)]
    fill = outcome.system.fill
    out = [_fill_windows(scenario, fill, progress)]
    placement = fill.placement
    out.append(
        check(
            "fill: policy placed the second instance in the predicted windows (deps, no overlap, memory headroom)",
            placement.microbatches > 0,
            f"{placement.microbatches} of {fill.spec.microbatches} micro-batches by {fill.spec.policy}, "
            f"stages on devices {list(placement.mapping)}" + (f"; {placement.reason}" if placement.reason else ""),
        )
    )
    steps = min(scenario.system.steps, 2)
    timing = dataclasses.replace(scenario, run=dataclasses.replace(scenario.run, mode="timing-only"))
    filled = simulate(_with(timing, steps=steps), progress("filled, timing-only") if progress else None)
    alone = simulate(_with(timing, steps=steps, fill=None), progress("alone, timing-only") if progress else None)
    out.append(_fill_unchanged(scenario, alone, filled))
    out.append(_fill_dependencies(outcome))
    return out


def _fill_windows(scenario: Scenario, fill, progress) -> Check:
    """The prediction of the idle windows against the first instance's simulated windows alone, like with like:
    the prediction charges each transfer an unloaded message's time, so the simulation runs on the same fabric
    with the `ideal` sharing model (no contention). How far the scenario's own sharing model moves the
    windows (transfers that share links) is in the detail; the slowdown check holds the first instance to its
    budget under it."""
    name = "fill: predicted idle windows = the first instance's simulated windows alone (one step, D=1, no contention)"
    alone = _with(scenario, steps=1, data_parallel=1, fill=None)
    alone = dataclasses.replace(alone, run=dataclasses.replace(alone.run, mode="timing-only"))
    net = alone.hardware.network
    uncontended = dataclasses.replace(net, model="ideal") if net is not None else SwitchNet(model="ideal")
    ideal = dataclasses.replace(alone, hardware=dataclasses.replace(alone.hardware, network=uncontended))
    run = simulate(ideal, progress("alone, one step, no contention") if progress else None)
    if run.status != "ok":
        return check(name, False, run.diagnosis)
    predicted = idle_windows(run.system.predicted_times(network=True), run.system.shape.devices)
    counts, worst, span = _window_gap(predicted, run)
    detail = (
        f"{sum(len(w) for w in predicted)} windows; largest endpoint difference {worst:.3g} s over a makespan of {span:.6g} s"
    )
    model = net.model if net is not None else "flow"
    if model != "ideal":
        own = simulate(alone, progress(f"alone, one step, {model}") if progress else None)
        if own.status == "ok":
            same, moved, _ = _window_gap(predicted, own)
            shift = f"up to {moved:.3g} s" if same else "into a different number of windows"
            detail += f"; under the scenario's {model} sharing, transfers that share links move them {shift}"
    return check(name, counts and worst <= TIME_RTOL * span, detail)


def _window_gap(predicted: list, run) -> tuple[bool, float, float]:
    """(same number of windows per device, the largest endpoint difference, the makespan) of `predicted`
    against the idle windows of `run`'s one step."""
    simulated = idle_windows(op_times(run.trace.ops, 1), run.system.shape.devices)
    counts = [len(w) for w in predicted] == [len(w) for w in simulated]
    pairs = [(a, b) for pw, sw in zip(predicted, simulated, strict=True) for a, b in zip(pw, sw, strict=False)]
    worst = max((max(abs(a[0] - b[0]), abs(a[1] - b[1])) for a, b in pairs), default=0.0)
    return counts, worst, makespan(op_times(run.trace.ops, 1))


def _fill_unchanged(scenario: Scenario, alone, filled) -> Check:
    name = "fill: first instance's op times unchanged, or its slowdown within the budget"
    if alone.status != "ok" or filled.status != "ok":
        return check(name, False, alone.diagnosis or filled.diagnosis)
    keys = ["device", "step", "op", "stage", "microbatch"]
    a = alone.trace.ops[alone.trace.ops.op.isin([*PIPELINE_OPS, "allreduce", "update"])]
    both = a.merge(filled.trace.ops, on=keys, suffixes=("_alone", "_filled"))
    shift = float(
        np.maximum((both.start_s_filled - both.start_s_alone).abs(), (both.end_s_filled - both.end_s_alone).abs()).max()
    )
    steps = [r.trace.metrics[r.trace.metrics.metric == "step_time_s"].value.sum() for r in (alone, filled)]
    slowdown = steps[1] / steps[0] - 1.0
    budget = scenario.system.fill.slowdown_budget
    same = len(both) == len(a) and shift <= TIME_RTOL * steps[0]
    return check(
        name,
        same or slowdown <= budget + TIME_RTOL,
        f"{len(both)} ops compared over {int(a.step.max())} steps; largest shift {shift:.3g} s; "
        f"slowdown {slowdown:.3%} (budget {budget:.1%})",
    )


def _fill_dependencies(outcome) -> Check:
    name = "fill: second instance's ops once per step, after their inputs, at their planned starts"
    fill, ops = outcome.system.fill, outcome.trace.ops
    kinds = {"fill forward": "F", "fill backward": "B", "fill update": "U"}
    mine = ops[ops.op.isin(list(kinds)) & (ops.step >= 1)]
    steps = outcome.trace.metrics[outcome.trace.metrics.metric == "step_time_s"]
    starts = dict(zip(steps.step, steps.time_s - steps.value, strict=True))
    problems, late = [], 0.0
    for step, rows in mine.groupby("step"):
        times = {Op(kinds[r.op], int(r.stage), int(r.microbatch)): Timed(0, r.start_s, r.end_s) for r in rows.itertuples()}
        if len(times) != len(rows) or set(times) != set(fill.placement.times):
            problems.append(f"step {step}: {len(rows)} ops, planned {len(fill.placement.times)}")
            continue
        for op, t in times.items():
            for dep in fill_dependencies(fill.job(), op, fill.microbatches):
                if times[dep].end > t.start:
                    problems.append(f"step {step}: {op} started before {dep} ended")
            late = max(late, t.start - (starts[step] + fill.placement.times[op].start))
    steps_run = mine.step.nunique()
    return check(
        name,
        not problems and steps_run == len(steps),
        "; ".join(problems[:3]) or f"{len(mine)} ops over {steps_run} steps; latest start {late:.3g} s after its plan",
    )


def reference_step(model, params, batches, lr: float, momentum: float) -> list[tuple[np.ndarray, ...]]:
    """One device: forward and backward of every (x, y) micro-batch in turn, gradients summed,
    then one SGD + momentum step on their mean (momentum starts at zero)."""
    weights = [tuple(a.copy() for a in layer) for layer in params]
    grads = [tuple(np.zeros_like(a) for a in layer) for layer in weights]
    for x, y in batches:
        inputs, pre = [], []
        for li, (w, b) in enumerate(weights):
            inputs.append(x)
            z, x = model.forward_layer(li, x, w, b)
            pre.append(z)
        _, grad = model.loss(x, y)
        for li in reversed(range(len(weights))):
            grad, dw, db = model.backward_layer(li, inputs[li], pre[li], weights[li][0], grad)
            grads[li][0][...] += dw
            grads[li][1][...] += db
    scale = np.float32(1.0 / len(batches))
    for (w, b), (gw, gb) in zip(weights, grads, strict=True):
        sgd_momentum(w, gw * scale, np.zeros_like(w), lr, momentum)
        sgd_momentum(b, gb * scale, np.zeros_like(b), lr, momentum)
    return weights


def _mathcheck(outcome) -> Check:
    name = "schedule-invariance of the math (one step vs one device)"
    if outcome.status != "ok":
        return check(name, False, outcome.diagnosis)
    system = outcome.system
    spec, data = system.spec, system.data
    idx, mb = system.step_samples[0], spec.microbatch
    batches = [
        (data.x_train[idx[q * mb : (q + 1) * mb]], data.y_train[idx[q * mb : (q + 1) * mb]]) for q in range(len(idx) // mb)
    ]
    want = reference_step(system.model, system.initial, batches, spec.lr, spec.momentum)
    got = system.final_params()
    scale = max(float(np.abs(w).max()) for layer in want for w in layer)
    worst = max(float(np.abs(a - b).max()) for lw, lg in zip(want, got, strict=True) for a, b in zip(lw, lg, strict=True))
    changed = max(
        float(np.abs(a - b).max()) for lw, li in zip(want, system.initial, strict=True) for a, b in zip(lw, li, strict=True)
    )
    return check(
        name,
        worst <= MATH_RTOL * scale,
        f"largest weight difference {worst:.3g} (the step changed weights by up to {changed:.3g}; bound {MATH_RTOL:g} x {scale:.3g})",
    )


def table(checks: list[Check]) -> str:
    """A Markdown table of the checks."""
    lines = ["| check | result | detail |", "|---|---|---|"]
    lines += [f"| {c.name} | {c.result} | {c.detail} |" for c in checks]
    return "\n".join(lines)
