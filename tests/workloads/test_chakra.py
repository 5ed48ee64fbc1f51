"""Chakra execution traces: written and read back, and every kind of bad file refused by name."""

from __future__ import annotations

import gzip

import numpy as np
import pytest

from hwsim.errors import ConfigError
from hwsim.workloads.chakra import COLLECTIVES, EtNode, et_pb2, read_trace, trace_files, write_trace


def _random_nodes(rng, count: int = 40) -> list[EtNode]:
    nodes = []
    for i in range(count):
        deps = tuple(sorted({int(d) for d in rng.integers(0, i, size=min(i, 3))})) if i else ()
        kind = rng.choice(["compute", "collective", "send", "recv", "load", "store", "metadata"])
        node = {"id": i, "name": f"n{i}", "kind": str(kind), "deps": deps}
        if kind == "compute":
            node |= {
                "seconds": int(rng.integers(1, 10**6)) / 1e6,
                "cpu": bool(rng.integers(2)),
                "flops": float(rng.integers(10**9)),
            }
            node["bytes"] = int(rng.integers(10**6))
        elif kind == "collective":
            node |= {"collective": str(rng.choice(list(COLLECTIVES.values()))), "bytes": int(rng.integers(1, 10**9))}
        elif kind in ("send", "recv"):
            node |= {"peer": int(rng.integers(8)), "tag": int(rng.integers(100)), "bytes": int(rng.integers(1, 10**8))}
        elif kind in ("load", "store"):
            node |= {"bytes": int(rng.integers(1, 10**8))}
        nodes.append(EtNode(**node))
    return nodes


def test_a_written_trace_reads_back_node_for_node(tmp_path):
    """Random nodes of every kind, written and read back equal; the same file gzipped reads the same."""
    nodes = _random_nodes(np.random.default_rng())
    write_trace(tmp_path / "t.0.et", nodes)
    assert read_trace(tmp_path / "t.0.et") == nodes
    (tmp_path / "z.0.et").write_bytes(gzip.compress((tmp_path / "t.0.et").read_bytes()))
    assert read_trace(tmp_path / "z.0.et") == nodes


def test_a_file_chakras_way_with_control_dependencies(tmp_path):
    """A file built message by message with the schema (a length varint before each), as Chakra's protolib
    writes it: data and control dependencies both count; a compute node without a duration takes 1 ns."""
    meta = et_pb2.GlobalMetadata(version="0.0.4").SerializeToString()
    a = et_pb2.Node(id=7, name="a", type=et_pb2.COMP_NODE, duration_micros=5)
    b = et_pb2.Node(id=9, name="b", type=et_pb2.COMP_NODE, data_deps=[7], ctrl_deps=[3])
    c = et_pb2.Node(id=3, name="c", type=et_pb2.COMM_COLL_NODE)
    c.attr.add(name="comm_type", int64_val=et_pb2.REDUCE_SCATTER)
    c.attr.add(name="comm_size", uint64_val=4096)
    blob = b"".join(bytes([len(m)]) + m for m in (meta, a.SerializeToString(), b.SerializeToString(), c.SerializeToString()))
    (tmp_path / "x.0.et").write_bytes(blob)
    got = read_trace(tmp_path / "x.0.et")
    assert got[0] == EtNode(7, "a", "compute", seconds=5e-6)
    assert got[1].deps == (7, 3) and got[1].seconds == pytest.approx(1e-9)
    assert got[2] == EtNode(3, "c", "collective", bytes=4096, collective="reduce_scatter")


def test_bad_files_are_refused_by_name(tmp_path):
    nodes = [EtNode(0, "x", "compute", seconds=1e-6), EtNode(1, "ar", "collective", (0,), bytes=64, collective="all_reduce")]
    write_trace(tmp_path / "t.0.et", nodes)
    whole = (tmp_path / "t.0.et").read_bytes()
    (tmp_path / "cut.0.et").write_bytes(whole[:-3])
    with pytest.raises(ConfigError, match="truncated") as err:
        read_trace(tmp_path / "cut.0.et")
    assert err.value.key == "message 2"
    (tmp_path / "bad.0.et").write_bytes(whole[:1] + b"\xff" * (len(whole) - 1))
    with pytest.raises(ConfigError):
        read_trace(tmp_path / "bad.0.et")
    (tmp_path / "empty.0.et").write_bytes(b"")
    with pytest.raises(ConfigError, match="GlobalMetadata"):
        read_trace(tmp_path / "empty.0.et")
    gather = et_pb2.Node(id=4, name="g", type=et_pb2.COMM_COLL_NODE)
    gather.attr.add(name="comm_type", int64_val=et_pb2.GATHER)
    gather.attr.add(name="comm_size", int64_val=8)
    meta = et_pb2.GlobalMetadata().SerializeToString()
    (tmp_path / "g.0.et").write_bytes(b"".join(bytes([len(m)]) + m for m in (meta, gather.SerializeToString())))
    with pytest.raises(ConfigError, match="GATHER") as err:
        read_trace(tmp_path / "g.0.et")
    assert err.value.key == "node 4 (g).comm_type"


def test_a_trace_set_needs_every_rank(tmp_path):
    for r in (0, 1, 3):
        write_trace(tmp_path / f"t.{r}.et", [EtNode(0, "x", "compute", seconds=1e-6)])
    with pytest.raises(ConfigError, match=r"missing t\.2\.et"):
        trace_files(tmp_path / "t")
    with pytest.raises(ConfigError, match="a prefix of Chakra ET files"):
        trace_files(tmp_path / "nothing")
    write_trace(tmp_path / "t.2.et", [EtNode(0, "x", "compute", seconds=1e-6)])
    assert [p.name for p in trace_files(tmp_path / "t")] == ["t.0.et", "t.1.et", "t.2.et", "t.3.et"]
