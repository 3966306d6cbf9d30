"""Cells: one (task, method, seed) of a grid, as a plain JSON-able record a worker can run.

A cell's id is a hash of everything that decides its numbers: the model, the task (name, template
it runs on, label words, data sources for its seed), the method (its name in the grid, the
registered method it runs, its full config with the seed). The same grid gives the same ids, so a
rerun skips the cells already in results.jsonl. (The registered method is kept under the key
'preset', as in the cells and records of 0.2, so ids and results.jsonl keep their form.)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from prompt_compare.entries import build_config, registered
from prompt_compare.spec import Grid


@dataclass(frozen=True)
class Cell:
    id: str
    task: str
    method: str  # its name in the grid (the table's row)
    preset: str  # the registered method it runs
    seed: int
    config: dict  # the method's full config (asdict), seed included
    template: str
    label_map: dict | None
    label_field: str | None
    text_fields: str | None
    train: str
    dev: str
    test: str
    model: str
    device: str = "auto"
    dtype: str = "auto"
    module: str = ""  # the package that registers the method (imported first where the cell runs)

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> Cell:
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})

    @property
    def label(self) -> str:
        return f"{self.task} / {self.method} / seed {self.seed}"


def cell_id(values: dict) -> str:
    """16 hex digits of the sha256 of what decides a cell's numbers (everything but the id, the device
    and the method's package)."""
    keyed = {k: v for k, v in values.items() if k not in ("id", "device", "module")}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def grid_cells(grid: Grid) -> list[Cell]:
    """Every cell of a grid in table order (task, method, seed); configs are built (and checked) here."""
    out, defaults_at = [], {key: grid.default_at(key) for key in grid.defaults}
    for task in grid.tasks:
        for entry in grid.methods:
            method = registered(entry.method, entry.where)
            for seed in grid.seeds:
                config = build_config(entry, grid.defaults, seed, defaults_at)
                values = {"task": task.name, "method": entry.name, "preset": method.name, "seed": seed,
                          "config": asdict(config), "template": task.template_for(method.template),
                          "label_map": task.label_map, "label_field": task.label_field,
                          "text_fields": task.text_fields, **task.sources(seed), "model": grid.model,
                          "device": grid.device, "dtype": grid.dtype, "module": method.module}
                out.append(Cell(id=cell_id(values), **values))
    return out
