"""`compare(...)`: run a grid of tasks x models x methods x seeds, one protocol for every method, and
return its rows, table and plots. Finished cells are read back from DIR/results.jsonl and skipped; a
folder that holds results of a task of the same name defined otherwise is refused. With several
models, the discrete results are then scored on every other model (prompt_compare.transfer)."""

from __future__ import annotations

import json
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

from frozen_lm.errors import Interrupted, UserError
from frozen_lm.events import Callback, Event, notify
from frozen_lm.parallel import default_threads
from prompt_compare import store
from prompt_compare.cells import Cell, grid_cells
from prompt_compare.engine import run_ray, run_sequential, run_transfers
from prompt_compare.entries import methods_from
from prompt_compare.plots import write_plots, write_transfer_plot
from prompt_compare.significance import annotate
from prompt_compare.spec import (
    Grid,
    check_grid,
    grid_from_dict,
    load_spec,
    models_from,
    seeds_from,
    source_digest,
    task_from_dict,
)
from prompt_compare.table import aggregate, to_csv, to_markdown
from prompt_compare.transfer import transfer_csv, transfer_jobs, transfer_markdown, transfer_rows

logger = logging.getLogger(__name__)


@dataclass
class CompareResult:
    """out: the grid's folder; rows: one record per cell of this grid (results.jsonl, grid order);
    table: one row per (task, model, method) with mean and sd over seeds, the chosen settings of a
    sweep and the significance marks; plots: the written PNGs; ran / skipped / failed: cells run now,
    finished before, recorded as failed; status: 'done', 'stopped' (by the callback) or
    'interrupted'; seconds: wall time of this call; transfers: with several models, one record per
    discrete result scored on another model (transfer.jsonl), transfer: its table rows."""

    out: Path
    rows: list[dict]
    table: list[dict]
    plots: list[Path] = field(default_factory=list)
    ran: int = 0
    skipped: int = 0
    failed: int = 0
    status: str = "done"
    seconds: float = 0.0
    workers: int = 1
    transfers: list[dict] = field(default_factory=list)
    transfer: list[dict] = field(default_factory=list)

    @property
    def markdown(self) -> str:
        return (self.out / store.TABLE_MD).read_text(encoding="utf-8")


def compare(grid, methods=None, seeds=None, *, out, workers: int = 1, ray_address: str | None = None,
            threads: int | None = None, callback: Callback | None = None, model: str | None = None,
            models=None, device: str | None = None, dtype: str | None = None, defaults: dict | None = None,
            sweep: dict | None = None, tune: bool | None = None, keep_weights: bool = False,
            report_to=None, tracking_dir=None) -> CompareResult:
    """Run a grid and write DIR/results.jsonl, table.md, table.csv, plots/ and cells/<id>/ artifacts.

    grid: a spec file (YAML, TOML, JSON), a spec dict, a `Grid`, or the task(s) (a dict or TaskDef,
    or a list of them) with `methods` (registered methods, `prompt_compare.comparable_methods()`: names,
    {name: config} mappings or {name, method, config} mappings) and `seeds`. model, device, dtype,
    defaults (options given to every method whose config has them): override the spec's. models: a
    list (or 'a,b'): every method runs on each model, and every discrete result is also scored on
    every other model (transfer.md); model: the one-model form. tune: every method tries its default
    search space (`Method.space`) and keeps the best setting on dev, per seed; sweep: spaces of your
    own, {method name: {option: [values]}} (replaces the spec's; prompt_compare.sweep has the rules);
    keep_weights: keep every setting's weights (default: only the chosen one's). out: the
    grid's folder (refused when it holds results of a task of the same name defined otherwise).
    workers: 1 runs here, in order, without Ray;
    N > 1 runs N cells at a time on a local Ray (torch threads per worker: cores / N unless
    `threads`); ray_address: an existing Ray cluster. callback(event) gets an Event('compare',
    'cell', done, total, record) per finished cell; True stops the grid after the cells in flight.
    Ctrl-C raises Interrupted (finished cells are kept; rerun to continue). report_to: experiment
    trackers (frozen_lm.tracking; 'tensorboard', 'mlflow', 'wandb'), one run per cell named after it,
    grouped under the grid's folder name (an MLflow parent run with the grid's files, a W&B group;
    TensorBoard: each cell's folder); tracking_dir: their local folder.
    """
    if workers < 1:
        raise UserError(f"workers must be at least 1, got {workers}")
    g = as_grid(grid, methods, seeds, model=model, models=models, defaults=defaults, sweep=sweep, tune=tune,
                keep_weights=keep_weights)
    g.device, g.dtype = device or g.device, dtype or g.dtype
    cells = grid_cells(g)
    out = store.claim_grid_out(out)
    group = _group(report_to, tracking_dir, out, g)
    specs = {t.name: json.loads(json.dumps(t.definition(), default=str)) for t in g.tasks}  # as results.jsonl keeps it
    records = store.read_records(out)
    store.check_tasks(out, records, specs)
    store.write_text(out / store.GRID, _grid_json(cells))
    finished = {i: r for i, r in records.items() if r.get("status") == "done"}
    digests = {src: source_digest(src) for c in cells for src in (c.train, c.dev, c.test)}
    todo = [c for c in cells if c.id not in finished or data_changed(c, finished[c.id], digests)]
    logger.info("%d cells: %d finished before (skipped), %d to run on %s", len(cells), len(cells) - len(todo),
                len(todo), "1 worker" if workers == 1 and ray_address is None else f"{workers} Ray workers")
    counter = {"done": len(cells) - len(todo), "ran": 0}

    def on_record(record: dict) -> bool:
        record = {**record, "task_spec": specs[record["task"]]}
        store.append_record(out, record)
        counter["done"] += 1
        counter["ran"] += 1
        logger.info("[%d/%d] %s / %s / seed %s: %s", counter["done"], len(cells), record["task"], record["method"],
                    record["seed"], _outcome(record))
        return notify(callback, Event("compare", "cell", counter["done"], len(cells), record))

    started = time.perf_counter()
    try:
        if workers == 1 and ray_address is None:
            status = run_sequential(todo, out, on_record, threads, tracking=group.tracking if group else None)
        else:
            status = run_ray(todo, out, on_record, workers, ray_address, threads or default_threads(workers),
                             tracking=group.tracking if group else None)
        if status == "done" and len(g.models) > 1:
            status = run_transfers(cells, out, g.models, workers, ray_address,
                                   threads if workers == 1 and ray_address is None else threads or default_threads(workers))
    except KeyboardInterrupt:
        result = finish(cells, out, "interrupted", started, counter["ran"], len(cells) - len(todo), workers, g.models)
        if group is not None:
            group.finish("interrupted", out)
        raise Interrupted(f"interrupted: {counter['done']} of {len(cells)} cells are finished and kept in "
                          f"{out / store.RESULTS}; run the same command again to continue", result) from None
    result = finish(cells, out, status, started, counter["ran"], len(cells) - len(todo), workers, g.models)
    if group is not None:
        group.finish(status, out)
    return result


def _group(report_to, tracking_dir, out: Path, g: Grid):
    """The grid's tracking (frozen_lm.tracking.open_group; None without report_to, here or around the call):
    its folder's name as the group, its tasks, methods, seeds and models as the parent run's parameters."""
    from frozen_lm.tracking import current, open_group

    params = {"tasks": [t.name for t in g.tasks], "methods": [getattr(m, "name", str(m)) for m in g.methods],
              "seeds": list(g.seeds), "model": g.model}
    return open_group(current(report_to, tracking_dir), out.name, params)


def data_changed(cell: Cell, record: dict, digests: dict[str, str | None]) -> bool:
    """Whether a finished cell's data files changed since it ran (its record's digests differ from the
    files' `digests` now): such a cell runs again, so a table never mixes old and new data. Records
    written before digests were kept are taken as they are."""
    kept = record.get("data_sha256")
    if not kept:
        return False
    changed = [split for split in ("train", "dev", "test") if kept.get(split) != digests[getattr(cell, split)]]
    if changed:
        logger.warning("%s: its %s data changed since it ran; running it again", cell.label, " and ".join(changed))
    return bool(changed)


def as_grid(grid, methods=None, seeds=None, *, model: str | None = None, models=None, defaults: dict | None = None,
            sweep: dict | None = None, tune: bool | None = None, keep_weights: bool = False) -> Grid:
    """A Grid from any form `compare` takes (methods / seeds / model(s) / sweep given here replace a spec's)."""
    if isinstance(grid, str | Path):
        g = load_spec(grid)
    elif isinstance(grid, Grid):
        g = grid
    elif isinstance(grid, dict) and "tasks" in grid:
        g = grid_from_dict(grid)
    else:
        tasks = grid if isinstance(grid, list) else [grid]
        if methods is None or seeds is None:
            raise UserError("give methods and seeds with the task(s), or a spec")
        g = Grid([task_from_dict(t, f"tasks[{i}]" if len(tasks) > 1 else "task", None,
                                 f"task{i + 1}" if len(tasks) > 1 else "task")
                  for i, t in enumerate(tasks)], [], [])
    if methods is not None:
        g.methods = methods_from(methods)
    if seeds is not None:
        g.seeds = seeds_from(seeds)
    if model is not None and models is not None:
        raise UserError("give model (one) or models (several), not both")
    if model is not None:
        g.model, g.models = str(model), [str(model)]
    if models is not None:
        g.models = models_from(models)
    g.models = [_model_path(m) for m in (g.models or [g.model])]  # a local folder: the same for every worker
    g.model = g.models[0]
    if sweep is not None:
        g.sweep, g.sweep_at = sweep, ""
    if tune is not None:
        g.tune = bool(tune)
    g.keep_weights = bool(keep_weights)
    if defaults:
        g.defaults = {**g.defaults, **defaults}
        g.defaults_at = {**g.defaults_at, **{key: f"defaults.{key}" for key in defaults}}  # the argument's keys
    return check_grid(g)


def _model_path(name: str) -> str:
    path = Path(name).expanduser()
    return str(path.resolve()) if path.is_dir() else str(name)


def finish(cells: list[Cell], out: Path, status: str, started: float, ran: int, skipped: int,
           workers: int, models: list[str] | None = None) -> CompareResult:
    """Read this grid's records back, write the tables and the plots, and return the result."""
    records = store.read_records(out)
    rows = [{**records[c.id], "model": records[c.id].get("model", c.model)} for c in cells if c.id in records]
    order = list(dict.fromkeys((c.task, c.model, c.method) for c in cells))
    table = annotate(aggregate(rows, order), rows)
    memory = {r.get("memory_source") for r in rows if r.get("memory_source")}
    store.write_text(out / store.TABLE_MD, to_markdown(table, _memory_words(memory)))
    store.write_text(out / store.TABLE_CSV, to_csv(table))
    plots = write_plots(table, out / "plots") if rows else []
    transfers, transfer = [], []
    if models and len(models) > 1:
        kept = store.read_records(out, store.TRANSFER)
        transfers = [kept[j.id] for j in transfer_jobs(cells, records, models) if j.id in kept]
        transfer = transfer_rows(rows, transfers, models)
        store.write_text(out / store.TRANSFER_MD, transfer_markdown(transfer, models))
        store.write_text(out / store.TRANSFER_CSV, transfer_csv(transfer))
        plots += write_transfer_plot(transfer, models, out / "plots") if transfer else []
    failed = sum(r.get("status") == "failed" for r in rows)
    return CompareResult(out, rows, table, plots, ran, skipped, failed, status,
                         time.perf_counter() - started, workers, transfers, transfer)


def _grid_json(cells: list[Cell]) -> str:
    return json.dumps({"cells": [c.to_dict() for c in cells]}, indent=2, sort_keys=True, default=str) + "\n"


def _outcome(record: dict) -> str:
    if record.get("status") != "done":
        return f"failed ({record.get('error')})"
    return f"test {record['metric']} {record['test']:.4f} in {record['wall_s']:.1f} s"


def _memory_words(sources: set[str]) -> str:
    words = {"cuda": "CUDA allocated memory", "rss": "resident memory, peak reset per cell",
             "rss-max": "resident memory; the peak could not be reset, so later cells may read low"}
    return ", ".join(words.get(s, s) for s in sorted(sources)) or "resident memory"
