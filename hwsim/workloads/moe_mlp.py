"""A mixture-of-experts MLP with real math: inputs -> hidden (ReLU) -> a MoE layer -> classes.

The MoE layer (Shazeer et al. 2017, with Mixtral's top-k renormalization): a router r = h Wg, p =
softmax(r); each token goes to the top_k experts by p (ties to the lower index), weighted w = p_k / sum of its
top_k p; expert e computes y = relu(h W1_e + c1_e) W2_e + c2_e; the layer's output is sum_k w_k y_(e_k). Then
the output layer and softmax cross-entropy.

The functions below are each step of one rank's share, in float32 through the kernels; the 3D system
(`systems/megatron/moe_mlp.py`) runs them with the experts split over expert ranks and real all-to-alls
between. `reference_grads` is the whole forward and backward in float64 NumPy, for the tests.
"""

from __future__ import annotations

import numpy as np

from hwsim.config.schema import MlpSpec
from hwsim.kernels import dense_forward, dense_input_grad, dense_weight_grad, relu_backward, relu_forward
from hwsim.workloads.mlp import Mlp


class MoeMlp(Mlp):
    """`inputs -> hidden[0] -> MoE(experts of width moe.width) -> classes`. Its parameters: a dict with `trunk`
    (W0, b0), `router` Wg, `experts` [(W1, c1, W2, c2) per expert] and `out` (Wo, bo)."""

    def __init__(self, spec: MlpSpec):
        super().__init__(spec)
        self.moe = spec.moe
        self.hidden = spec.hidden[0]
        self.layer_names = ["trunk", "router", "experts", "out"]

    @property
    def num_params(self) -> int:
        h, f, n = self.hidden, self.moe.width, self.moe.experts
        return super().num_params + h * n + n * (2 * h * f + f + h)

    def init_params(self, rng: np.random.Generator) -> dict:
        """The trunk and the output layer as the MLP's init (`spec.init`), the router and each expert's two layers
        the same way, biases zero."""
        (w0, b0), (wo, bo) = super().init_params(rng)
        h, f = self.hidden, self.moe.width
        router = self._weights(rng, h, self.moe.experts).astype(np.float32)
        experts = [
            (
                self._weights(rng, h, f).astype(np.float32),
                np.zeros(f, np.float32),
                self._weights(rng, f, h).astype(np.float32),
                np.zeros(h, np.float32),
            )
            for _ in range(self.moe.experts)
        ]
        return {"trunk": (w0, b0), "router": router, "experts": experts, "out": (wo, bo)}

    # --- one rank's steps ---------------------------------------------------------------

    def route(self, h: np.ndarray, router: np.ndarray) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(p, chosen, w): the router's probabilities (tokens, experts), each token's top_k experts (tokens, k;
        the highest first, ties to the lower index) and their renormalized weights."""
        logits = h @ router
        logits -= logits.max(axis=1, keepdims=True)
        p = np.exp(logits)
        p /= p.sum(axis=1, keepdims=True)
        chosen = np.argsort(-p, axis=1, kind="stable")[:, : self.moe.top_k]
        top = np.take_along_axis(p, chosen, axis=1)
        return p, chosen, (top / top.sum(axis=1, keepdims=True)).astype(np.float32)

    @staticmethod
    def expert_forward(rows: np.ndarray, expert) -> tuple[np.ndarray, np.ndarray]:
        """(u, y) of one expert on its rows: u = rows W1 + c1, y = relu(u) W2 + c2."""
        w1, c1, w2, c2 = expert
        u = dense_forward(rows, w1, c1)
        return u, dense_forward(relu_forward(u), w2, c2)

    @staticmethod
    def expert_backward(rows: np.ndarray, u: np.ndarray, expert, dy: np.ndarray) -> tuple[list[np.ndarray], np.ndarray]:
        """([dW1, dc1, dW2, dc2], d rows) of one expert given dL/dy on its rows."""
        w1, _, w2, _ = expert
        dw2, dc2 = dense_weight_grad(relu_forward(u), dy)
        du = relu_backward(dense_input_grad(w2, dy), u)
        dw1, dc1 = dense_weight_grad(rows, du)
        return [dw1, dc1, dw2, dc2], dense_input_grad(w1, du)

    @staticmethod
    def router_backward(h: np.ndarray, router: np.ndarray, p, chosen, w, dw: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(dWg, dh) from dL/dw (tokens, k): through the renormalization (w_j = p_j / S) and the softmax."""
        top = np.take_along_axis(p, chosen, axis=1)
        total = top.sum(axis=1, keepdims=True)
        dtop = (dw - (w * dw).sum(axis=1, keepdims=True)) / total
        dp = np.zeros_like(p)
        np.put_along_axis(dp, chosen, dtop.astype(np.float32), axis=1)
        dlogits = (p * (dp - (p * dp).sum(axis=1, keepdims=True))).astype(np.float32)
        return (h.T @ dlogits).astype(np.float32), (dlogits @ router.T).astype(np.float32)

    # --- the whole model on one device ------------------------------------------------

    def forward(self, params: dict, x: np.ndarray) -> np.ndarray:
        """The logits of `x` on one device."""
        h = relu_forward(dense_forward(x, *params["trunk"]))
        _, chosen, w = self.route(h, params["router"])
        mixed = np.zeros_like(h)
        for e, expert in enumerate(params["experts"]):
            tokens, slots = np.nonzero(chosen == e)
            if len(tokens):
                _, y = self.expert_forward(h[tokens], expert)
                mixed[tokens] += w[tokens, slots][:, None] * y
        return dense_forward(mixed, *params["out"])

    def evaluate(self, params: dict, x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
        logits = self.forward(params, x)
        loss, _ = self.loss(logits, y)
        return float(loss), float(np.mean(np.argmax(logits, axis=1) == y))


def reference_grads(model: MoeMlp, params: dict, x: np.ndarray, labels: np.ndarray) -> tuple[float, dict]:
    """The mean cross-entropy and every parameter's gradient, in float64 NumPy from the definitions alone (no
    kernels), the routing as `MoeMlp.route` chooses it."""
    f64 = {
        "trunk": tuple(a.astype(np.float64) for a in params["trunk"]),
        "router": params["router"].astype(np.float64),
        "experts": [tuple(a.astype(np.float64) for a in e) for e in params["experts"]],
        "out": tuple(a.astype(np.float64) for a in params["out"]),
    }
    x = x.astype(np.float64)
    n = len(x)
    z0 = x @ f64["trunk"][0] + f64["trunk"][1]
    h = np.maximum(z0, 0)
    logits = h @ f64["router"]
    p = np.exp(logits - logits.max(axis=1, keepdims=True))
    p /= p.sum(axis=1, keepdims=True)
    _, chosen, _ = model.route(h.astype(np.float32), params["router"])
    top = np.take_along_axis(p, chosen, axis=1)
    w = top / top.sum(axis=1, keepdims=True)
    ys, us = {}, {}
    mixed = np.zeros_like(h)
    for e, (w1, c1, w2, c2) in enumerate(f64["experts"]):
        tokens, slots = np.nonzero(chosen == e)
        us[e] = h[tokens] @ w1 + c1
        ys[e] = np.maximum(us[e], 0) @ w2 + c2
        mixed[tokens] += w[tokens, slots][:, None] * ys[e]
    out = mixed @ f64["out"][0] + f64["out"][1]
    q = np.exp(out - out.max(axis=1, keepdims=True))
    q /= q.sum(axis=1, keepdims=True)
    loss = float(-np.mean(np.log(q[np.arange(n), labels])))
    dout = q.copy()
    dout[np.arange(n), labels] -= 1
    dout /= n
    grads = {"out": (mixed.T @ dout, dout.sum(axis=0))}
    dmixed = dout @ f64["out"][0].T
    dw = np.zeros_like(w)
    dh = np.zeros_like(h)
    experts = []
    for e, (w1, _, w2, _) in enumerate(f64["experts"]):
        tokens, slots = np.nonzero(chosen == e)
        dy = w[tokens, slots][:, None] * dmixed[tokens]
        dw[tokens, slots] = (dmixed[tokens] * ys[e]).sum(axis=1)
        a = np.maximum(us[e], 0)
        du = (dy @ w2.T) * (us[e] > 0)
        experts.append((h[tokens].T @ du, du.sum(axis=0), a.T @ dy, dy.sum(axis=0)))
        np.add.at(dh, tokens, du @ w1.T)
    dtop = (dw - (w * dw).sum(axis=1, keepdims=True)) / top.sum(axis=1, keepdims=True)
    dp = np.zeros_like(p)
    np.put_along_axis(dp, chosen, dtop, axis=1)
    dlogits = p * (dp - (p * dp).sum(axis=1, keepdims=True))
    grads["router"] = h.T @ dlogits
    dh += dlogits @ f64["router"].T
    dz0 = dh * (z0 > 0)
    grads["trunk"] = (x.T @ dz0, dz0.sum(axis=0))
    grads["experts"] = experts
    return loss, grads
