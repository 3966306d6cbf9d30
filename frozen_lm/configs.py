"""Config dataclasses: the one place a config is built from a dict, and the checks every config uses.

A method's config is a dataclass (the seed inside) whose fields carry their help text in
`metadata["help"]` (and `metadata["choices"]`); option groups are nested dataclasses (GCG's probe
sampling, as nanoGCG nests it). `from_dict` builds one from saved JSON, a grid spec, a config file or
command-line values; `to_dict` is what artifacts save. A bad value is a UserError that names the
field and the value, `GCGConfig.search_width must be at least 1, got 0`; the command line shows
the same message with its flag (`--search-width`).
"""

from __future__ import annotations

import dataclasses
import json
import math
import types
import typing
from dataclasses import asdict, fields, is_dataclass

from frozen_lm.errors import UserError


def name_of(config, field: str) -> str:
    """'GCGConfig.search_width': how errors name a config field."""
    owner = config if isinstance(config, type) else type(config)
    return f"{owner.__name__}.{field}"


def field_error(config, field: str, problem: str) -> UserError:
    """UserError 'Cls.field <problem>' (problem says what is wrong and names the value)."""
    return UserError(f"{name_of(config, field)} {problem}")


def at_least(config, minimum, *names: str) -> None:
    """UserError for the first named field below `minimum` (None values are skipped)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not value >= minimum:
            bound = f"at least {minimum}" if minimum else "0 or more"
            raise field_error(config, name, f"must be {bound}, got {value!r}")


def positive(config, *names: str) -> None:
    """UserError for the first named field that is not a positive finite number (None skipped)."""
    for name in names:
        value = getattr(config, name)
        if value is not None and not (value > 0 and math.isfinite(value)):
            raise field_error(config, name, f"must be positive, got {value!r}")


def one_of(config, name: str, choices) -> None:
    value = getattr(config, name)
    if value not in choices:
        raise field_error(config, name, f"is {value!r}; choose one of: {', '.join(map(str, choices))}")


def init_fields(cls) -> dict[str, dataclasses.Field]:
    return {f.name: f for f in fields(cls) if f.init}


def nested_type(hint) -> type | None:
    """The dataclass a field holds (`X` or `X | None`), else None."""
    if is_dataclass(hint) and isinstance(hint, type):
        return hint
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        inner = [a for a in typing.get_args(hint) if a is not type(None)]
        if len(inner) == 1 and is_dataclass(inner[0]) and isinstance(inner[0], type):
            return inner[0]
    return None


def from_dict(cls, values: dict | None, where: str = "", *, strict: bool = True, coerce: bool = False):
    """A config dataclass from a mapping: nested option groups from nested mappings; unknown keys a
    UserError naming the key and the valid ones (strict=False: ignored, for saved configs of other
    versions); coerce: numbers written as text ('3e-4', from a flag or a YAML file) become the
    field's number type. `where` prefixes every message (a file, 'methods[2].config')."""
    values = dict(values or {})
    known = init_fields(cls)
    hints = typing.get_type_hints(cls)
    prefix = f"{where}: " if where else ""
    unknown = [k for k in values if k not in known]
    if unknown and strict:
        raise UserError(f"{prefix}{name_of(cls, unknown[0])} is not an option; valid: {', '.join(sorted(known))}")
    kwargs = {}
    for name in known:
        if name not in values:
            continue
        value, hint = values[name], hints.get(name)
        sub = nested_type(hint)
        if sub is not None and isinstance(value, dict):
            value = from_dict(sub, value, where, strict=strict, coerce=coerce)
        elif coerce:
            value = coerce_value(value, hint, f"{prefix}{name_of(cls, name)}")
        kwargs[name] = value
    try:
        return cls(**kwargs)
    except UserError as e:
        raise UserError(f"{prefix}{e}") from None
    except (TypeError, ValueError) as e:
        raise UserError(f"{prefix}{cls.__name__}: {e}") from None


def coerce_value(value, hint, where: str):
    """Numbers given as text become the field's number type; ints become floats for float fields."""
    text = str(hint)
    numeric = ("float" in text or "int" in text) and "str" not in text
    if isinstance(value, str) and numeric:
        try:
            return float(value) if "float" in text else int(value)
        except ValueError:
            raise UserError(f"{where} must be a number, got {value!r}") from None
    if isinstance(value, int) and not isinstance(value, bool) and "float" in text and "int" not in text:
        return float(value)
    return value


def to_dict(config) -> dict:
    """What an artifact saves: the config's fields, nested groups as mappings."""
    return asdict(config) if is_dataclass(config) else dict(config)


def keyed_dict(config) -> dict:
    """to_dict without the options added after results were recorded (field metadata 'added': the
    version) while they hold their default: what identifies a run (prompt_compare's cell ids), so
    that adding an option whose default keeps the old behaviour leaves earlier ids and results valid."""
    if not is_dataclass(config):
        return to_dict(config)
    out = to_dict(config)
    for f in fields(config):
        value = getattr(config, f.name)
        if f.metadata.get("added") and f.default is not dataclasses.MISSING and value == f.default:
            del out[f.name]
        elif is_dataclass(value):  # a nested option group: its added options too
            out[f.name] = keyed_dict(value)
    return out


def diffs(saved: dict, config, allowed: tuple[str, ...] = ()) -> list[str]:
    """'Cls.field (saved value saved, new value now)' for every field that differs, except `allowed`."""
    now = to_dict(config)
    return [f"{name_of(config, k)} ({saved.get(k)!r} saved, {v!r} now)"
            for k, v in now.items() if k not in allowed and saved.get(k) != v]


def read_mapping(path, what: str) -> dict | None:
    """The value a .yaml/.yml, .toml or .json file holds (None for an empty file); `what` names the
    file in messages ('spec file x.yaml'). UserError (one line) for a file of another kind, text that
    is not UTF-8 (file:line) or not valid in its format, or a reader that is not installed."""
    from pathlib import Path

    from frozen_lm.data import read_utf8

    path = Path(path)
    suffix = path.suffix.lower()
    if suffix not in (".yaml", ".yml", ".toml", ".json"):
        raise UserError(f"{what}: use a .yaml, .yml, .toml or .json file")
    text = read_utf8(path)
    try:
        if suffix in (".yaml", ".yml"):
            import yaml

            return yaml.safe_load(text)
        if suffix == ".toml":
            try:
                import tomllib
            except ImportError:  # Python 3.10
                import tomli as tomllib

            return tomllib.loads(text) or None
        return json.loads(text) if text.strip() else None
    except ImportError as e:
        raise UserError(f"{what}: reading it needs the {e.name} package (pip install "
                        f"{'pyyaml' if e.name == 'yaml' else e.name})") from None
    except Exception as e:  # yaml.YAMLError, tomllib.TOMLDecodeError, json.JSONDecodeError
        raise UserError(f"{what} is not valid {suffix[1:].upper()}: {' '.join(str(e).split())}") from None
