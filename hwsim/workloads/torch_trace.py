"""PyTorch profiler (Kineto) traces of a training step as a workload the replay system runs.

A Kineto trace (`torch.profiler.profile(...).export_chrome_trace`) is JSON: `traceEvents`, each with a category
(`cat`), a name, a thread (`tid`), a start `ts` and a duration `dur` in microseconds, and `args`. What is read:

- **GPU traces** (events of category `kernel`, `gpu_memcpy` or `gpu_memset`): each such event is a node on its
  stream (`args.stream`), in start order. An NCCL kernel (a name with `nccl`) is a collective: its operation from
  `args["Collective name"]` (or the kernel's name), its bytes from `args["In msg nelems"]` / `["Out msg nelems"]`
  and `args["dtype"]` (PyTorch writes them on NCCL kernels since 2.1).
- **CPU traces** (no GPU events): each thread's outermost `cpu_op` events are its nodes, in start order. A
  `gloo:<operation>` annotation (on gloo's threads) is a collective, its bytes from its `Input Dims` and
  `Input type`.
- **Order**: a node waits for the node before it on its stream and, on every other stream, for the last node
  that had ended when it started (the trace records no CUDA events, so the order observed is kept: a node that
  started after a collective ended waits for it in the replay too). The gap between a node's start and its last
  dependency's end (launch overhead, host time) is kept as an idle wait before it.
- **GEMMs**: a node whose op (or, for a kernel, the CPU op that launched it: the same `External id`) is
  `aten::mm`, `addmm`, `bmm`, `linear` or `matmul` with recorded `Input Dims` carries its (m, n, k, count) and
  precision, so `compute: cycle_model` can put it on another device's arrays.

A collective's bytes are its input on each rank, as Chakra's `comm_size` (an all-gather's output is that times the
ranks). Replayed on `ranks` ranks (data parallel: every rank runs the recorded rank's
step; its collectives span all ranks at the recorded per-rank sizes). Collectives over a group smaller than the
recorded world, and point-to-point messages, are refused by name.
"""

from __future__ import annotations

import bisect
import functools
import gzip
import json
import math
from pathlib import Path

from hwsim.errors import NOTHING, ConfigError
from hwsim.workloads.chakra.trace import MICROSECONDS, EtNode

GPU_CATEGORIES = ("kernel", "gpu_memcpy", "gpu_memset")
OPERATIONS = {
    "allreduce": "all_reduce",
    "all_reduce": "all_reduce",
    "allgather": "all_gather",
    "all_gather": "all_gather",
    "_allgather_base": "all_gather",
    "all_gather_into_tensor": "all_gather",
    "reducescatter": "reduce_scatter",
    "reduce_scatter": "reduce_scatter",
    "_reduce_scatter_base": "reduce_scatter",
    "reduce_scatter_tensor": "reduce_scatter",
    "broadcast": "broadcast",
    "alltoall": "all_to_all",
    "all_to_all": "all_to_all",
    "alltoall_base": "all_to_all",
    "all_to_allv": "all_to_all",
}
"""Collective names as NCCL kernels' `Collective name` and gloo's annotations spell them, and hwsim's operation."""
KERNEL_NAMES = {"AllReduce": "all_reduce", "AllGather": "all_gather", "ReduceScatter": "reduce_scatter", "Broadcast": "broadcast"}
DTYPE_BYTES = {
    "float": 4, "float32": 4, "double": 8, "float64": 8, "half": 2, "float16": 2, "c10::half": 2, "bfloat16": 2,
    "c10::bfloat16": 2, "long": 8, "int64": 8, "int": 4, "int32": 4, "byte": 1, "uint8": 1, "char": 1, "int8": 1,
    "bool": 1, "short": 2, "int16": 2,
}  # fmt: skip
"""Bytes of an element of each dtype as Kineto writes it (NCCL args: Float, BFloat16; cpu ops: float, c10::BFloat16)."""
PRECISIONS = {
    "float": "fp32",
    "float32": "fp32",
    "c10::bfloat16": "bf16",
    "bfloat16": "bf16",
    "c10::half": "fp16",
    "half": "fp16",
}
GEMM_OPS = ("aten::mm", "aten::addmm", "aten::bmm", "aten::linear", "aten::matmul")


def read_kineto(path: str | Path) -> tuple[tuple[EtNode, ...], int]:
    """The nodes of a Kineto trace's rank (ids from 1, in start order) and its recorded world size; a clear error
    for a file that is not such a trace."""
    return _read_cached(str(Path(path)), Path(path).stat().st_mtime_ns if Path(path).is_file() else 0)


@functools.lru_cache(maxsize=64)
def _read_cached(name: str, mtime_ns: int) -> tuple[tuple[EtNode, ...], int]:
    path = Path(name)
    events, world = _events(path)
    gpu = [e for e in events if e.get("cat") in GPU_CATEGORIES and e.get("ph") == "X"]
    launched = {}
    for e in events:
        if e.get("cat") == "cpu_op" and e.get("name") in GEMM_OPS and "External id" in e.get("args", {}):
            launched[e["args"]["External id"]] = e
    if gpu:
        items = [_gpu_item(e, path, world, launched) for e in gpu]
    else:
        ops = [e for e in events if e.get("cat") == "cpu_op" and e.get("ph") == "X"]
        if not ops:
            raise ConfigError(
                str(path), "traceEvents", "no kernels", "GPU kernels (cat kernel) or CPU ops (cat cpu_op) of a profiled step"
            )
        items = [_cpu_item(e, path, world) for e in _outermost(ops)]
        items += [_gloo_item(e, path, world) for e in events if str(e.get("name", "")).startswith("gloo:")]
    return tuple(_nodes(items)), world


def _events(path: Path) -> tuple[list[dict], int]:
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(str(path), "model.path", str(path), f"a readable PyTorch profiler trace ({err.strerror})") from None
    try:
        if raw[:2] == b"\x1f\x8b":
            raw = gzip.decompress(raw)
        data = json.loads(raw)
    except (OSError, EOFError, UnicodeDecodeError, json.JSONDecodeError) as err:
        raise ConfigError(str(path), "", NOTHING, f"a PyTorch profiler trace: JSON, optionally gzipped ({err})") from None
    if not isinstance(data, dict) or not isinstance(data.get("traceEvents"), list):
        raise ConfigError(str(path), "traceEvents", NOTHING, "a Kineto trace: a JSON object with a traceEvents list")
    info = data.get("distributedInfo") or {}
    world = info.get("world_size", 1)
    if not isinstance(world, int) or world < 1:
        raise ConfigError(str(path), "distributedInfo.world_size", world, "a whole number of ranks, at least 1")
    events = [e for e in data["traceEvents"] if isinstance(e, dict)]
    for e in events:
        if e.get("ph") == "X" and not (_number(e.get("ts")) and _number(e.get("dur"))):
            raise ConfigError(
                str(path), f"event {e.get('name')!r}", (e.get("ts"), e.get("dur")), "a numeric ts and dur (microseconds)"
            )
    return events, world


def _number(value) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value) and value >= -1e300


def _outermost(ops: list[dict]) -> list[dict]:
    """Each thread's CPU ops that no other op of the thread encloses."""
    out, end = [], {}
    for e in sorted(ops, key=lambda e: (e["tid"], e["ts"], -e["dur"])):
        if e["ts"] >= end.get(e["tid"], -math.inf):
            out.append(e)
            end[e["tid"]] = e["ts"] + e["dur"]
    return out


def _item(e: dict, stream, **fields) -> dict:
    return {
        "name": e.get("name", ""),
        "stream": stream,
        "start": float(e["ts"]),
        "end": float(e["ts"]) + float(e["dur"]),
        **fields,
    }


def _gpu_item(e: dict, path: Path, world: int, launched: dict) -> dict:
    args = e.get("args", {})
    stream = ("stream", args.get("stream", 0))
    if "nccl" in e.get("name", "").lower():
        return _item(e, stream, collective=_nccl(e, path, world))
    op = launched.get(args.get("External id"))
    return _item(e, stream, gemm=_gemm(op) if op else None)


def _nccl(e: dict, path: Path, world: int) -> tuple[str, int]:
    args, name = e.get("args", {}), e.get("name", "")
    where = f"kernel {name[:60]!r} at ts {e['ts']}"
    given = str(args.get("Collective name", "")).lower()
    op = OPERATIONS.get(given) if given else next((o for k, o in KERNEL_NAMES.items() if k in name), None)
    if given in ("send", "recv", "sendrecv") or "SendRecv" in name:
        raise ConfigError(
            str(path), where, "a point-to-point message", "collectives (sends and receives of a torch trace are not replayed yet)"
        )
    if op is None:
        raise ConfigError(
            str(path), where, given or name, f"an NCCL collective hwsim runs ({', '.join(sorted(set(OPERATIONS.values())))})"
        )
    group = args.get("Group size", world)
    if group != world:
        raise ConfigError(str(path), f"{where}.Group size", group, f"the whole world of {world} ranks (data parallel)")
    dtype = str(args.get("dtype", "")).lower()
    if dtype not in DTYPE_BYTES or "In msg nelems" not in args:
        raise ConfigError(str(path), f"{where}.args", args, "In msg nelems and a dtype (PyTorch 2.1 or later writes them)")
    return op, int(args["In msg nelems"]) * DTYPE_BYTES[dtype]


def _cpu_item(e: dict, path: Path, world: int) -> dict:
    return _item(e, ("thread", e["tid"]), gemm=_gemm(e) if e.get("name") in GEMM_OPS else None)


def _gloo_item(e: dict, path: Path, world: int) -> dict:
    args, name = e.get("args", {}), e["name"]
    where = f"event {name!r} at ts {e.get('ts')}"
    op = OPERATIONS.get(name.split(":", 1)[1].lower())
    if op is None:
        raise ConfigError(str(path), where, name, f"a gloo collective hwsim runs ({', '.join(sorted(set(OPERATIONS.values())))})")
    dims, types = args.get("Input Dims"), args.get("Input type")
    if not dims or not types or str(types[0]).lower() not in DTYPE_BYTES:
        raise ConfigError(str(path), f"{where}.args", args, "Input Dims and Input type (profile with record_shapes=True)")
    nbytes = math.prod(dims[0]) * DTYPE_BYTES[str(types[0]).lower()]
    return _item(e, ("thread", e["tid"]), collective=(op, nbytes))


def _gemm(e: dict) -> tuple | None:
    """(m, n, k, count, precision) of a GEMM op from its Input Dims, or None when they are not all there."""
    dims = e.get("args", {}).get("Input Dims")
    types = e.get("args", {}).get("Input type") or [""]
    precision = PRECISIONS.get(str(types[0]).lower())
    name = e.get("name")
    try:
        if name == "aten::addmm":
            (m, k), (_, n) = dims[1], dims[2]
            count = 1
        elif name == "aten::linear":
            *lead, k = dims[0]
            n, count, m = dims[1][0], 1, math.prod(lead)
        elif name == "aten::bmm":
            (count, m, k), (_, _, n) = dims[0], dims[1]
        else:  # mm, matmul: [..., m, k] x [..., k, n]
            *lead, m, k = dims[0]
            n, count = dims[1][-1], math.prod(lead)
    except (TypeError, ValueError, IndexError):
        return None
    if precision is None or min(m, n, k, count) < 1:
        return None
    return (m, n, k, count, precision)


def _nodes(items: list[dict]) -> list[EtNode]:
    """Nodes in start order with the dependencies and idle gaps of the module's docstring."""
    items.sort(key=lambda i: (i["start"], i["end"]))
    streams: dict = {}
    for i in items:
        streams.setdefault(i["stream"], []).append(i)
    ends = {s: [i["end"] for i in chain] for s, chain in streams.items()}
    position = {id(i): k for chain in streams.values() for k, i in enumerate(chain)}
    node_of: dict[int, int] = {}
    nodes: list[EtNode] = []
    for i in items:
        deps = []
        k = position[id(i)]
        if k:
            deps.append(streams[i["stream"]][k - 1])
        for s, chain in streams.items():
            if s != i["stream"]:
                j = bisect.bisect_right(ends[s], i["start"]) - 1  # a stream's nodes end in order (one at a time)
                if j >= 0:
                    deps.append(chain[j])
        dep_ids = tuple(node_of[id(d)] for d in deps)
        gap = i["start"] - max((d["end"] for d in deps), default=items[0]["start"])
        if gap > 0:
            nodes.append(EtNode(len(nodes) + 1, f"gap before {i['name']}", "delay", dep_ids, seconds=gap / MICROSECONDS))
            dep_ids = (len(nodes),)
        seconds = (i["end"] - i["start"]) / MICROSECONDS
        if "collective" in i:
            op, nbytes = i["collective"]
            node = EtNode(len(nodes) + 1, i["name"], "collective", dep_ids, bytes=nbytes, collective=op)
        else:
            gemm = i.get("gemm")
            node = EtNode(len(nodes) + 1, i["name"], "compute", dep_ids, seconds=seconds, gemm=gemm,
                          flops=2.0 * math.prod(gemm[:4]) if gemm else 0.0)  # fmt: skip
        nodes.append(node)
        node_of[id(i)] = node.id
    return nodes


class TorchTrace:
    """A Kineto trace replayed on `ranks` data-parallel ranks (the replay system's trace set)."""

    def __init__(self, spec):
        self.spec = spec
        nodes, self.world = read_kineto(spec.path)
        self.npus = spec.ranks or self.world
        self.files = [Path(spec.path)] * self.npus
        self.ranks = [nodes] * self.npus
        self.groups: dict[str, tuple[int, ...]] = {}  # every collective runs over every rank
        self.recorded_s = _span(nodes)


def _span(nodes: list[EtNode]) -> float:
    """The recorded step: the longest chain of recorded times (what the replay gives on the recorded hardware when
    collectives take no time)."""
    finish: dict[int, float] = {}
    for n in nodes:
        took = n.seconds if n.kind in ("compute", "delay") else 0.0
        finish[n.id] = max((finish[d] for d in n.deps), default=0.0) + took
    return max(finish.values(), default=0.0)
