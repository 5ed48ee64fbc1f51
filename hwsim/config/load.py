"""Loading scenario files: YAML, hardware presets and models by name, dotted overrides.

Order of resolution: read the scenario; apply overrides that replace `hardware` or
`model` as a whole; resolve those references (a name, a path, or a mapping with a
`base` to start from); apply the remaining overrides; check everything against the
schema. Every error names the file (or the override) it came from.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

from hwsim.config.fields import build, to_plain
from hwsim.config.schema import Scenario
from hwsim.errors import NOTHING, ConfigError

PRESET_DIR = Path(__file__).parent / "presets"
FRAMEWORK_DIR = Path(__file__).parent / "frameworks"
DEFAULT_FRAMEWORK = "megatron-2022"
"""A Megatron system's framework profile when the scenario names none."""
FRAMEWORK_KEY = "system.framework"
PROJECT_ROOT = Path(__file__).resolve().parents[2]
"""The checkout the package runs from (an editable install); it holds models/ and scenarios/."""

_REFERENCES = {"hardware": "hardware preset", "model": "model"}


def read_yaml(path: Path, what: str = "file") -> Any:
    """Parse a YAML file with the safe loader; a missing file or bad syntax is a ConfigError."""
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(str(path), "", NOTHING, f"an existing {what} (no such file)") from None
    except OSError as err:
        raise ConfigError(str(path), "", NOTHING, f"a readable {what} ({err.strerror})") from None
    except UnicodeDecodeError as err:
        line = err.object[: err.start].count(b"\n") + 1
        raise ConfigError(
            f"{path}:{line}", "", NOTHING, f"a {what} in UTF-8 text (byte {err.start} is {err.object[err.start]:#04x})"
        ) from None
    try:
        return yaml.load(text, Loader=UniqueKeyLoader)
    except DuplicateKey as err:
        raise ConfigError(f"{path}:{err.line}", err.key, NOTHING, f"each key once (it is also set on line {err.first})") from None
    except TooDeep as err:
        raise ConfigError(f"{path}:{err.line}", "", NOTHING, f"a YAML document nested at most {NESTING} levels deep") from None
    except RecursionError:  # a fallback: the loader counts levels itself
        raise ConfigError(str(path), "", NOTHING, f"a YAML document nested at most {NESTING} levels deep") from None
    except TooManyAliasNodes as err:
        raise ConfigError(
            str(path), "", NOTHING, f"a YAML document whose aliases expand to at most {ALIAS_NODES:,} nodes ({err.problem})"
        ) from None
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else str(path)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(where, "", NOTHING, f"valid YAML ({problem})") from None


class DuplicateKey(yaml.YAMLError):
    """A mapping in a YAML file that sets one key twice."""

    def __init__(self, key: str, first: int, line: int):
        super().__init__(f"duplicate key {key!r}")
        self.key, self.first, self.line = key, first, line


NESTING = 100
"""The most levels of lists and mappings inside one another a YAML document may have (PyYAML's composer
recurses once per level: 1,000 levels end in a RecursionError)."""
ALIAS_NODES = 100_000
"""The most nodes aliases (`*name`) may add to a YAML document when expanded: a "billion laughs" of nine
levels of nine aliases expands to billions, which a value's checks, copies and error messages would walk."""


class TooDeep(yaml.YAMLError):
    """A YAML document nested more than NESTING levels deep."""

    def __init__(self, line: int):
        super().__init__(f"nested more than {NESTING} levels deep")
        self.line = line


class TooManyAliasNodes(yaml.YAMLError):
    """A YAML document whose aliases expand to more than ALIAS_NODES nodes, or refer to themselves."""

    def __init__(self, problem: str):
        super().__init__(problem)
        self.problem = problem


_SafeLoader = yaml.CSafeLoader if getattr(yaml, "__with_libyaml__", False) else yaml.SafeLoader
"""libyaml's parser where PyYAML has it (it parses about ten times faster: `hwsim list` reads some 60 files),
else PyYAML's own."""


class BoundedLoader(_SafeLoader):
    """PyYAML's safe loader, refusing a document nested more than NESTING levels, or whose aliases expand
    to more than ALIAS_NODES nodes (counted on the node graph, without expanding it), or to themselves.
    Nesting is counted as the node graph is composed (PyYAML's Python parser) and again on the composed
    graph (libyaml's parser, which composes in C)."""

    _depth = 0

    def compose_node(self, parent, index):
        self._depth += 1
        try:
            if self._depth > NESTING:
                raise TooDeep(self.peek_event().start_mark.line + 1)
            return super().compose_node(parent, index)
        finally:
            self._depth -= 1

    def construct_document(self, node):
        sizes: dict[int, int] = {}
        expanded = _expanded_size(node, sizes, set(), 1)
        if expanded - len(sizes) > ALIAS_NODES:
            raise TooManyAliasNodes(f"its {len(sizes):,} nodes expand to {expanded:,}")
        return super().construct_document(node)


def _expanded_size(node, sizes: dict[int, int], open_: set[int], depth: int) -> int:
    """How many nodes `node` (at nesting level `depth`) is with every alias in it expanded (`sizes`: the
    nodes counted so far); TooDeep past NESTING levels."""
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise TooManyAliasNodes("an alias refers to a list or mapping it is inside")
    if depth > NESTING:
        raise TooDeep(node.start_mark.line + 1)
    open_.add(id(node))
    total = 1
    if isinstance(node, yaml.SequenceNode):
        total += sum(_expanded_size(child, sizes, open_, depth + 1) for child in node.value)
    elif isinstance(node, yaml.MappingNode):
        total += sum(
            _expanded_size(k, sizes, open_, depth + 1) + _expanded_size(v, sizes, open_, depth + 1) for k, v in node.value
        )
    open_.discard(id(node))
    sizes[id(node)] = total
    return total


class UniqueKeyLoader(BoundedLoader):
    """The bounded safe loader, refusing a mapping that sets a key twice (plain YAML keeps the last)."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict = {}
            for key_node, _ in node.value:
                if key_node.tag == "tag:yaml.org,2002:merge":
                    continue
                key = self.construct_object(key_node, deep=deep)
                try:
                    first = seen.setdefault(key, key_node.start_mark.line + 1)
                except TypeError:  # an unhashable key: the safe loader says so itself
                    continue
                if first != key_node.start_mark.line + 1:
                    raise DuplicateKey(str(key), first, key_node.start_mark.line + 1)
        return super().construct_mapping(node, deep)


def load_scenario(path: str | Path, overrides: list[str] | tuple[str, ...] = (), seed: int | None = None) -> Scenario:
    """Load, resolve and check a scenario file; `overrides` are "dotted.key=value" strings."""
    path = Path(path)
    raw, parsed, scenario_keys, sources = _resolve_file(path, overrides, seed)
    try:
        return build(Scenario, raw, "", str(path))
    except ConfigError as err:
        raise ConfigError(_origin(err.key, parsed, scenario_keys, sources, path), err.key, err.got, err.expected) from None


def resolve_raw(path: str | Path, overrides: list[str] | tuple[str, ...] = ()) -> dict:
    """The scenario as plain YAML data with presets, models and overrides merged in (not yet checked)."""
    return _resolve_file(Path(path), overrides, None)[0]


def _resolve_file(path: Path, overrides, seed: int | None) -> tuple[dict, list, dict, dict]:
    raw = read_yaml(path, "scenario file")
    if not isinstance(raw, dict):
        raise ConfigError(str(path), "", raw, "a mapping with keys name, hardware, model, system")
    if "sweep" in raw:
        raise ConfigError(
            str(path), "sweep", NOTHING, "a scenario file; this is a sweep file, run it with: hwsim sweep " + str(path)
        )
    parsed = [_parse_override(text) for text in overrides]
    if seed is not None:
        parsed.append(("seed", int(seed), f"--seed {seed}"))
    scenario_keys = copy.deepcopy(raw)
    whole = [o for o in parsed if o[0] in _REFERENCES]
    for key, value, _ in whole:
        raw[key] = value
    sources = {}
    for key, what in _REFERENCES.items():
        if key in raw:
            where = next((f"command-line override {t}" for k, _, t in whole if k == key), str(path))
            raw[key], sources[key] = _resolve(raw[key], what, path.parent, where, key)
    inside = [o for o in parsed if o[0].startswith(FRAMEWORK_KEY + ".")]  # set once the profile is read
    for key, value, text in parsed:
        if key not in _REFERENCES and not key.startswith(FRAMEWORK_KEY + "."):
            _set(raw, key, value, text)
    _resolve_framework(raw, path.parent, str(path))
    for key, value, text in inside:
        _set(raw, key, value, text)
    _network_kind(raw)
    _merge_hardware_changes(raw, path.parent, str(path))
    _resolve_jobs(raw, path.parent, str(path))
    _resolve_trace(raw, path.parent)
    _resolve_traces(raw, path.parent)
    return raw, parsed, scenario_keys, sources


def _network_kind(raw: dict) -> None:
    """A fabric needs no `kind` when it is a list of dimensions (`hardware.network: {dims: [...]}`, as
    ASTRA-sim writes one), or the default single switch (`{model: store_and_forward}`)."""
    network = raw.get("hardware", {}).get("network") if isinstance(raw.get("hardware"), dict) else None
    if isinstance(network, dict) and "kind" not in network:
        network["kind"] = "dims" if "dims" in network else "switch"


def _resolve_framework(raw: dict, base_dir: Path, where: str, key: str = FRAMEWORK_KEY) -> None:
    """A Megatron system's framework (`raw`: the scenario, or a job, with its `system`): a profile name or
    {base: NAME, ...} read from its file (default DEFAULT_FRAMEWORK), or the switches as written."""
    system = raw.get("system")
    if not isinstance(system, dict) or system.get("kind") != "megatron":
        return
    value = system.get("framework", DEFAULT_FRAMEWORK)
    if isinstance(value, str) or (isinstance(value, dict) and "base" in value):
        value = _resolve(value, "framework profile", base_dir, where, key)[0]
    system["framework"] = value


def _resolve_jobs(raw: dict, base_dir: Path, where: str) -> None:
    """A jobs system's models: each job's name, path or mapping with `base` read into a mapping; none: the
    scenario's model. A Megatron job's framework profile is read as a Megatron scenario's is."""
    system = raw.get("system")
    if not isinstance(system, dict) or system.get("kind") != "jobs" or not isinstance(system.get("jobs"), list):
        return
    for i, job in enumerate(system["jobs"]):
        if not isinstance(job, dict):
            continue
        _resolve_framework(job, base_dir, where, f"system.jobs[{i}].system.framework")
        model = job.get("model")
        if model is None:
            job["model"] = copy.deepcopy(raw.get("model"))
        else:
            job["model"] = _resolve(model, "model", base_dir, where, f"system.jobs[{i}].model")[0]
            _resolve_traces(job, base_dir)  # a recorded model's files: relative to the scenario file


def _resolve_trace(raw: dict, base_dir: Path) -> None:
    """An online stream's trace file, relative to the scenario file when it is there."""
    stream = raw.get("system", {}).get("stream") if isinstance(raw.get("system"), dict) else None
    trace = stream.get("trace") if isinstance(stream, dict) else None
    if isinstance(trace, str) and not Path(trace).is_absolute() and (base_dir / trace).is_file():
        stream["trace"] = str(base_dir / trace)


def _resolve_traces(raw: dict, base_dir: Path) -> None:
    """A Chakra model's trace prefix and groups file, a torch trace's file: relative to the scenario file."""
    model = raw.get("model")
    key = {"chakra": "traces", "torch_trace": "path"}.get(model.get("kind")) if isinstance(model, dict) else None
    if key is not None:
        traces = model.get(key)
        if isinstance(traces, str) and not Path(traces).is_absolute():
            model[key] = str(base_dir / traces)
        groups = model.get("groups") if key == "traces" else None
        if isinstance(groups, str) and not Path(groups).is_absolute():
            model["groups"] = str(base_dir / groups)


def _merge_hardware_changes(raw: dict, base_dir: Path, where: str) -> None:
    """Turn system.worker_hardware entries and system.server_hardware (and an online system's
    prediction_hardware and training_hardware, a federated system's client_hardware.hardware:
    changes to the scenario's hardware, or a preset name / mapping with `base`) into full hardware mappings,
    and a bubble filler's model (system.fill.model, null: the scenario's model) into a mapping."""
    system, hardware = raw.get("system"), raw.get("hardware")
    fill = system.get("fill") if isinstance(system, dict) else None
    if isinstance(fill, dict):
        model = fill.get("model")
        if model is None:
            fill["model"] = copy.deepcopy(raw.get("model"))
        else:
            fill["model"] = _resolve(model, "model", base_dir, where, "system.fill.model")[0]
    if not isinstance(system, dict) or not isinstance(hardware, dict):
        return

    def full(value: Any, key: str) -> Any:
        if isinstance(value, str) or (isinstance(value, dict) and "base" in value):
            return _resolve(value, "hardware preset", base_dir, where, key)[0]
        return _merge(hardware, value) if isinstance(value, dict) else value

    workers = system.get("worker_hardware")
    if isinstance(workers, dict):
        system["worker_hardware"] = {k: full(v, f"system.worker_hardware.{k}") for k, v in workers.items()}
    for key in ("server_hardware", "prediction_hardware", "training_hardware"):
        if system.get(key) is not None:
            system[key] = full(system[key], f"system.{key}")
    clients = system.get("client_hardware")
    if isinstance(clients, dict) and clients.get("hardware") is not None:
        clients["hardware"] = full(clients["hardware"], "system.client_hardware.hardware")


def resolved_dict(scenario: Scenario) -> dict:
    """The fully resolved scenario as plain data (what a run's provenance records)."""
    return to_plain(scenario)


def find_reference(name: str, what: str, base_dir: Path, where: str = "", key: str = "") -> Path:
    """The file a hardware preset or model name (or path) refers to; `where`/`key` name the reference."""
    as_path = Path(name)
    candidates = [base_dir / as_path, Path.cwd() / as_path] if as_path.suffix in (".yaml", ".yml") else []
    if what == "model":
        dirs = [base_dir, base_dir.parent / "models", Path.cwd() / "models", PROJECT_ROOT / "models"]
    elif what == "framework profile":
        dirs = [base_dir, FRAMEWORK_DIR]
    else:
        dirs = [base_dir, PRESET_DIR]
    candidates += [d / f"{name}.yaml" for d in dirs]
    for candidate in candidates:
        try:
            if candidate.is_file():
                return candidate
        except OSError:  # a name too long for the file system, or otherwise not a file name
            continue
    known = sorted(
        {p.stem for d in dirs if d.is_dir() and (d.name in ("models", "presets", "frameworks")) for p in d.glob("*.yaml")}
    )
    raise ConfigError(
        where or str(base_dir / name), key, name, f"a {what} file path or one of the names: {', '.join(known) or 'none found'}"
    )


def _resolve(value: Any, what: str, base_dir: Path, where: str, key: str) -> tuple[Any, Path | None]:
    """A reference (name, path, or mapping with 'base') turned into a full mapping."""
    if isinstance(value, str):
        file = find_reference(value, what, base_dir, where, key)
        data = read_yaml(file, f"{what} file")
        if not isinstance(data, dict):
            raise ConfigError(str(file), "", data, f"a mapping of {what} settings")
        if "base" in data:
            top = key  # the key the scenario names it by (a base of a base: the same key)
            while top.endswith(".base"):
                top = top.removesuffix(".base")
            raise ConfigError(
                str(file),
                f"{top}.base",
                data["base"],
                f"no base in a {what} file (base is followed only where a scenario names a {what}, as "
                f"{top}: {{base: NAME, ...}}; a {what} file holds all its settings)",
            )
        return data, file
    if isinstance(value, dict) and "base" in value:
        if not isinstance(value["base"], (str, dict)):
            raise ConfigError(where, key + ".base", value["base"], f"a {what} name, a path, or a mapping of {what} settings")
        base, file = _resolve(value["base"], what, base_dir, where, key + ".base")
        own = {k: v for k, v in value.items() if k != "base"}
        if what == "hardware preset" and _replaces_network(base.get("network"), own.get("network")):
            base = {k: v for k, v in base.items() if k != "network"}
        return _merge(base, own), file
    return value, None


def _network_topology(network: dict) -> str:
    """The topology a `hardware.network` mapping names: its `kind`, else dims (with `dims`), else switch."""
    return network.get("kind") or ("dims" if "dims" in network else "switch")


def _replaces_network(base: Any, own: Any) -> bool:
    """Whether a scenario's `hardware.network` replaces its base's whole instead of merging into it: when
    it names a topology (`kind`, or `dims`) other than the base's."""
    if not isinstance(base, dict) or not isinstance(own, dict) or not ("kind" in own or "dims" in own):
        return False
    return _network_topology(own) != _network_topology(base)


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        if isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = _merge(out[key], value)
        else:
            out[key] = value
    return out


def _parse_override(text: str) -> tuple[str, Any, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise ConfigError("command line", text, NOTHING, "an override of the form dotted.key=value")
    return key.strip(), parse_value(value), text


def parse_value(text: str) -> Any:
    """A value written on the command line: YAML (numbers, true/false, null, [lists]), else the text;
    `1e-3` is a number (plain YAML reads it as a string)."""
    try:
        parsed = yaml.load(text, Loader=BoundedLoader) if text.strip() else ""
    except yaml.YAMLError:
        return text
    if isinstance(parsed, str):
        try:
            return float(parsed) if parsed.strip().lower() not in ("nan", "inf", "-inf", "+inf", "infinity") else parsed
        except ValueError:
            return parsed
    return parsed


def _set(raw: dict, key: str, value: Any, text: str) -> None:
    """Set `key` (dotted; `name[i]` steps into item i of a list, `system.jobs[1].start`) to `value`."""
    steps: list[str | int] = []
    for part in key.split("."):
        name, *indices = part.replace("]", "").split("[")
        steps += ([name] if name else []) + [int(i) if i.isdigit() else i for i in indices]
    node: Any = raw
    for i, step in enumerate(steps):
        last = i == len(steps) - 1
        if isinstance(step, int):
            if not isinstance(node, list) or step >= len(node):
                size = f"a list of {len(node)} items" if isinstance(node, list) else repr(node)
                raise ConfigError(
                    f"command-line override {text}", key, NOTHING, f"an item of a list, but {_path(steps[:i])} is {size}"
                )
            if last:
                node[step] = value
            else:
                node = node[step]
            continue
        if not isinstance(node, dict):
            raise ConfigError(
                f"command-line override {text}", key, NOTHING, f"a key inside a mapping, but {_path(steps[:i])} is {node!r}"
            )
        if last:
            node[step] = value
        else:
            node = node.setdefault(step, {})


def _path(steps: list) -> str:
    """Steps of a key written back: system.jobs[1]."""
    out = ""
    for step in steps:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else step)
    return out


def _origin(key: str, overrides: list, scenario_raw: dict, sources: dict, path: Path) -> str:
    for okey, _, text in reversed(overrides):
        if key == okey or key.startswith((okey + ".", okey + "[")) or okey.startswith(key + "."):
            return f"command-line override {text}"
    node: Any = scenario_raw
    whole = False  # inside a list, or a network that replaced its base's: the scenario wrote all of it
    for part in key.split("."):
        name, *indices = part.replace("]", "").split("[")
        for step in ([name] if name else []) + indices:
            if isinstance(node, dict) and step in node:
                node = node[step]
                whole = whole or (step == "network" and isinstance(node, dict) and ("kind" in node or "dims" in node))
            elif isinstance(node, list) and step.isdigit() and int(step) < len(node):
                node = node[int(step)]
            else:
                top = key.split(".")[0]
                return str(sources[top]) if sources.get(top) and not whole else str(path)
            whole = whole or isinstance(node, list)
    return str(path)
