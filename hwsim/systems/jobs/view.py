"""What a placed job's system sees of the shared cluster: its ranks on the NPUs it was given, its names,
metrics and collectives under its own name, the one fabric every job shares."""

from __future__ import annotations

from hwsim.network import Cluster


class JobRecorder:
    """The cluster's recorder, with the job's name in front of its metrics and collectives (`job.step_time_s`)."""

    def __init__(self, recorder, job: str):
        self._recorder, self.job = recorder, job

    def metric(self, time_s: float, step: int, name: str, value: float) -> None:
        self._recorder.metric(time_s, step, f"{self.job}.{name}", value)

    def collective(self, name: str, op: str, algorithm: str, nbytes: int, start_s: float, end_s: float) -> None:
        self._recorder.collective(f"{self.job}: {name}", op, algorithm, nbytes, start_s, end_s)

    def __getattr__(self, name: str):
        return getattr(self._recorder, name)


class JobView:
    """A `Cluster` as job `job` sees it: its rank r is NPU `placement[r]` (`add`, and `placement` for its
    collectives' members), its devices and transports named `job.<name>`; the environment, fabric and
    topology are the cluster's."""

    def __init__(self, cluster: Cluster, job: str, placement: list[int], account: int = 0):
        self.cluster, self.job, self.placement = cluster, job, list(placement)
        self.account = account  # what the compiled engine counts the job's bytes on each link under
        self.env, self.fabric, self.topology = cluster.env, cluster.fabric, cluster.topology
        self.shared = cluster.shared  # one compiled engine for every job on the fabric
        self.hardware, self.precision = cluster.hardware, cluster.precision
        self.recorder = JobRecorder(cluster.recorder, job)

    def add(self, rank: int, name: str, hardware, link_factor: float = 1.0):
        return self.cluster.add(self.placement[rank], f"{self.job}.{name}", hardware, link_factor)

    def transport(self, tag: str, name_of=None, in_order: bool = False):
        named = None if name_of is None else (lambda npu: f"{self.job}.{name_of(npu)}")
        return self.cluster.transport(f"{self.job}.{tag}", named, in_order)

    def send(self, src, dst, payload, tag: str = "", **meta):
        return self.cluster.send(src, dst, payload, tag, **meta)

    @property
    def devices(self):
        return self.cluster.devices

    @property
    def npu(self):
        return self.cluster.npu

    def unloaded(self, a: int, b: int, nbytes: float, overhead: float | None = None) -> float:
        return self.cluster.unloaded(self.placement[a], self.placement[b], nbytes, overhead)
