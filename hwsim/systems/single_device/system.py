"""One device trains with its parameters stored at low precision (mechanism M1 on one device).

Every step, the device's controller runs the ops of `training.LocalTrainer`: read and
decompress the stored parameters, forward, backward and update, re-compress and
store. Evaluation (test loss and accuracy) is an observer's measurement: it reads
the stored parameters and takes no simulated time.
"""

from __future__ import annotations

from collections.abc import Callable, Generator

import numpy as np

from hwsim.config.schema import Scenario
from hwsim.network import Cluster
from hwsim.systems.checks import check_batch, check_local_training
from hwsim.systems.training import LocalTrainer, Settings
from hwsim.workloads.data import Dataset

Progress = Callable[[int, int], None]


class SingleDevice:
    """The controller process of one device ("dev0"); `run()` is the SimPy process."""

    check = staticmethod(check_local_training)

    @staticmethod
    def npu_names(spec) -> list[str]:
        return ["dev0"]

    @staticmethod
    def check_samples(spec, train: int) -> None:
        check_batch(spec, train)

    def __init__(
        self,
        scenario: Scenario,
        cluster: Cluster,
        model,
        data: Dataset | None,
        rng: np.random.Generator,
        progress: Progress | None = None,
    ):
        self.spec = scenario.system
        self.eval_every = scenario.run.eval_every
        self.env = cluster.env
        self.device = cluster.add(0, "dev0", scenario.hardware)
        self.model = model
        self.data = data
        self.metric = cluster.recorder.metric
        self.progress = progress
        params = model.init_params(rng) if data is not None else None
        x, y = (data.x_train, data.y_train) if data is not None else (None, None)
        self.trainer = LocalTrainer(self.device, model, Settings.of(self.spec), x, y, rng)
        self.initial = params

    def run(self) -> Generator:
        self.trainer.store_initial(self.initial)
        for step in range(1, self.spec.steps + 1):
            start = self.env.now
            weights = yield from self.trainer.load()
            loss = yield from self.trainer.train(weights)
            yield from self.trainer.store(weights)
            self.metric(self.env.now, step, "step_time_s", self.env.now - start)
            if self.trainer.math:
                self.metric(self.env.now, step, "loss", loss)
                if step % self.eval_every == 0 or step == self.spec.steps:
                    self._evaluate(step)
            if self.progress:
                self.progress(step, self.spec.steps)

    def stored_params(self) -> list[tuple[np.ndarray, ...]]:
        """The parameters as the device holds them now, decoded to float32 (full mode)."""
        return self.trainer.stored_params()

    def _evaluate(self, step: int) -> None:
        loss, acc = self.model.evaluate(self.stored_params(), self.data.x_test, self.data.y_test)
        self.metric(self.env.now, step, "test_loss", loss)
        self.metric(self.env.now, step, "test_accuracy", acc)
