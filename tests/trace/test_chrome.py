import json

import pytest

import hwsim
from hwsim.trace import to_chrome


@pytest.fixture(scope="module")
def result(request):
    path = request.config.rootpath / "scenarios" / "quickstart.yaml"
    return hwsim.run(hwsim.load_scenario(path, ["system.steps=3"]))


def test_chrome_trace_has_one_complete_event_per_operation(result):
    doc = json.loads(json.dumps(to_chrome(result.trace)))
    events = doc["traceEvents"]
    complete = [e for e in events if e["ph"] == "X"]
    assert len(complete) == len(result.trace.busy)
    assert all(e["dur"] >= 0 and e["ts"] >= 0 for e in complete)
    counters = [e for e in events if e["ph"] == "C"]
    assert len(counters) == len(result.trace.memory)
    names = {e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    assert names == set(result.trace.units.unit)


def test_trace_times_are_microseconds(result):
    busy = result.trace.busy
    last = busy.iloc[-1]
    event = [e for e in to_chrome(result.trace)["traceEvents"] if e["ph"] == "X"][-1]
    assert event["ts"] == pytest.approx(last.start_s * 1e6)
    assert event["dur"] == pytest.approx((last.end_s - last.start_s) * 1e6)


def test_messages_sit_on_named_sender_tracks_where_none_overlap(request):
    """Events on one track must nest; a sender's messages overlap in time, so they spread over tracks
    named after the sender, each message on one where nothing else is in flight."""
    path = request.config.rootpath / "scenarios" / "compressed_ps_4bit.yaml"
    result = hwsim.run(hwsim.load_scenario(path, ["system.steps=3"]))
    events = to_chrome(result.trace)["traceEvents"]
    network = next(e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name" and e["args"]["name"] == "network")
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == network}
    messages = [e for e in events if e["ph"] == "X" and e["pid"] == network]
    assert len(messages) == len(result.trace.messages)
    senders = set(result.trace.messages.src)
    assert {n.split(" ")[0] for n in names.values()} == senders and all(" sends" in n for n in names.values())
    for tid in names:
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in messages if e["tid"] == tid)
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(spans, spans[1:], strict=False))
        assert all(names[tid].startswith(e["name"].split(" ")[1].split("->")[0]) for e in messages if e["tid"] == tid)
    assert max(len({t for t in names if names[t].startswith(s)}) for s in senders) > 1  # the server's replies overlap
