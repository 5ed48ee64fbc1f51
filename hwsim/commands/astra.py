"""`hwsim import astra`: ASTRA-sim's inputs (network YAML, system JSON, Chakra workload, memory JSON) as a hwsim
scenario that means the same thing, each mapping printed, anything hwsim cannot mean refused by name.

What the files mean is what astra-sim 5f07824 makes of them (`astra-sim/system/Sys.cc`'s
`initialize_sys`, the analytical backends' `NetworkParser` at astra-network-analytical 599a047):

| ASTRA-sim                                    | hwsim                                                                |
|----------------------------------------------|----------------------------------------------------------------------|
| network `topology`, `npus_count`             | `hardware.network.dims` (Ring: ring, Switch: switch, FullyConnected: fully_connected) |
| network `bandwidth` (GB/s, 2^30 B/s each: `bw_GBps_to_Bpns`) | each dimension's `bandwidth` in GiB/s                 |
| network `latency` (ns)                       | each dimension's `latency`                                           |
| backend congestion_unaware / congestion_aware | `hardware.network.model` ideal / store_and_forward (whole chunks, FIFO per link, hop by hop) |
| `scheduling-policy` LIFO / FIFO              | `system.collective.order` lifo / fifo                                |
| `active-chunks-per-dimension`                | `system.collective.in_flight`                                        |
| `preferred-dataset-splits`                   | `system.collective.chunks`                                           |
| `*-implementation` per dimension             | `system.collective.algorithm` (the ops the traces use must agree)    |
| `collective-optimization` localBWAware       | `system.collective.hierarchical: true`                               |
| `endpoint-delay` (cycles of 1 ns)            | `hardware.nic.overhead`                                              |
| `local-mem-bw` (GB/s, 10^9 B/s each)         | `system.collective.reduction_bandwidth` (a received chunk that is reduced waits 3 x its bytes at this rate) |
| workload prefix                              | `model: {kind: chakra, traces: prefix}`                              |
| memory `NO_MEMORY_EXPANSION`                 | memory nodes on the device's bank                                    |
"""

from __future__ import annotations

import json
import math
import re
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from hwsim.errors import NOTHING, ConfigError
from hwsim.workloads.chakra import TraceSet

BACKENDS = {"congestion_unaware": "ideal", "congestion_aware": "store_and_forward"}
"""ASTRA-sim's analytical backends and the hwsim link-sharing model that means each."""
TOPOLOGIES = {"Ring": "ring", "Switch": "switch", "FullyConnected": "fully_connected"}
NETWORK_KEYS = ("topology", "npus_count", "bandwidth", "latency")
ALGORITHMS = {
    "ring": "ring",
    "direct": "direct",
    "halvingDoubling": "halving_doubling",
    "doubleBinaryTree": "double_binary_tree",
}
"""ASTRA-sim's per-dimension collective implementations hwsim has (`hwsim.collectives.algorithms`)."""
FLAT = {"oneRing": "ring", "oneDirect": "direct"}
"""One collective over every NPU, whatever the dimensions."""
IMPLEMENTATIONS = {
    "all_reduce": "all-reduce-implementation",
    "all_gather": "all-gather-implementation",
    "reduce_scatter": "reduce-scatter-implementation",
    "all_to_all": "all-to-all-implementation",
}
DEFAULT_PRESET = "datacenter_npu"
"""The device the imported scenario runs on: recorded compute times need none of its figures; its NIC overhead
becomes ASTRA-sim's endpoint delay."""


@dataclass
class AstraImport:
    """The scenario (a mapping, as a scenario file holds it) and what each ASTRA-sim setting became."""

    scenario: dict
    lines: list[str] = field(default_factory=list)

    def yaml(self) -> str:
        header = "".join(f"# {line}\n" for line in ["Imported from ASTRA-sim's inputs by `hwsim import astra`:", *self.lines])
        return header + yaml.safe_dump(self.scenario, sort_keys=False, width=120)


def astra_scenario(
    network: str | Path,
    system: str | Path,
    workload: str | Path,
    memory: str | Path | None = None,
    backend: str = "congestion_unaware",
    traces_relative_to: Path | None = None,
) -> AstraImport:
    """The hwsim scenario that means what ASTRA-sim makes of these inputs, or a ConfigError naming the file and
    key hwsim cannot mean. `traces_relative_to`: write the trace prefix relative to this folder (where the
    scenario file goes) when they are inside it; otherwise it is absolute."""
    if backend not in BACKENDS:
        raise ConfigError("command line", "--backend", backend, f"one of {', '.join(BACKENDS)}")
    out = AstraImport({})
    dims = _network(Path(network), out)
    traces = TraceSet(_Traces(str(workload)))
    if traces.groups:
        raise ConfigError(
            str(workload),
            "pg_name",
            f"process groups ({', '.join(list(traces.groups)[:4])})",
            "collectives over every NPU: ASTRA-sim 5f07824 ignores a node's pg_name (it runs every collective of "
            "an NPU over the one group --comm-group-configuration gives it); hwsim runs each over the group its "
            "pg_name names, so run these traces from a scenario (model: {kind: chakra, traces, groups})",
        )
    npus = math.prod(d["size"] for d in dims)
    if traces.npus != npus:
        raise ConfigError(
            str(network), "npus_count", f"{npus} NPUs", f"one NPU per trace file: {traces.npus} files {Path(workload).name}.N.et"
        )
    used = sorted({n.collective for n in traces.ranks[0] if n.kind == "collective"})
    collective, overhead_ns = _system(Path(system), len(dims), used, out)
    if memory is not None:
        _memory(Path(memory), out)
    out.lines.append(f"backend {backend} -> hardware.network.model: {BACKENDS[backend]}")
    if backend == "congestion_aware" and len(dims) > 1:
        out.lines.append("(ASTRA-sim 5f07824's congestion-aware backend runs 1-D networks only; hwsim runs this one)")
    prefix = Path(workload).resolve()  # a scenario file resolves it against its own folder
    if traces_relative_to is not None and prefix.is_relative_to(traces_relative_to.resolve()):
        prefix = prefix.relative_to(traces_relative_to.resolve())  # beside the scenario file: relative, movable with it
    name = re.sub(r"[^A-Za-z0-9_-]+", "_", Path(workload).name).strip("_") or "workload"
    out.scenario = {
        "name": f"astra_{name}",
        "title": f"ASTRA-sim inputs: {Path(network).name}, {Path(system).name}, {Path(workload).name}"[:100],
        "hardware": {
            "base": DEFAULT_PRESET,
            "nic": {"overhead": f"{overhead_ns:g} ns"},
            "network": {"model": BACKENDS[backend], "dims": dims},
        },
        "model": {"kind": "chakra", "traces": str(prefix)},
        "system": {"kind": "replay", "iterations": 1, "collective": collective},
        "run": {"mode": "timing-only"},
    }
    return out


@dataclass(frozen=True)
class _Traces:
    """What TraceSet reads: a chakra model's trace prefix (and its process groups: PREFIX.groups.json if any)."""

    traces: str
    groups: str | None = None


def _network(path: Path, out: AstraImport) -> list[dict]:
    """The analytical backend's network YAML as hwsim dimensions."""
    if path.suffix not in (".yml", ".yaml"):
        raise ConfigError(
            str(path),
            "",
            NOTHING,
            "the analytical backend's network YAML (topology, npus_count, bandwidth, latency); "
            "ASTRA-sim's ns-3 and Garnet network files are not read",
        )
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(str(path), "", NOTHING, f"a readable network file ({err.strerror})") from None
    except yaml.YAMLError as err:
        raise ConfigError(str(path), "", NOTHING, f"a YAML file ({str(err).splitlines()[0]})") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "", raw, "a mapping with topology, npus_count, bandwidth and latency")
    for key in raw:
        if key not in NETWORK_KEYS:
            raise ConfigError(str(path), key, raw[key], f"only {', '.join(NETWORK_KEYS)} (the analytical backend's keys)")
    for key in NETWORK_KEYS:
        if not isinstance(raw.get(key), list) or not raw[key]:
            raise ConfigError(str(path), key, raw.get(key, NOTHING), "a list with one entry per dimension")
    count = len(raw["topology"])
    dims = []
    for j in range(count):
        values = {key: (raw[key][j] if j < len(raw[key]) else NOTHING) for key in NETWORK_KEYS}
        kind, size, bandwidth, latency = (values[k] for k in NETWORK_KEYS)
        if kind not in TOPOLOGIES:
            raise ConfigError(
                str(path), f"topology[{j}]", kind, f"one of {', '.join(TOPOLOGIES)} (hwsim's analytical dimensions)"
            )
        if not isinstance(size, int) or isinstance(size, bool) or size < 2:
            raise ConfigError(str(path), f"npus_count[{j}]", size, "a whole number of NPUs, at least 2")
        for key, value in (("bandwidth", bandwidth), ("latency", latency)):
            if not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0 or (key == "bandwidth" and value == 0):
                raise ConfigError(
                    str(path),
                    f"{key}[{j}]",
                    value,
                    "a positive number (GB/s)" if key == "bandwidth" else "a number of ns, at least 0",
                )
        dims.append(
            {"kind": TOPOLOGIES[kind], "size": size, "bandwidth": f"{bandwidth:.17g} GiB/s", "latency": f"{latency:.17g} ns"}
        )
        out.lines.append(
            f"dimension {j}: {kind} of {size}, {bandwidth:g} GB/s, {latency:g} ns -> {TOPOLOGIES[kind]}, "
            f"{bandwidth:g} GiB/s (ASTRA-sim's GB is 2^30 B), {latency:g} ns"
        )
    for key in NETWORK_KEYS[1:]:
        if len(raw[key]) != count:
            raise ConfigError(str(path), key, raw[key], f"{count} entries, one per dimension of topology")
    return dims


SYSTEM_ACCEPTED = {
    "boost-mode": (0,),
    "roofline-enabled": (0,),
    "model-shared-bus": (0,),
    "intra-dimension-scheduling": ("FIFO",),
    "inter-dimension-scheduling": ("baseline",),
    "trace-enabled": (0, 1),
    "replay-only": (0,),
}
"""Keys hwsim takes only at these values (what every other value means, hwsim does not model)."""
SYSTEM_IGNORED = {"peak-perf": "used only with roofline-enabled: 1", "trace-enabled": "ASTRA-sim's own logging"}


def _system(path: Path, dims: int, used: list[str], out: AstraImport) -> tuple[dict, float]:
    """The system JSON as `system.collective` and the NIC overhead (ns)."""
    raw = _json(path, "system")
    known = {
        "scheduling-policy",
        "endpoint-delay",
        "active-chunks-per-dimension",
        "preferred-dataset-splits",
        "collective-optimization",
        "local-mem-bw",
        *IMPLEMENTATIONS.values(),
        *SYSTEM_ACCEPTED,
        *SYSTEM_IGNORED,
    }
    for key, value in raw.items():
        if key.endswith("-implementation-chakra"):
            raise ConfigError(
                str(path), key, value, "per-dimension implementation names (collectives given as Chakra traces are not read)"
            )
        if key not in known:
            raise ConfigError(str(path), key, value, f"a system key hwsim maps: {', '.join(sorted(known))}")
    for key, allowed in SYSTEM_ACCEPTED.items():
        if key in raw and raw[key] not in allowed:
            raise ConfigError(str(path), key, raw[key], f"{' or '.join(map(str, allowed))} (hwsim does not model the others)")
    policy = raw.get("scheduling-policy", "LIFO")
    if policy not in ("LIFO", "FIFO"):
        raise ConfigError(str(path), "scheduling-policy", policy, "LIFO or FIFO")
    collective: dict = {"order": policy.lower()}
    for key, name in (("preferred-dataset-splits", "chunks"), ("active-chunks-per-dimension", "in_flight")):
        value = raw.get(key, 1)
        if not isinstance(value, int) or isinstance(value, bool) or value < 1:
            raise ConfigError(str(path), key, value, "a whole number, at least 1")
        collective[name] = value
    optimization = raw.get("collective-optimization", "baseline")
    if optimization not in ("baseline", "localBWAware"):
        raise ConfigError(str(path), "collective-optimization", optimization, "baseline or localBWAware")
    algorithm, hierarchical = _algorithm(path, raw, dims, used)
    if hierarchical and dims > 1 and optimization != "localBWAware":
        raise ConfigError(
            str(path),
            "collective-optimization",
            optimization,
            "localBWAware on a network of several dimensions (hwsim's multi-dimensional collectives reduce-scatter "
            "dimension by dimension and all-gather back; baseline's all-reduce of each chunk on every dimension is not modelled)",
        )
    collective.update(algorithm=algorithm, hierarchical=hierarchical)
    delay = raw.get("endpoint-delay", 10)  # Sys.cc's default communication_delay
    bandwidth = raw.get("local-mem-bw")
    for key, value in (("endpoint-delay", delay), ("local-mem-bw", bandwidth)):
        if value is not None and (not isinstance(value, (int, float)) or isinstance(value, bool) or value < 0):
            raise ConfigError(str(path), key, value, "a number, at least 0")
    if bandwidth:
        collective["reduction_bandwidth"] = f"{bandwidth:g} GB/s"
    out.lines += [
        f"scheduling-policy {policy} -> system.collective.order: {policy.lower()}",
        f"preferred-dataset-splits {collective['chunks']} -> system.collective.chunks: {collective['chunks']}",
        f"active-chunks-per-dimension {collective['in_flight']} -> system.collective.in_flight: {collective['in_flight']}",
        f"implementations of {', '.join(used) or 'no collective'} -> system.collective.algorithm: {algorithm}, hierarchical: {str(hierarchical).lower()}",
        f"collective-optimization {optimization} -> "
        + (
            "reduce-scatter down the dimensions, all-gather back"
            if hierarchical and dims > 1
            else "nothing to do on one dimension"
        ),
        f"endpoint-delay {delay:g} cycles of 1 ns -> hardware.nic.overhead: {delay:g} ns",
        f"local-mem-bw {bandwidth:g} GB/s -> system.collective.reduction_bandwidth (3 x a reduced chunk's bytes at this rate)"
        if bandwidth
        else "local-mem-bw 0 or missing -> reductions take no time",
    ]
    out.lines += [f"{key} {raw[key]}: {why}, not used" for key, why in SYSTEM_IGNORED.items() if key in raw]
    return collective, float(delay)


def _algorithm(path: Path, raw: dict, dims: int, used: list[str]) -> tuple[str | list[str], bool]:
    """The one algorithm list the collectives the traces use share, and whether it runs per dimension."""
    chosen: dict[str, tuple] = {}
    for op in used:
        key = IMPLEMENTATIONS.get(op)
        if key is None:
            continue  # broadcast, reduce: hwsim's own algorithm for them
        names = raw.get(key)
        if not isinstance(names, list) or not names or not all(isinstance(n, str) for n in names):
            raise ConfigError(str(path), key, raw.get(key, NOTHING), f"a list of implementation names (the traces run {op})")
        if all(n in FLAT for n in names):
            if len(names) != 1:
                raise ConfigError(str(path), key, names, "one oneRing or oneDirect (one collective over every NPU)")
            if op == "all_to_all" and names[0] != "oneDirect":
                raise ConfigError(str(path), key, names, "oneDirect (hwsim's all-to-all is direct)")
            chosen[op] = (FLAT[names[0]], False)
            continue
        for j, name in enumerate(names):
            if name not in ALGORITHMS:
                raise ConfigError(
                    str(path), f"{key}[{j}]", name, f"one of {', '.join([*ALGORITHMS, *FLAT])} (windowed direct is not modelled)"
                )
        if len(names) != dims:
            raise ConfigError(str(path), key, names, f"{dims} names, one per dimension of the network")
        mapped = [ALGORITHMS[n] for n in names]
        if op == "all_to_all" and set(mapped) != {"direct"}:
            raise ConfigError(str(path), key, names, "direct on every dimension (hwsim's all-to-all is direct)")
        chosen[op] = (mapped[0] if len(set(mapped)) == 1 else tuple(mapped), dims > 1)
    if not chosen:
        return "ring", dims > 1
    if len(set(chosen.values())) > 1:
        ops = ", ".join(f"{IMPLEMENTATIONS[op]} {raw[IMPLEMENTATIONS[op]]}" for op in chosen)
        raise ConfigError(
            str(path),
            "implementations",
            ops,
            "the same implementation for every collective the traces run (hwsim's replay takes one)",
        )
    algorithm, hierarchical = next(iter(chosen.values()))
    return (list(algorithm) if isinstance(algorithm, tuple) else algorithm), hierarchical


def _memory(path: Path, out: AstraImport) -> None:
    raw = _json(path, "memory")
    kind = raw.get("memory-type", NOTHING)
    if kind != "NO_MEMORY_EXPANSION":
        raise ConfigError(
            str(path),
            "memory-type",
            kind,
            "NO_MEMORY_EXPANSION (ASTRA-sim's remote memory pools and expansions are not modelled)",
        )
    out.lines.append("memory-type NO_MEMORY_EXPANSION -> memory nodes on the device's bank")


def _json(path: Path, what: str) -> dict:
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except OSError as err:
        raise ConfigError(str(path), "", NOTHING, f"a readable {what} JSON file ({err.strerror})") from None
    except json.JSONDecodeError as err:
        raise ConfigError(f"{path}:{err.lineno}", "", NOTHING, f"JSON ({err.msg})") from None
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "", raw, f"a JSON object of ASTRA-sim {what} settings")
    return raw
