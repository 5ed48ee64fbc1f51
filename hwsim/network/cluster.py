"""The cluster a system runs on: the fabric built once from the scenario, and the devices on its NPUs.

A system names its NPUs (`names`: NPU i hosts the device called names[i]) and asks the
cluster for its devices (`add`, `add_server`); it sends messages between devices
(`send`) and never builds a switch or a link. Without `hardware.network` the fabric is
one switch whose link to each device is that device's own `nic` (bandwidth, latency),
which is what every scenario ran on before fabrics could be described. With a
described fabric the links come from it; `nic.overhead` (per message) still applies,
`overrides` change single NPUs' links, and a federated client's bandwidth factor
scales its NPU's links.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Generator

import simpy

from hwsim.config.schema import HardwareSpec, NetworkSpec
from hwsim.config.units import UnitError, parse_quantity
from hwsim.errors import ConfigError
from hwsim.hardware import Device, Message, Placeholder, Server
from hwsim.hardware.network import DeliveryObserver
from hwsim.network import topology as topo
from hwsim.network.fabric import Fabric
from hwsim.network.failures import FlowFailures, failure_links
from hwsim.network.sharing import Unshared
from hwsim.network.topology import Topology

MAX_NPUS = 1 << 16
"""The most NPUs a fabric may have (a guard against a mistyped size)."""


def fabric_npus(network: NetworkSpec | None, needed: int) -> int:
    """How many NPUs the fabric `network` has when the system needs `needed`."""
    if network is None:
        return needed
    if network.kind in ("switch", "ring", "fully_connected"):
        return network.npus or needed
    if network.kind == "torus":
        return math.prod(network.shape)
    if network.kind == "fat_tree":
        return network.leaves * network.npus_per_leaf
    return math.prod(dim_sizes(network, needed))


def dim_sizes(network: NetworkSpec, needed: int) -> list[int]:
    """The sizes of a dims fabric's dimensions; a last dimension of size 0 takes what the system needs
    (the NPUs needed over the other dimensions' product, rounded up)."""
    sizes = [d.size for d in network.dims]
    if sizes and sizes[-1] == 0:
        sizes[-1] = max(1, -(-needed // max(1, math.prod(sizes[:-1]))))
    return sizes


def size_curves(hardware: HardwareSpec, where: str = "scenario") -> dict[str, list[tuple[float, float]]]:
    """Per dimension of a `dims` fabric with `efficiency_by_size` (by its links' level, "dim0", ...): its points
    (bytes, that size's efficiency over the dimension's `efficiency`, the rate its links were built at),
    sorted by size. A key that is not a size is a ConfigError naming it."""
    net, out = hardware.network, {}
    if net is None or net.kind != "dims":
        return out
    for i, d in enumerate(net.dims):
        if d.efficiency_by_size is None:
            continue
        points = []
        for key, value in d.efficiency_by_size.items():
            try:
                size = parse_quantity(key, "size")
            except UnitError as err:
                raise ConfigError(where, f"hardware.network.dims[{i}].efficiency_by_size", key, str(err)) from None
            if size <= 0:
                raise ConfigError(where, f"hardware.network.dims[{i}].efficiency_by_size", key, "a size above 0")
            points.append((size, value / d.efficiency))
        if points:
            out[f"dim{i}"] = sorted(points)
    return out


def curve_at(points: list[tuple[float, float]], nbytes: float) -> float:
    """A size curve's value at `nbytes`: interpolated in log size between its points, the nearest beyond them."""
    if nbytes <= points[0][0]:
        return points[0][1]
    for (s0, e0), (s1, e1) in zip(points, points[1:], strict=False):
        if nbytes <= s1:
            w = math.log(nbytes / s0) / math.log(s1 / s0)
            return e0 + w * (e1 - e0)
    return points[-1][1]


def build_topology(hardware: HardwareSpec, needed: int, where: str = "scenario") -> Topology:
    """The topology of `hardware.network` for a system of `needed` NPUs; a ConfigError names any mistake."""
    net, key = hardware.network, "hardware.network"
    if net is not None and net.kind == "dims" and not net.dims:
        raise ConfigError(where, f"{key}.dims", [], "at least one dimension {kind, size, bandwidth, latency}")
    if net is not None and net.kind == "dims":
        for i, d in enumerate(net.dims[:-1]):
            if d.size == 0:
                raise ConfigError(where, f"{key}.dims[{i}].size", 0, "at least 1 (size 0 is for the last dimension only)")
    n = fabric_npus(net, needed)
    if n > MAX_NPUS:
        raise ConfigError(where, key, n, f"at most {MAX_NPUS:,} NPUs")
    if n < needed:
        raise ConfigError(where, key, f"{n} NPUs", f"at least the {needed} NPUs the system needs (a device on each)")
    if net is None or net.kind == "switch":
        bw = [hardware.nic.bandwidth if net is None or net.bandwidth is None else net.bandwidth] * n
        lat = [hardware.nic.latency if net is None or net.latency is None else net.latency] * n
        t = topo.star(n, bw, lat)
    elif net.kind == "ring":
        t = topo.ring(n, net.bandwidth, net.latency)
    elif net.kind == "fully_connected":
        t = topo.fully_connected(n, net.bandwidth, net.latency)
    elif net.kind == "torus":
        if len(net.shape) not in (2, 3):
            raise ConfigError(where, f"{key}.shape", list(net.shape), "2 or 3 dimensions (a ring of NPUs is kind: ring)")
        t = topo.torus(net.shape, net.bandwidth, net.latency)
    elif net.kind == "fat_tree":
        t = topo.fat_tree(
            net.leaves, net.npus_per_leaf, net.spines, net.bandwidth, net.latency, net.spine_latency, net.oversubscription
        )
    else:
        sizes = dim_sizes(net, needed)
        t = topo.dims([(d.kind, size, d.bandwidth * d.efficiency, d.latency) for d, size in zip(net.dims, sizes, strict=True)])
    if net is not None:
        _apply_overrides(t, net, needed, where)
    size_curves(hardware, where)  # its keys checked with the rest
    return t


def _apply_overrides(t: Topology, net, needed: int, where: str) -> None:
    down = set()
    for i, o in enumerate(net.overrides):
        key = f"hardware.network.overrides[{i}]"
        if o.npu >= t.npus:
            raise ConfigError(where, f"{key}.npu", o.npu, f"an NPU of the fabric (0 to {t.npus - 1})")
        if o.down:
            down.add(o.npu)
        if o.dim is not None and (net.kind != "dims" or o.dim >= len(net.dims)):
            dims = len(net.dims) if net.kind == "dims" else 0
            raise ConfigError(
                where,
                f"{key}.dim",
                o.dim,
                f"a dimension of a dims fabric (0 to {dims - 1})" if dims else "null (the fabric has no dimensions)",
            )
        for link in t.npu_links(o.npu):
            if o.dim is not None and t.level[link] != f"dim{o.dim}":
                continue
            if o.bandwidth is not None:
                t.bandwidth[link] = o.bandwidth
            if o.latency is not None:
                t.latency[link] = o.latency
    if down:
        topo.without(t, down)
        apart = topo.cut_off(t, list(range(needed)))
        if apart is not None:
            raise ConfigError(
                where,
                "hardware.network.overrides",
                f"NPUs {sorted(down)} down",
                f"a fabric that still joins the system's NPUs 0 to {needed - 1} (NPUs {apart[0]} and {apart[1]} are cut apart)",
            )


class Cluster:
    """The fabric and the devices on its NPUs (`names[i]` on NPU i)."""

    def __init__(
        self,
        env: simpy.Environment,
        hardware: HardwareSpec,
        names: list[str],
        recorder,
        where: str = "scenario",
        precision: str = "fp32",
    ):
        self.env = env
        self.hardware = hardware
        self.recorder = recorder
        self.names = names
        self.precision = precision
        """The precision the devices' arithmetic units compute at (the system's), their peak's precision."""
        self.topology = build_topology(hardware, len(names), where)
        model = hardware.network.model if hardware.network is not None else "flow"
        self.fabric = Fabric(env, self.topology, model, names)
        self.fabric.first_use = self._register
        if hardware.network is not None and hardware.network.failures:
            links = failure_links(self.topology, self.fabric.names, hardware.network, where)
            if model == "ideal":  # messages as unshared flows, so that a failure can cut them
                self.fabric.model = Unshared(env, self.fabric)
            self.fabric.model.failures = FlowFailures(env, self.fabric.model, self.topology, hardware.network, links)
        # links from each device's own NIC: no fabric described, or a switch without a bandwidth of its own
        net = hardware.network
        self.own_links = net is None or (net.kind == "switch" and net.bandwidth is None and net.latency is None)
        self.devices: dict[int, Device] = {}
        self._links_set: set[int] = set()
        self._lanes: dict[tuple[int, int], simpy.Resource] = {}
        self.npu: dict[str, int] = {}  # device (and NIC) name -> NPU
        self.loss_observers: list[DeliveryObserver] = []
        """Called as observer(message, lost_s) when a message is lost to an outage."""
        self.shared: dict[str, object] = {}
        """What the systems on this cluster share beyond the fabric (the compiled engine: `collectives.compiled`)."""
        self.placement: list[int] | None = None
        """The NPUs a system's ranks 0, 1, ... run on (None: rank r on NPU r); a job's view sets it."""

    # --- devices ----------------------------------------------------------------------

    def add(self, npu: int, name: str, hardware: HardwareSpec, link_factor: float = 1.0) -> Device:
        """A device on NPU `npu`; `link_factor` scales its links' bandwidth."""
        return self._place(npu, Device(self.env, name, hardware, self.precision), link_factor)

    def add_server(self, npu: int, name: str, hardware: HardwareSpec, handler: Callable) -> Server:
        """A device on NPU `npu` whose controller hands each message it receives to `handler`."""
        return self._place(npu, Server(self.env, name, hardware, handler, self.precision), 1.0)

    def release(self, npu: int) -> None:
        """NPU `npu` free for another device (a job that ended: its device keeps what it recorded; a compiled
        job holds devices on one NPU per compute class only)."""
        self.devices.pop(npu, None)

    def set_links(self, npu: int, hardware: HardwareSpec, factor: float = 1.0) -> None:
        """NPU `npu`'s links for a device of `hardware` (its NIC's, on a switch without links of its own),
        bandwidth scaled by `factor`; adding the device does this, or a system that wants the links set
        before (federated clients: their round-time estimates)."""
        if npu in self._links_set:
            return
        self._links_set.add(npu)
        if self.own_links:
            self.fabric.set_links(npu, hardware.nic.bandwidth, hardware.nic.latency, factor)
        elif factor != 1.0:
            self.fabric.set_links(npu, factor=factor)

    def _place(self, npu: int, device, factor: float):
        if npu in self.devices:
            raise ValueError(f"NPU {npu} already holds {self.devices[npu].name}")
        self.set_links(npu, device.spec, factor)
        self.devices[npu] = device
        self.npu[device.name] = self.npu[device.nic.name] = npu
        self.recorder.attach_device(device)
        return device

    def _register(self, link: int) -> None:
        """A link's first use: its unit joins the recorder, under the NPU it belongs to (or the fabric)."""
        t = self.topology
        ends = [e for e in (t.src[link], t.dst[link]) if e < t.npus]
        owner = self.names[ends[0]] if len(ends) == 1 and ends[0] < len(self.names) else "fabric"
        self.recorder.attach_unit(self.fabric.units[link], owner)

    # --- messages ---------------------------------------------------------------------

    def send(self, src: Device, dst: Device, payload, tag: str = "", **meta) -> Generator:
        """Process: deliver `payload` from `src` into `dst`'s inbox; returns the Message (None if lost)."""
        message = Message(src.nic.name, dst.nic.name, tag, payload, self.env.now, meta)
        a, b = self.npu[src.name], self.npu[dst.name]
        if self.fabric.is_down(a):
            return self._lose(message)
        label = f"{tag} -> {dst.name}" if tag else f"-> {dst.name}"
        yield from self.carry(a, b, message.nbytes, label, src.nic.spec.overhead)
        if self.fabric.is_down(b):
            return self._lose(message)
        yield dst.nic.inbox.put(message)
        for notify in src.nic.delivery_observers:
            notify(message, self.env.now)
        return message

    def carry(self, a: int, b: int, nbytes: int, label: str, overhead: float) -> Generator:
        """Process: `nbytes` from NPU a to NPU b on the fabric, in order per pair: under a model that does
        not keep a pair's messages in order, one connection per pair (a message starts when the pair's
        previous one has left)."""
        if self.fabric.model.ordered:
            yield from self.fabric.transfer(a, b, nbytes, label, overhead)
            return
        lane = self._lanes.setdefault((a, b), simpy.Resource(self.env, capacity=1))
        with lane.request() as turn:
            yield turn
            sent = self.env.event()
            moving = self.env.process(self.fabric.transfer(a, b, nbytes, label, overhead, sent))
            yield sent
        yield moving

    def loopback(self, npu: int, nbytes: int, label: str, overhead: float = 0.0) -> Generator:
        """Process: `nbytes` from NPU `npu` to its switch and back (a mirrored partner's message on a
        single switch: out on the uplink, in on the downlink)."""
        t = self.topology
        switch = t.npus  # a single switch: the first node after the NPUs
        path = (t.link(npu, switch), t.link(switch, npu))
        yield from self.fabric.model.transfer(path, nbytes, label, overhead)

    def transport(self, tag: str, name_of: Callable[[int], str] | None = None, in_order: bool = False) -> ClusterTransport:
        """What moves a collective's messages on this cluster (`hwsim.collectives`), tagged `tag` in
        messages.csv; `name_of` names the NPUs that hold no device (a symmetric run's mirrored partners);
        `in_order`: a pair's messages go one after another, like `send`'s (else side by side)."""
        return ClusterTransport(self, tag, name_of, in_order)

    def unloaded(self, a: int, b: int, nbytes: float, overhead: float | None = None) -> float:
        """A message's time from NPU a to NPU b with nothing else on the fabric (the NIC overhead of
        the scenario's hardware unless given)."""
        return self.fabric.unloaded(a, b, nbytes, self.hardware.nic.overhead if overhead is None else overhead)

    def link_down(self, name: str, start: float, end: float) -> None:
        """Take the links of the device (or NIC) `name` down from `start` to `end` (seconds)."""
        if name not in self.npu:
            raise ValueError(f"no device named {name!r} is on the fabric")
        self.fabric.down(self.npu[name], start, end)

    def _lose(self, message: Message) -> None:
        for notify in self.loss_observers:
            notify(message, self.env.now)


class ClusterTransport:
    """A collective's messages on a cluster: each pays its sender's NIC overhead (the hardware's, for a
    sender that is not simulated), keeps its pair's order like `send`'s messages if `in_order` (`Cluster.carry`;
    else a pair's messages of concurrent collectives share the links side by side) and is recorded as a delivered message (messages.csv), tagged `tag`;
    `name_of(npu)` names an NPU that has no device (default: npu<i>). Outages do not apply (a
    collective has no way to resend)."""

    def __init__(self, cluster: Cluster, tag: str, name_of: Callable[[int], str] | None = None, in_order: bool = False):
        self.cluster, self.tag, self.in_order = cluster, tag, in_order
        self._names: dict[int, str] = {}
        self.name_of = name_of or (lambda npu: f"npu{npu}")

    def overhead(self, npu: int) -> float:
        """The NIC overhead of a message NPU `npu` sends."""
        device = self.cluster.devices.get(npu)
        return (device.spec if device is not None else self.cluster.hardware).nic.overhead

    def move(self, src: int, dst: int, nbytes: int, label: str) -> Generator:
        """Process: `nbytes` from NPU `src` to NPU `dst`, recorded on delivery."""
        sent, overhead = self.cluster.env.now, self.overhead(src)
        if self.in_order:
            yield from self.cluster.carry(src, dst, nbytes, label, overhead)
        else:
            yield from self.cluster.fabric.transfer(src, dst, nbytes, label, overhead)
        self._record(src, dst, nbytes, sent, self.cluster.devices[src])

    def move_group(self, moves: list[tuple[int, int, int]], label: str) -> Generator:
        """Process: messages (src, dst, nbytes) that leave together (`Fabric.transfer_group`), each
        recorded as delivered when the last has landed; in order per pair (or with senders' overheads
        that differ), one by one."""
        overheads = {self.overhead(src) for src in {src for src, _, _ in moves}}
        sent = self.cluster.env.now
        if self.in_order or len(overheads) > 1:
            env = self.cluster.env
            yield simpy.AllOf(env, [env.process(self.move(a, b, n, label)) for a, b, n in moves])
            return
        yield from self.cluster.fabric.transfer_group(moves, label, overheads.pop() if overheads else 0.0)
        now, nic, tag = self.cluster.env.now, self.nic_name, self.tag
        self.cluster.recorder.messages([(nic(src), nic(dst), tag, nbytes, sent, now) for src, dst, nbytes in moves])

    def mirror(self, me: int, partner: int, nbytes: int, label: str) -> Generator:
        """Process: symmetric mode's stand-in for `partner`'s message to NPU `me` (out on me's uplink, back
        on its downlink: `Topology.loopback`), recorded as the partner's message as `me` receives it."""
        sent = self.cluster.env.now
        path = self.cluster.topology.loopback(me, partner)
        yield from self.cluster.fabric.model.transfer(path, nbytes, label, self.overhead(me))
        self._record(partner, me, nbytes, sent, self.cluster.devices[me])

    def _record(self, src: int, dst: int, nbytes: int, sent: float, observed: Device) -> None:
        message = Message(self.nic_name(src), self.nic_name(dst), self.tag, Placeholder(nbytes), sent, {})
        for notify in observed.nic.delivery_observers:
            notify(message, self.cluster.env.now)

    def nic_name(self, npu: int) -> str:
        """The name messages.csv gives NPU `npu`'s NIC."""
        name = self._names.get(npu)
        if name is None:
            device = self.cluster.devices.get(npu)
            name = self._names[npu] = device.nic.name if device is not None else f"{self.name_of(npu)}.nic"
        return name
