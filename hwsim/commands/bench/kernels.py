"""`hwsim bench kernels`: the codecs and kernels against memory bandwidth, NumPy and PyTorch.

For each kernel on one float32 input (256 MiB unless told), in one run:

- GB/s: bytes moved (input read + output written) per second;
- of_copy: that rate over this machine's copy bandwidth (`np.copyto` of the same input,
  read + written, single thread, measured in the same run);
- vs_numpy / vs_torch: the time of a straightforward NumPy version (or the PyTorch CPU
  equivalent, where one exists and torch is installed) over the kernel's time.

Uniform quantization and bf16/fp16 run as kernels on preallocated outputs (what a
bank does in place); the other codecs run end to end through `encode` / `decode`, as
their NumPy versions do. Every time is the best of a few repeats.

A second table, "small tensors" (`kernels_small.csv`), times single calls on 1 Ki and
64 Ki elements, where a layer of a small model lives: what callers get (below
`threads.PARALLEL_MIN_ELEMENTS` the serial twin), the parallel twin forced, and NumPy,
with Numba's default threads and with one thread.
"""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import numba
import numpy as np
import pandas as pd

from hwsim.codecs import make_codec
from hwsim.codecs.rotated import lloyd_max
from hwsim.kernels import adam, threads
from hwsim.kernels.aggregate import weighted_sum
from hwsim.kernels.floats import from_bf16, from_fp16, to_bf16, to_fp16
from hwsim.kernels.gradq import count_nonfinite
from hwsim.kernels.rng import keys
from hwsim.kernels.uniform import dequantize_uniform, quantize_uniform

BLOCK = 256


def best(fn: Callable[[], object], repeats: int) -> float:
    fastest = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        fastest = min(fastest, time.perf_counter() - start)
    return fastest


# straightforward NumPy versions


def np_fwht(y: np.ndarray) -> np.ndarray:
    d = y.size
    h = 1
    while h < d:
        pairs = y.reshape(-1, 2, h)
        y = np.stack([pairs[:, 0] + pairs[:, 1], pairs[:, 0] - pairs[:, 1]], axis=1).reshape(-1)
        h *= 2
    return y


def np_bf16(x):
    return ((x.view(np.uint32) + 0x7FFF + ((x.view(np.uint32) >> 16) & 1)) >> 16).astype(np.uint16)


def np_uniform(x, bits, stochastic, gen):
    xb = x.reshape(-1, BLOCK)
    m = np.abs(xb).max(axis=1, keepdims=True)
    levels = 2**bits - 1
    step = np.where(m > 0, 2 * m / levels, 1)
    u = gen.random(xb.shape, dtype=np.float32) if stochastic else 0.5
    codes = np.clip(np.floor((xb + m) / step + u), 0, levels).astype(np.uint8).reshape(-1)
    if bits == 4:
        codes = codes[0::2] | (codes[1::2] << 4)
    return m, codes


def np_uniform_decode(m, codes, bits):
    if bits == 4:
        codes = np.stack([codes & 15, codes >> 4], axis=1).reshape(-1)
    step = 2 * m / (2**bits - 1)
    return (codes.reshape(-1, BLOCK) * step - m).reshape(-1).astype(np.float32)


def np_rotated(x, gen, bits):
    d = x.size
    signs = np.where(gen.random(d) < 0.5, -1.0, 1.0).astype(np.float32)
    y = np_fwht(x * signs) / np.float32(np.sqrt(d))
    if bits == 1:
        q = np.where(y < 0, -1.0, 1.0)
        codes = np.packbits(y < 0)
    else:
        levels, mids = lloyd_max(bits)
        eta = np.sqrt(d) / np.linalg.norm(y)
        idx = np.searchsorted(mids, y * eta)
        q = levels[idx]
        codes = np.packbits(((idx[:, None] >> np.arange(bits)) & 1).astype(np.uint8), axis=None)
    scale = np.dot(y, y) / np.dot(y, q)
    return signs, codes, scale


def np_rotated_decode(signs, codes, scale, bits, d):
    if bits == 1:
        q = np.where(np.unpackbits(codes)[:d] == 1, -1.0, 1.0).astype(np.float32)
    else:
        levels, _ = lloyd_max(bits)
        b = np.unpackbits(codes)[: d * bits].reshape(d, bits)
        q = levels[(b << np.arange(bits)).sum(axis=1)].astype(np.float32)
    return np_fwht(q * np.float32(scale)) / np.float32(np.sqrt(d)) * signs


def np_qsgd(x, s, bucket, gen):
    xb = x.reshape(-1, bucket)
    r = np.linalg.norm(xb, axis=1, keepdims=True)
    level = np.floor(np.abs(xb) / r * s + gen.random(xb.shape, dtype=np.float32))
    codes = (2 * level + (xb < 0)).astype(np.uint8).reshape(-1)
    return r, codes[0::2] | (codes[1::2] << 4)


def np_qsgd_decode(r, packed, s, bucket):
    codes = np.stack([packed & 15, packed >> 4], axis=1).reshape(-1, bucket)
    return (np.where(codes & 1, -1.0, 1.0) * (codes >> 1) * r / s).astype(np.float32).reshape(-1)


def np_topk(x, k):
    idx = np.sort(np.argpartition(np.abs(x), x.size - k)[x.size - k :])
    return idx.astype(np.uint32), x[idx]


def np_scatter(n, idx, vals):
    out = np.zeros(n, np.float32)
    out[idx] = vals
    return out


def np_adam(w, g, m, v, step, lr=1e-3, b1=0.9, b2=0.999, eps=1e-8):
    m *= b1
    m += (1 - b1) * g
    v *= b2
    v += (1 - b2) * g * g
    w -= lr * (m / (1 - b1**step)) / (np.sqrt(v / (1 - b2**step)) + eps)


def load_time() -> float:
    """Seconds for a fresh Python to import hwsim.codecs and run every codec once (kernels from cache)."""
    script = (
        "import time; t = time.perf_counter()\n"
        "import numpy as np\n"
        "from hwsim.codecs import CODECS, make_codec\n"
        "x = np.linspace(-1, 1, 1000, dtype=np.float32)\n"
        "for name in CODECS: c = make_codec(name); c.decode(c.encode(x, seed=0, stream=0))\n"
        "print(time.perf_counter() - t)\n"
    )
    subprocess.run([sys.executable, "-c", script], check=True, capture_output=True)  # fills the cache if cold
    return min(
        float(subprocess.run([sys.executable, "-c", script], check=True, capture_output=True, text=True).stdout) for _ in range(3)
    )


def run_kernel_bench(nbytes: int, out: Path, repeats: int = 3, progress: Callable[[int, int], None] | None = None) -> str:
    """Measure every kernel on a float32 input of `nbytes`, write kernels.csv / kernels.md, return the table."""
    try:
        import torch

        torch.set_num_threads(1)
    except ImportError:
        torch = None
    n = (nbytes // 4) // 4096 * 4096
    gen = np.random.default_rng(0)
    x = gen.standard_normal(n, dtype=np.float32)
    copy_out = np.empty_like(x)
    copy_s = best(lambda: np.copyto(copy_out, x), repeats + 2)
    copy_rate = 2 * x.nbytes / copy_s
    rows: list[dict] = []
    k1, k2 = keys(1, 2)

    def row(name, moved, fn, numpy_fn=None, torch_fn=None, note=""):
        fn()  # compile or warm
        t = best(fn, repeats)
        t_np = best(numpy_fn, max(1, repeats - 1)) if numpy_fn else float("nan")
        t_torch = best(torch_fn, repeats) if torch_fn else float("nan")
        rows.append(
            {
                "kernel": name,
                "bytes_moved": moved,
                "seconds": t,
                "GB_per_s": moved / t / 1e9,
                "of_copy": moved / t / copy_rate,
                "vs_numpy": t_np / t,
                "vs_torch": t_torch / t,
                "note": note,
            }
        )
        if progress:
            progress(len(rows), TOTAL_ROWS)

    # uniform quantization, kernels on preallocated outputs
    for bits, stochastic, label in (
        (8, False, "int8 per-block"),
        (4, True, "int4 stochastic per-block"),
        (2, False, "int2 per-block"),
    ):
        params = np.empty(n // BLOCK, np.float32)
        packed = np.empty(n * bits // 8, np.uint8)
        moved = x.nbytes + packed.nbytes + params.nbytes
        row(
            f"{label} quantize",
            moved,
            lambda bits=bits, stochastic=stochastic, params=params, packed=packed: quantize_uniform(
                x, bits, BLOCK, False, stochastic, k1, k2, params, packed
            ),
            (lambda bits=bits, stochastic=stochastic: np_uniform(x, bits, stochastic, gen)) if bits != 2 else None,
            note=f"block {BLOCK}, symmetric, {'stochastic' if stochastic else 'nearest'}",
        )
        ref = np_uniform(x, bits, stochastic, gen) if bits != 2 else None
        row(
            f"{label} dequantize",
            moved,
            lambda bits=bits, params=params, packed=packed: dequantize_uniform(packed, bits, BLOCK, False, params, copy_out),
            (lambda bits=bits, ref=ref: np_uniform_decode(*ref, bits)) if ref else None,
        )

    halves = np.empty(n, np.uint16)
    moved = x.nbytes + halves.nbytes
    xt = torch.from_numpy(x) if torch else None
    row(
        "bf16 encode",
        moved,
        lambda: to_bf16(x.view(np.uint32), halves),
        lambda: np_bf16(x),
        (lambda: xt.to(torch.bfloat16)) if torch else None,
    )
    bf = xt.to(torch.bfloat16) if torch else None
    row(
        "bf16 decode",
        moved,
        lambda: from_bf16(halves, copy_out.view(np.uint32)),
        lambda: (halves.astype(np.uint32) << 16).view(np.float32),
        (lambda: bf.to(torch.float32)) if torch else None,
    )
    row(
        "fp16 encode",
        moved,
        lambda: to_fp16(x.view(np.uint32), halves),
        lambda: x.astype(np.float16),
        (lambda: xt.to(torch.float16)) if torch else None,
    )
    hf = xt.to(torch.float16) if torch else None

    row(
        "fp16 decode",
        moved,
        lambda: from_fp16(halves, copy_out),
        lambda: halves.view(np.float16).astype(np.float32),
        (lambda: hf.to(torch.float32)) if torch else None,
    )

    # codecs end to end
    def codec_rows(name, params, numpy_enc, numpy_dec, torch_enc=None, note=""):
        codec = make_codec(name, **params)
        buf = codec.encode(x, seed=1, stream=0)
        moved = x.nbytes + buf.nbytes
        row(f"{name} encode", moved, lambda: codec.encode(x, seed=1, stream=0), numpy_enc, torch_enc, note)
        row(f"{name} decode", moved, lambda: codec.decode(buf), numpy_dec, None, note)

    d_rot = np_rotated(x, gen, 1)
    codec_rows(
        "drive", {}, lambda: np_rotated(x, gen, 1), lambda: np_rotated_decode(*d_rot, 1, n), note="d = n (a power of two here)"
    )
    e_rot = np_rotated(x, gen, 2)
    codec_rows("eden", {"bits": 2}, lambda: np_rotated(x, gen, 2), lambda: np_rotated_decode(*e_rot, 2, n), note="2 bits")
    q = np_qsgd(x, 4, 512, gen)
    codec_rows(
        "qsgd",
        {"levels": 4, "bucket": 512},
        lambda: np_qsgd(x, 4, 512, gen),
        lambda: np_qsgd_decode(*q, 4, 512),
        note="4 levels, bucket 512",
    )
    codec_rows(
        "sign",
        {},
        lambda: (np.packbits(x < 0), np.abs(x).mean()),
        lambda: np.where(np.unpackbits(np.packbits(x < 0))[:n] == 1, -1.0, 1.0).astype(np.float32) * np.float32(0.8),
    )
    k = n // 100
    idx, vals = np_topk(x, k)
    codec_rows(
        "topk",
        {"ratio": 0.01},
        lambda: np_topk(x, k),
        lambda: np_scatter(n, idx, vals),
        (lambda: torch.topk(xt.abs(), k, sorted=False)) if torch else None,
        note="1 %",
    )
    ridx = gen.choice(n, k, replace=False)
    codec_rows(
        "randk",
        {"ratio": 0.01},
        lambda: (lambda i: (i, x[i]))(gen.choice(n, k, replace=False)),
        lambda: np_scatter(n, ridx, x[ridx]),
        note="1 %",
    )

    # aggregation and optimizer
    m = 4
    updates = gen.standard_normal((m, n // m), dtype=np.float32)
    weights = np.full(m, 1 / m)
    agg = np.empty(n // m, np.float32)
    ut = torch.from_numpy(updates) if torch else None
    wt = torch.from_numpy(weights.astype(np.float32)) if torch else None
    row(
        "weighted_sum of 4 updates",
        updates.nbytes + agg.nbytes,
        lambda: weighted_sum(updates, weights, agg),
        lambda: (weights[:, None] * updates.astype(np.float64)).sum(axis=0).astype(np.float32),
        (lambda: wt @ ut) if torch else None,
        "float64 accumulation (torch: float32)",
    )
    quarter = n // 4
    w, g, mm, vv = (gen.standard_normal(quarter, dtype=np.float32) for _ in range(4))
    vv = np.abs(vv)
    row(
        "adam step",
        7 * 4 * quarter,
        lambda: adam(w, g, mm, vv, 3, 1e-3, 0.9, 0.999, 1e-8),
        lambda: np_adam(w, g, mm, vv, 3),
        _torch_adam(torch, quarter) if torch else None,
        "reads w, g, m, v; writes w, m, v",
    )
    table = pd.DataFrame(rows)
    cold = load_time()
    table.attrs["notes"] = [
        f"input: {x.nbytes / 2**20:.0f} MiB float32; copy bandwidth (np.copyto, read + write): {copy_rate / 1e9:.1f} GB/s",
        f"numba threads: {numba.get_num_threads()} (parallel from {threads.PARALLEL_MIN_ELEMENTS:,} elements: uniform, bf16/fp16, QSGD/TernGrad/sign, the Hadamard rotation, random-k; single-threaded: top-k, weighted_sum, adam); torch: {torch.__version__ if torch else 'not installed'}",
        f"fresh process: import + every codec once, kernels from the cache: {cold:.2f} s",
    ]
    small = small_tensor_table()
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "kernels.csv", index=False)
    small.to_csv(out / "kernels_small.csv", index=False)
    from hwsim.commands.bench.engine import markdown

    notes = "\n".join(f"- {line}" for line in table.attrs["notes"])
    (out / "kernels.md").write_text(
        f"{markdown(table)}\n{notes}\n\n## Small tensors (per call)\n\n{markdown(small)}\n- {SMALL_NOTE}\n", encoding="utf-8"
    )
    text = table.to_string(index=False, float_format=lambda v: f"{v:.3g}")
    small_text = small.to_string(index=False, float_format=lambda v: f"{v:.3g}")
    return f"{text}\n" + "\n".join(table.attrs["notes"]) + f"\n\nsmall tensors (per call):\n{small_text}\n{SMALL_NOTE}"


SMALL_NOTE = (
    f"us per call, best of 5 runs of many calls; `hwsim` is what callers get (serial twin below "
    f"{threads.PARALLEL_MIN_ELEMENTS:,} elements), `parallel` the parallel twin forced; vs_numpy = NumPy's time / hwsim's"
)


def small_tensor_table(sizes: tuple[int, ...] = (1 << 10, 1 << 16)) -> pd.DataFrame:
    """Per-call times on small inputs: hwsim's kernels as called (the twin for the size), the parallel
    twin forced, and NumPy, with the default Numba threads and with one thread."""
    default = numba.get_num_threads()
    rows = []
    try:
        for n in sizes:
            for label, hwsim_fn, numpy_fn in _small_cases(n):
                for count in sorted({default, 1}, reverse=True):
                    numba.set_num_threads(count)
                    row = {"kernel": label, "elements": n, "threads": count, "hwsim_us": _per_call(hwsim_fn, n)}
                    row["parallel_us"] = _forced_parallel(hwsim_fn, n)
                    row["numpy_us"] = _per_call(numpy_fn, n)
                    rows.append(row)
    finally:
        numba.set_num_threads(default)
    table = pd.DataFrame(rows)
    table["vs_numpy"] = table.numpy_us / table.hwsim_us
    return table


def _small_cases(n: int) -> list[tuple[str, Callable[[], object], Callable[[], object]]]:
    """(label, hwsim call, NumPy call) on n random float32 elements (n a power of two)."""
    gen = np.random.default_rng(0)
    x = gen.standard_normal(n, dtype=np.float32)
    params, codes, halves = np.empty(-(-n // BLOCK), np.float32), np.empty(n, np.uint8), np.empty(n, np.uint16)
    k1, k2 = keys(1, 2)
    eden = make_codec("eden", bits=2)
    return [
        ("non-finite count", lambda: count_nonfinite(x), lambda: np.count_nonzero(~np.isfinite(x))),
        (
            "int8 quantize",
            lambda: quantize_uniform(x, 8, BLOCK, False, False, k1, k2, params, codes),
            lambda: np_uniform(x, 8, False, gen),
        ),
        ("bf16 encode", lambda: to_bf16(x.view(np.uint32), halves), lambda: np_bf16(x)),
        ("eden encode (codec)", lambda: eden.encode(x, seed=1, stream=0), lambda: np_rotated(x, gen, 2)),
    ]


def _per_call(fn: Callable[[], object], n: int) -> float:
    """Microseconds per call: best of 5 runs of enough calls to take a few milliseconds."""
    fn()
    calls = max(20, (1 << 21) // max(n, 1))
    return 1e6 * best(lambda: [fn() for _ in range(calls)], 5) / calls


def _forced_parallel(fn: Callable[[], object], n: int) -> float:
    """`_per_call` with every kernel on its parallel twin, whatever the size."""
    saved = threads.PARALLEL_MIN_ELEMENTS
    threads.PARALLEL_MIN_ELEMENTS = 0
    try:
        return _per_call(fn, n)
    finally:
        threads.PARALLEL_MIN_ELEMENTS = saved


def _torch_adam(torch, size):
    params = torch.nn.Parameter(torch.randn(size))
    params.grad = torch.randn(size)
    opt = torch.optim.Adam([params], lr=1e-3)
    return opt.step


TOTAL_ROWS = 6 + 4 + 12 + 2
