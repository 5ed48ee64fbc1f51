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
