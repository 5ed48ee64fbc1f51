"""Parallel kernels and their serial twins: small inputs never wake the thread pool.

A `parallel=True` kernel hands its `prange` loop to Numba's thread pool on every call.
On a big tensor that pays; on a small one (a 650-parameter layer) the hand-off costs
more than the work, and on a machine whose cores are busy with other processes (CI, a
laptop, a sweep's other workers) it costs milliseconds, because the call waits for a
thread to be scheduled. So every parallel kernel is compiled twice:

- `serial_twin(kernel)` compiles the same Python function without `parallel=True`
  (its `prange` runs as `range`, in order); `callees` swap the parallel kernels it calls
  for their serial twins. The twin is a copy of the function under its own name
  (`<name>_serial`), because Numba names its cache files by the function's name.
- `by_size(kernel, size)` is what callers use: it runs the serial twin when `size(*args)`
  is below `PARALLEL_MIN_ELEMENTS`, else the parallel kernel.

Both compilations run the same loops over the same tasks and combine partial results
in task order, so they give the same bits (`tests/kernels/test_threads.py`).
`PARALLEL_MIN_ELEMENTS` comes from timing both twins on 2^10 to 2^21 elements on this
2-core machine with idle cores (the non-finite count, int8 quantization and bf16
encoding): a parallel call costs 3-6 us more than a serial one on a tiny input, the
parallel twin first wins at 2^15 to 2^17 elements depending on the kernel, and from
2^17 it wins for all three (by 1.2-2x). Below that the serial twin runs, which also
keeps small kernels out of the thread pool's way on busy cores. `hwsim bench kernels`
prints both twins and NumPy at 1 Ki and 64 Ki elements ("small tensors").
"""

from __future__ import annotations

import types
from collections.abc import Callable

from numba import njit

PARALLEL_MIN_ELEMENTS = 1 << 17
"""Inputs with fewer elements run the serial twin (see the module docstring)."""


def serial_twin(kernel, **callees):
    """The serial compilation of the parallel Numba kernel `kernel` (same options, without
    `parallel`); `callees` name parallel kernels it calls and give their serial twins."""
    fn = kernel.py_func
    clone = types.FunctionType(
        fn.__code__, {**fn.__globals__, **callees}, fn.__name__ + "_serial", fn.__defaults__, fn.__closure__
    )
    clone.__qualname__ = fn.__qualname__ + "_serial"
    clone.__module__ = fn.__module__
    clone.__doc__ = fn.__doc__
    options = {k: v for k, v in kernel.targetoptions.items() if k not in ("parallel", "nopython", "boundscheck")}
    return njit(cache=True, **options)(clone)


class BySize:
    """A parallel kernel and its serial twin; calling it runs the one that fits the input's size."""

    def __init__(self, parallel, serial, size: Callable[..., int]):
        self.parallel = parallel
        self.serial = serial
        self.size = size
        fn = getattr(parallel, "py_func", parallel)
        self.__doc__ = fn.__doc__
        self.__name__ = fn.__name__.lstrip("_")

    def __call__(self, *args):
        kernel = self.parallel if self.size(*args) >= PARALLEL_MIN_ELEMENTS else self.serial
        return kernel(*args)

    def __repr__(self) -> str:
        return f"<kernel {self.__name__}: parallel from {PARALLEL_MIN_ELEMENTS} elements, else serial>"


def by_size(kernel, size: Callable[..., int] = lambda x, *rest: x.size, **callees) -> BySize:
    """`kernel` (parallel) with its serial twin, chosen per call by `size(*args)` (default: the
    first argument's size)."""
    return BySize(kernel, serial_twin(kernel, **callees), size)
