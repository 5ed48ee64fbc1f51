"""Chrome trace export (the JSON Trace Event Format that Perfetto and chrome://tracing open).

Each device is a process, each unit a thread; operations are complete events ("X")
with microsecond timestamps; bank occupancy is a counter ("C") per bank. The fabric's
links are units too: a link of an NPU's port sits with that NPU's device, the others
on a "fabric" process. Collectives (an all-reduce of a layer's gradient, ...) are slices
on a "collectives" process, one track per operation (more where they overlap), their
messages drawn below them. Messages (send to delivery) are complete events on a "network"
process, on a named track of the sender ("w0 sends"), with a flow arrow (Perfetto
draws it) to a mark on a track of the receiver ("server receives") when it lands.
Events on one track must nest, and a sender's messages overlap in time, so a sender
gets as many tracks as it has messages in flight at once ("w0 sends #2", ...), each
message on the first track that is free when it is sent.

A long or large run is cut to a window from 0: the longest one whose operations, memory
levels and messages (four events each: two slices and an arrow) fit in `MAX_EVENTS`
(`chrome_window` says where it ends; the report names it), so trace.json stays a few tens
of MB however many NPUs or steps ran. Perfetto opens traces of a few hundred thousand events.
"""

from __future__ import annotations

import heapq
import json
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pandas as pd

from hwsim.trace.recorder import Trace

_US = 1e6
MAX_EVENTS = 150_000
"""The most events trace.json holds (about 25 MB); a run with more is cut to a window from 0."""
MESSAGE_EVENTS = 4  # a message's slice at the sender, its mark at the receiver, and the flow arrow's two ends


def chrome_window(trace: Trace) -> float | None:
    """The end (simulated seconds) of the window trace.json covers, or None when it holds everything: the
    latest time by which the operations that ended, the memory levels and the messages delivered come to at
    most MAX_EVENTS events."""
    parts = [("busy", "end_s", 1), ("memory", "time_s", 1), ("messages", "delivered_s", MESSAGE_EVENTS)]
    if sum(trace.rows(name) * weight for name, _, weight in parts) <= MAX_EVENTS:
        return None
    times, weights = [], []
    for name, column, weight in parts:
        for chunk in trace.chunks(name, [column]):
            times.append(chunk[column].to_numpy(float))
            weights.append(np.full(len(chunk), weight))
    when = np.concatenate(times)
    order = np.argsort(when, kind="stable")
    when, count = when[order], np.cumsum(np.concatenate(weights)[order])
    fits = np.searchsorted(count, MAX_EVENTS, side="right")  # events up to and including index fits - 1
    end = when[fits - 1] if fits else 0.0
    while fits and fits < len(when) and when[fits] == end:  # a time whose events do not all fit is left out
        fits -= 1
        end = when[fits - 1] if fits else 0.0
    return float(end)


def _until(trace: Trace, name: str, column: str, end: float | None) -> pd.DataFrame:
    if end is None:
        return getattr(trace, name)
    return pd.concat([c[c[column] <= end] for c in trace.chunks(name)], ignore_index=True)


def window_text(trace: Trace, end: float) -> str:
    """What a windowed trace.json holds, in words."""
    ops = sum(int((c.end_s <= end).sum()) for c in trace.chunks("busy", ["end_s"]))
    return f"0 to {end:.9g} s of simulated time: {ops:,} of {trace.rows('busy'):,} operations (at most {MAX_EVENTS:,} events)"


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
        doc["otherData"] = {"window": window_text(trace, end)}
    return doc


def events(trace: Trace) -> Iterator[dict]:
    """The trace's events: names of processes and tracks, operations, bank levels, messages."""
    end = chrome_window(trace)
    busy = _until(trace, "busy", "end_s", end)
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
    yield from _collective_events(_until(trace, "collectives", "end_s", end), len(devices) + 2)


def _collective_events(collectives: pd.DataFrame, pid: int) -> list[dict]:
    """Collectives on their own process: a slice each, on a track per operation ("all_reduce", "all_reduce
    #2" where two overlap)."""
    if collectives.empty:
        return []
    events = [{"ph": "M", "name": "process_name", "pid": pid, "args": {"name": "collectives"}}]
    lanes, tracks = Lanes(), {}
    for row in collectives.sort_values(["start_s", "end_s"], kind="stable").itertuples(index=False):
        key = (row.op, lanes.take(row.op, row.start_s, row.end_s))
        if key not in tracks:
            tracks[key] = len(tracks) + 1
            name = row.op + (f" #{key[1]}" if key[1] > 1 else "")
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tracks[key], "args": {"name": name}})
        events.append(
            {
                "ph": "X",
                "name": row.name,
                "cat": "collective",
                "pid": pid,
                "tid": tracks[key],
                "ts": row.start_s * _US,
                "dur": (row.end_s - row.start_s) * _US,
                "args": {"algorithm": row.algorithm, "bytes": row.bytes},
            }
        )
    return events


def _message_events(messages: pd.DataFrame, pid: int) -> list[dict]:
    """Messages on the network process: a slice on a track of the sender ("w0 sends"), a mark on a track
    of the receiver ("server receives") when it lands, and a flow arrow from the one to the other. A
    sender's (or receiver's) messages that overlap in time go to further tracks ("#2", ...), so no two
    slices on a track overlap."""
    if messages.empty:
        return []
    events = [{"ph": "M", "name": "process_name", "pid": pid, "args": {"name": "network"}}]
    tracks: dict[tuple[str, str, int], int] = {}
    lanes = {"sends": Lanes(), "receives": Lanes()}

    def track(who: str, what: str, start: float, end: float) -> int:
        lane = lanes[what].take(who, start, end)
        key = (who, what, lane)
        if key not in tracks:
            tracks[key] = len(tracks) + 1
            name = f"{who} {what}" + (f" #{lane}" if lane > 1 else "")
            events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tracks[key], "args": {"name": name}})
        return tracks[key]

    ordered = messages.sort_values(["sent_s", "delivered_s"], kind="stable").reset_index(drop=True)
    for k, row in enumerate(ordered.itertuples(index=False)):
        src, dst = row.src.removesuffix(".nic"), row.dst.removesuffix(".nic")
        sent, landed = row.sent_s * _US, row.delivered_s * _US
        out, into = track(src, "sends", row.sent_s, row.delivered_s), track(dst, "receives", row.delivered_s, row.delivered_s)
        common = {"cat": "message", "pid": pid}
        events += [
            {
                "ph": "X",
                "name": f"{row.tag} -> {dst}",
                **common,
                "tid": out,
                "ts": sent,
                "dur": landed - sent,
                "args": {"bytes": row.bytes},
            },
            {
                "ph": "X",
                "name": f"{row.tag} <- {src}",
                **common,
                "tid": into,
                "ts": landed,
                "dur": 0,
                "args": {"bytes": row.bytes},
            },
            {"ph": "s", "name": "message", **common, "id": k, "tid": out, "ts": sent},
            {"ph": "f", "bp": "e", "name": "message", **common, "id": k, "tid": into, "ts": landed},
        ]
    return events


class Lanes:
    """Tracks for spans that may overlap: each span goes on the first track free when it starts."""

    def __init__(self) -> None:
        self.free: dict[str, list[tuple[float, int]]] = {}  # per owner: (free from, lane) heap
        self.count: dict[str, int] = {}

    def take(self, owner: str, start: float, end: float) -> int:
        heap = self.free.setdefault(owner, [])
        if heap and heap[0][0] <= start:
            _, lane = heapq.heappop(heap)
        else:
            lane = self.count[owner] = self.count.get(owner, 0) + 1
        heapq.heappush(heap, (end, lane))
        return lane
