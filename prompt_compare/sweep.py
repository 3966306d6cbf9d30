"""Hyperparameter sweeps: a cell's search space, its settings, and the rule that picks one on dev.

A config field takes its value, one value or a space (a list of values to try), from the most
specific place that gives it:

    the method's grid_defaults < its default space `Method.space` (tune=True) < the grid's defaults
    < the method entry's config < sweep[NAME]

so a value the user wrote (`defaults: {iters: 10}`, `{lora: {r: 8}}`) is not swept even when the
method's default space has the field. In defaults and entries a list where the config field is not
a list is a space (`lora: {lr: [1e-4, 3e-4]}`); in `sweep` every value is a space (a lone value: a
space of one). NAME is a method's name in the grid (or a registered method, for all its entries).

Settings: the product of the fields' spaces, in the order they were written (the first field
varies slowest); at most MAX_SETTINGS. A space of one setting is no sweep: the cell is an ordinary
cell, with the same id as the same config written out. Each (task, model, method, seed) cell trains
every setting (execute.run_sweep) and keeps the best on dev: the highest dev score of the shared
evaluator; a tie goes to the first setting in space order (the order above); a failed setting is
left out. A chosen numeric value that is the smallest or largest of a space of 3 or more values is
at its edge (the table warns: a wider space may do better; a space of 2 values has no inside).
"""

from __future__ import annotations

import itertools
import math
import typing

from frozen_lm.configs import from_dict
from frozen_lm.errors import UserError
from frozen_lm.methods import Method
from prompt_compare.entries import MethodDef, in_grid_words, option_names

MAX_SETTINGS = 64


def list_fields(cls) -> set[str]:
    """The config fields that hold a list (a list given there is one value, not a space)."""
    out = set()
    for name, hint in typing.get_type_hints(cls).items():
        args = (hint, *typing.get_args(hint))
        if any(a in (list, tuple) or typing.get_origin(a) in (list, tuple) for a in args):
            out.add(name)
    return out


def check_sweep(sweep, names: dict[str, str], where: str = "") -> dict[str, dict]:
    """The `sweep` mapping {method name: {field: values}} with its methods checked against the grid's
    (names: {grid name: registered method}); a registered method's name stands for all its entries.
    UserError (one line) for a method not in the grid or a value that is not a mapping."""
    at = f"{where}: sweep" if where else "sweep"
    if sweep is None:
        return {}
    if not isinstance(sweep, dict):
        raise UserError(f"{at}: give a mapping of method names to {{option: [values]}}, e.g. {{lora: {{lr: [1e-4, 3e-4]}}}}")
    out: dict[str, dict] = {}
    for key, fields in sweep.items():
        key = str(key)
        targets = [key] if key in names else [n for n, m in names.items() if m == key]
        if not targets:
            raise UserError(f"{at}.{key}: no method of the grid is called {key!r} (the grid's: {', '.join(names)})")
        if not isinstance(fields, dict) or not fields:
            raise UserError(f"{at}.{key}: give a mapping of options to lists of values, e.g. {{lr: [1e-4, 3e-4]}}")
        for name in targets:
            out.setdefault(name, {}).update({str(k): (v, f"{at}.{key}.{k}") for k, v in fields.items()})
    return out


def field_values(entry: MethodDef, method: Method, grid) -> tuple[dict, dict, dict]:
    """(values, spaces, at) of a grid entry: the fields given one value, the fields given a space (in
    the order written), and where the user wrote each (what messages name)."""
    names, lists = option_names(method), list_fields(method.config)
    own = f"{entry.where}.config" if entry.where else "config"
    values, spaces, at = dict(method.grid_defaults), {}, {}
    levels = []
    if grid.tune:
        levels.append(({k: (list(v), f"{entry.name}'s default space, {k}") for k, v in method.space.items()}, True))
    levels.append(({k: (v, grid.default_at(k)) for k, v in grid.defaults.items() if k in names}, None))
    levels.append(({k: (v, f"{own}.{k}") for k, v in entry.config.items()}, None))
    levels.append((grid.spaces.get(entry.name, {}), True))
    for mapping, is_space in levels:
        for key, (value, where) in mapping.items():
            if is_space and key not in names:
                raise UserError(f"{where}: {method.config.__name__} has no option {key!r}; {entry.name}'s options: "
                                f"{', '.join(sorted(names - {'seed'}))}")
            if key == "seed" and is_space:
                raise UserError(f"{where}: seeds come from the grid's 'seeds'")
            space = is_space or (isinstance(value, list | tuple) and key not in lists and key in names)
            values.pop(key, None)
            spaces.pop(key, None)
            if space:
                spaces[key] = _space(value, where)
            else:
                values[key] = value
            at[key] = where
    return values, spaces, at


def _space(value, where: str) -> list:
    """A space's values (a lone value: a space of one), duplicates dropped; UserError when empty."""
    values = list(value) if isinstance(value, list | tuple) else [value]
    if not values:
        raise UserError(f"{where}: an empty space; give at least one value")
    out = []
    for v in values:
        if v not in out:
            out.append(v)
    return out


def settings(spaces: dict[str, list]) -> list[dict]:
    """Every setting of a space: the product of its fields' values, the first field varying slowest."""
    keys = list(spaces)
    return [dict(zip(keys, combo)) for combo in itertools.product(*(spaces[k] for k in keys))]


def cell_configs(entry: MethodDef, method: Method, grid, seed: int) -> tuple[list, dict]:
    """(configs, space) of one cell: the config of every setting, built and checked (a bad value is
    named where the user wrote it), and the space ({} for a cell without a sweep: one config)."""
    values, spaces, at = field_values(entry, method, grid)
    own = f"{entry.where}.config" if entry.where else "config"
    if "seed" in entry.config:
        raise UserError(f"{own}.seed: seeds come from the grid's 'seeds'")
    count = math.prod(len(v) for v in spaces.values())
    if count > MAX_SETTINGS:
        sizes = " x ".join(f"{len(v)} ({k})" for k, v in spaces.items())
        raise UserError(f"{entry.where or entry.name}: the space of {entry.name!r} has {sizes} = {count} settings, more "
                        f"than {MAX_SETTINGS}; give fewer values")
    if count == 1:  # a space of one setting is no sweep
        values.update({k: v[0] for k, v in spaces.items()})
        spaces = {}
    configs = []
    for setting in settings(spaces) or [{}]:
        try:
            configs.append(from_dict(method.config, {**values, **setting, "seed": seed}, coerce=True))
        except UserError as e:
            raise UserError(in_grid_words(str(e), method.config.__name__, at, own)) from None
    if spaces:  # as the configs hold them (numbers written as text read as numbers)
        spaces = {k: list(dict.fromkeys(getattr(c, k) for c in configs)) for k in spaces}
    return configs, spaces


# ---------------------------------------------------------------- choosing
def choose(devs: list[float | None]) -> int | None:
    """The setting kept: the highest dev score; ties go to the first in space order; None (failed)
    and NaN scores are left out. None when every setting failed."""
    best = None
    for i, dev in enumerate(devs):
        if dev is None or (isinstance(dev, float) and math.isnan(dev)):
            continue
        if best is None or dev > devs[best]:
            best = i
    return best


def edges(space: dict[str, list], chosen: dict) -> list[str]:
    """'lr=0.3 is the largest of 5' for each chosen numeric value at the end of a space of 3 or more
    numeric values."""
    out = []
    for key, values in space.items():
        numbers = [v for v in values if isinstance(v, int | float) and not isinstance(v, bool)]
        value = chosen.get(key)
        if len(numbers) < 3 or len(numbers) != len(values) or value not in numbers:
            continue
        if value == max(numbers):
            out.append(f"{key}={value:g} is the largest of {len(numbers)}")
        elif value == min(numbers):
            out.append(f"{key}={value:g} is the smallest of {len(numbers)}")
    return out


def setting_text(setting: dict) -> str:
    """'lr=0.01, r=8' (numbers in short form)."""
    return ", ".join(f"{k}={v:g}" if isinstance(v, float) else f"{k}={v}" for k, v in setting.items())
