"""The replay system's cross-field checks: a trace set it can run on the scenario's fabric."""

from __future__ import annotations

from collections import Counter

from hwsim.collectives.algorithms import CollectiveError, plan
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
    world = tuple(sorted({n.collective for n in traces.ranks[0] if n.kind == "collective" and not n.group}))
    t, groups, _, names = check_collective(scenario, traces.npus, world, where)
    _check_groups(scenario, traces, where)
    _check_messages(traces)
    if system.mode == "symmetric":
        if traces.groups:
            raise ConfigError(where, "system.mode", "symmetric", "exact: the traces' collectives run over process groups")
        if any(nodes != traces.ranks[0] for nodes in traces.ranks[1:]):
            other = next(r for r, nodes in enumerate(traces.ranks) if nodes != traces.ranks[0])
            raise ConfigError(where, "system.mode", "symmetric", f"exact: NPU {other}'s trace differs from NPU 0's")
        if any(n.kind in ("send", "recv") for n in traces.ranks[0]):
            raise ConfigError(where, "system.mode", "symmetric", "exact: the traces send and receive messages")
        check_symmetric(scenario, t, groups, names, traces.npus, where)


def _check_collectives(traces) -> None:
    """The k-th collective (by node id) of a group on each of its NPUs is the same operation on the same bytes
    (no group: every NPU)."""
    everyone = tuple(range(traces.npus))
    for name, members in {"": everyone, **traces.groups}.items():
        ordered = {
            r: [n for n in sorted(traces.ranks[r], key=lambda n: n.id) if n.kind == "collective" and n.group == name]
            for r in members
        }
        first, mine0 = members[0], ordered[members[0]]
        what = f"group {name}'s NPUs" if name else "every NPU"
        for r in members[1:]:
            mine = ordered[r]
            if len(mine) != len(mine0):
                raise ConfigError(
                    str(traces.files[r]),
                    f"collectives{f' of group {name}' if name else ''}",
                    len(mine),
                    f"as many as NPU {first}'s trace ({len(mine0)}): the k-th collectives of {what} meet",
                )
            for k, (a, b) in enumerate(zip(mine0, mine, strict=True)):
                if (a.collective, a.bytes) != (b.collective, b.bytes):
                    raise ConfigError(
                        str(traces.files[r]),
                        f"node {b.id} ({b.name})",
                        f"{b.collective} of {b.bytes} bytes",
                        f"collective {k} of {what} alike: NPU {first}'s is {a.collective} of {a.bytes} bytes",
                    )


def _check_groups(scenario, traces, where: str) -> None:
    """Collectives over process groups run flat on the group's NPUs: system.collective's algorithm can run each
    group's operations on its size, and is not hierarchical."""
    spec = scenario.system.collective
    for name, members in traces.groups.items():
        ops = sorted({n.collective for r in members for n in traces.ranks[r] if n.kind == "collective" and n.group == name})
        if ops and spec.hierarchical:
            raise ConfigError(
                where, "system.collective.hierarchical", True, f"false: group {name}'s collectives run on its NPUs alone"
            )
        for op in ops:
            try:
                plan(op, spec.algorithm, len(members), False)  # errors only
            except CollectiveError as err:
                raise ConfigError(where, "system.collective.algorithm", spec.algorithm, f"group {name}: {err}") from None


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
