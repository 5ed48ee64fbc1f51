"""Link sharing: max-min fairness against a one-flow-at-a-time reference, finishing times against
closed forms, and where the three models agree."""

import numpy as np
import pytest
import simpy
from hypothesis import given, settings
from hypothesis import strategies as st

from hwsim.network import Fabric, max_min
from hwsim.network import topology as topo


def reference_max_min(paths: list[list[int]], capacity: list[float]) -> list[float]:
    """Progressive filling as a textbook writes it: find the most constrained link (least capacity
    left per unfixed flow), fix its flows at that share, take them out, repeat."""
    rate = [0.0] * len(paths)
    left = list(capacity)
    unfixed = set(range(len(paths)))
    while unfixed:
        shares = {}
        for link in range(len(capacity)):
            users = [f for f in unfixed if link in paths[f]]
            if users:
                shares[link] = left[link] / len(users)
        link = min(shares, key=shares.get)
        share = shares[link]
        for f in [f for f in unfixed if link in paths[f]]:
            rate[f] = share
            unfixed.discard(f)
            for other in paths[f]:
                left[other] -= share
    return rate


@st.composite
def flow_sets(draw):
    links = draw(st.integers(1, 8))
    capacity = draw(st.lists(st.floats(0.5, 100.0), min_size=links, max_size=links))
    paths = draw(st.lists(st.lists(st.integers(0, links - 1), min_size=1, max_size=4, unique=True), min_size=1, max_size=12))
    return paths, capacity


@settings(max_examples=300, deadline=None)
@given(flow_sets())
def test_max_min_rates_are_fair(case):
    paths, capacity = case
    flows = np.array([f for f, p in enumerate(paths) for _ in p])
    links = np.array([link for p in paths for link in p])
    got = max_min(paths, np.array(capacity))
    np.testing.assert_allclose(got, reference_max_min(paths, capacity), rtol=1e-9)
    load = np.zeros(len(capacity))
    np.add.at(load, links, got[flows])
    assert (load <= np.array(capacity) * (1 + 1e-9)).all()  # every link within its capacity
    for f, path in enumerate(paths):  # every flow has a bottleneck: a full link where no flow gets more
        assert any(
            load[link] >= capacity[link] * (1 - 1e-9)
            and got[f] >= max(got[g] for g, q in enumerate(paths) if link in q) * (1 - 1e-9)
            for link in path
        )


@settings(max_examples=200, deadline=None)
@given(flow_sets(), st.data())
def test_a_row_standing_for_several_flows_gets_the_rate_each_of_them_would(case, data):
    """The compiled engine solves a route once for all its flows (`maxmin.update`'s `weight`): the rates equal
    the textbook's on the flows written out one by one."""
    from hwsim.kernels.maxmin import attach, scratch, update

    paths, capacity = case
    weight = np.array(data.draw(st.lists(st.integers(1, 4), min_size=len(paths), max_size=len(paths))), np.int64)
    hops = np.full((len(paths), 4), -1, np.int64)
    for f, path in enumerate(paths):
        hops[f, : len(path)] = path
    on_link, degree = np.zeros((len(capacity), len(paths)), np.int64), np.zeros(len(capacity), np.int64)
    for f in range(len(paths)):
        attach(hops, on_link, degree, f)
    rate, load, most = np.zeros(len(paths)), np.zeros(len(capacity)), np.zeros(len(capacity))
    cap = np.array(capacity)
    work = scratch(len(paths), len(capacity))
    update(hops, on_link, degree, cap, rate, load, most, np.arange(len(capacity)), len(paths), work, weight)
    written_out = [path for path, w in zip(paths, weight, strict=True) for _ in range(w)]
    np.testing.assert_allclose(np.repeat(rate, weight), reference_max_min(written_out, capacity), rtol=1e-9)
    np.testing.assert_allclose(
        load, [sum(r * w for r, w, p in zip(rate, weight, paths, strict=True) if k in p) for k in range(len(cap))]
    )


def run(model: str, t: topo.Topology, sends: list[tuple[float, int, int, int]]) -> list[float]:
    """Start each (time, from, to, bytes) transfer; return when each arrived."""
    env = simpy.Environment()
    fabric = Fabric(env, t, model, [f"n{i}" for i in range(t.npus)])
    arrived = [None] * len(sends)

    def one(k, at, a, b, nbytes):
        yield env.timeout(at)
        yield from fabric.transfer(a, b, nbytes, f"m{k}", overhead=0.0)
        arrived[k] = env.now

    for k, send in enumerate(sends):
        env.process(one(k, *send))
    env.run()
    return arrived


def test_two_flows_on_one_link_finish_at_the_analytic_times():
    """1 B/s, no latency: 3 B and 5 B together share the link at 1/2 each until the small one is done
    (t = 6), then the big one has it alone: 2 B left at 1 B/s, done at 8."""
    t = topo.fully_connected(2, 1.0, 0.0)
    assert run("flow", t, [(0.0, 0, 1, 3), (0.0, 0, 1, 5)]) == pytest.approx([6.0, 8.0])
    # a flow that joins later: 4 B from 0, 2 B from t = 2: 2 B done alone, then 1/2 each: both at 6
    assert run("flow", t, [(0.0, 0, 1, 4), (2.0, 0, 1, 2)]) == pytest.approx([6.0, 6.0])
    # opposite directions are different links of the cable: no sharing
    assert run("flow", t, [(0.0, 0, 1, 3), (0.0, 1, 0, 5)]) == pytest.approx([3.0, 5.0])


def test_a_longer_path_pays_each_hops_latency_once():
    """Cut-through: 4 hops of 1 us each and 100 B at 10 B/s: 4 us + 10 s, not 4 x (10 s + 1 us)."""
    t = topo.ring(8, 10.0, 1e-6)
    assert run("flow", t, [(0.0, 0, 4, 100)]) == [pytest.approx(10.0 + 4e-6)]
    assert run("store_and_forward", t, [(0.0, 0, 4, 100)]) == [pytest.approx(4 * (10.0 + 1e-6))]


@pytest.mark.parametrize(
    "make",
    [
        lambda: topo.star(6, [5.0, 6.0, 7.0, 8.0, 9.0, 10.0], [1e-6] * 6),
        lambda: topo.ring(6, 5.0, 2e-6),
        lambda: topo.fully_connected(5, 5.0, 3e-6),
        lambda: topo.torus((3, 4), 5.0, 1e-6),
        lambda: topo.fat_tree(3, 4, 2, 8.0, 1e-6, 2e-6, 3.0),
        lambda: topo.dims([("switch", 4, 9.0, 1e-6), ("ring", 3, 2.0, 5e-6)]),
    ],
    ids=["switch", "ring", "fully_connected", "torus", "fat_tree", "dims"],
)
def test_alone_ideal_and_flow_equal_the_closed_form_on_every_topology(make):
    """sum of the path's latencies + bytes / the slowest link's bandwidth, for every pair."""
    t = make()
    rng = np.random.default_rng(0)
    for a in range(t.npus):
        b = int(rng.integers(t.npus))
        if a == b:
            continue
        path = t.route(a, b)
        want = sum(t.latency[i] for i in path) + 1000 / min(t.bandwidth[i] for i in path)
        for model in ("ideal", "flow"):
            assert run(model, t, [(0.0, a, b, 1000)]) == [pytest.approx(want, rel=1e-12)], model
        if len(path) == 1:  # one hop: store-and-forward too
            assert run("store_and_forward", t, [(0.0, a, b, 1000)]) == [pytest.approx(want, rel=1e-12)]


def test_ideal_has_no_contention_and_flow_has():
    t = topo.star(3, [1.0] * 3, [0.0] * 3)
    sends = [(0.0, 0, 2, 4), (0.0, 1, 2, 4)]  # both into NPU 2's downlink
    assert run("ideal", t, sends) == pytest.approx([4.0, 4.0])
    assert run("flow", t, sends) == pytest.approx([8.0, 8.0])
    assert run("store_and_forward", t, sends) == pytest.approx([8.0, 12.0])  # whole messages, one after the other


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(0, 5), st.integers(0, 7), st.integers(0, 7), st.integers(1, 500)), min_size=1, max_size=30))
def test_bytes_are_conserved_and_every_link_stays_within_its_capacity(sends):
    """Whatever the traffic, each link carried exactly the bytes of the transfers routed over it, and
    never faster than its bandwidth."""
    t = topo.fat_tree(2, 4, 2, 10.0, 1e-3, 1e-3, 2.0)
    env = simpy.Environment()
    fabric = Fabric(env, t, "flow", [f"n{i}" for i in range(8)])
    spans = []
    for unit in fabric.units:
        unit.observers.append(lambda u, label, start, end, work: spans.append((u.name, start, end, work)))

    def one(at, a, b, nbytes):
        yield env.timeout(at)
        yield from fabric.transfer(a, b, nbytes, "m")

    for send in sends:
        env.process(one(*send))
    env.run()
    want = np.zeros(t.links)
    for _, a, b, nbytes in sends:
        for i in t.route(a, b):
            want[i] += nbytes
    np.testing.assert_array_equal(fabric.bytes, want)
    for name, start, end, work in spans:
        i = [u.name for u in fabric.units].index(name)
        assert work <= t.bandwidth[i] * (end - start) * (1 + 1e-9) + 1e-9
    assert fabric.model.flows == 0 and fabric.model.degree.sum() == 0  # every flow left its links


def reference_finish_times(paths: list[list[int]], capacity: list[float], starts: list[float], sizes: list[float]) -> list[float]:
    """A fluid simulation that solves every flow set whole (`reference_max_min`) at each start and end."""
    now, left, finish = 0.0, list(sizes), [None] * len(paths)
    while None in finish:
        active = [f for f in range(len(paths)) if starts[f] <= now and finish[f] is None]
        rates = reference_max_min([paths[f] for f in active], capacity) if active else []
        waits = [left[f] / r for f, r in zip(active, rates, strict=True)] + [s - now for s in starts if s > now]
        step = min(waits)
        for f, r in zip(active, rates, strict=True):
            left[f] -= r * step
        now += step
        for f in active:
            if left[f] <= 1e-9 * sizes[f]:
                finish[f] = now
    return finish


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.integers(0, 20), st.integers(0, 11), st.integers(0, 11), st.integers(1, 400)), min_size=1, max_size=40)
)
def test_flow_finishing_times_equal_a_fluid_simulation_solved_whole_at_every_event(sends):
    """The flow model updates rates locally (and reuses flow slots); solving every flow set whole from
    scratch gives the same finishing times. A ring of 12 with uneven links, no latency: long paths make
    a start or an end move rates several links away."""
    t = topo.ring(12, 10.0, 0.0)
    t.bandwidth[:] = 5.0 + np.arange(t.links) % 7
    sends = [(float(at), a, b, n) for at, a, b, n in sends if a != b]
    if not sends:
        return
    got = run("flow", t, sends)
    paths = [list(t.route(a, b)) for _, a, b, _ in sends]
    want = reference_finish_times(paths, list(t.bandwidth), [s[0] for s in sends], [float(s[3]) for s in sends])
    np.testing.assert_allclose(got, want, rtol=1e-7)
