"""Scenario files: schema, units, YAML loading with presets and overrides."""

from hwsim.config.fields import json_schema
from hwsim.config.load import load_scenario, resolved_dict
from hwsim.config.schema import Scenario
from hwsim.config.units import format_quantity, parse_quantity

__all__ = ["Scenario", "format_quantity", "json_schema", "load_scenario", "parse_quantity", "resolved_dict"]
