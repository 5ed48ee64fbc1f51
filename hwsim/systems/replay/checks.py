"""The replay system's cross-field checks: a trace set it can run on the scenario's fabric."""

from __future__ import annotations

from collections import Counter

from hwsim.errors import ConfigError
from hwsim.systems.checks import check_bank, check_collective, check_symmetric
from hwsim.workloads import RECORDED, recorded


def check_replay(scenario, where: str) -> None:
    """A recorded model (chakra, torch_trace), timing-only; every NPU's collectives alike in order and runnable
    with system.collective on the fabric; every send received; symmetric mode only for identical traces without
    messages; the bank named."""
    system, model = scenario.system, scenario.model
    if model.kind not in RECORDED:
        raise ConfigError(where, "model.kind", model.kind, "chakra or torch_trace (system kind replay runs a recorded trace)")
    if scenario.run.mode != "timing-only":
        raise ConfigError(where, "run.mode", scenario.run.mode, "timing-only (a trace has times and sizes, not math)")
    if system.bank is not None:
        check_bank(scenario.hardware.memory, "bank", system.bank, False, where)
    traces = recorded(model)
    _check_collectives(traces)
    ops = tuple(sorted({n.collective for n in traces.ranks[0] if n.kind == "collective"}))
    t, groups, _, names = check_collective(scenario, traces.npus, ops, where)
    _check_messages(traces)
    if system.mode == "symmetric":
        if any(nodes != traces.ranks[0] for nodes in traces.ranks[1:]):
            other = next(r for r, nodes in enumerate(traces.ranks) if nodes != traces.ranks[0])
            raise ConfigError(where, "system.mode", "symmetric", f"exact: NPU {other}'s trace differs from NPU 0's")
        if any(n.kind in ("send", "recv") for n in traces.ranks[0]):
            raise ConfigError(where, "system.mode", "symmetric", "exact: the traces send and receive messages")
        check_symmetric(scenario, t, groups, names, traces.npus, where)


def _check_collectives(traces) -> None:
    """The k-th collective (by node id) of every NPU is the same operation on the same bytes."""
    ordered = [[n for n in sorted(nodes, key=lambda n: n.id) if n.kind == "collective"] for nodes in traces.ranks]
    for r, mine in enumerate(ordered[1:], 1):
        if len(mine) != len(ordered[0]):
            raise ConfigError(
                str(traces.files[r]), "collectives", len(mine), f"as many collectives as NPU 0's trace ({len(ordered[0])})"
            )
        for k, (a, b) in enumerate(zip(ordered[0], mine, strict=True)):
            if (a.collective, a.bytes) != (b.collective, b.bytes):
                raise ConfigError(
                    str(traces.files[r]),
                    f"node {b.id} ({b.name})",
                    f"{b.collective} of {b.bytes} bytes",
                    f"collective {k} of every NPU alike: NPU 0's is {a.collective} of {a.bytes} bytes",
                )


def _check_messages(traces) -> None:
    """Every send has its receive (same source, destination and tag) and the other way round, to NPUs of the set."""
    n = traces.npus
    sends, recvs = Counter(), Counter()
    for r, nodes in enumerate(traces.ranks):
        for node in nodes:
            if node.kind in ("send", "recv"):
                if not 0 <= node.peer < n or node.peer == r:
                    key = "comm_dst" if node.kind == "send" else "comm_src"
                    raise ConfigError(
                        str(traces.files[r]),
                        f"node {node.id} ({node.name}).{key}",
                        node.peer,
                        f"another NPU of the set, 0 to {n - 1}",
                    )
                (sends if node.kind == "send" else recvs)[
                    (r, node.peer, node.tag) if node.kind == "send" else (node.peer, r, node.tag)
                ] += 1
    for key in sends.keys() | recvs.keys():
        if sends[key] != recvs[key]:
            src, dst, tag = key
            raise ConfigError(
                str(traces.files[dst if sends[key] > recvs[key] else src]),
                f"messages from NPU {src} to NPU {dst}, tag {tag}",
                f"{sends[key]} sends and {recvs[key]} receives",
                "a receive for every send",
            )
