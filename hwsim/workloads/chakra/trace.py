"""Chakra execution traces (ET): one file per NPU, read into plain nodes, and written back.

An ET file (MLCommons Chakra; ASTRA-sim's workload input) is a GlobalMetadata message and then one Node message
after another, each preceded by its length as a varint (Chakra's `protolib.encodeMessage`), optionally gzipped.
A trace set is `prefix.0.et`, `prefix.1.et`, ... one per NPU, as ASTRA-sim's `--workload-configuration=prefix`
names it. The messages are decoded with the `protobuf` package (`et_pb2`, generated from `et.proto`).

What a node means is what ASTRA-sim's `Workload::issue` makes of it (astra-sim/workload/Workload.cc, 518bd51):
- COMP_NODE: runs for `duration_micros` (1 ns when 0), on the CPU when its `is_cpu_op` attribute is true; its
  `num_ops` and `tensor_size` attributes are kept for the cycle model;
- COMM_COLL_NODE: a collective of `comm_type` on `comm_size` bytes per NPU, over the process group its `pg_name`
  names (the trace set's groups file: {name: [NPU, ...]}, ASTRA-sim's --comm-group-configuration format), else
  over every NPU;
- COMM_SEND_NODE / COMM_RECV_NODE: `comm_size` bytes to `comm_dst` / from `comm_src`, matched by `comm_tag`;
- MEM_LOAD_NODE / MEM_STORE_NODE: `tensor_size` bytes to or from memory;
- METADATA_NODE and INVALID_NODE: nothing to run (their dependants wait for them all the same).
hwsim's own kind `delay` (no Chakra type: a recorded gap of a PyTorch trace, `hwsim.workloads.torch_trace`)
waits its `seconds` on no resource.
A node runs once every node in its `data_deps` and `ctrl_deps` has finished.
"""

from __future__ import annotations

import functools
import gzip
import json
import re
from dataclasses import dataclass
from pathlib import Path

from google.protobuf.message import DecodeError

from hwsim.errors import ConfigError
from hwsim.workloads.chakra import et_pb2

KINDS = {
    et_pb2.METADATA_NODE: "metadata",
    et_pb2.INVALID_NODE: "invalid",
    et_pb2.MEM_LOAD_NODE: "load",
    et_pb2.MEM_STORE_NODE: "store",
    et_pb2.COMP_NODE: "compute",
    et_pb2.COMM_SEND_NODE: "send",
    et_pb2.COMM_RECV_NODE: "recv",
    et_pb2.COMM_COLL_NODE: "collective",
}
"""hwsim's name for each node type."""
COLLECTIVES = {
    et_pb2.ALL_REDUCE: "all_reduce",
    et_pb2.REDUCE: "reduce",
    et_pb2.ALL_GATHER: "all_gather",
    et_pb2.BROADCAST: "broadcast",
    et_pb2.ALL_TO_ALL: "all_to_all",
    et_pb2.REDUCE_SCATTER: "reduce_scatter",
}
"""The collective types hwsim runs (`hwsim.collectives`), by Chakra's CollectiveCommType; GATHER, SCATTER,
REDUCE_SCATTER_BLOCK and BARRIER are refused by name."""
MICROSECONDS = 1e6  # in a second


@dataclass(frozen=True)
class EtNode:
    """One node of an NPU's trace: its id, name and kind (`KINDS`), the nodes it waits for, and what it runs."""

    id: int
    name: str
    kind: str
    deps: tuple[int, ...] = ()
    seconds: float = 0.0  # compute: the recorded duration
    cpu: bool = False  # compute on the CPU (its own queue)
    flops: float = 0.0  # compute: num_ops
    bytes: int = 0  # a message's or collective's comm_size, a memory node's or compute node's tensor_size
    collective: str = ""  # a collective's operation (`COLLECTIVES`)
    peer: int = -1  # send: the destination NPU; recv: the source
    tag: int = 0  # send / recv: matched by (source, destination, tag)
    gemm: tuple | None = None  # compute: (m, n, k, count, precision) when it is a GEMM (a torch trace's)
    group: str = ""  # a collective's process group (pg_name; empty: every NPU)


def read_trace(path: str | Path) -> list[EtNode]:
    """The nodes of one ET file, in file order; a clear error for a truncated or corrupt file, or for a node
    hwsim cannot run (named by its id and name)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
    except OSError as err:
        raise ConfigError(str(path), "", None, f"a readable Chakra ET file ({err.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = gzip.decompress(raw)
        except (OSError, EOFError) as err:
            raise ConfigError(str(path), "", None, f"a whole gzip file ({err})") from None
    messages = _messages(raw, path)
    if not messages:
        raise ConfigError(str(path), "", "an empty file", "a Chakra ET file: a GlobalMetadata message, then nodes")
    meta = et_pb2.GlobalMetadata()
    _parse(meta, messages[0], path, "the GlobalMetadata (first message)")
    out = []
    for i, blob in enumerate(messages[1:], 1):
        node = et_pb2.Node()
        _parse(node, blob, path, f"message {i}")
        out.append(_node(node, path))
    ids = [n.id for n in out]
    if len(set(ids)) != len(ids):
        twice = sorted({i for i in ids if ids.count(i) > 1})
        raise ConfigError(str(path), f"node {twice[0]}", "two nodes with this id", "one node per id")
    return out


def _messages(raw: bytes, path: Path) -> list[bytes]:
    """The length-delimited messages of a file."""
    out, at = [], 0
    while at < len(raw):
        size, shift, start = 0, 0, at
        while True:
            if at >= len(raw) or shift > 28:
                raise ConfigError(str(path), f"byte {start}", "a broken length prefix", "a varint message length")
            byte = raw[at]
            at += 1
            size |= (byte & 0x7F) << shift
            shift += 7
            if not byte & 0x80:
                break
        if at + size > len(raw):
            raise ConfigError(
                str(path),
                f"message {len(out)}",
                f"{len(raw) - at} bytes left of {size}",
                "a whole file (it is truncated: the last message is cut short)",
            )
        out.append(raw[at : at + size])
        at += size
    return out


def _parse(message, blob: bytes, path: Path, what: str) -> None:
    try:
        message.ParseFromString(blob)
    except DecodeError as err:
        raise ConfigError(str(path), what, "bytes protobuf cannot decode", f"a Chakra {type(message).__name__} ({err})") from None


def _attrs(node) -> dict:
    """A node's attributes by name, each its value (a list for the list kinds)."""
    out = {}
    for attr in node.attr:
        which = attr.WhichOneof("value")
        if which is None:
            continue
        value = getattr(attr, which)
        out[attr.name] = list(value.values) if which.endswith("_list") else value
    return out


def _node(node, path: Path) -> EtNode:
    kind = KINDS.get(node.type)
    where = f"node {node.id} ({node.name})"
    if kind is None:
        raise ConfigError(str(path), where, f"node type {node.type}", f"one of Chakra's node types: {', '.join(KINDS.values())}")
    attrs = _attrs(node)
    base = {"id": node.id, "name": node.name, "kind": kind, "deps": tuple(dict.fromkeys((*node.data_deps, *node.ctrl_deps)))}
    if kind == "compute":
        return EtNode(
            **base,
            seconds=(node.duration_micros or 1e-3) / MICROSECONDS,  # ASTRA-sim: 1 ns when none is recorded
            cpu=bool(attrs.get("is_cpu_op", False)),
            flops=float(attrs.get("num_ops", 0)),
            bytes=int(attrs.get("tensor_size", 0)),
        )
    if kind == "collective":
        comm_type = attrs.get("comm_type")
        if comm_type not in COLLECTIVES:
            name = et_pb2.CollectiveCommType.Name(comm_type) if comm_type in et_pb2.CollectiveCommType.values() else comm_type
            raise ConfigError(
                str(path), f"{where}.comm_type", name, f"a collective hwsim runs: {', '.join(COLLECTIVES.values())}"
            )
        dims = attrs.get("involved_dim")
        if dims is not None and not all(dims):
            raise ConfigError(
                str(path), f"{where}.involved_dim", dims, "every dimension (collectives over part of the fabric are not read yet)"
            )
        return EtNode(
            **base,
            collective=COLLECTIVES[comm_type],
            bytes=_size(attrs, "comm_size", path, where),
            group=str(attrs.get("pg_name", "")),
        )
    if kind in ("send", "recv"):
        key = "comm_dst" if kind == "send" else "comm_src"
        if key not in attrs:
            raise ConfigError(str(path), f"{where}.{key}", None, f"the peer NPU of a {kind} node")
        return EtNode(
            **base, bytes=_size(attrs, "comm_size", path, where), peer=int(attrs[key]), tag=int(attrs.get("comm_tag", 0))
        )
    if kind in ("load", "store"):
        return EtNode(**base, bytes=_size(attrs, "tensor_size", path, where))
    return EtNode(**base)


def _size(attrs: dict, key: str, path: Path, where: str) -> int:
    if key not in attrs or int(attrs[key]) < 0:
        raise ConfigError(str(path), f"{where}.{key}", attrs.get(key), "a size in bytes (0 or more)")
    return int(attrs[key])


class TraceSet:
    """A trace set's nodes, one list per NPU in rank order (`trace_files`, `read_trace`), each node's
    dependencies checked to be nodes of its file; its process groups (`read_groups`), each collective's group
    one that holds its NPU."""

    def __init__(self, spec):
        self.spec = spec
        self.files = trace_files(spec.traces)
        self.ranks = [_read_cached(str(path), path.stat().st_mtime_ns) for path in self.files]
        default = Path(f"{spec.traces}.groups.json")
        where = spec.groups or (str(default) if default.is_file() else None)
        self.groups = read_groups(where, len(self.files)) if where else {}
        for r, (path, nodes) in enumerate(zip(self.files, self.ranks, strict=True)):
            ids = {n.id for n in nodes}
            for n in nodes:
                missing = [d for d in n.deps if d not in ids]
                if missing:
                    raise ConfigError(
                        str(path), f"node {n.id} ({n.name})", f"a dependency on node {missing[0]}", "nodes of its own file"
                    )
                if n.group and r not in self.groups.get(n.group, ()):
                    known = f"a group of {where} that holds NPU {r}" if where else "none (no groups file: give model.groups)"
                    raise ConfigError(str(path), f"node {n.id} ({n.name}).pg_name", n.group, known)
            _check_acyclic(nodes, path)

    @classmethod
    def built(cls, ranks: list[list[EtNode]], groups: dict[str, list[int]]) -> TraceSet:
        """A trace set made in memory (a Megatron job's export, `systems.jobs`), not read from files."""
        out = cls.__new__(cls)
        out.spec, out.files, out.ranks = None, [], [tuple(nodes) for nodes in ranks]
        out.groups = {name: tuple(members) for name, members in groups.items()}
        return out

    @property
    def npus(self) -> int:
        return len(self.ranks)


def _check_acyclic(nodes, path: Path) -> None:
    """Every node can run: no chain of dependencies comes back to where it started."""
    waiting = {n.id: len(n.deps) for n in nodes}
    children: dict[int, list[int]] = {}
    for n in nodes:
        for d in n.deps:
            children.setdefault(d, []).append(n.id)
    ready = [i for i, count in waiting.items() if count == 0]
    while ready:
        for child in children.get(ready.pop(), ()):
            waiting[child] -= 1
            if waiting[child] == 0:
                ready.append(child)
    stuck = sorted(i for i, count in waiting.items() if count > 0)
    if stuck:
        raise ConfigError(
            str(path), f"node {stuck[0]}", "a cycle of dependencies", "dependencies that end (a graph without cycles)"
        )


def read_groups(path: str, npus: int) -> dict[str, tuple[int, ...]]:
    """A groups file: a JSON object of group name -> its NPUs in rank order, each NPU of the set and once in a
    group; a clear error otherwise."""
    try:
        raw = json.loads(Path(path).read_text())
    except OSError as err:
        raise ConfigError(path, "model.groups", path, f"a readable JSON file of process groups ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise ConfigError(path, "", "text that is not JSON", f"a JSON object {{name: [NPU, ...]}} ({err})") from None
    if not isinstance(raw, dict):
        raise ConfigError(path, "", type(raw).__name__, "a JSON object {name: [NPU, ...]}")
    out = {}
    for name, members in raw.items():
        ok = isinstance(members, list) and members and all(isinstance(m, int) and 0 <= m < npus for m in members)
        if not ok or len(set(members)) != len(members):
            raise ConfigError(path, name, members, f"a list of distinct NPUs of the trace set, 0 to {npus - 1}")
        out[str(name)] = tuple(members)
    return out


@functools.lru_cache(maxsize=4096)
def _read_cached(path: str, mtime_ns: int) -> tuple[EtNode, ...]:
    """`read_trace`, once per file version (a run checks its scenario and then builds it)."""
    return tuple(read_trace(path))


def trace_files(prefix: str | Path) -> list[Path]:
    """The files of the trace set `prefix` (prefix.0.et, prefix.1.et, ...), in rank order; a clear error when
    there are none or a rank is missing."""
    prefix = Path(prefix)
    pattern = re.compile(re.escape(prefix.name) + r"\.(\d+)\.et(\.gz)?$")
    found = {}
    if prefix.parent.is_dir():
        for path in prefix.parent.iterdir():
            match = pattern.match(path.name)
            if match:
                found[int(match.group(1))] = path
    if not found:
        raise ConfigError(
            str(prefix), "model.traces", str(prefix), f"a prefix of Chakra ET files {prefix.name}.0.et, {prefix.name}.1.et, ..."
        )
    missing = sorted(set(range(max(found) + 1)) - set(found))
    if missing:
        raise ConfigError(
            str(prefix),
            "model.traces",
            f"ranks {', '.join(map(str, sorted(found)[:8]))}...",
            f"one file per NPU from 0 to {max(found)}; missing {prefix.name}.{missing[0]}.et"
            + (f" and {len(missing) - 1} more" if len(missing) > 1 else ""),
        )
    return [found[r] for r in range(len(found))]


def write_trace(path: str | Path, nodes: list[EtNode], version: str = "0.0.4") -> None:
    """Write `nodes` as one Chakra ET file (what `read_trace` reads back, and ASTRA-sim runs)."""
    out = bytearray()
    _append(out, et_pb2.GlobalMetadata(version=version))
    types = {name: number for number, name in KINDS.items()}
    comm_types = {name: number for number, name in COLLECTIVES.items()}
    for n in nodes:
        node = et_pb2.Node(id=n.id, name=n.name, type=types[n.kind], data_deps=list(n.deps))
        attrs: list = [("is_cpu_op", "bool_val", n.cpu)]
        if n.kind == "compute":
            node.duration_micros = round(n.seconds * MICROSECONDS)
            attrs += [("num_ops", "int64_val", int(n.flops)), ("tensor_size", "uint64_val", n.bytes)]
        elif n.kind == "collective":
            attrs += [("comm_type", "int64_val", comm_types[n.collective]), ("comm_size", "int64_val", n.bytes)]
            if n.group:
                attrs += [("pg_name", "string_val", n.group)]
        elif n.kind in ("send", "recv"):
            peer = "comm_dst" if n.kind == "send" else "comm_src"
            attrs += [(peer, "int32_val", n.peer), ("comm_size", "int64_val", n.bytes), ("comm_tag", "int32_val", n.tag)]
        elif n.kind in ("load", "store"):
            attrs += [("tensor_size", "uint64_val", n.bytes)]
        for name, field, value in attrs:
            node.attr.add(name=name, **{field: value})
        _append(out, node)
    Path(path).write_bytes(bytes(out))


def _append(out: bytearray, message) -> None:
    """A message with its length in front as a varint."""
    blob = message.SerializeToString()
    size = len(blob)
    while size > 0x7F:
        out.append(0x80 | (size & 0x7F))
        size >>= 7
    out.append(size)
    out += blob
