"""Cells: one (task, method, seed) of a grid, as a plain JSON-able record a worker can run.

A cell's id is a hash of everything that decides its numbers: the model, the task (name, template
it runs on, label words, data sources for its seed), the method (name, preset, full config with
the seed). The same grid gives the same ids, so a rerun skips the cells already in results.jsonl.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass, fields

from prompt_compare.presets import preset
from prompt_compare.spec import Grid, _at, build_config


@dataclass(frozen=True)
class Cell:
    id: str
    task: str
    method: str
    preset: str
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
    """16 hex digits of the sha256 of what decides a cell's numbers (everything but the id and device)."""
    keyed = {k: v for k, v in values.items() if k not in ("id", "device")}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def grid_cells(grid: Grid) -> list[Cell]:
    """Every cell of a grid in table order (task, method, seed); configs are built (and checked) here."""
    out = []
    for task in grid.tasks:
        for m_index, method in enumerate(grid.methods):
            p = preset(method.preset)
            for seed in grid.seeds:
                config = build_config(method, grid.defaults, seed, _at(grid.where, f"methods[{m_index}]"))
                values = {"task": task.name, "method": method.name, "preset": p.name, "seed": seed,
                          "config": asdict(config), "template": task.template_for(p.template),
                          "label_map": task.label_map, "label_field": task.label_field,
                          "text_fields": task.text_fields, **task.sources(seed), "model": grid.model,
                          "device": grid.device, "dtype": grid.dtype}
                out.append(Cell(id=cell_id(values), **values))
    return out
