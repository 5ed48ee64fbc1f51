"""Shared pieces of the schema: the frozen-dataclass decorator and the precision names."""

from __future__ import annotations

from dataclasses import dataclass

schema = dataclass(frozen=True, kw_only=True)

PRECISIONS = ("fp32", "bf16", "fp16", "int8", "int4")
BANK_PRECISIONS = (*PRECISIONS, "int2")
"""What a memory bank may store: the compute precisions, and 2-bit storage."""
DATAFLOWS = ("output_stationary", "weight_stationary", "input_stationary")
