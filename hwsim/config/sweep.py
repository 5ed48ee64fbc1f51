"""A sweep's definition: the scenario, what varies (grid axes, zip groups, ranges), and its points.

On the command line an axis is `--grid key=v1,v2,...` (a list), `--grid key=LOW..HIGH` or
`--grid "key=LOW..HIGH log"` (a range, drawn with `--samples N`), or `--zip key=v1,v2,...`
(every --zip axis varies together, value i with value i). A unit written once at the end
applies to bare numbers before it: `10,25,100 Gb/s`, `1..100 Gb/s`.

A sweep file is YAML with a `sweep` mapping:

    name: ps_bandwidth_bits
    description: ...
    sweep:
      scenario: compressed_ps_int8.yaml          # relative to this file
      overrides: {system.steps: 60}              # applied to every point
      grid: {hardware.nic.bandwidth: [1 Gb/s, 10 Gb/s]}
      zip:                                       # one group, or a list of groups
        system.uplink.name: [int8, int4]
        system.downlink.name: [int8, int4]
      samples: null                              # N: Latin hypercube instead of the full grid
      seed: 0                                    # of the sampling
      plots: {metric: sim_time_s, x: hardware.nic.bandwidth, by: system.uplink.name, pareto: [a, b]}

A range in a file is a mapping: `{low: 1 Gb/s, high: 100 Gb/s, log: true}`.
"""

from __future__ import annotations

import itertools
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from hwsim.config.load import parse_value, read_yaml
from hwsim.errors import NOTHING, ConfigError

PLOT_KEYS = ("metric", "x", "by", "pareto")
_NUMBER = r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?"
_QUANTITY = re.compile(rf"^\s*({_NUMBER})\s*([A-Za-z%/][A-Za-z0-9%/ ]*?)?\s*$")


@dataclass(frozen=True)
class Axis:
    """One varied key: a list of values, or a range [low, high] drawn by Latin hypercube sampling."""

    key: str
    values: tuple = ()
    low: float | None = None
    high: float | None = None
    unit: str = ""  # of a range, written after each drawn value ("Gb/s")
    integer: bool = False  # a range of whole numbers
    log: bool = False
    source: str = "--grid"

    @property
    def is_range(self) -> bool:
        return self.low is not None

    def endpoints(self) -> tuple:
        return (self._value(self.low), self._value(self.high))

    def draw(self, u: np.ndarray) -> list:
        """Values at quantiles `u` in [0, 1) of a list (equal shares) or a range (uniform, or uniform in log)."""
        if not self.is_range:
            return [self.values[int(q * len(self.values))] for q in u]
        if self.integer:
            lo, hi = int(self.low), int(self.high)
            if self.log:
                edges = np.exp(np.log(lo) + u * (np.log(hi + 1) - np.log(lo)))
                return [self._value(min(int(e), hi)) for e in edges]
            return [self._value(lo + int(q * (hi - lo + 1))) for q in u]
        if self.log:
            return [self._value(float(np.exp(np.log(self.low) + q * (np.log(self.high) - np.log(self.low))))) for q in u]
        return [self._value(float(self.low + q * (self.high - self.low))) for q in u]

    def _value(self, number: float) -> Any:
        if self.integer:
            return int(number)
        return f"{number:.6g} {self.unit}" if self.unit else float(f"{number:.6g}")


@dataclass(frozen=True)
class Sweep:
    """What a sweep runs: the scenario file, its fixed overrides, the axes, and how points are chosen."""

    name: str
    scenario: Path
    overrides: tuple[str, ...] = ()
    grid: tuple[Axis, ...] = ()
    zips: tuple[tuple[Axis, ...], ...] = ()
    samples: int | None = None
    seed: int = 0
    description: str = ""
    plots: dict = field(default_factory=dict)

    @property
    def axes(self) -> tuple[Axis, ...]:
        return self.grid + tuple(a for group in self.zips for a in group)


@dataclass(frozen=True)
class Point:
    """One run of the sweep: its number, its values by key (as written), and the overrides that make it."""

    index: int
    params: dict
    overrides: tuple[str, ...]


def override_text(key: str, value: Any) -> str:
    """A `key=value` override that reads back as `value`."""
    return f"{key}={value}" if isinstance(value, str) else f"{key}={json.dumps(value)}"


# --- the command line ----------------------------------------------------------------------


def parse_axis(text: str, option: str = "--grid") -> Axis:
    """`key=v1,v2,...` (a list) or `key=LOW..HIGH [log]` (a range)."""
    key, sep, rest = text.partition("=")
    key = key.strip()
    if not sep or not key or not rest.strip():
        raise ConfigError("command line", option, text, "key=v1,v2,... or key=LOW..HIGH (a range, with --samples)")
    source = f"{option} {key}"
    body = rest.strip()
    log = body.endswith(" log")
    if log:
        body = body[: -len(" log")].strip()
    if ".." in body and not body.startswith("["):
        low, _, high = body.partition("..")
        return _range(key, low, high, log, source)
    if log:
        raise ConfigError("command line", option, text, "'log' only after a range LOW..HIGH")
    return Axis(key, _shared_unit(_split(body)), source=source)


def _split(text: str) -> list[str]:
    """Split at commas outside brackets (so a value may be a list: [dense0,dense1])."""
    parts, depth, current = [], 0, ""
    for char in text:
        depth += char in "[{"
        depth -= char in "]}"
        if char == "," and depth == 0:
            parts.append(current.strip())
            current = ""
        else:
            current += char
    return [*parts, current.strip()]


def _shared_unit(items: list[str]) -> tuple:
    """Values from the written items; a unit after the last number applies to bare numbers before it."""
    last = _QUANTITY.match(items[-1])
    unit = last.group(2) if last and last.group(2) else ""
    values = []
    for item in items:
        if unit and re.fullmatch(_NUMBER, item.strip()):
            item = f"{item.strip()} {unit}"
        values.append(parse_value(item))
    return tuple(values)


def _range(key: str, low: Any, high: Any, log: bool, source: str) -> Axis:
    """A range axis from its written ends (numbers, or quantities in one unit)."""
    ends = []
    for end in (low, high):
        match = _QUANTITY.match(str(end))
        if isinstance(end, bool) or not match:
            raise ConfigError(source, key, end, "a range LOW..HIGH of two numbers, or two quantities in one unit")
        ends.append((match.group(1), match.group(2) or ""))
    (lo_text, lo_unit), (hi_text, hi_unit) = ends
    unit = hi_unit or lo_unit
    if lo_unit and hi_unit and lo_unit != hi_unit:
        raise ConfigError(source, key, f"{low}..{high}", f"both ends in one unit (got {lo_unit} and {hi_unit})")
    lo, hi = float(lo_text), float(hi_text)
    if not lo < hi:
        raise ConfigError(source, key, f"{low}..{high}", "a range with LOW < HIGH")
    if log and lo <= 0:
        raise ConfigError(source, key, f"{low}..{high}", "a positive LOW for a log range")
    integer = not unit and all(re.fullmatch(r"[-+]?\d+", t) for t in (lo_text, hi_text))
    return Axis(key, low=lo, high=hi, unit=unit, integer=integer, log=log, source=source)


# --- sweep files ---------------------------------------------------------------------------

_FILE_KEYS = ("scenario", "overrides", "grid", "zip", "samples", "seed", "plots")


def is_sweep_file(path: str | Path) -> bool:
    data = read_yaml(Path(path), "scenario or sweep file")
    return isinstance(data, dict) and "sweep" in data


def read_sweep_file(path: str | Path) -> Sweep:
    """A sweep file, every key checked (the error names the file and the key path)."""
    path = Path(path)
    where = str(path)
    data = read_yaml(path, "sweep file")
    body = data.get("sweep")
    if not isinstance(body, dict):
        raise ConfigError(where, "sweep", body, "a mapping with keys " + ", ".join(_FILE_KEYS))
    unknown = sorted(set(body) - set(_FILE_KEYS))
    if unknown:
        raise ConfigError(where, f"sweep.{unknown[0]}", body[unknown[0]], "one of the known keys: " + ", ".join(_FILE_KEYS))
    scenario = body.get("scenario")
    if not isinstance(scenario, str):
        raise ConfigError(where, "sweep.scenario", scenario if scenario is not None else NOTHING, "the scenario file to sweep")
    scenario_path = path.parent / scenario if (path.parent / scenario).is_file() else Path(scenario)
    overrides = body.get("overrides") or {}
    if not isinstance(overrides, dict):
        raise ConfigError(where, "sweep.overrides", overrides, "a mapping of dotted keys to values")
    grid = tuple(_file_axis(key, value, f"{where}: sweep.grid.{key}") for key, value in _mapping(body, "grid", where).items())
    zips = body.get("zip") or []
    groups = zips if isinstance(zips, list) else [zips]
    zip_axes = []
    for i, group in enumerate(groups):
        name = f"sweep.zip[{i}]" if isinstance(zips, list) else "sweep.zip"
        if not isinstance(group, dict) or not group:
            raise ConfigError(where, name, group, "a mapping of dotted keys to lists of values")
        zip_axes.append(tuple(_file_axis(k, v, f"{where}: {name}.{k}", ranges=False) for k, v in group.items()))
    plots = _mapping(body, "plots", where)
    for key in plots:
        if key not in PLOT_KEYS:
            raise ConfigError(where, f"sweep.plots.{key}", plots[key], "one of the known keys: " + ", ".join(PLOT_KEYS))
    sweep = Sweep(
        name=str(data.get("name") or path.stem),
        scenario=scenario_path,
        overrides=tuple(override_text(str(k), v) for k, v in overrides.items()),
        grid=grid,
        zips=tuple(zip_axes),
        samples=_whole(body.get("samples"), where, "sweep.samples", optional=True),
        seed=_whole(body.get("seed", 0), where, "sweep.seed"),
        description=" ".join(str(data.get("description", "")).split()),
        plots=dict(plots),
    )
    check_sweep(sweep, where)
    return sweep


def _mapping(body: dict, key: str, where: str) -> dict:
    value = body.get(key) or {}
    if not isinstance(value, dict):
        raise ConfigError(where, f"sweep.{key}", value, "a mapping")
    return value


def _whole(value: Any, where: str, key: str, optional: bool = False) -> int | None:
    if value is None and optional:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or value < (1 if optional else 0):
        raise ConfigError(where, key, value, "a whole number" + (" of at least 1" if optional else ""))
    return value


def _file_axis(key: str, value: Any, source: str, ranges: bool = True) -> Axis:
    if isinstance(value, dict) and ranges:
        extra = sorted(set(value) - {"low", "high", "log"})
        if extra or "low" not in value or "high" not in value:
            raise ConfigError(source, key, value, "a range {low: ..., high: ..., log: false}")
        return _range(key, value["low"], value["high"], bool(value.get("log", False)), source)
    if not isinstance(value, list) or not value:
        raise ConfigError(
            source, key, value, "a non-empty list of values" + (" or a range {low: ..., high: ...}" if ranges else "")
        )
    return Axis(key, tuple(value), source=source)


# --- checks and points ---------------------------------------------------------------------


def check_sweep(sweep: Sweep, where: str = "command line") -> None:
    """What the sweep itself must satisfy (each value is checked against the scenario elsewhere)."""
    keys = [a.key for a in sweep.axes]
    twice = sorted({k for k in keys if keys.count(k) > 1})
    if twice:
        raise ConfigError(where, twice[0], NOTHING, "each key varied by one axis only (it is given twice)")
    if not keys:
        raise ConfigError(where, "--grid", NOTHING, "at least one --grid or --zip axis (key=v1,v2,...)")
    for group in sweep.zips:
        lengths = {a.key: len(a.values) for a in group}
        if len(set(lengths.values())) > 1:
            shown = ", ".join(f"{k} has {n}" for k, n in lengths.items())
            raise ConfigError(group[0].source, group[0].key, NOTHING, f"zipped axes of one length ({shown} values)")
    zipped_range = [a for group in sweep.zips for a in group if a.is_range]
    if zipped_range:
        raise ConfigError(
            zipped_range[0].source, zipped_range[0].key, NOTHING, "a list of values (a zipped axis cannot be a range)"
        )
    ranged = [a for a in sweep.grid if a.is_range]
    if ranged and sweep.samples is None:
        raise ConfigError(ranged[0].source, ranged[0].key, NOTHING, "--samples N with a range (LOW..HIGH is drawn, not listed)")


def points(sweep: Sweep) -> list[Point]:
    """Every point: the full grid (first axis outermost, zip groups after the grid), or with
    `samples` a Latin hypercube of that many points over all axes (a zip group counts as one)."""
    dims = [(a,) for a in sweep.grid] + list(sweep.zips)  # each dimension: the axes that vary together
    if sweep.samples is None:
        combos = itertools.product(*[range(len(d[0].values)) for d in dims])
        rows = [{a.key: a.values[i] for d, i in zip(dims, combo, strict=True) for a in d} for combo in combos]
    else:
        rng = np.random.default_rng(sweep.seed)
        n = sweep.samples
        rows = [{} for _ in range(n)]
        for d in dims:
            u = (rng.permutation(n) + rng.random(n)) / n  # one sample in each of n equal strata
            if len(d) == 1:
                drawn = [{d[0].key: v} for v in d[0].draw(u)]
            else:  # a zip group: draw which column of the group
                drawn = [{a.key: a.values[int(q * len(a.values))] for a in d} for q in u]
            for row, values in zip(rows, drawn, strict=True):
                row.update(values)
    return [Point(i, row, sweep.overrides + tuple(override_text(k, v) for k, v in row.items())) for i, row in enumerate(rows)]


def sweep_from(
    path: str | Path,
    overrides: list[str] = (),
    grid: list[str] = (),
    zipped: list[str] = (),
    samples: int | None = None,
    seed: int | None = None,
) -> Sweep:
    """The sweep the command line asks for: a sweep file or a scenario file, plus --grid axes (one
    on a key the file varies replaces it), a --zip group, overrides, --samples and --seed."""
    path = Path(path)
    base = read_sweep_file(path) if is_sweep_file(path) else Sweep(name=path.stem, scenario=path)
    axes = [parse_axis(text) for text in grid]
    group = tuple(parse_axis(text, "--zip") for text in zipped)
    given = {a.key for a in axes} | {a.key for a in group}
    kept_zips = tuple(g for g in base.zips if not given & {a.key for a in g})
    if samples is not None and samples < 1:
        raise ConfigError("command line", "--samples", samples, "a whole number of at least 1")
    sweep = Sweep(
        name=base.name,
        scenario=base.scenario,
        overrides=base.overrides + tuple(overrides),
        grid=tuple(a for a in base.grid if a.key not in given) + tuple(axes),
        zips=kept_zips + ((group,) if group else ()),
        samples=samples if samples is not None else base.samples,
        seed=seed if seed is not None else base.seed,
        description=base.description,
        plots=base.plots,
    )
    check_sweep(sweep)
    return sweep
