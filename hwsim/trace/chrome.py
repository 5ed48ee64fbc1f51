"""Chrome trace export (the JSON Trace Event Format that Perfetto and chrome://tracing open).

Each device is a process, each unit a thread; operations are complete events ("X")
with microsecond timestamps; bank occupancy is a counter ("C") per bank; messages
are complete events on a "network" process.
"""

from __future__ import annotations

from hwsim.trace.recorder import Trace

_US = 1e6


def to_chrome(trace: Trace) -> dict:
    """The trace as a Trace Event Format document (a dict ready for json.dump)."""
    devices = {dev: i + 1 for i, dev in enumerate(dict.fromkeys(trace.units["device"]))}
    unit_ids = {}
    events: list[dict] = []
    for tid, row in enumerate(trace.units.itertuples(index=False), start=1):
        pid = devices[row.device]
        unit_ids[row.unit] = (pid, tid)
        events.append({"ph": "M", "name": "thread_name", "pid": pid, "tid": tid, "args": {"name": row.unit}})
    for dev, pid in devices.items():
        events.append({"ph": "M", "name": "process_name", "pid": pid, "args": {"name": dev or "host"}})
    for row in trace.busy.itertuples(index=False):
        pid, tid = unit_ids[row.unit]
        events.append(
            {
                "ph": "X",
                "name": row.label,
                "cat": row.kind,
                "pid": pid,
                "tid": tid,
                "ts": row.start_s * _US,
                "dur": (row.end_s - row.start_s) * _US,
                "args": {"work": row.work},
            }
        )
    for row in trace.memory.itertuples(index=False):
        pid, _ = unit_ids[row.bank]
        events.append(
            {"ph": "C", "name": f"{row.bank} bytes", "pid": pid, "ts": row.time_s * _US, "args": {"used": row.used_bytes}}
        )
    net = len(devices) + 1
    if len(trace.messages):
        events.append({"ph": "M", "name": "process_name", "pid": net, "args": {"name": "network"}})
    for row in trace.messages.itertuples(index=False):
        events.append(
            {
                "ph": "X",
                "name": f"{row.tag} {row.src}->{row.dst}",
                "cat": "message",
                "pid": net,
                "tid": 1,
                "ts": row.sent_s * _US,
                "dur": (row.delivered_s - row.sent_s) * _US,
                "args": {"bytes": row.bytes},
            }
        )
    return {"traceEvents": events, "displayTimeUnit": "ns"}
