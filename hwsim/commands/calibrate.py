"""`hwsim calibrate`: measure the machine hwsim runs on and write it as a hardware preset.

What is measured, each with `time.perf_counter` around enough calls to last `min_s`, the median of `repeats`:

- GEMMs C = A @ B over a grid of (m, n, k): NumPy (BLAS) in float32, and PyTorch in float32 and bfloat16 when
  torch is installed; each backend's times fitted as t = launch + m n k / rate (least squares on relative
  error). The preset's arrays are that fit: one 1 x 1 output-stationary array (`gemm_cycles` = m n k cycles) at
  a clock of `rate` MACs per second, plus `launch` per GEMM; bf16 runs at round(rate_bf16 / rate_fp32) MACs per
  cycle (at least 1: hwsim's arrays cannot run a precision slower than fp32, and the table says so).
- Element-wise adds c = a + b over 10^2 to 10^7 elements (PyTorch when installed, else NumPy): t = launch +
  elements / rate, the vector unit's one lane at `rate` and its `launch`.
- Memory bandwidth: a NumPy copy of `copy_bytes`, read and written: 2 x bytes / t, both banks' bandwidth.
- A training step's framework time (torch installed): DistributedDataParallel steps (1 process, gloo) of MLPs
  of 1, 2, 4 and 8 layers one unit wide on one sample, where the arithmetic is nothing and what is left is the
  framework (autograd, DDP's hooks, the optimizer's loop): t = step + L x layer. hwsim's data-parallel MLP issues
  OPS_PER_LAYER ops a layer (3 GEMMs, 3 element-wise), so each unit's `launch` is layer / OPS_PER_LAYER; `step`
  is the framework's fixed time per step (what `hwsim validate host` gives the data-parallel system as its
  `optimizer` time). Without torch, `launch` is the bare call's fixed time from the GEMM and element-wise fits.
- Collectives (torch installed): an all-reduce between 2 processes over loopback with torch.distributed (gloo)
  for each message size, t = alpha + bytes x beta. hwsim's ring all-reduce on 2 NPUs of a switch takes
  2 overhead + 4 latency + bytes / bandwidth, so the preset's switch has latency 0 (loopback has no wire), NIC
  overhead alpha / 2 and bandwidth 1 / beta.

Every process runs on `threads` threads (default 1: one process per core, as `hwsim validate host` runs).
The preset's header says when, where and how each constant was measured.
"""

from __future__ import annotations

import datetime
import os
import platform
import queue
import socket
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

GEMM_SIZES = {"quick": (32, 256), "full": (16, 64, 256, 1024)}
"""Each of m, n and k takes these values (every combination)."""
SLOW_SIZE = 256
"""bf16 GEMMs run on shapes up to this size only: a CPU without bf16 units emulates them (here about 30 x slower
than fp32), so a 1024^3 one takes over a second a call."""
ELEMENTS = {"quick": (10**3, 10**5, 10**6), "full": (10**2, 10**3, 10**4, 10**5, 10**6, 10**7)}
OPS_PER_LAYER = 6
"""Ops hwsim's data-parallel MLP issues per layer per step: forward GEMM and activation, backward two GEMMs and
activation gradient, the update (`hwsim.systems.data_parallel`)."""
FRAMEWORK_LAYERS = (1, 2, 4, 8)
MESSAGE_BYTES = {"quick": (4, 4096, 2**18, 2**20), "full": tuple(4**i for i in range(1, 13))}
COPY_BYTES = {"quick": 32 * 2**20, "full": 256 * 2**20}
TIMING = {"quick": (0.003, 3), "full": (0.02, 5)}
"""(min_s, repeats): each measurement calls its operation until min_s has passed, `repeats` times; the median."""
ALLREDUCE_TIMEOUT_S = 300
"""The longest one message size of the loopback all-reduce may take (16 MiB takes about 20 ms here)."""


@dataclass
class Fit:
    """t = launch + work / rate."""

    launch: float
    rate: float

    def __call__(self, work) -> np.ndarray:
        return self.launch + np.asarray(work, dtype=float) / self.rate


def fit_line(work, seconds) -> Fit:
    """The least-squares fit of `seconds` by launch + work / rate on relative error (every size counts alike); a
    negative launch is taken as 0 and the rate fitted alone."""
    w, t = np.asarray(work, dtype=float), np.asarray(seconds, dtype=float)
    a = np.column_stack([1 / t, w / t])
    (launch, inverse), *_ = np.linalg.lstsq(a, np.ones_like(t), rcond=None)
    if launch < 0 or inverse <= 0:
        launch = 0.0
        inverse = float(np.sum(w / t) / np.sum((w / t) ** 2))
    return Fit(float(launch), float(1 / inverse))


def timed(fn: Callable[[], object], min_s: float, repeats: int) -> float:
    """Seconds one call of `fn` takes: the median over `repeats` runs of enough calls to last `min_s`."""
    fn()  # warm up (allocation, first-touch, BLAS's first call)
    calls, start = 0, time.perf_counter()
    while time.perf_counter() - start < min_s / 10 or calls < 1:
        fn()
        calls += 1
    per = max((time.perf_counter() - start) / calls, 1e-9)
    batch = max(1, int(min_s / per))
    runs = []
    for _ in range(repeats):
        start = time.perf_counter()
        for _ in range(batch):
            fn()
        runs.append((time.perf_counter() - start) / batch)
    return float(np.median(runs))


@dataclass
class Calibration:
    """Every measurement (rows of what, backend, precision, shape, work, seconds) and the fits."""

    mode: str
    threads: int
    rows: list[dict] = field(default_factory=list)
    fits: dict[str, Fit] = field(default_factory=dict)
    copy_rate: float = 0.0
    notes: list[str] = field(default_factory=list)
    when: str = ""
    host: str = ""

    def add(self, what: str, backend: str, precision: str, shape: str, work: float, seconds: float) -> None:
        self.rows.append(
            {"what": what, "backend": backend, "precision": precision, "shape": shape, "work": work, "seconds": seconds}
        )


def calibrate(mode: str = "full", threads: int = 1, progress=None) -> Calibration:
    """Measure this machine (`mode` quick or full); `progress(done, total, what)` as each part starts."""
    torch = _torch(threads)
    cal = Calibration(mode, threads, when=datetime.datetime.now().isoformat(timespec="seconds"), host=_host())
    min_s, repeats = TIMING[mode]
    sizes = GEMM_SIZES[mode]
    shapes = [(m, n, k) for m in sizes for n in sizes for k in sizes]
    backends = [("numpy", "fp32")] + ([("torch", "fp32"), ("torch", "bf16")] if torch else [])
    slow = [x for x in shapes if max(x) <= SLOW_SIZE]
    total = sum(len(shapes) if precision == "fp32" else len(slow) for _, precision in backends) + len(ELEMENTS[mode]) + 1
    total += len(MESSAGE_BYTES[mode]) + len(FRAMEWORK_LAYERS) if torch else 0
    done = 0

    def step(what: str) -> None:
        nonlocal done
        done += 1
        if progress:
            progress(done, total, what)

    rng = np.random.default_rng(0)
    for backend, precision in backends:
        for m, n, k in shapes if precision == "fp32" else [x for x in shapes if max(x) <= SLOW_SIZE]:
            step(f"GEMM {backend} {precision} {m}x{n}x{k}")
            a, b = rng.standard_normal((m, k), dtype=np.float32), rng.standard_normal((k, n), dtype=np.float32)
            if backend == "torch":
                dtype = torch.float32 if precision == "fp32" else torch.bfloat16
                ta, tb = torch.from_numpy(a).to(dtype), torch.from_numpy(b).to(dtype)
                seconds = timed(lambda ta=ta, tb=tb: torch.mm(ta, tb), min_s, repeats)
            else:
                seconds = timed(lambda a=a, b=b: a @ b, min_s, repeats)
            cal.add("gemm", backend, precision, f"{m}x{n}x{k}", m * n * k, seconds)
        cal.fits[f"gemm {backend} {precision}"] = _fit(cal, "gemm", backend, precision)
    element_backend = "torch" if torch else "numpy"
    for elements in ELEMENTS[mode]:
        step(f"element-wise add of {elements:,}")
        x, y = np.ones(elements, np.float32), np.ones(elements, np.float32)
        if torch:
            tx, ty, tz = torch.from_numpy(x), torch.from_numpy(y), torch.empty(elements)
            seconds = timed(lambda tx=tx, ty=ty, tz=tz: torch.add(tx, ty, out=tz), min_s, repeats)
        else:
            z = np.empty_like(x)
            seconds = timed(lambda x=x, y=y, z=z: np.add(x, y, out=z), min_s, repeats)
        cal.add("elementwise", element_backend, "fp32", str(elements), elements, seconds)
    cal.fits["elementwise"] = _fit(cal, "elementwise", element_backend, "fp32")
    step("memory copy")
    source = np.ones(COPY_BYTES[mode] // 4, np.float32)
    target = np.empty_like(source)
    seconds = timed(lambda: np.copyto(target, source), min_s * 5, repeats)
    cal.copy_rate = 2 * source.nbytes / seconds
    cal.add("copy", "numpy", "fp32", f"{source.nbytes} B", 2 * source.nbytes, seconds)
    if torch:
        for layers in FRAMEWORK_LAYERS:
            step(f"framework: a training step of {layers} layer(s)")
            cal.add(
                "framework",
                "torch DDP, 1 process",
                "fp32",
                f"{layers} layers",
                layers,
                _training_step(torch, layers, min_s, repeats),
            )
        cal.fits["framework"] = _fit(cal, "framework", "torch DDP, 1 process", "fp32")
        for nbytes, seconds in _allreduce_times(MESSAGE_BYTES[mode], min_s, repeats, step):
            cal.add("all_reduce", "torch gloo, 2 processes", "fp32", f"{nbytes} B", nbytes, seconds)
        cal.fits["all_reduce"] = _fit(cal, "all_reduce", "torch gloo, 2 processes", "fp32")
    else:
        cal.notes.append("collectives not measured: torch is not installed (pip install -e .[torch])")
    return cal


def _training_step(torch, layers: int, min_s: float, repeats: int) -> float:
    """Seconds of one DDP training step (1 process) of an MLP `layers` deep and one unit wide on one sample."""
    import torch.distributed as dist

    folder = tempfile.TemporaryDirectory(prefix="hwsim-gloo-")
    dist.init_process_group("gloo", init_method=rendezvous(folder.name), rank=0, world_size=1)
    try:
        stack = []
        for _ in range(layers):
            stack += [torch.nn.Linear(1, 1), torch.nn.ReLU()]
        model = torch.nn.parallel.DistributedDataParallel(torch.nn.Sequential(*stack[:-1]))
        optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
        x = torch.ones(1, 1)

        def one() -> None:
            optimizer.zero_grad()
            model(x).sum().backward()
            optimizer.step()

        return timed(one, min_s, repeats)
    finally:
        dist.destroy_process_group()
        folder.cleanup()


def _fit(cal: Calibration, what: str, backend: str, precision: str) -> Fit:
    rows = [r for r in cal.rows if (r["what"], r["backend"], r["precision"]) == (what, backend, precision)]
    return fit_line([r["work"] for r in rows], [r["seconds"] for r in rows])


def _torch(threads: int):
    """torch, on `threads` threads, or None when it is not installed."""
    try:
        import torch
    except ImportError:
        return None
    torch.set_num_threads(threads)
    return torch


def _host() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{socket.gethostname()} ({cpu}, {os.cpu_count()} cores)"


def _allreduce_times(sizes, min_s: float, repeats: int, step) -> list[tuple[int, float]]:
    """(bytes, seconds) of a gloo all-reduce between 2 processes over loopback, per size (rank 0's median); a
    RuntimeError naming the rank if a worker fails or a size takes longer than ALLREDUCE_TIMEOUT_S."""
    import torch.multiprocessing as mp

    out = []
    with tempfile.TemporaryDirectory(prefix="hwsim-gloo-") as folder:
        results = mp.get_context("spawn").Queue()
        context = mp.spawn(
            _allreduce_rank, args=(2, rendezvous(folder), tuple(sizes), min_s, repeats, results), nprocs=2, join=False
        )
        try:
            for _ in sizes:
                try:
                    item = results.get(timeout=ALLREDUCE_TIMEOUT_S)
                except queue.Empty:
                    raise RuntimeError(f"the 2-process all-reduce gave no result in {ALLREDUCE_TIMEOUT_S} s") from None
                if item[0] == "error":
                    raise RuntimeError(f"the 2-process all-reduce failed: {item[1]}")
                nbytes, seconds = item
                step(f"all-reduce of {nbytes:,} B over loopback")
                out.append((nbytes, seconds))
            while not context.join():
                pass
        finally:
            for process in context.processes:
                if process.is_alive():
                    process.terminate()
    return out


def _allreduce_rank(rank: int, world: int, store: str, sizes, min_s: float, repeats: int, results) -> None:
    import torch
    import torch.distributed as dist

    try:
        torch.set_num_threads(1)
        dist.init_process_group("gloo", init_method=store, rank=rank, world_size=world)
        for nbytes in sizes:
            tensor = torch.ones(max(nbytes // 4, 1))
            dist.all_reduce(tensor)  # warm up this size
            runs = []
            for _ in range(repeats):
                calls = max(1, int(min_s / 50e-6)) if nbytes < 2**16 else 3
                dist.barrier()
                start = time.perf_counter()
                for _ in range(calls):
                    dist.all_reduce(tensor)
                runs.append((time.perf_counter() - start) / calls)
            if rank == 0:
                results.put((nbytes, float(np.median(runs))))
        dist.destroy_process_group()
    except Exception as err:  # the parent waits on the queue: tell it, then fail
        results.put(("error", f"rank {rank}: {err!r}"))
        raise


def rendezvous(folder: str) -> str:
    """torch.distributed's init_method for a group whose processes share `folder`: a file store there. No TCP port
    is chosen, so two groups started at once (two tests, two commands) cannot meet by taking the same port."""
    return f"file://{Path(folder).resolve()}/store"


def preset_yaml(cal: Calibration, name: str = "host") -> str:
    """The calibration as a hardware preset: every constant with how it was measured."""
    backend = "torch" if "gemm torch fp32" in cal.fits else "numpy"
    gemm = cal.fits[f"gemm {backend} fp32"]
    bf16 = cal.fits.get("gemm torch bf16")
    bf16_ratio = bf16.rate / gemm.rate if bf16 else None
    bf16_macs = max(1, round(bf16_ratio)) if bf16_ratio else 1
    vector = cal.fits["elementwise"]
    framework = cal.fits.get("framework")
    per_op = 1 / framework.rate / OPS_PER_LAYER if framework else None
    try:
        memory = (
            int(next(line for line in Path("/proc/meminfo").read_text().splitlines() if line.startswith("MemTotal")).split()[1])
            * 1024
        )
    except (OSError, StopIteration, ValueError, IndexError):
        memory = 8 * 2**30
    how = f"hwsim calibrate ({cal.mode}) on {cal.host}, {cal.when}, {cal.threads} thread(s)"
    lines = [
        f"# This machine as measured by {how}.",
        *(
            [
                f"# framework_step: {framework.launch:.6g} s  (a DDP training step's fixed time: hwsim validate host's optimizer time)"
            ]
            if framework
            else []
        ),
        "# A CPU as hwsim's units: one 1 x 1 output-stationary array whose clock is the measured GEMM rate (MACs/s), so",
        "# a GEMM takes m n k cycles plus `launch`; a vector unit of one lane at the measured element-wise rate; banks at",
        "# the measured copy bandwidth; a loopback switch from the measured 2-process all-reduce (hwsim.commands.calibrate).",
        f"name: {name}",
        "systolic:",
        "  rows: 1  # a CPU as one MAC per cycle at the measured rate (see the header)",
        "  cols: 1",
        f"  clock: {gemm.rate:.6g} Hz  # measured: fp32 GEMM rate of {backend} (MACs/s), fit of t = launch + mnk / rate",
        "  dataflow: output_stationary  # 1 x 1: m n k cycles",
        f"  macs_per_cycle: {{fp32: 1, bf16: {bf16_macs}, fp16: 1, int8: 1, int4: 1}}  # bf16 "
        + (f"measured at {bf16_ratio:.3g} x fp32 (at least 1)" if bf16_ratio else "not measured (torch not installed)")
        + "; fp16, int8, int4 not measured",
        f"  launch: {per_op * 1e6:.6g} us  # measured: a DDP training step's time per layer / {OPS_PER_LAYER} ops (bare call: {gemm.launch * 1e6:.3g} us)"
        if per_op
        else f"  launch: {gemm.launch * 1e6:.6g} us  # measured: the GEMM fit's fixed time per call (no torch: no training-step measurement)",
        "vector:",
        "  lanes: 1  # one element per cycle at the measured rate",
        f"  clock: {vector.rate:.6g} Hz  # measured: element-wise add rate (elements/s), fit of t = launch + n / rate",
        f"  launch: {per_op * 1e6:.6g} us  # measured: as systolic.launch (bare call: {vector.launch * 1e6:.3g} us)"
        if per_op
        else f"  launch: {vector.launch * 1e6:.6g} us  # measured: the element-wise fit's fixed time per op",
        "memory:",
    ]
    for bank in ("params", "working"):
        lines += [
            f"  {bank}:",
            "    precision: fp32  # the host computes in fp32",
            f"    capacity: {memory} B  # MemTotal of /proc/meminfo",
            f"    bandwidth: {cal.copy_rate:.6g} B/s  # measured: a {COPY_BYTES[cal.mode] // 2**20} MiB NumPy copy, 2 x bytes / time",
        ]
    reduce = cal.fits.get("all_reduce")
    if reduce is not None:
        lines += [
            "nic:",
            f"  bandwidth: {1 / (1 / reduce.rate):.6g} B/s  # measured: 1 / the all-reduce fit's seconds per byte (2 processes, gloo, loopback)",
            "  latency: 0 s  # loopback: no wire; the fixed cost is the overhead",
            f"  overhead: {reduce.launch / 2 * 1e6:.6g} us  # measured: half the all-reduce fit's fixed time (2 messages per 2-rank ring all-reduce)",
        ]
    else:
        lines += [
            "nic:",
            "  bandwidth: 10 Gb/s  # NOT measured (torch is not installed): a placeholder",
            "  latency: 0 s  # NOT measured",
            "  overhead: 0 s  # NOT measured",
        ]
    return "\n".join(lines) + "\n"


def table(cal: Calibration) -> str:
    """The measurements and fits as a Markdown table."""
    out = ["| what | backend | precision | shape | measured | fitted | error |", "|---|---|---|---|---|---|---|"]
    keys = {
        "gemm": lambda r: f"gemm {r['backend']} {r['precision']}",
        "elementwise": lambda r: "elementwise",
        "all_reduce": lambda r: "all_reduce",
    }
    for r in cal.rows:
        fit = cal.fits.get(keys[r["what"]](r)) if r["what"] in keys else None
        fitted = fit(r["work"]) if fit else None
        error = f"{(fitted / r['seconds'] - 1) * 100:+.1f} %" if fit else ""
        shown = f"{fitted * 1e6:.4g} us" if fit else ""
        out.append(
            f"| {r['what']} | {r['backend']} | {r['precision']} | {r['shape']} | {r['seconds'] * 1e6:.4g} us | {shown} | {error} |"
        )
    out += ["", "| fit | launch | rate |", "|---|---|---|"]
    units = {"all_reduce": "B/s", "framework": "layers/s"}
    for key, fit in cal.fits.items():
        unit = units.get(key, "elements/s" if key == "elementwise" else "MAC/s")
        out.append(f"| {key} | {fit.launch * 1e6:.4g} us | {fit.rate:.4g} {unit} |")
    out.append(f"| memory copy | | {cal.copy_rate:.4g} B/s |")
    out += [f"\n{note}" for note in cal.notes]
    return "\n".join(out)


def plot(cal: Calibration, path: Path) -> None:
    """Measured against fitted times: GEMMs (per backend), element-wise ops, all-reduces."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [
        ("gemm", "GEMM: measured vs fitted", "fitted (s)"),
        ("elementwise", "element-wise add", "elements"),
        ("framework", "DDP training step, width 1 (the framework)", "layers"),
        ("all_reduce", "all-reduce, 2 processes (gloo)", "bytes"),
    ]
    fig, axes = plt.subplots(1, 4, figsize=(20, 4.5))
    for ax, (what, title, xlabel) in zip(axes, panels, strict=True):
        rows = [r for r in cal.rows if r["what"] == what]
        ax.set_title(title)
        if not rows:
            ax.text(0.5, 0.5, "not measured", ha="center", transform=ax.transAxes)
            continue
        if what == "gemm":
            for key in sorted({(r["backend"], r["precision"]) for r in rows}):
                mine = [r for r in rows if (r["backend"], r["precision"]) == key]
                fit = cal.fits[f"gemm {key[0]} {key[1]}"]
                ax.loglog(fit([r["work"] for r in mine]), [r["seconds"] for r in mine], "o", label=" ".join(key), alpha=0.7)
            lo, hi = ax.get_xlim()
            ax.loglog([lo, hi], [lo, hi], "k--", lw=1, label="measured = fitted")
            ax.set_ylabel("measured (s)")
        else:
            work = np.array([r["work"] for r in rows], float)
            fit = cal.fits[what]
            ax.loglog(work, [r["seconds"] for r in rows], "o", label="measured")
            grid = np.geomspace(work.min(), work.max(), 50)
            ax.loglog(grid, fit(grid), "-", label=f"fit: {fit.launch * 1e6:.3g} us + x / {fit.rate:.3g}/s")
            ax.set_ylabel("seconds")
        ax.set_xlabel(xlabel)
        ax.legend(fontsize=8)
        ax.grid(True, which="both", alpha=0.3)
    fig.suptitle(f"hwsim calibrate ({cal.mode}): {cal.host}, {cal.when}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
