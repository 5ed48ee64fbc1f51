"""Federated learning of a model over K clients (mechanisms M5 and M6).

Each client is a device whose hardware is the scenario's client hardware scaled by factors
drawn once per client (compute clocks, bank capacities, NIC rate), with online windows
and its own data partition. Only the clients selected in a round are simulated: a
client's device is built the first time it is selected.

A round r:

1. the clients online and idle at its start are the candidates; the selection policy picks
   ceil(C x (1 + overcommit)) of them (fewer if fewer are available);
2. the reduction policy names the layers to train; the server encodes the model with the
   reduction codec (frozen layers too, unless `frozen: seed`: clients rebuild those from
   the model seed) and sends every selected client one message per layer;
3. each client stores what it gets compressed (`federated_client`), trains E epochs of
   local SGD on its partition, and sends back its trained layers as stored (compressed),
   or, with an uplink codec, its update (trained minus received) encoded with that codec
   (with optional error feedback); a client whose online window closes before it uploads
   drops out, and one that runs out of memory fails;
4. the round closes when C updates are in, when no selected client is still working, or
   at the deadline; updates that arrive after it are late: dropped, or (`late: buffer`)
   applied at the next aggregation with a staleness discount;
5. the server moves each layer by the weighted mean of the updates' changes (the decoded
   update, or the decoded upload minus what it sent that client), weights from the
   aggregation policy, and tests the global model.

Every encoding has its own counter-RNG stream, keyed by (round, client, layer, direction,
step) (`federated_client.Client.key`; the server's one encoding per round and layer, sent
to every selected client, has client = BROADCAST).

After the last round the run waits for clients still working, so every message sent is
also delivered. Client k's batches in round r come from `numpy.random.default_rng((seed, r, k))`.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import numpy as np
import pandas as pd
import simpy

from hwsim.codecs import codec_from_setting, stream_of
from hwsim.config.schema import HardwareSpec, Scenario
from hwsim.errors import OutOfMemory
from hwsim.hardware import Message, Server
from hwsim.hardware.arithmetic import gemm_cycles
from hwsim.network import Cluster
from hwsim.policies.federated import Candidates, draw_factors, local_batches, partition, resolve_policy
from hwsim.systems.federated.checks import check_samples, check_scenario
from hwsim.systems.federated.client import BROADCAST, DOWN, Client, ClientSettings
from hwsim.systems.training import COMPRESS_OPS, DECOMPRESS_OPS, flatten, unflatten

Progress = Callable[[int, int], None]
SERVER = "server"
OUTCOMES = ("aggregated", "late", "dropped", "failed")
PARTICIPATION_COLUMNS = [
    "round", "client", "outcome", "start_s", "end_s", "steps", "samples", "bytes_down", "bytes_up",
    "peak_param_bytes", "peak_work_bytes", "train_loss", "speed", "memory", "bandwidth", "detail",
]  # fmt: skip


@dataclass
class Update:
    """A client's trained layers as the server received them."""

    client: int
    round: int
    samples: int
    layers: dict[int, np.ndarray] = field(default_factory=dict)


@dataclass
class RoundState:
    """What the server knows about an open round."""

    index: int
    start_s: float
    selected: np.ndarray
    quorum: int
    trained: tuple[int, ...]
    sent: list[np.ndarray]  # the model as the clients decode it (fp32, per layer)
    closed: simpy.Event
    updates: list[Update] = field(default_factory=list)
    resolved: int = 0  # selected clients that reported, dropped out or failed
    open: bool = True


class Federated:
    """The server's rounds and the clients' participations; `run()` is the SimPy process. Client k sits
    on NPU k (its device is built when first selected), the server on NPU K."""

    check = staticmethod(check_scenario)
    check_samples = staticmethod(check_samples)

    @staticmethod
    def npu_names(spec) -> list[str]:
        return [f"c{k}" for k in range(spec.clients)] + [SERVER]

    def __init__(self, scenario: Scenario, cluster: Cluster, model, data, rng: np.random.Generator, progress=None):
        spec = self.spec = scenario.system
        env, recorder = cluster.env, cluster.recorder
        self.cluster = cluster
        self.env, self.model, self.data = env, model, data
        self.seed = scenario.seed
        self.recorder, self.progress = recorder, progress
        init_rng, part_rng, client_rng, self.select_rng = rng.spawn(4)
        self.initial = model.init_params(init_rng)
        self.names = model.layer_names
        self.shapes = [model.param_shapes(li) for li in range(len(self.names))]
        self.master = [flatten(layer).astype(np.float32) for layer in self.initial]
        self.codec = codec_from_setting(spec.reduction.codec)
        self.uplink = None if spec.uplink is None else codec_from_setting(spec.uplink)
        self.select = resolve_policy("selection", spec.selection.policy)
        self.reduce = resolve_policy("reduction", spec.reduction.policy)
        self.aggregate_weights = resolve_policy("aggregation", spec.aggregation)
        self.deadline = resolve_policy("deadline", spec.deadline.policy)

        k = spec.clients
        self.parts = partition(data.y_train, k, spec.partition.how, part_rng, spec.partition.alpha, spec.partition.shards)
        ch = spec.client_hardware
        speed_rng, mem_rng, bw_rng, online_rng, phase_rng = client_rng.spawn(5)

        def draw(d, r):
            return draw_factors(d.dist, k, r, d.value, d.low, d.high, d.sigma)

        self.factors = {
            "speed": draw(ch.speed, speed_rng),
            "memory": draw(ch.memory, mem_rng),
            "bandwidth": draw(ch.bandwidth, bw_rng),
        }
        self.online_fraction = np.minimum(draw(ch.availability.online, online_rng), 1.0)
        self.phase = phase_rng.uniform(0, ch.availability.period, k)
        self.client_hw = ch.hardware or scenario.hardware
        self.server = cluster.add_server(k, SERVER, spec.server_hardware or scenario.hardware, self._handle)
        for c in range(k):  # every client's links now: the round-time estimates need them
            cluster.set_links(c, self.client_hw, float(self.factors["bandwidth"][c]))
        self.est_time_s = self._estimate_times()
        self.settings = ClientSettings(
            spec.batch, spec.lr, spec.param_bank, spec.work_bank, spec.compute_precision, spec.decompression == "on_the_fly"
        )
        self.clients: dict[int, Client] = {}
        self.busy = np.zeros(k, bool)
        self.rounds: dict[int, RoundState] = {}
        self.buffer: list[Update] = []  # late updates waiting for the next aggregation
        self.pending: dict[tuple[int, int], Update] = {}  # uploads still landing
        self.working: list[simpy.Process] = []
        self.round_rows: list[dict] = []
        self.participations: list[dict] = []
        self.bytes_sent = {"down": 0, "up": 0}
        self._sent_rows: dict[tuple[int, int], dict] = {}  # participations whose upload is on its way
        self._losses: dict[tuple[int, int], float] = {}  # mean local loss of aggregated updates
        self._landed = env.event()  # succeeds each time the server has landed a whole update

    # --- clients ------------------------------------------------------------------

    def hardware_of(self, k: int) -> HardwareSpec:
        """Client k's hardware: the client hardware with its compute and memory factors applied (its
        bandwidth factor scales its links on the fabric)."""
        hw, f = self.client_hw, {name: float(v[k]) for name, v in self.factors.items()}
        return dataclasses.replace(
            hw,
            name=f"{hw.name} client {k}",
            systolic=dataclasses.replace(hw.systolic, clock=hw.systolic.clock * f["speed"]),
            vector=dataclasses.replace(hw.vector, clock=hw.vector.clock * f["speed"]),
            memory={n: dataclasses.replace(b, capacity=b.capacity * f["memory"]) for n, b in hw.memory.items()},
        )

    def client(self, k: int) -> Client:
        if k not in self.clients:
            device = self.cluster.add(k, f"c{k}", self.hardware_of(k), float(self.factors["bandwidth"][k]))
            idx = self.parts[k]
            x, y = self.data.x_train[idx], self.data.y_train[idx]
            self.clients[k] = Client(k, device, self.model, self.settings, self.codec, x, y, self.seed)
        return self.clients[k]

    def online_until(self, k: int, t: float) -> float:
        """When client k's current online window ends (inf: always online; -inf: offline at t)."""
        if self.online_fraction[k] >= 1.0:
            return math.inf
        period = self.spec.client_hardware.availability.period
        into = (t - self.phase[k]) % period
        on = self.online_fraction[k] * period
        return t + (on - into) if into < on else -math.inf

    def batch_rng(self, r: int, k: int) -> np.random.Generator:
        return np.random.default_rng((self.seed, r, k))

    def _estimate_times(self) -> np.ndarray:
        """What the server expects a round to take on each client (the device profile it knows): the
        cycle model of the local steps (GEMMs, element-wise work, decompressing and compressing every
        layer once) on the client hardware over its speed factor, plus the model down and back as
        unloaded messages on the fabric (latencies, NIC overhead, the client's links at their rate).
        Bank traffic is left out."""
        hw, spec = self.client_hw, self.spec
        macs = getattr(hw.systolic.macs_per_cycle, spec.compute_precision)
        s, ops = hw.systolic, self.model.layer_ops(spec.batch)
        step = 0.0
        for op in ops:
            gemms = op.forward + op.backward
            step += (
                sum(g.count * gemm_cycles(g.m, g.n, g.k, s.rows, s.cols, s.dataflow, macs, s.edge_folds) for g in gemms) / s.clock
            )
            elementwise = op.forward_vector_ops + op.backward_vector_ops + op.params * (DECOMPRESS_OPS + COMPRESS_OPS + 2)
            step += math.ceil(elementwise / hw.vector.lanes) / hw.vector.clock
        up = self.uplink or self.codec
        down = sum(self.codec.wire_bytes(op.params) for op in ops)
        back = sum(up.wire_bytes(op.params) for op in ops)
        server, overhead = self.spec.clients, (self.spec.server_hardware or hw).nic.overhead
        wire = np.array(
            [
                self.cluster.unloaded(server, c, down, overhead) + self.cluster.unloaded(c, server, back, hw.nic.overhead)
                for c in range(server)
            ]
        )  # every layer's message at once, as if one
        steps = np.array([spec.epochs * math.ceil(len(p) / spec.batch) for p in self.parts])
        return steps * step / self.factors["speed"] + wire

    # --- the run --------------------------------------------------------------------

    def run(self) -> Generator:
        for li, layer in enumerate(self.master):
            self.server.bank(self.spec.work_bank).allocate(f"global {self.names[li]}", layer)
        for r in range(self.spec.rounds):
            yield from self._round(r)
            if self.progress:
                self.progress(r + 1, self.spec.rounds)
        yield simpy.AllOf(self.env, self.working)  # clients still working finish (their uploads are late)
        while self._sent_rows:  # and the server lands the uploads still on their way
            yield self._landed

    def _round(self, r: int) -> Generator:
        spec, env = self.spec, self.env
        candidates = yield from self._candidates()
        count = math.ceil(spec.per_round * (1 + spec.selection.overcommit))
        selected = np.asarray(self.select(Candidates(candidates, self.est_time_s[candidates]), count, self.select_rng), int)
        trained = tuple(self.names.index(n) for n in self.reduce(r, tuple(self.names), spec.reduction.train))
        deadline_s = self.deadline(self.est_time_s[selected], spec.deadline)
        start = env.now
        payloads = yield from self._encode(r, trained)
        state = RoundState(
            r, start, selected, min(spec.per_round, len(selected)), trained,
            [None if p is None else self.codec.decode(p) for p in payloads], env.event(),
        )  # fmt: skip
        self.rounds[r] = state
        for k in selected:
            self.busy[k] = True
            self.working.append(env.process(self._participate(r, int(k), payloads, trained)))
        left = max(0.0, deadline_s - (env.now - start))
        waits = [state.closed] + ([env.timeout(left)] if math.isfinite(deadline_s) else [])
        yield simpy.AnyOf(env, waits)
        state.open = False
        fresh, stale = state.updates, self.buffer
        self.buffer = []
        yield from self._aggregate(r, fresh + stale)
        if fresh:
            self.recorder.metric(env.now, r + 1, "loss", np.mean([self._losses[(r, u.client)] for u in fresh]))
        loss, acc = self.model.evaluate(self.final_params(), self.data.x_test, self.data.y_test)
        self.recorder.metric(env.now, r + 1, "test_loss", loss)
        self.recorder.metric(env.now, r + 1, "test_accuracy", acc)
        self.round_rows.append(
            {
                "round": r, "start_s": start, "end_s": env.now, "duration_s": env.now - start,
                "deadline_s": deadline_s, "candidates": len(candidates), "selected": len(selected),
                "aggregated": len(fresh), "buffered_applied": len(stale),
                "trained": ",".join(self.names[li] for li in trained), "test_loss": loss, "test_accuracy": acc,
            }
        )  # fmt: skip

    def _candidates(self) -> Generator:
        """The ids of clients online and idle now; waits (no round is spent) while there are none."""
        while True:
            now = self.env.now
            ids = np.array([k for k in range(self.spec.clients) if not self.busy[k] and self.online_until(k, now) > now], int)
            if len(ids):
                return ids
            # until the next online window opens, or a working client finishes
            period = self.spec.client_hardware.availability.period
            wakes = [p for p in self.working if p.is_alive]
            if self.online_fraction.min() < 1:
                wakes.append(self.env.timeout(max(float(np.min((self.phase - now) % period)), 1e-9)))
            yield simpy.AnyOf(self.env, wakes)

    def _encode(self, r: int, trained: tuple[int, ...]) -> Generator:
        """The reduced model: every layer encoded with the codec (seed-frozen layers are not sent: None)."""
        payloads = []
        for li, layer in enumerate(self.master):
            if li not in trained and self.spec.reduction.frozen == "seed":
                payloads.append(None)
                continue
            yield from self.server.vector.elementwise(layer.size, COMPRESS_OPS, f"encode {self.names[li]}")
            payloads.append(self.codec.encode(layer, seed=self.seed, stream=stream_of(r, BROADCAST, li, DOWN, 0)))
        return payloads

    def _participate(self, r: int, k: int, payloads, trained: tuple[int, ...]) -> Generator:
        """Client k's part in round r: get the model, train, upload (or drop out, or fail)."""
        env, client = self.env, self.client(k)
        start, offline_at = env.now, self.online_until(k, env.now)
        for bank in (client.pbank, client.wbank):
            bank.reset_peak()  # peaks per participation
        client.begin(r)
        sends = []
        for li, payload in enumerate(payloads):
            if payload is not None:
                self.bytes_sent["down"] += payload.nbytes
                sends.append(env.process(self.cluster.send(self.server, client.device, payload, "down", layer=li)))
        row = {"round": r, "client": k, "start_s": start, "steps": 0, "samples": 0, "bytes_down": 0, "bytes_up": 0}
        row |= {"train_loss": np.nan, "detail": ""}
        losses = []
        outcome = "dropped"
        try:
            for li, payload in enumerate(payloads):
                if payload is None:
                    yield from client.rebuild(li, self.initial[li])
            received = []
            for _ in sends:  # take every message first: a client that fails leaves none in its inbox
                received.append((yield client.device.nic.inbox.get()))
            for message in received:
                row["bytes_down"] += message.nbytes
                li = message.meta["layer"]
                yield from client.land(li, message.payload, keep=self.uplink is not None and li in trained)
            steps = local_batches(len(client.y), self.spec.batch, self.spec.epochs, self.batch_rng(r, k))
            for idx in steps:
                if env.now >= offline_at:
                    break
                losses.append((yield from client.step(client.x[idx], client.y[idx], trained)))
                row["steps"] += 1
                row["samples"] += len(idx)
            else:
                if env.now < offline_at:
                    outcome = "sent"
                    row["bytes_up"] = yield from self._upload(r, client, trained, row["samples"])
        except OutOfMemory as err:
            outcome, row["detail"] = "failed", str(err)
        row.update(
            end_s=env.now,
            train_loss=float(np.mean(losses)) if losses else np.nan,
            peak_param_bytes=client.pbank.peak,
            peak_work_bytes=client.wbank.peak,
            **{name: float(v[k]) for name, v in self.factors.items()},
        )
        client.clear()
        self.busy[k] = False
        if outcome != "sent":
            row["outcome"] = outcome
            self.participations.append(row)
            self._resolve(self.rounds[r])
        else:
            self._sent_rows[(r, k)] = row

    def _upload(self, r: int, client: Client, trained: tuple[int, ...], samples: int) -> Generator:
        """Send the trained layers as stored (compressed), or their updates with the uplink codec;
        returns the bytes sent."""
        sent = 0
        sends = []
        for li in trained:
            if self.uplink is None:
                buffer = client.stored(li)
                yield from client.pbank.read(buffer.nbytes, f"read {self.names[li]} for upload")
            else:
                buffer = yield from client.update(li, self.uplink, self.spec.error_feedback)
            sent += buffer.nbytes
            meta = {"client": client.index, "round": r, "layer": li, "samples": samples, "layers": len(trained)}
            sends.append(self.env.process(self.cluster.send(client.device, self.server, buffer, "up", **meta)))
        self.bytes_sent["up"] += sent
        yield simpy.AllOf(self.env, sends)
        return sent

    # --- the server -------------------------------------------------------------------

    def _handle(self, server: Server, message: Message) -> Generator:
        """Land one uploaded layer; a client's update is complete when all its trained layers are in."""
        meta = message.meta
        r, k = meta["round"], meta["client"]
        yield from server.bank(self.spec.work_bank).write(message.nbytes, f"land c{k} {self.names[meta['layer']]}")
        update = self.pending.setdefault((r, k), Update(k, r, meta["samples"]))
        update.layers[meta["layer"]] = message.payload
        if len(update.layers) < meta["layers"]:
            return
        del self.pending[(r, k)]
        state = self.rounds[r]
        row = self._sent_rows.pop((r, k))
        if state.open:
            self._losses[(r, k)] = row["train_loss"]
            row["outcome"] = "aggregated"
            state.updates.append(update)
            self._resolve(state)
        else:
            row["outcome"] = "late"
            if self.spec.deadline.late == "buffer":
                self.buffer.append(update)
        self.participations.append(row)
        landed, self._landed = self._landed, self.env.event()
        landed.succeed()

    def _resolve(self, state: RoundState) -> None:
        """Count one selected client as reported, dropped or failed; close the round when it can."""
        state.resolved += 1
        if state.open and not state.closed.triggered:
            if len(state.updates) >= state.quorum or state.resolved == len(state.selected):
                state.closed.succeed()

    def _aggregate(self, r: int, updates: list[Update]) -> Generator:
        """Move each layer by the weighted mean change of the updates that carry it."""
        if not updates:
            return
        weights = self.aggregate_weights(
            np.array([u.samples for u in updates], float), np.array([r - u.round for u in updates], float)
        )
        for li in range(len(self.master)):
            carry = [i for i, u in enumerate(updates) if li in u.layers]
            if not carry:
                continue
            n = self.master[li].size
            yield from self.server.vector.elementwise(n * len(carry), DECOMPRESS_OPS + 2, f"aggregate {self.names[li]}")
            w = weights[carry] / weights[carry].sum()
            change = np.zeros(n, np.float64)
            for wi, i in zip(w, carry, strict=True):
                u = updates[i]
                if self.uplink is not None:
                    change += wi * self.uplink.decode(u.layers[li]).astype(np.float64)
                else:
                    change += wi * (self.codec.decode(u.layers[li]).astype(np.float64) - self.rounds[u.round].sent[li])
            self.master[li] = (self.master[li] + change).astype(np.float32)
            self.server.bank(self.spec.work_bank).allocate(f"global {self.names[li]}", self.master[li])

    # --- results ----------------------------------------------------------------------

    def final_params(self) -> list[tuple[np.ndarray, ...]]:
        """The global model as per-layer parameter tuples."""
        return [unflatten(self.master[li], self.shapes[li]) for li in range(len(self.master))]

    def local_work(self) -> tuple[int, int]:
        """Local steps and samples trained, over every client and round."""
        return sum(p["steps"] for p in self.participations), sum(p["samples"] for p in self.participations)

    @property
    def round_table(self) -> pd.DataFrame:
        """One row per round: times, deadline, clients selected and aggregated, test accuracy."""
        return pd.DataFrame(self.round_rows)

    @property
    def participation_table(self) -> pd.DataFrame:
        """One row per selected client per round: outcome, times, steps, bytes, peak memory, factors."""
        return pd.DataFrame(self.participations, columns=PARTICIPATION_COLUMNS).sort_values(["round", "client"], kind="stable")
