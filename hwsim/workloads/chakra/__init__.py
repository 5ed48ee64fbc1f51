"""Chakra execution traces: read (`read_trace`, `trace_files`) and written (`write_trace`)."""

from hwsim.workloads.chakra.trace import (
    COLLECTIVES,
    KINDS,
    EtNode,
    TraceSet,
    read_groups,
    read_trace,
    trace_files,
    write_trace,
)

__all__ = ["COLLECTIVES", "KINDS", "EtNode", "TraceSet", "read_groups", "read_trace", "trace_files", "write_trace"]
