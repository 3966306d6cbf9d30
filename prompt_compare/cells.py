"""Cells: one (task, model, method, seed) of a grid, as a plain JSON-able record a worker can run.

A cell's id is a hash of everything that decides its numbers: the model, the task (name, template
it runs on, label words, data sources for its seed), the method (its name in the grid, the
registered method it runs, its full config with the seed, less the options added later that hold
their default: frozen_lm.configs.keyed_dict) and, for a sweep, its space (the config is then the
first setting's; prompt_compare.sweep). The same grid gives the same ids, so a rerun
skips the cells already in results.jsonl; a cell without a sweep has the id it had before sweeps. (The registered method is kept under the key
'preset', as in the cells and records of 0.2, so ids and results.jsonl keep their form.)
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from frozen_lm.configs import keyed_dict
from frozen_lm.parallel import Job
from prompt_compare.entries import registered
from prompt_compare.spec import Grid
from prompt_compare.sweep import cell_configs


@dataclass(frozen=True)
class Cell(Job):
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
    space: dict | None = None  # a sweep's {option: [values]} (None: one config)
    keep_weights: bool = False  # a sweep keeps every setting's weights, not only the chosen one's

    def settings(self) -> list[dict]:
        """The sweep's settings in space order ([{}] without a sweep)."""
        from prompt_compare.sweep import settings

        return settings(self.space) if self.space else [{}]

    @property
    def label(self) -> str:
        return f"{self.task} / {self.method} / seed {self.seed}"


def cell_id(values: dict) -> str:
    """16 hex digits of the sha256 of what decides a cell's numbers (everything but the id, the device,
    the method's package, whether a sweep keeps every setting's weights, and an empty space)."""
    keyed = {k: v for k, v in values.items() if k not in ("id", "device", "module", "keep_weights")
             and not (k == "space" and not v)}
    return hashlib.sha256(json.dumps(keyed, sort_keys=True, default=str).encode()).hexdigest()[:16]


def grid_cells(grid: Grid) -> list[Cell]:
    """Every cell of a grid in table order (task, model, method, seed); configs (every setting of a
    sweep) are built and checked here."""
    out = []
    for task in grid.tasks:
        for model in grid.models or [grid.model]:
            for entry in grid.methods:
                method = registered(entry.method, entry.where)
                for seed in grid.seeds:
                    configs, space = cell_configs(entry, method, grid, seed)
                    values = {"task": task.name, "method": entry.name, "preset": method.name, "seed": seed,
                              "config": asdict(configs[0]), "template": task.template_for(method.template),
                              "label_map": task.label_map, "label_field": task.label_field,
                              "text_fields": task.text_fields, **task.sources(seed), "model": model,
                              "device": grid.device, "dtype": grid.dtype, "module": method.module}
                    if space:
                        values["space"] = space
                    keyed = {**values, "config": keyed_dict(configs[0])}  # an option added since: as before
                    out.append(Cell(id=cell_id(keyed), **values, keep_weights=grid.keep_weights))
    return out
