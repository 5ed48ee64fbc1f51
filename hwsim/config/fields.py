"""Declaring schema fields, and turning plain dicts into frozen dataclasses (and JSON Schema).

A schema class is a frozen dataclass whose fields are declared with `spec(...)`. The
field's Python type says what it holds; the metadata says its unit kind, bounds,
choices and help. `build(cls, raw, path, where)` checks a dict against the class and
raises `ConfigError` naming the dotted key path of the first mistake.

A field typed as a `Union` of schema classes is a tagged union: the dict's `kind`
key picks the class (each class has a `kind` field whose default is its tag).
"""

from __future__ import annotations

import copyreg
import dataclasses
import math
import types
import typing
from typing import Any

from hwsim.config.units import EXAMPLES, UnitError, parse_quantity
from hwsim.errors import NOTHING, ConfigError

_MISSING = dataclasses.MISSING


def _mapping_proxy(items: dict) -> types.MappingProxyType:
    return types.MappingProxyType(items)


# A scenario holds its mappings read-only; pickling one (to run it in another process) needs a reducer.
copyreg.pickle(types.MappingProxyType, lambda proxy: (_mapping_proxy, (dict(proxy),)))


def spec(
    default: Any = _MISSING,
    *,
    doc: str,
    unit: str | None = None,
    choices: tuple[str, ...] | None = None,
    min: float | None = None,
    gt: float | None = None,
    max: float | None = None,
    length: int | None = None,
) -> Any:
    """A schema field: `doc` is its help; `unit` a quantity kind from `units`; bounds inclusive except `gt`
    (on a list: on each item); `length` the number of items a list must have."""
    meta = {"doc": doc, "unit": unit, "choices": choices, "min": min, "gt": gt, "max": max, "length": length}
    if isinstance(default, (list, dict)):
        raise TypeError("use a tuple or a factory for mutable defaults")
    if unit and isinstance(default, str):
        default = parse_quantity(default, unit)  # written with its unit, held in SI
    if callable(default) and dataclasses.is_dataclass(default):
        return dataclasses.field(default_factory=default, metadata=meta)
    return dataclasses.field(default=default, metadata=meta)


def build(cls: type, raw: Any, path: str, where: str) -> Any:
    """Check `raw` against schema class `cls` and return the frozen instance."""
    if not isinstance(raw, dict):
        raise ConfigError(where, path, raw, f"a mapping of {cls.__name__} settings")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(raw) - set(fields))
    if unknown:
        known = ", ".join(fields)
        raise ConfigError(where, _join(path, str(unknown[0])), raw[unknown[0]], f"one of the known keys: {known}")
    values = {}
    for name, field in fields.items():
        key = _join(path, name)
        if name in raw:
            values[name] = _value(hints[name], field.metadata, raw[name], key, where)
        elif field.default is _MISSING and field.default_factory is _MISSING:
            raise ConfigError(where, key, NOTHING, f"this key to be set ({field.metadata['doc']})")
    return cls(**values)


def _value(hint: Any, meta: dict, raw: Any, key: str, where: str) -> Any:
    if hint is typing.Any:  # free-form settings, checked by whoever uses them (a codec's parameters)
        return _frozen(raw)
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        non_none = [a for a in args if a is not type(None)]
        if raw is None and len(non_none) < len(args):
            return None
        if len(non_none) == 1:
            return _value(non_none[0], meta, raw, key, where)
        return _tagged(non_none, raw, key, where)
    if dataclasses.is_dataclass(hint):
        return build(hint, raw, key, where)
    if origin is dict:
        if not isinstance(raw, dict):
            raise ConfigError(where, key, raw, "a mapping")
        return types.MappingProxyType({str(k): _value(args[1], meta, v, _join(key, str(k)), where) for k, v in raw.items()})
    if origin is tuple:
        if not isinstance(raw, (list, tuple)):
            raise ConfigError(where, key, raw, f"a list ({meta['doc']})")
        if meta.get("length") is not None and len(raw) != meta["length"]:
            raise ConfigError(where, key, raw, f"a list of {meta['length']} items ({meta['doc']})")
        return tuple(_value(args[0], meta, v, f"{key}[{i}]", where) for i, v in enumerate(raw))
    return _scalar(hint, meta, raw, key, where)


def _frozen(raw: Any) -> Any:
    if isinstance(raw, dict):
        return types.MappingProxyType({str(k): _frozen(v) for k, v in raw.items()})
    if isinstance(raw, list):
        return tuple(_frozen(v) for v in raw)
    return raw


def _scalar(hint: Any, meta: dict, raw: Any, key: str, where: str) -> Any:
    if meta.get("unit"):
        try:
            value = parse_quantity(raw, meta["unit"])
        except UnitError as err:
            raise ConfigError(where, key, raw, str(err)) from None
    elif hint is bool:
        if not isinstance(raw, bool):
            raise ConfigError(where, key, raw, "true or false")
        return raw
    elif hint is int:
        if isinstance(raw, bool) or not isinstance(raw, int):
            raise ConfigError(where, key, raw, f"a whole number ({meta['doc']})")
        value = raw
    elif hint is float:
        if isinstance(raw, bool) or not isinstance(raw, (int, float)):
            raise ConfigError(where, key, raw, f"a number ({meta['doc']})")
        value = float(raw)
        if not math.isfinite(value):
            raise ConfigError(where, key, raw, f"a finite number ({meta['doc']})")
    elif hint is str:
        if not isinstance(raw, str):
            raise ConfigError(where, key, raw, f"a string ({meta['doc']})")
        if meta.get("choices") and raw not in meta["choices"]:
            raise ConfigError(where, key, raw, "one of " + ", ".join(meta["choices"]))
        return raw
    else:  # pragma: no cover - a schema bug, not a user mistake
        raise TypeError(f"unsupported schema type {hint!r} at {key}")
    _check_bounds(meta, value, raw, key, where)
    return value


def _check_bounds(meta: dict, value: float, raw: Any, key: str, where: str) -> None:
    if meta.get("gt") is not None and not value > meta["gt"]:
        raise ConfigError(where, key, raw, f"a value greater than {meta['gt']:g} ({meta['doc']})")
    if meta.get("min") is not None and value < meta["min"]:
        raise ConfigError(where, key, raw, f"a value of at least {meta['min']:g} ({meta['doc']})")
    if meta.get("max") is not None and value > meta["max"]:
        raise ConfigError(where, key, raw, f"a value of at most {meta['max']:g} ({meta['doc']})")


def _tagged(classes: list[type], raw: Any, key: str, where: str) -> Any:
    tags = {_tag(c): c for c in classes}
    if not isinstance(raw, dict):
        raise ConfigError(where, key, raw, "a mapping with a 'kind' key")
    kind = raw.get("kind")
    if not isinstance(kind, str) or kind not in tags:
        raise ConfigError(where, _join(key, "kind"), kind, "one of " + ", ".join(tags))
    return build(tags[kind], raw, key, where)


def _tag(cls: type) -> str:
    return next(f.default for f in dataclasses.fields(cls) if f.name == "kind")


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


def to_plain(obj: Any) -> Any:
    """A schema instance as plain dicts, lists and numbers (for JSON and provenance)."""
    if dataclasses.is_dataclass(obj):
        return {f.name: to_plain(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (dict, types.MappingProxyType)):
        return {k: to_plain(v) for k, v in obj.items()}
    if isinstance(obj, tuple):
        return [to_plain(v) for v in obj]
    return obj


def json_schema(cls: type) -> dict:
    """The JSON Schema (draft 2020-12) of the files that `build(cls, ...)` accepts."""
    hints = typing.get_type_hints(cls)
    props = {}
    required = []
    for field in dataclasses.fields(cls):
        props[field.name] = _schema_of(hints[field.name], field.metadata)
        if field.default is _MISSING and field.default_factory is _MISSING:
            required.append(field.name)
        elif field.default is not _MISSING and field.default is not None and not field.metadata.get("unit"):
            props[field.name]["default"] = to_plain(field.default)
    out = {"type": "object", "title": cls.__name__, "properties": props, "additionalProperties": False}
    if cls.__doc__:
        out["description"] = " ".join(cls.__doc__.split())
    if required:
        out["required"] = required
    return out


def _schema_of(hint: Any, meta: dict) -> dict:
    origin = typing.get_origin(hint)
    args = typing.get_args(hint)
    doc = {"description": meta["doc"]} if meta.get("doc") else {}
    if hint is typing.Any:
        return doc
    if origin in (typing.Union, types.UnionType):
        options = [a for a in args if a is not type(None)]
        schemas = [_schema_of(a, meta) for a in options]
        if len(options) < len(args):
            schemas.append({"type": "null"})
        return {"anyOf": schemas, **doc} if len(schemas) > 1 else schemas[0]
    if dataclasses.is_dataclass(hint):
        return json_schema(hint)
    if origin is dict:
        values = {"unit": meta["unit"], "doc": meta["doc"]} if meta.get("unit") else {}  # a unit applies to each value
        return {"type": "object", "additionalProperties": _schema_of(args[1], values), **doc}
    if origin is tuple:
        sized = {"minItems": meta["length"], "maxItems": meta["length"]} if meta.get("length") is not None else {}
        return {"type": "array", "items": _schema_of(args[0], {}), **sized, **doc}
    if meta.get("unit"):
        return {"type": "string", **doc, "description": f"{meta['doc']}: {EXAMPLES[meta['unit']]}"}
    if hint is str and meta.get("choices"):
        return {"type": "string", "enum": list(meta["choices"]), **doc}
    out = {"type": {bool: "boolean", int: "integer", float: "number", str: "string"}[hint], **doc}
    if meta.get("min") is not None:
        out["minimum"] = meta["min"]
    if meta.get("gt") is not None:
        out["exclusiveMinimum"] = meta["gt"]
    if meta.get("max") is not None:
        out["maximum"] = meta["max"]
    return out
