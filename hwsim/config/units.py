"""Quantities with units, as written in scenario files, parsed once into SI floats.

Kinds and the SI value they parse to:

| kind      | SI unit   | examples                                        |
|-----------|-----------|-------------------------------------------------|
| size      | bytes     | "512 B", "4 MiB", "1.5 GB", "64 kB", "8 bit"    |
| rate      | bytes/s   | "25 Gb/s", "25 Gbps", "3 GB/s", "100 MiB/s"     |
| time      | seconds   | "1.5 us", "20 ns", "2 ms", "1 s", "1.5 µs"      |
| frequency | Hz        | "1 GHz", "700 MHz"                              |
| flop_rate | FLOP/s    | "312 TFLOP/s", "19.5 TFLOPS"                    |
| event_rate| events/s  | "2000 /s", "2 k/s" (arrivals of a stream)       |

Decimal prefixes (k, M, G, T, P) are powers of 1000, binary ones (Ki, Mi, Gi, Ti, Pi)
powers of 1024. A lower-case "b" is a bit, an upper-case "B" a byte. A bare number
is never accepted where a unit is needed: "25" could be bits or bytes per second.
"""

from __future__ import annotations

import math
import re

_DECIMAL = {"": 1.0, "k": 1e3, "K": 1e3, "M": 1e6, "G": 1e9, "T": 1e12, "P": 1e15}
_BINARY = {"Ki": 2.0**10, "Mi": 2.0**20, "Gi": 2.0**30, "Ti": 2.0**40, "Pi": 2.0**50}
_TIME = {"s": 1.0, "ms": 1e-3, "us": 1e-6, "µs": 1e-6, "ns": 1e-9, "ps": 1e-12, "min": 60.0}

_NUMBER = re.compile(r"^\s*([-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?)\s*(\S+)\s*$")


_SMALL = {"m": 1e-3, "u": 1e-6, "µ": 1e-6, "n": 1e-9, "p": 1e-12, "f": 1e-15}


def _prefixed(table: dict[str, float], small: bool = False) -> dict[str, float]:
    """Every prefix in front of every base unit of `table` (with `small`: milli to femto too, not binary)."""
    units = {}
    for base, factor in table.items():
        for prefix, scale in ({**_DECIMAL, **_SMALL} if small else {**_DECIMAL, **_BINARY}).items():
            units[prefix + base] = scale * factor
    return units


_UNITS: dict[str, dict[str, float]] = {
    "size": _prefixed({"B": 1.0, "bit": 1 / 8}),
    "rate": _prefixed({"B/s": 1.0, "b/s": 1 / 8, "bps": 1 / 8, "Bps": 1.0}),
    "time": dict(_TIME),
    "frequency": {p + "Hz": s for p, s in _DECIMAL.items()},
    "flop_rate": {p + base: s for p, s in _DECIMAL.items() for base in ("FLOP/s", "FLOPS")},
    "event_rate": {p + "/s": s for p, s in _DECIMAL.items()},
    "energy": {**_prefixed({"J": 1.0}, small=True), **_prefixed({"Wh": 3600.0}, small=True)},
    "energy_per_byte": _prefixed({"J/B": 1.0, "J/bit": 8.0}, small=True),
    "power": _prefixed({"W": 1.0}, small=True),
}

EXAMPLES = {
    "size": "a size such as '4 MiB' or '512 kB'",
    "rate": "a rate such as '25 Gb/s' (bits) or '3 GB/s' (bytes)",
    "time": "a time such as '1.5 us' or '20 ns'",
    "frequency": "a frequency such as '1 GHz'",
    "flop_rate": "a FLOP rate such as '312 TFLOP/s'",
    "event_rate": "events per second such as '2000 /s' or '2 k/s'",
    "energy": "an energy such as '1.4 pJ' or '3 kWh'",
    "energy_per_byte": "an energy per byte or bit such as '13 pJ/bit' or '100 pJ/B'",
    "power": "a power such as '400 W' or '6.5 kW'",
}


class UnitError(ValueError):
    """A quantity that does not parse as the kind asked for; the message says what was expected."""


def parse_quantity(text: object, kind: str) -> float:
    """Parse `text` (e.g. "25 Gb/s") as a quantity of `kind`; return its value in SI units."""
    if kind not in _UNITS:
        raise KeyError(f"unknown quantity kind {kind!r}")
    if isinstance(text, bool) or not isinstance(text, str):
        raise UnitError(f"{EXAMPLES[kind]} (a number needs its unit, written as a string)")
    match = _NUMBER.match(text)
    if not match:
        raise UnitError(EXAMPLES[kind])
    number, unit = match.groups()
    factor = _UNITS[kind].get(unit)
    if factor is None:
        other = [k for k, table in _UNITS.items() if unit in table]
        hint = f" ('{unit}' is a unit of {other[0].replace('_', ' ')})" if other else ""
        raise UnitError(f"{EXAMPLES[kind]}{hint}")
    value = float(number) * factor
    if not math.isfinite(value):
        raise UnitError(f"{EXAMPLES[kind]} (a finite one)")
    return value


def format_quantity(value: float, kind: str) -> str:
    """A short human form of an SI value: 25e9/8 bytes/s -> '25 Gb/s'."""
    if kind == "rate":
        value, suffix = value * 8, "b/s"
    else:
        suffix = {
            "size": "B",
            "time": "s",
            "frequency": "Hz",
            "flop_rate": "FLOP/s",
            "event_rate": "/s",
            "energy": "J",
            "power": "W",
            "energy_per_byte": "J/B",
        }[kind]
    if kind == "time":
        if value == 0:
            return "0 s"
        for unit, scale in (("s", 1.0), ("ms", 1e-3), ("us", 1e-6), ("ns", 1e-9)):
            if abs(value) >= scale:
                return f"{value / scale:.4g} {unit}"
        return f"{value / 1e-12:.4g} ps"
    if kind == "size":
        for prefix, scale in (("Gi", 2.0**30), ("Mi", 2.0**20), ("Ki", 2.0**10)):
            if abs(value) >= scale:
                return f"{value / scale:.4g} {prefix}{suffix}"
        return f"{value:.4g} {suffix}"
    for prefix, scale in (("P", 1e15), ("T", 1e12), ("G", 1e9), ("M", 1e6), ("k", 1e3)):
        if abs(value) >= scale:
            return f"{value / scale:.4g} {prefix}{suffix}"
    if kind in ("energy", "power", "energy_per_byte") and value:
        for prefix, scale in (("", 1.0), ("m", 1e-3), ("u", 1e-6), ("n", 1e-9), ("p", 1e-12)):
            if abs(value) >= scale:
                return f"{value / scale:.4g} {prefix}{suffix}"
        return f"{value / 1e-15:.4g} f{suffix}"
    return f"{value:.4g} {suffix}"
