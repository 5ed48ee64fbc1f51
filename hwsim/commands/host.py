"""`hwsim validate host`: a real run on this machine against hwsim's prediction of it.

The run: torch.distributed data-parallel training (DistributedDataParallel, gloo, one thread per process) of the
digits MLP (`models/mlp_digits.yaml`: 64-128-64-10, ReLU, softmax cross-entropy) on 1 and 2 processes, each
process `batch` samples a step, SGD with momentum, timed step by step (`time.perf_counter` around the step on
rank 0; the first `WARMUP` steps left out). Its initial weights, its batches (every step's sample indices, rank r
taking the r-th share) and its learning rate are hwsim's: hwsim's `data_parallel` system runs the same scenario
first (`scenarios/data_parallel_mlp.yaml` on the calibrated preset, with the framework's fixed time per step that
`hwsim calibrate` measured as the system's `optimizer` time), and the workers start from its initial parameters
and take its batches.

The comparison: the median step time measured against hwsim's predicted median step time (goal: within 10 %),
and the training loss step by step (the mean over the ranks of each rank's batch loss), hwsim's real float32
math against PyTorch's (goal: equal to float32 rounding, a relative difference below LOSS_GOAL, over the first
100 steps). The preset's compute constants were measured in one process (`hwsim calibrate`), so the
2-process row is a scale-out prediction from a 1-process calibration plus the measured loopback all-reduce.
"""

from __future__ import annotations

import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from hwsim.commands.calibrate import rendezvous
from hwsim.config.load import PROJECT_ROOT

WARMUP = 10
"""Steps left out of the measured median (first calls, allocation, gloo's first connections)."""
STEP_GOAL = 0.10
LOSS_GOAL = 1e-4
"""Float32 rounding over 100 steps: each step's sums differ in order between NumPy/Numba and PyTorch (one rounding,
about 6e-8 relative, per addition), and 100 SGD steps carry those differences forward; a different initial weight
or batch shows at 1e-2 or more at once."""
LOSS_STEPS = 100


@dataclass
class HostRow:
    processes: int
    measured_s: float
    predicted_s: float
    loss_difference: float
    measured_losses: np.ndarray
    predicted_losses: np.ndarray
    measured_steps: np.ndarray

    @property
    def error(self) -> float:
        return self.predicted_s / self.measured_s - 1


def validate_host(preset: Path, steps: int, batch: int, progress=None, profile: Path | None = None) -> list[HostRow]:
    """Measure and predict the 1- and 2-process runs (`progress(done, total, what)` before each part); `profile`:
    a folder for each rank's PyTorch profiler trace of step WARMUP (digits_ddp_<P>p.<rank>.json.gz, what
    `model: {kind: torch_trace}` replays)."""
    rows = []
    for i, processes in enumerate((1, 2)):
        if progress:
            progress(2 * i, 4, f"hwsim: {processes} process(es)")
        predicted_s, losses, plan = _predict(preset, processes, steps, batch)
        if progress:
            progress(2 * i + 1, 4, f"torch.distributed: {processes} process(es), {steps} steps")
        measured, measured_losses = _measure(plan, processes, profile)
        n = min(LOSS_STEPS, steps)
        difference = float(np.max(np.abs(measured_losses[:n] - losses[:n]) / np.abs(losses[:n])))
        rows.append(
            HostRow(processes, float(np.median(measured[WARMUP:])), predicted_s, difference, measured_losses, losses, measured)
        )
    if progress:
        progress(4, 4, "done")
    return rows


def framework_step(preset: Path) -> float:
    """The framework's fixed time per training step `hwsim calibrate` measured (its preset's `framework_step`
    line), or 0 for a preset without one."""
    match = re.search(r"^# framework_step: ([0-9.eE+-]+) s", preset.read_text(encoding="utf-8"), re.MULTILINE)
    return float(match.group(1)) if match else 0.0


def _scenario(preset: Path, processes: int, steps: int, batch: int):
    from hwsim.config import load_scenario

    return load_scenario(
        PROJECT_ROOT / "scenarios" / "data_parallel_mlp.yaml",
        [
            f"hardware={preset.resolve()}",
            f"system.replicas={processes}",
            f"system.steps={steps}",
            f"system.batch={batch}",
            f"run.eval_every={steps}",
            f"system.optimizer={framework_step(preset):.9g} s",
            "run.target_accuracy=null",
            "report.plots=false",
        ],
    )


def _predict(preset: Path, processes: int, steps: int, batch: int) -> tuple[float, np.ndarray, dict]:
    """hwsim's median step time and loss curve, and what the workers need to run the same training."""
    from hwsim.build import check, simulate

    scenario = _scenario(preset, processes, steps, batch)
    check(scenario, str(preset))
    outcome = simulate(scenario)
    metrics = outcome.trace.metrics
    step_times = metrics[metrics.metric == "step_time_s"].value.to_numpy()
    losses = metrics[metrics.metric == "loss"].value.to_numpy()
    system = outcome.system
    plan = {
        "x": system.data.x_train,
        "y": system.data.y_train,
        "samples": np.stack(system.step_samples),
        "params": [a for layer in system.initial for a in layer],
        "lr": scenario.system.lr,
        "momentum": scenario.system.momentum,
        "batch": batch,
    }
    return float(np.median(step_times[WARMUP:])), losses, plan


def _measure(plan: dict, processes: int, profile: Path | None = None) -> tuple[np.ndarray, np.ndarray]:
    """Per-step seconds (rank 0) and the mean loss over the ranks, from real torch.distributed training."""
    import torch.multiprocessing as mp

    with tempfile.TemporaryDirectory() as folder:
        data = Path(folder) / "plan.npz"
        params = {f"p{i}": a for i, a in enumerate(plan["params"])}
        np.savez(data, x=plan["x"], y=plan["y"], samples=plan["samples"], **params)
        traces = str(profile.resolve()) if profile is not None else ""
        store = rendezvous(folder)
        settings = (str(data), len(plan["params"]), plan["lr"], plan["momentum"], plan["batch"], store, traces)
        mp.spawn(_worker, args=(processes, settings), nprocs=processes, join=True)
        times = np.load(Path(folder) / "rank0.npy")
        losses = np.mean([np.load(Path(folder) / f"loss{r}.npy") for r in range(processes)], axis=0)
    return times, losses


def _worker(rank: int, world: int, settings: tuple) -> None:
    """One rank: DDP training on the plan's batches from its initial weights, each step timed."""
    import torch
    import torch.distributed as dist

    path, count, lr, momentum, batch, store, traces = settings
    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=store, rank=rank, world_size=world)
    try:
        plan = np.load(path)
        x, y, samples = torch.from_numpy(plan["x"]), torch.from_numpy(plan["y"]), plan["samples"]
        params = [plan[f"p{i}"] for i in range(count)]
        layers = []
        for li in range(0, count, 2):
            w, b = params[li], params[li + 1]
            linear = torch.nn.Linear(w.shape[0], w.shape[1])
            with torch.no_grad():
                linear.weight.copy_(torch.from_numpy(np.ascontiguousarray(w.T)))  # hwsim's z = x @ w + b
                linear.bias.copy_(torch.from_numpy(b))
            layers += [linear, torch.nn.ReLU()]
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(*layers[:-1]))
        optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
        times, losses = [], []
        for step in range(len(samples)):
            mine = torch.from_numpy(samples[step][rank * batch : (rank + 1) * batch])
            profiler = _profiler(torch) if traces and step == WARMUP else None
            start = time.perf_counter()
            optimizer.zero_grad()
            loss = torch.nn.functional.cross_entropy(model(x[mine]), y[mine])
            loss.backward()
            optimizer.step()
            times.append(time.perf_counter() - start)
            if profiler is not None:
                profiler.__exit__(None, None, None)
                profiler.export_chrome_trace(str(Path(traces) / f"digits_ddp_{world}p.{rank}.json.gz"))
            losses.append(loss.item())
        folder = Path(path).parent
        np.save(folder / f"loss{rank}.npy", np.array(losses))
        if rank == 0:
            np.save(folder / "rank0.npy", np.array(times))
    finally:
        dist.destroy_process_group()


def _profiler(torch):
    """A started CPU profiler that records shapes (what the torch_trace reader needs for GEMMs)."""
    from torch.profiler import ProfilerActivity, profile

    profiler = profile(activities=[ProfilerActivity.CPU], record_shapes=True)
    profiler.__enter__()
    return profiler


def table(rows: list[HostRow]) -> str:
    steps = min(LOSS_STEPS, min((len(r.measured_losses) for r in rows), default=LOSS_STEPS))
    lines = [
        f"| processes | measured step | predicted step | error | goal | loss: largest relative difference (first {steps} steps) | goal |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        step_ok = "met" if abs(r.error) <= STEP_GOAL else "not met"
        loss_ok = "met" if r.loss_difference <= LOSS_GOAL else "not met"
        lines.append(
            f"| {r.processes} | {r.measured_s * 1e6:,.1f} us | {r.predicted_s * 1e6:,.1f} us | {r.error * 100:+.1f} % | "
            f"{step_ok} (within {STEP_GOAL:.0%}) | {r.loss_difference:.2g} | {loss_ok} (below {LOSS_GOAL:g}) |"
        )
    return "\n".join(lines)


def plot(rows: list[HostRow], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (loss_ax, time_ax) = plt.subplots(1, 2, figsize=(13, 4.5))
    for r, color in zip(rows, ("tab:blue", "tab:orange"), strict=False):
        loss_ax.plot(r.measured_losses, color=color, label=f"PyTorch, {r.processes} process(es)")
        loss_ax.plot(r.predicted_losses, "--", color="k" if r.processes == 1 else "tab:red", lw=1, label=f"hwsim, {r.processes}")
        time_ax.plot(np.array(r.measured_steps) * 1e6, color=color, lw=0.8, label=f"measured, {r.processes}")
        time_ax.axhline(r.predicted_s * 1e6, color=color, ls="--", label=f"hwsim's prediction, {r.processes}")
    loss_ax.set(xlabel="step", ylabel="training loss", title="loss: hwsim's math vs PyTorch's, same weights and batches")
    time_ax.set(xlabel="step", ylabel="step time (us)", title="step time: measured vs predicted", yscale="log")
    for ax in (loss_ax, time_ax):
        ax.legend(fontsize=8)
        ax.grid(True, alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
