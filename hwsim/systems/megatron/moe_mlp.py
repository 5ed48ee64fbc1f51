"""Expert parallelism with real math: a mixture-of-experts MLP on e ranks (the `megatron` system with
`model.kind: mlp` and `model.moe`; `workloads.moe_mlp` has the math).

Each of the e ranks (`system.parallel.data` = `expert`) takes b / e of the step's b samples and holds the trunk,
the router and the output layer whole, and experts / e of the experts (rank q: experts q L .. q L + L - 1). A
step on rank k: the trunk and the router on its samples; **dispatch**, a real all-to-all of real arrays: to
each rank the hidden rows of its samples routed to that rank's experts, in expert order and then sample order;
each expert on the rows it received, from every rank in rank order, so an expert sees its rows in the order one
device would; **combine**, the outputs back the same way; the weighted sum, the output layer and the loss. The
backward sends the outputs' gradients to the experts and the rows' gradients back (two more all-to-alls); the
experts' gradients stay on their rank, the replicated layers' are averaged by a real all-reduce over the e ranks;
every rank applies SGD with momentum. The whole trains as one device running the same routing (to float32
rounding: the replicated gradients are sums split over ranks; a test holds it).

An all-to-all waits for every rank, then moves every rank's block to every other at once on the fabric
(`Fabric.transfer_group`: each pair a flow), each block its rows x hidden fp32 bytes; every GEMM runs on the
systolic array's cycle model at its shape.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np
import simpy

from hwsim.config.schema import Scenario
from hwsim.kernels import dense_forward, dense_input_grad, dense_weight_grad, relu_backward, relu_forward, sgd_momentum
from hwsim.network import Cluster
from hwsim.systems.megatron.checks import layout
from hwsim.systems.megatron.mlp import learning_metrics, when_all_arrive
from hwsim.systems.stages import UPDATE_OPS
from hwsim.systems.training import finite_loss, flatten, unflatten
from hwsim.workloads.data import BatchStream

Progress = Callable[[int, int], None]
REPLICATED = ("trunk", "router", "out")


class MegatronMoeMlp:
    """e expert-parallel ranks training a MoE MLP; `run()` is the SimPy process."""

    def __init__(self, scenario: Scenario, cluster: Cluster, model, data, rng: np.random.Generator, progress: Progress | None):
        self.spec = spec = scenario.system
        self.e = spec.parallel.data
        self.env, self.cluster, self.model, self.data, self.progress = cluster.env, cluster, model, data, progress
        self.place = layout(spec.parallel)
        self.ranks = list(range(self.e))
        self.devices = {k: cluster.add(self.place[(0, 0, k)], f"t0.p0.d{k}", scenario.hardware) for k in self.ranks}
        self.local = model.moe.experts // self.e  # experts per rank
        self.math = data is not None
        self.eval_every = scenario.run.eval_every
        self.seed = scenario.seed
        self.samples_per_step = spec.batch
        self.batches = BatchStream(len(data.y_train), spec.batch, rng) if self.math else None
        full = model.init_params(rng) if self.math else None
        self.start_params = full  # the model at step 0, and the first step's samples (what the tests rebuild)
        self.first_samples = None
        self.params = {k: self._share(full, k) for k in self.ranks} if self.math else None
        self.velocity = {k: self._zeros(self.params[k]) for k in self.ranks} if self.math else None
        self.codec, self.wire_bytes, self.a2a_bytes = None, 0.0, 0.0
        self.pending: dict[tuple, list] = {}
        self.losses: list[float] = []
        for k in self.ranks:  # weights, velocity and gradient of each rank's share, fp32
            bank = self.devices[k].bank(spec.bank)
            for name, elements in self._elements().items():
                for what in ("weights", "velocity", "grad"):
                    bank.allocate(f"{name}.{what}", nbytes=elements * 4)

    # --- shares -----------------------------------------------------------------------

    def _share(self, full: dict, k: int) -> dict:
        """Rank k's copy of the replicated layers and its own experts (copies: no two ranks share an array)."""
        mine = full["experts"][k * self.local : (k + 1) * self.local]
        return {
            "trunk": tuple(a.copy() for a in full["trunk"]),
            "router": full["router"].copy(),
            "experts": [tuple(a.copy() for a in e) for e in mine],
            "out": tuple(a.copy() for a in full["out"]),
        }

    @staticmethod
    def _zeros(share: dict) -> dict:
        return {
            "trunk": tuple(np.zeros_like(a) for a in share["trunk"]),
            "router": np.zeros_like(share["router"]),
            "experts": [tuple(np.zeros_like(a) for a in e) for e in share["experts"]],
            "out": tuple(np.zeros_like(a) for a in share["out"]),
        }

    def _elements(self) -> dict[str, int]:
        m, h, f = self.model, self.model.hidden, self.model.moe.width
        return {
            "trunk": m.spec.inputs * h + h,
            "router": h * m.moe.experts,
            "experts": self.local * (2 * h * f + f + h),
            "out": h * m.spec.classes + m.spec.classes,
        }

    def final_params(self) -> dict:
        """The whole model: rank 0's replicated layers and every rank's experts."""
        first = self.params[0]
        return {
            "trunk": first["trunk"],
            "router": first["router"],
            "experts": [e for k in self.ranks for e in self.params[k]["experts"]],
            "out": first["out"],
        }

    # --- the run ------------------------------------------------------------------------

    def run(self) -> Generator:
        for step in range(1, self.spec.steps + 1):
            start = self.env.now
            samples = self.batches.next() if self.math else None
            if step == 1:
                self.first_samples = samples
            yield simpy.AllOf(self.env, [self.env.process(self._rank(step, k, samples)) for k in self.ranks])
            self.cluster.recorder.metric(self.env.now, step, "step_time_s", self.env.now - start)
            if self.math:
                learning_metrics(self, step)
            if self.progress:
                self.progress(step, self.spec.steps)

    def _gemm(self, k: int, m: int, n: int, inner: int, label: str) -> Generator:
        if m and n and inner:
            yield from self.devices[k].systolic.gemm(m, n, inner, self.spec.precision, label)

    def _rank(self, step: int, k: int, samples) -> Generator:
        model, spec, local = self.model, self.spec, self.local
        h_width, classes = model.hidden, model.spec.classes
        b = spec.batch // self.e
        rows = samples[k * b : (k + 1) * b] if self.math else None
        x = self.data.x_train[rows] if self.math else None
        params = self.params[k] if self.math else None
        # forward: trunk, router
        yield from self._gemm(k, b, h_width, model.spec.inputs, "fwd trunk")
        yield from self._gemm(k, b, model.moe.experts, h_width, "fwd router")
        z0 = dense_forward(x, *params["trunk"]) if self.math else None
        h = relu_forward(z0) if self.math else None
        p, chosen, w = model.route(h, params["router"]) if self.math else (None, None, None)
        # dispatch: to rank q the rows of its experts' samples, expert by expert, sample by sample
        picks = {q: self._picks(chosen, q) for q in self.ranks} if self.math else {}
        send = {q: ((h[picks[q][0]], picks[q][2]) if self.math else None) for q in self.ranks}
        counts = {q: (len(picks[q][0]) if self.math else b * model.moe.top_k // self.e) for q in self.ranks}
        got = yield from self._all_to_all(("dispatch", step), k, send, counts, h_width)
        experts_in = {}  # local expert j: (its rows from every rank in rank order, where each block's rows start)
        for j in range(local):
            e = k * local + j
            parts = [got[src][0][got[src][1] == e] if self.math else None for src in self.ranks]
            n_rows = sum(len(a) for a in parts) if self.math else b * model.moe.top_k // local
            experts_in[j] = (np.concatenate(parts) if self.math else None, n_rows)
        outputs, saved = {}, {}
        for j, (rows_in, n_rows) in experts_in.items():
            yield from self._gemm(k, n_rows, model.moe.width, h_width, f"fwd expert {k * local + j}")
            yield from self._gemm(k, n_rows, h_width, model.moe.width, f"fwd expert {k * local + j}")
            if self.math:
                saved[j] = model.expert_forward(rows_in, params["experts"][j])
                outputs[j] = saved[j][1]
        back = self._split_back(got, outputs, k) if self.math else {src: None for src in self.ranks}
        counts_back = {src: (len(back[src]) if self.math else counts[src]) for src in self.ranks}
        returned = yield from self._all_to_all(("combine", step), k, back, counts_back, h_width)
        # the weighted sum, the output layer, the loss
        y_rows = self._place(returned, picks, chosen, h_width) if self.math else None
        mixed = (w[:, :, None] * y_rows).sum(axis=1).astype(np.float32) if self.math else None
        yield from self._gemm(k, b, classes, h_width, "fwd out")
        grads = {}
        if self.math:
            logits = dense_forward(mixed, *params["out"])
            loss, dlogits = model.loss(logits, self.data.y_train[rows])
            self.losses.append(finite_loss(loss, self.devices[k].name))
            grads["out"] = dense_weight_grad(mixed, dlogits)
            dmixed = dense_input_grad(params["out"][0], dlogits)
            dy_rows = (w[:, :, None] * dmixed[:, None, :]).astype(np.float32)
            dw = (dmixed[:, None, :] * y_rows).sum(axis=2)
        for g in ((classes, h_width, b), (b, h_width, classes)):
            yield from self._gemm(k, *g, "bwd out")
        # the outputs' gradients to the experts, the experts' backward, the rows' gradients back
        send = {q: (dy_rows[picks[q][0], picks[q][1]] if self.math else None) for q in self.ranks}
        got_grad = yield from self._all_to_all(("combine grad", step), k, send, counts, h_width)
        d_rows = {}
        expert_grads = []
        for j, (rows_in, n_rows) in experts_in.items():
            for g in ((n_rows, model.moe.width, h_width), (model.moe.width, h_width, n_rows)):
                yield from self._gemm(k, *g, f"bwd expert {k * local + j}")
            for g in ((n_rows, h_width, model.moe.width), (h_width, model.moe.width, n_rows)):
                yield from self._gemm(k, *g, f"bwd expert {k * local + j}")
            if self.math:
                e = k * local + j
                dy = np.concatenate([got_grad[src][got[src][1] == e] for src in self.ranks])
                pieces, d_rows[j] = model.expert_backward(rows_in, saved[j][0], params["experts"][j], dy)
                expert_grads.append(pieces)
        back = self._split_back(got, d_rows, k) if self.math else {src: None for src in self.ranks}
        returned = yield from self._all_to_all(("dispatch grad", step), k, back, counts_back, h_width)
        yield from self._gemm(k, h_width, model.moe.experts, b, "bwd router")
        yield from self._gemm(k, b, h_width, model.moe.experts, "bwd router")
        yield from self._gemm(k, model.spec.inputs, h_width, b, "bwd trunk")
        if self.math:
            dh_rows = self._place(returned, picks, chosen, h_width)
            grads["router"], dh = model.router_backward(h, params["router"], p, chosen, w, dw)
            dh = dh + dh_rows.sum(axis=1)
            grads["trunk"] = dense_weight_grad(x, relu_backward(dh.astype(np.float32), z0))
        yield from self._update(step, k, grads, expert_grads)

    def _update(self, step: int, k: int, grads: dict, expert_grads: list) -> Generator:
        """The replicated layers' gradients averaged over the e ranks (a real all-reduce each), the experts' taken
        as they are (divided by e: each rank's loss is the mean over its b / e samples), SGD with momentum."""
        elements = self._elements()
        scale = np.float32(1.0 / self.e)
        for name in REPLICATED:
            flat = flatten(grads[name] if name != "router" else (grads["router"],)) if self.math else None
            flat = yield from when_all_arrive(
                self, "all_reduce", ("grad", step, name), k, flat, elements[name], self.ranks,
                [self.place[(0, 0, r)] for r in self.ranks], "data", None, "all-reduce",
            )  # fmt: skip
            yield from self.devices[k].vector.elementwise(elements[name], UPDATE_OPS, f"update {name}")
            if not self.math:
                continue
            mean = flat * scale
            if name == "router":
                sgd_momentum(
                    self.params[k]["router"],
                    mean.reshape(self.params[k]["router"].shape),
                    self.velocity[k]["router"],
                    self.spec.lr,
                    self.spec.momentum,
                )
                continue
            arrays, velocity = self.params[k][name], self.velocity[k][name]
            for a, g, v in zip(arrays, unflatten(mean, [a.shape for a in arrays]), velocity, strict=True):
                sgd_momentum(a, g, v, self.spec.lr, self.spec.momentum)
        yield from self.devices[k].vector.elementwise(elements["experts"], UPDATE_OPS, "update experts")
        if self.math:
            for j, pieces in enumerate(expert_grads):
                for a, g, v in zip(self.params[k]["experts"][j], pieces, self.velocity[k]["experts"][j], strict=True):
                    sgd_momentum(a, (g * scale).astype(np.float32), v, self.spec.lr, self.spec.momentum)

    # --- all-to-all -----------------------------------------------------------------

    def _picks(self, chosen: np.ndarray, q: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(samples, slots, experts) this rank sends to rank q: the (sample, slot) pairs routed to q's experts,
        expert by expert, then sample by sample."""
        first = q * self.local
        samples, slots = np.nonzero((chosen >= first) & (chosen < first + self.local))
        experts = chosen[samples, slots]
        order = np.lexsort((samples, experts))
        return samples[order], slots[order], experts[order]

    def _split_back(self, got: dict, outputs: dict, k: int) -> dict:
        """Each source rank's rows of the local experts' `outputs`, in the order it sent them."""
        back, taken = {}, {j: 0 for j in outputs}
        for src in self.ranks:
            experts = got[src][1]
            block = np.empty((len(experts), self.model.hidden), np.float32)
            for j in outputs:
                mine = experts == k * self.local + j
                n = int(mine.sum())
                block[mine] = outputs[j][taken[j] : taken[j] + n]
                taken[j] += n
            back[src] = block
        return back

    def _place(self, returned: dict, picks: dict, chosen: np.ndarray, width: int) -> np.ndarray:
        """(samples, top_k, width): each (sample, slot)'s row from the rank that holds its expert."""
        out = np.zeros((*chosen.shape, width), np.float32)
        for q in self.ranks:
            samples, slots, _ = picks[q]
            out[samples, slots] = returned[q]
        return out

    def _all_to_all(self, key: tuple, k: int, send: dict, counts: dict, width: int) -> Generator:
        """A real all-to-all: once every rank has arrived with its payload for each rank (`send`, `counts[q]` rows
        of `width` fp32 to rank q), every block moves to its rank at once on the fabric; returns {source: its
        payload for this rank}."""
        held, done = self.pending.setdefault(key, [{}, self.env.event()])
        held[k] = (send, counts)
        if len(held) == len(self.ranks):
            moves = [
                (self.place[(0, 0, a)], self.place[(0, 0, q)], held[a][1][q] * width * 4)
                for a in self.ranks
                for q in self.ranks
                if a != q and held[a][1][q] > 0
            ]
            if moves:
                yield from self.cluster.fabric.transfer_group(moves, f"expert {key[0]}", 0.0)
            self.a2a_bytes += sum(m[2] for m in moves)
            del self.pending[key]
            done.succeed()
        else:
            yield done
        return {src: held[src][0][k] for src in self.ranks}

    # --- the report -------------------------------------------------------------------

    def summary(self, trace) -> dict:
        return {
            "megatron_moe_mlp": {
                "layout": {"expert": self.e, "experts": self.model.moe.experts, "top_k": self.model.moe.top_k},
                "all_to_all_bytes": self.a2a_bytes,
                "data_wire_bytes": self.wire_bytes,
            }
        }
