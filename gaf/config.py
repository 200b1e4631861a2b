"""Typed configs: dataclasses in, YAML on disk, ``--set key=value`` overrides.

Every configurable part of gaf owns a small ``@dataclass`` of its settings,
defined next to the code that uses it (e.g. ``DetectorConfig`` in
``gaf/models/detector.py``). This module only knows how to

* build a dataclass from a nested dict, checking every key and type and
  naming the dotted path of a bad field (:func:`from_dict`);
* turn a dataclass back into plain data for YAML / JSON (:func:`to_dict`);
* read a YAML file with a clear error (:func:`load_yaml`);
* apply ``a.b.c=value`` overrides, values parsed as YAML (:func:`apply_overrides`).

No registry, no inheritance: what a config file says is what runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence, TypeVar

import yaml

from gaf.errors import ConfigError

T = TypeVar("T")

__all__ = ["from_dict", "to_dict", "load_yaml", "apply_overrides", "dump_yaml", "describe", "ranged", "check",
           "POSITIVE", "NON_NEGATIVE", "AT_LEAST_ONE", "UNIT", "OPEN_UNIT", "HALF_OPEN_UNIT", "ODD", "SEED"]


# ------------------------------------------------------------------ value ranges
def check(description: str, predicate: Callable[[Any], bool]) -> dict[str, Any]:
    """Field metadata: the value (each item, for a list) must satisfy ``predicate``; the message says
    ``must be <description>``. Checked by :func:`from_dict` for every value a config gives."""
    return {"check": (description, predicate)}


POSITIVE = check("> 0", lambda v: v > 0)
NON_NEGATIVE = check(">= 0", lambda v: v >= 0)
AT_LEAST_ONE = check(">= 1", lambda v: v >= 1)
UNIT = check("in [0, 1]", lambda v: 0 <= v <= 1)
OPEN_UNIT = check("in (0, 1)", lambda v: 0 < v < 1)
HALF_OPEN_UNIT = check("in (0, 1]", lambda v: 0 < v <= 1)
ODD = check("odd and >= 1", lambda v: v >= 1 and v % 2 == 1)
SEED = check("in [0, 2**32 - 1]", lambda v: 0 <= v < 2**32)


def ranged(default: Any, rule: dict[str, Any]) -> Any:
    """A dataclass field with ``default`` whose values must satisfy ``rule`` (e.g. ``ranged(1e-4, POSITIVE)``)."""
    return dataclasses.field(default=default, metadata=rule)


def _check_range(field: dataclasses.Field, value: Any, where: str) -> None:
    rule = field.metadata.get("check")
    if rule is None or value is None:
        return
    description, predicate = rule
    for item in value if isinstance(value, (list, tuple)) else [value]:
        if not predicate(item):
            raise ConfigError(f"{where}: must be {description}, got {_show(value)}")


class _StrictLoader(yaml.SafeLoader):
    """yaml.SafeLoader that refuses a key given twice in one mapping (YAML would keep the last silently)."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        seen: dict[Any, Any] = {}
        for key_node, _ in node.value:
            key = self.construct_object(key_node, deep=deep)
            if key in seen:
                raise yaml.constructor.ConstructorError(
                    None, None, f"duplicate key {key!r} (first on line {seen[key].start_mark.line + 1})",
                    key_node.start_mark)
            seen[key] = key_node
        return super().construct_mapping(node, deep=deep)


def load_yaml(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read a YAML mapping from ``path``; errors name the file and line."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise ConfigError(f"{path}: config file not found") from None
    except UnicodeDecodeError as exc:  # a binary file, or text saved in another encoding (UTF-16, Latin-1)
        raise ConfigError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start}); a config is a UTF-8 "
                          "YAML file") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read config ({exc.strerror})") from None
    try:
        data = yaml.load(text, Loader=_StrictLoader)  # noqa: S506 - a SafeLoader subclass
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ConfigError(f"{path}:{where} invalid YAML ({getattr(exc, 'problem', exc)})") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"{path}: a config must be a mapping of sections, got {type(data).__name__}")
    return data


def dump_yaml(data: Mapping[str, Any]) -> str:
    """YAML text for plain data, keys in insertion order."""
    return yaml.safe_dump(dict(data), sort_keys=False, default_flow_style=None)


def apply_overrides(data: dict[str, Any], overrides: Sequence[str]) -> dict[str, Any]:
    """Apply ``section.key=value`` overrides to nested dict ``data`` (in place, returned).

    Values are parsed as YAML, so ``--set train.epochs=3``, ``--set
    dataset.fps=29.97``, ``--set model.gaf.enabled=false`` and ``--set
    eval.tious=[0.3,0.5]`` all do what they look like. Intermediate
    sections are created when missing; unknown keys are caught later by
    :func:`from_dict`, which names them.
    """
    for item in overrides:
        key, sep, raw = item.partition("=")
        key = key.strip()
        if not sep or not key:
            raise ConfigError(f"--set {item!r}: expected key=value, e.g. train.epochs=10")
        try:
            value = yaml.safe_load(raw) if raw.strip() else ""
        except yaml.YAMLError:
            value = raw
        node = data
        parts = key.split(".")
        for part in parts[:-1]:
            child = node.get(part)
            if child is None:
                child = node[part] = {}
            if not isinstance(child, dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
            node = child
        node[parts[-1]] = value
    return data


def to_dict(obj: Any) -> Any:
    """Plain-data form of a (nested) config dataclass: dicts, lists, scalars."""
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return {f.name: to_dict(getattr(obj, f.name)) for f in dataclasses.fields(obj)}
    if isinstance(obj, (list, tuple)):
        return [to_dict(v) for v in obj]
    if isinstance(obj, dict):
        return {k: to_dict(v) for k, v in obj.items()}
    return obj


def from_dict(cls: type[T], data: Mapping[str, Any] | None, where: str = "config") -> T:
    """Build dataclass ``cls`` from ``data``, checking keys and types.

    Missing keys take the dataclass defaults. Unknown keys, wrong types and
    missing required fields raise :class:`ConfigError` naming the dotted
    path (``where``), e.g. ``config.train.lr: expected a number, got 'fast'``.
    """
    if data is None:
        data = {}
    if not isinstance(data, Mapping):
        raise ConfigError(f"{where}: expected a section (mapping), got {_show(data)}")
    fields = {f.name: f for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    unknown = sorted(set(data) - set(fields))
    if unknown:
        raise ConfigError(
            f"{where}: unknown key(s) {', '.join(map(repr, unknown))}; "
            f"valid keys: {', '.join(sorted(fields))}"
        )
    hints = typing.get_type_hints(cls)
    kwargs: dict[str, Any] = {}
    for name, field in fields.items():
        if name in data:
            kwargs[name] = _convert(hints[name], data[name], f"{where}.{name}")
            _check_range(field, kwargs[name], f"{where}.{name}")
        elif field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING:
            raise ConfigError(f"{where}.{name}: required field is missing")
    try:
        return cls(**kwargs)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"{where}: {exc}") from None


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 60 else text[:57] + "..."


def _convert(tp: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(tp)
    args = typing.get_args(tp)
    if tp is Any:
        return value
    if origin in (typing.Union, types.UnionType):
        if value is None and type(None) in args:
            return None
        errors = []
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _convert(arg, value, where)
            except ConfigError as exc:
                errors.append(str(exc))
        raise ConfigError(errors[0] if len(errors) == 1 else f"{where}: {_show(value)} fits none of {tp}")
    if origin is typing.Literal:
        if value not in args:
            raise ConfigError(f"{where}: must be one of {', '.join(map(repr, args))}, got {_show(value)}")
        return value
    if dataclasses.is_dataclass(tp):
        return from_dict(tp, value, where)
    if origin in (list, tuple, Sequence) or tp in (list, tuple):
        if isinstance(value, (str, bytes)) or not isinstance(value, (list, tuple)):
            raise ConfigError(f"{where}: expected a list, got {_show(value)}")
        if origin is tuple and args and args[-1] is not Ellipsis:
            if len(args) != len(value):
                raise ConfigError(f"{where}: expected {len(args)} values, got {len(value)}")
            return tuple(_convert(a, v, f"{where}[{i}]") for i, (a, v) in enumerate(zip(args, value)))
        inner = args[0] if args else Any
        items = [_convert(inner, v, f"{where}[{i}]") for i, v in enumerate(value)]
        return tuple(items) if origin is tuple or tp is tuple else items
    if origin is dict or tp is dict:
        if not isinstance(value, Mapping):
            raise ConfigError(f"{where}: expected a mapping, got {_show(value)}")
        vt = args[1] if len(args) == 2 else Any
        return {str(k): _convert(vt, v, f"{where}.{k}") for k, v in value.items()}
    if tp is bool:
        if isinstance(value, bool):
            return value
        raise ConfigError(f"{where}: expected true or false, got {_show(value)}")
    if tp is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise ConfigError(f"{where}: expected an integer, got {_show(value)}")
    if tp is float:
        number = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            number = float(value)
        elif isinstance(value, str):  # YAML reads 1e-4 as a string
            try:
                number = float(value)
            except ValueError:
                pass
        if number is None:
            raise ConfigError(f"{where}: expected a number, got {_show(value)}")
        if not math.isfinite(number):
            raise ConfigError(f"{where}: must be a finite number, got {_show(value)}")
        return number
    if tp is str:
        if isinstance(value, str):
            return value
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return str(value)
        raise ConfigError(f"{where}: expected a string, got {_show(value)}")
    if isinstance(tp, type) and isinstance(value, tp):
        return value
    raise ConfigError(f"{where}: expected {getattr(tp, '__name__', tp)}, got {_show(value)}")


def _default_of(field: dataclasses.Field) -> Any:
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:  # type: ignore[misc]
        return field.default_factory()  # type: ignore[misc]
    return dataclasses.MISSING


def describe(obj: Any, indent: int = 0) -> str:
    """YAML text of config dataclass ``obj`` with every key, each value that differs from its field's
    default followed by ``# default: ...``, and each range rule as ``# must be ...`` (``gaf config show``)."""
    lines: list[str] = []
    pad = "  " * indent
    hints = typing.get_type_hints(type(obj))
    for field in dataclasses.fields(obj):
        value = getattr(obj, field.name)
        if dataclasses.is_dataclass(value):
            lines.append(f"{pad}{field.name}:")
            lines.append(describe(value, indent + 1))
            continue
        text = yaml.safe_dump(to_dict(value), default_flow_style=True, width=10**6).strip()
        if text.endswith("\n..."):
            text = text[: -len("\n...")]
        text = text.removesuffix("...").strip()
        notes = []
        default = _default_of(field)
        if default is dataclasses.MISSING:
            notes.append("required")
        elif to_dict(default) != to_dict(value):
            shown = yaml.safe_dump(to_dict(default), default_flow_style=True, width=10**6).strip()
            notes.append(f"default: {shown.removesuffix('...').strip()}")
        if "check" in field.metadata:
            notes.append(f"must be {field.metadata['check'][0]}")
        if typing.get_origin(hints[field.name]) is typing.Literal:
            notes.append("one of " + " | ".join(map(str, typing.get_args(hints[field.name]))))
        lines.append(f"{pad}{field.name}: {text}" + (f"  # {'; '.join(notes)}" if notes else ""))
    return "\n".join(lines)


def config_keys(cls: type, prefix: str = "") -> list[str]:
    """Every leaf key of config dataclass ``cls`` as a dotted path (``model.loss.att``), sections that may
    be None (``e2e``, ``frames``) included; the README's key table is checked against this list."""
    keys: list[str] = []
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        tp = hints[field.name]
        inner = [a for a in typing.get_args(tp) if dataclasses.is_dataclass(a)] if typing.get_origin(tp) else []
        sub = tp if dataclasses.is_dataclass(tp) else (inner[0] if len(inner) == 1 else None)
        if sub is not None:
            keys += config_keys(sub, f"{prefix}{field.name}.")
        else:
            keys.append(f"{prefix}{field.name}")
    return keys
