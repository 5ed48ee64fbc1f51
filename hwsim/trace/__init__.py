"""Probes that record what the hardware and systems did, as DataFrames; Chrome trace export."""

from hwsim.trace.chrome import to_chrome
from hwsim.trace.recorder import Recorder, Trace

__all__ = ["Recorder", "Trace", "to_chrome"]
