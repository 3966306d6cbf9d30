"""Run one cell where it is scheduled (this process, or a Ray worker) and return its record.

The model is loaded by name inside the process that runs the cell, once per process. The cell's
registered method runs through the one runner (`frozen_lm.run`, which claims DIR/cells/<id>/ for
its artifact and seeds the run) with the cell's train and dev splits (dev picks the best checkpoint
or prompt); then the shared evaluator scores the result on dev and on test, which the method never
saw, and every prompt the method derives from it (`Method.derived`: a soft prompt's nearest-token
reading) the same way, as rows of their own.
"""

from __future__ import annotations

import importlib
import logging
import os
import time
from pathlib import Path

import torch

from frozen_lm.methods import methods
from prompt_compare.cells import Cell
from prompt_compare.entries import registered
from prompt_compare.meter import Meter
from prompt_compare.spec import file_digest, source_digest

logger = logging.getLogger(__name__)
_MODELS: dict[tuple, object] = {}  # (name, device, dtype) -> FrozenLM, kept for the process's next cells
TIMING_FIELDS = ("wall_s", "eval_s", "peak_mb", "memory_source", "threads", "worker", "finished_at", "attempts")


def load_model(name: str, device: str = "auto", dtype: str = "auto"):
    """The FrozenLM for a cell (loaded once per process; the frozen model is shared by its cells)."""
    from frozen_lm.model import FrozenLM

    key = (name, device, dtype)
    if key not in _MODELS:
        _MODELS[key] = FrozenLM.load(name, device, dtype)
    return _MODELS[key]


def cell_method(c: Cell):
    """The registered method a cell runs (its package imported first: a method registered by a module
    of the user's own, not through an entry point, is known in a Ray worker too)."""
    if c.preset not in methods() and c.module:
        importlib.import_module(c.module)
    return registered(c.preset, c.label)


def run_cell(cell: dict, out: str, threads: int | None = None, tracking=None) -> dict:
    """Run a cell (a Cell.to_dict()) and return its results.jsonl record; raises when it fails.
    tracking: the grid's (a frozen_lm.tracking.Tracking, or None): the cell's run is a tracked run
    named after the cell, in the grid's group (a sweep's settings: 'CELL/setting-K')."""
    if tracking is None:
        return _run_cell(cell, out, threads)
    from dataclasses import replace

    from frozen_lm.tracking import using

    with using(replace(tracking, name=cell["id"])):
        return _run_cell(cell, out, threads)


def _run_cell(cell: dict, out: str, threads: int | None = None) -> dict:
    """The cell's run(s), its scores and its record."""
    from frozen_lm.artifact import WEIGHTS
    from frozen_lm.configs import from_dict
    from frozen_lm.evaluate import evaluate
    from frozen_lm.runner import run
    from frozen_lm.task import PromptTask

    c = Cell.from_dict(cell)
    if threads:
        torch.set_num_threads(threads)
    lm = load_model(c.model, c.device, c.dtype)
    method = cell_method(c)
    for module in method.imports:  # a library's import is not the method's memory
        importlib.import_module(module)
    config = from_dict(method.config, c.config, c.label)
    task = PromptTask(lm, c.template, c.label_map, label_field=c.label_field, text_fields=c.text_fields)
    art = Path(out) / "cells" / c.id  # the cell's own: a run cut short there earlier is replaced
    with Meter(lm.device) as meter:
        started = time.perf_counter()
        result = run(method, task, c.train, c.dev, config, out=art, overwrite=True, progress=False)
        wall = time.perf_counter() - started
    started = time.perf_counter()
    scores = {split: evaluate(task, getattr(c, split), prompt=result) for split in ("dev", "test")}
    record = {"id": c.id, "task": c.task, "method": c.method, "preset": c.preset, "seed": c.seed, "status": "done",
              "metric": task.metric, "dev": scores["dev"][task.metric], "test": scores["test"][task.metric],
              "dev_metrics": scores["dev"], "test_metrics": scores["test"],
              "trainable_params": _trainable(meter, result, method.trains), "trains": method.trains,
              "bytes_stored": stored_bytes(result), "weights_sha256": file_digest(art / WEIGHTS),
              "forward_tokens": meter.forward_tokens, "backward_tokens": meter.backward_tokens,
              "tokens_source": "measured", "wall_s": wall, "peak_mb": meter.peak_bytes / 2**20,
              "memory_source": meter.memory_source, "threads": torch.get_num_threads(), "worker": os.getpid(),
              "artifact": f"cells/{c.id}", "config": c.config,
              "data_sha256": {split: source_digest(getattr(c, split)) for split in ("train", "dev", "test")}}
    if method.derived is not None:
        record["derived"] = [_derived(task, c, d, record) for d in method.derived(result, task)]
    record["eval_s"] = time.perf_counter() - started
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return record


def _trainable(meter: Meter, result, trains: str) -> int:
    """Values the method optimized: the optimizer's tensors; discrete search: its token slots."""
    if meter.trainable:
        return meter.trainable
    if trains == "tokens" and "trigger_ids" in result.tensors:
        return int(result.tensors["trigger_ids"].numel())
    return 0


def stored_bytes(result) -> int:
    """Bytes a task keeps beside the shared frozen model: the data of the result's `task_tensors()`
    (a soft prompt's vectors, not the initial values its artifact also keeps; a search's trigger ids,
    not its beam; no file headers)."""
    return sum(t.numel() * t.element_size() for t in result.task_tensors().values())


def _derived(task, c: Cell, derived, parent: dict) -> dict:
    """A prompt read off the result (a `frozen_lm.methods.Derived`), scored like any prompt; its
    training is the parent's, so it shares the parent's counts."""
    from frozen_lm.evaluate import evaluate

    scores = {split: evaluate(task, getattr(c, split), prompt=derived.prompt) for split in ("dev", "test")}
    return {"method": f"{c.method} ({derived.name})", "dev": scores["dev"][task.metric],
            "test": scores["test"][task.metric], "dev_metrics": scores["dev"], "test_metrics": scores["test"],
            "trainable_params": parent["trainable_params"], "trains": derived.trains,
            "bytes_stored": prompt_bytes(derived.prompt), "forward_tokens": parent["forward_tokens"],
            "backward_tokens": parent["backward_tokens"], "wall_s": parent["wall_s"], "peak_mb": parent["peak_mb"],
            "tokens_text": derived.text}


def prompt_bytes(prompt) -> int:
    """Bytes a derived prompt keeps: its tensors (a result), or 8 per token id (a discrete prompt)."""
    if hasattr(prompt, "task_tensors"):
        return stored_bytes(prompt)
    return 8 * len(getattr(prompt, "trigger_ids", ()))
