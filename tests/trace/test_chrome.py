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


def test_messages_sit_on_named_tracks_with_an_arrow_from_sender_to_receiver(request):
    """Events on one track must nest; a sender's messages overlap in time, so they spread over tracks
    named after the sender, each message on one where nothing else is in flight; a flow arrow joins
    each message to a mark on the receiver's track when it lands."""
    path = request.config.rootpath / "scenarios" / "compressed_ps_4bit.yaml"
    result = hwsim.run(hwsim.load_scenario(path, ["system.steps=3"]))
    events = to_chrome(result.trace)["traceEvents"]
    network = next(e["pid"] for e in events if e["ph"] == "M" and e["name"] == "process_name" and e["args"]["name"] == "network")
    names = {e["tid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name" and e["pid"] == network}
    slices = [e for e in events if e["ph"] == "X" and e["pid"] == network]
    sends = [e for e in slices if " sends" in names[e["tid"]]]
    assert len(sends) == len(result.trace.messages) == len(slices) - len(sends)
    senders = {m.removesuffix(".nic") for m in result.trace.messages.src}
    assert {n.split(" ")[0] for n in names.values() if " sends" in n} == senders
    for tid in names:
        spans = sorted((e["ts"], e["ts"] + e["dur"]) for e in slices if e["tid"] == tid)
        assert all(a[1] <= b[0] + 1e-9 for a, b in zip(spans, spans[1:], strict=False))
    assert max(sum(n.startswith(s + " sends") for n in names.values()) for s in senders) > 1  # the server's replies overlap
    starts = {e["id"]: e for e in events if e["ph"] == "s"}
    ends = {e["id"]: e for e in events if e["ph"] == "f"}
    assert starts.keys() == ends.keys() and len(starts) == len(sends)
    for k, start in starts.items():  # each arrow leaves inside a send and lands on the receiver's track
        assert " sends" in names[start["tid"]] and " receives" in names[ends[k]["tid"]] and ends[k]["ts"] >= start["ts"]


def test_fabric_links_are_tracks_of_their_own(request):
    path = request.config.rootpath / "scenarios" / "compressed_ps_int8.yaml"
    fabric = "hardware.network={kind: fat_tree, leaves: 2, npus_per_leaf: 4, spines: 2, bandwidth: 10 Gb/s, latency: 1 us, spine_latency: 1 us}"
    result = hwsim.run(hwsim.load_scenario(path, ["system.steps=2", fabric]))
    events = to_chrome(result.trace)["traceEvents"]
    processes = {e["pid"]: e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "process_name"}
    threads = {(e["pid"], e["tid"]): e["args"]["name"] for e in events if e["ph"] == "M" and e["name"] == "thread_name"}
    spine = [name for (pid, _), name in threads.items() if processes[pid] == "fabric"]
    assert spine and all("->" in name for name in spine)  # leaf <-> spine links
    assert ("w0.nic.up" in threads.values()) and any(
        processes[pid] == "w0" for (pid, _), n in threads.items() if n == "w0.nic.up"
    )
