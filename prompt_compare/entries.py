"""The methods a grid names: registered methods (frozen_lm.methods), nothing listed here.

A grid's method entry is a registered method's name ('lora'), a one-key mapping of that name to
config values ({'lora': {'r': 16}}), or a full mapping ({'name': 'lora-big', 'method': 'lora',
'config': {...}}; 'preset' is read as 'method', the key of 0.2 grid files). What a method trains,
which template it takes ('manual' or 'trigger'), its starting values in a grid (grid_defaults) and
the modules it imports lazily come from its `Method`.

A registered method takes part in comparisons unless it says it is a measurement, not a result to
compare (`Method.comparable` False: intrinsic_dim, the d90 of a task and model); a grid refuses it.

A cell's config: the method's grid_defaults < (tune: its default space) < the grid's defaults (the
keys its config has) < the entry's own values < the grid's sweep < the seed, built by
`frozen_lm.configs.from_dict` (prompt_compare.sweep.cell_configs; a list where an option is not a
list is a space); a mistake names the key the user wrote (`grid.yaml: defaults.steps must be a
number, got 'abc'`).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field

from frozen_lm.configs import init_fields
from frozen_lm.errors import UserError
from frozen_lm.methods import Method, methods

ENTRY_KEYS = ("name", "method", "preset", "config")


@dataclass(frozen=True)
class MethodDef:
    """One method of a grid: its name in the table, the registered method it runs, the config values
    it sets, and where it was written (what error messages name, e.g. 'grid.yaml: methods[2]')."""

    name: str
    method: str
    config: dict = field(default_factory=dict)
    where: str = field(default="", compare=False)


def comparable_methods() -> dict[str, Method]:
    """The registered methods a grid can name, by name (registration order)."""
    return {name: m for name, m in methods().items() if comparable(m)}


def comparable(method: Method) -> bool:
    """Whether a grid compares this method (a measurement is not compared)."""
    return method.comparable


def registered(name: str, where: str = "") -> Method:
    """The comparable registered method called `name`; UserError naming `where` otherwise."""
    prefix = f"{where}: " if where else ""
    found = methods().get(name)
    if found is not None and not comparable(found):
        raise UserError(f"{prefix}{name!r} is a measurement, not a method a grid compares; leave it out")
    if found is None:
        raise UserError(f"{prefix}unknown method {name!r}; known: {', '.join(comparable_methods())}")
    return found


def option_names(method: Method) -> set[str]:
    """The config fields of a method (the keys a grid may set for it)."""
    return set(init_fields(method.config))


def all_options() -> set[str]:
    """Every option of some comparable method, but the seed (which comes from the grid's seeds)."""
    return set().union(*(option_names(m) for m in comparable_methods().values())) - {"seed"}


# ---------------------------------------------------------------- entries
def methods_from(entries, where: str = "") -> list[MethodDef]:
    """MethodDefs from names ('lora'), one-key mappings ({'lora': {'r': 16}}) or full mappings
    ({'name': 'lora-r16', 'method': 'lora', 'config': {...}}); a comma-separated string works too.
    where: what messages name first (the spec file; '' for the API's `methods`)."""
    at = f"{where}: methods" if where else "methods"
    if isinstance(entries, str):
        entries = [e.strip() for e in entries.split(",") if e.strip()]
    if not isinstance(entries, list) or not entries:
        raise UserError(f"{at}: give a list of methods (known: {', '.join(comparable_methods())})")
    out = [method_def(e, f"{at}[{i}]") for i, e in enumerate(entries)]
    names = [m.name for m in out]
    for i, name in enumerate(names):
        if name in names[:i]:
            raise UserError(f"{at}[{i}]: the name {name!r} is used twice; give one a 'name'")
    return out


def method_def(entry, where: str) -> MethodDef:
    """One entry as a MethodDef (its method checked to be registered and comparable)."""
    if isinstance(entry, MethodDef):
        registered(entry.method, where)
        return entry if entry.where else MethodDef(entry.name, entry.method, dict(entry.config), where)
    if isinstance(entry, str):
        registered(entry, where)
        return MethodDef(entry, entry, {}, where)
    if not isinstance(entry, dict):
        raise UserError(f"{where}: give a method name or a mapping with method (and name, config)")
    if len(entry) == 1 and str(next(iter(entry))) not in ENTRY_KEYS:
        (name, config), = entry.items()
        registered(str(name), where)
        return MethodDef(str(name), str(name), _mapping(config or {}, f"{where}.{name}"), where)
    for key in entry:
        if key not in ENTRY_KEYS:
            raise UserError(f"{where}.{key}: unknown key (known: name, method, config)")
    if "method" in entry and "preset" in entry:
        raise UserError(f"{where}: give 'method' (or its old name 'preset'), not both")
    key = "method" if "method" in entry else "preset"
    if key not in entry:
        raise UserError(f"{where}.method: missing (one of: {', '.join(comparable_methods())})")
    registered(str(entry[key]), f"{where}.{key}")
    return MethodDef(str(entry.get("name") or entry[key]), str(entry[key]),
                     _mapping(entry.get("config") or {}, f"{where}.config"), where)


# ---------------------------------------------------------------- configs
def in_grid_words(message: str, owner: str, at: dict[str, str], fallback: str) -> str:
    """A config message with each `Owner.field` the user set written as the key they wrote
    (`at[field]`); a message that does not start with such a key is prefixed with `fallback`."""
    pattern = re.compile(rf"\b{re.escape(owner)}\.([a-z_][a-z0-9_]*)\b")
    first = pattern.match(message)
    text = pattern.sub(lambda m: at.get(m.group(1), m.group(0)), message)
    return text if first and first.group(1) in at else f"{fallback}: {text}"


def _mapping(value, where: str) -> dict:
    if not isinstance(value, dict):
        raise UserError(f"{where}: give a mapping of option names to values")
    return {str(k): v for k, v in value.items()}
