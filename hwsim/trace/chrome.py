"""Chrome trace export (the JSON Trace Event Format that Perfetto and chrome://tracing open).

Each device is a process, each unit a thread; operations are complete events ("X")
with microsecond timestamps; bank occupancy is a counter ("C") per bank. Messages
(send to delivery) are complete events on a "network" process, one named track per
sender ("w0 sends"). Events on one track must nest, and a sender's messages overlap in
time (several queue on its link at once), so each sender gets as many tracks as it
has messages in flight at once ("w0 sends #2", ...), each message on the first track
that is free when it is sent.

A long run is cut to a window: the first `MAX_OPERATIONS` operations, and the memory
levels and messages up to the last of their ends (`chrome_window` says where the window
ends; the report names it). Perfetto opens traces of a few hundred thousand events.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path

import pandas as pd

from hwsim.trace.recorder import Trace

_US = 1e6
MAX_OPERATIONS = 200_000
"""The most operations (busy rows) trace.json holds; a longer run's trace covers a window from 0."""


def chrome_window(trace: Trace) -> float | None:
    """The end (simulated seconds) of the window trace.json covers, or None when it holds everything."""
    if trace.rows("busy") <= MAX_OPERATIONS:
        return None
    return float(_first_operations(trace).end_s.max())


def _first_operations(trace: Trace) -> pd.DataFrame:
    taken, count = [], 0
    for chunk in trace.chunks("busy"):
        taken.append(chunk.iloc[: MAX_OPERATIONS - count])
        count += len(taken[-1])
        if count >= MAX_OPERATIONS:
            break
    return pd.concat(taken, ignore_index=True) if taken else pd.DataFrame(columns=["end_s"])


def _until(trace: Trace, name: str, column: str, end: float | None) -> pd.DataFrame:
    if end is None:
        return getattr(trace, name)
    return pd.concat([c[c[column] <= end] for c in trace.chunks(name)], ignore_index=True)


def to_chrome(trace: Trace) -> dict:
    """The trace as a Trace Event Format document (a dict ready for json.dump)."""
    return {"traceEvents": list(events(trace)), **_document_fields(trace)}


def write_chrome(trace: Trace, path: Path) -> None:
    """Write the trace's document to `path`, an event at a time (a long run's trace is large)."""
    fields = json.dumps(_document_fields(trace))[1:]
    with open(path, "w", encoding="utf-8") as out:
        out.write('{"traceEvents": [')
        for i, event in enumerate(events(trace)):
            out.write((",\n" if i else "\n") + json.dumps(event))
        out.write("\n]" + (", " + fields if fields != "}" else "}"))


def _document_fields(trace: Trace) -> dict:
    end = chrome_window(trace)
    doc = {"displayTimeUnit": "ns"}
    if end is not None:
        doc["otherData"] = {"window": f"the first {MAX_OPERATIONS:,} operations: 0 to {end:.9g} s of simulated time"}
    return doc


def events(trace: Trace) -> Iterator[dict]:
    """The trace's events: names of processes and tracks, operations, bank levels, messages."""
    end = chrome_window(trace)
    busy = trace.busy if end is None else _first_operations(trace)
    devices = {dev: i + 1 for i, dev in enumerate(dict.fromkeys(trace.units["device"]))}
    unit_ids = {}
    for tid, row in enumerate(trace.units.itertuples(index=False), start=1):
        pid = devices[row.device]
        unit_ids[row.unit] = (pid, tid)
        yield {"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": row.unit}}
    for dev, pid in devices.items():
        yield {"ph": "M", "name": "process_name", "pid": pid, "args": {"name": dev or "host"}}
    for row in busy.itertuples(index=False):
        pid, tid = unit_ids[row.unit]
        yield {
            "ph": "X",
            "name": row.label,
            "cat": row.kind,
            "pid": pid,
            "tid": tid,
            "ts": row.start_s * _US,
            "dur": (row.end_s - row.start_s) * _US,
            "args": {"work": row.work},
        }
    del busy
    for row in _until(trace, "memory", "time_s", end).itertuples(index=False):
        pid, _ = unit_ids[row.bank]
        yield {"ph": "C", "name": f"{row.bank} bytes", "pid": pid, "ts": row.time_s * _US, "args": {"used": row.used_bytes}}
    yield from _message_events(_until(trace, "messages", "delivered_s", end), len(devices) + 1)


def _message_events(messages: pd.DataFrame, pid: int) -> list[dict]:
    """Messages as complete events on the network process: per sender, tracks on which none overlap."""
    if messages.empty:
        return []
    events = [{"ph": "M", "name": "process_name", "pid": pid, "args": {"name": "network"}}]
    tracks: dict[tuple[str, int], int] = {}
    free: dict[str, list[tuple[float, int]]] = {}  # per sender: (free from, lane) heap
    lanes: dict[str, int] = {}
    for row in messages.sort_values(["sent_s", "delivered_s"], kind="stable").itertuples(index=False):
        heap = free.setdefault(row.src, [])
        if heap and heap[0][0] <= row.sent_s:
            _, lane = heapq.heappop(heap)
        else:
            lane = lanes[row.src] = lanes.get(row.src, 0) + 1
        heapq.heappush(heap, (row.delivered_s, lane))
        if (row.src, lane) not in tracks:
            tid = tracks[(row.src, lane)] = len(tracks) + 1
            name = f"{row.src} sends" + (f" #{lane}" if lane > 1 else "")
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": name}})
        events.append(
            {
                "ph": "X",
                "name": f"{row.tag} {row.src}->{row.dst}",
                "cat": "message",
                "pid": pid,
                "tid": tracks[(row.src, lane)],
                "ts": row.sent_s * _US,
                "dur": (row.delivered_s - row.sent_s) * _US,
                "args": {"bytes": row.bytes},
            }
        )
    return events
