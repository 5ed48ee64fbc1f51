"""Tables, figures and the HTML report, from a run's DataFrames."""

from hwsim.report.summary import memory_table, phase_table, summarize, time_to_accuracy, unit_table
from hwsim.report.write import write_report

__all__ = ["memory_table", "phase_table", "summarize", "time_to_accuracy", "unit_table", "write_report"]
