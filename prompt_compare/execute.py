"""Run one cell where it is scheduled (this process, or a Ray worker) and return its record.

The model is loaded by name inside the process that runs the cell, once per process. The cell's
registered method runs through the one runner (`frozen_lm.run`, which claims DIR/cells/<id>/ for
its artifact and seeds the run) with the cell's train and dev splits (dev picks the best checkpoint
or prompt); a sweep cell runs every setting and keeps the best on dev (prompt_compare.trials).
Then the shared evaluator scores the result on dev and on test, which the method never saw, and
every prompt the method derives from it (`Method.derived`: a soft prompt's nearest-token reading)
the same way, as rows of their own. Each test score comes with its examples one by one
(`test_examples`: correct or not, and the predicted and right class where there are classes),
which the significance tests pair (prompt_compare.significance).
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
from prompt_compare.spec import source_digest
from prompt_compare.trials import run_setting, run_sweep, stored_bytes

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
    from frozen_lm.configs import from_dict
    from frozen_lm.evaluate import evaluate
    from frozen_lm.task import PromptTask

    c = Cell.from_dict(cell)
    if threads:
        torch.set_num_threads(threads)
    lm = load_model(c.model, c.device, c.dtype)
    method = cell_method(c)
    for module in method.imports:  # a library's import is not the method's memory
        importlib.import_module(module)
    task = PromptTask(lm, c.template, c.label_map, label_field=c.label_field, text_fields=c.text_fields)
    if c.space:
        outcome, result, tuned = run_sweep(c, method, task, Path(out))
        config = {**c.config, **outcome["setting"]}  # the chosen setting's
    else:  # the cell's own folder: a run cut short there earlier is replaced
        config = from_dict(method.config, c.config, c.label)
        outcome, result = run_setting(c, method, task, config, Path(out) / "cells" / c.id)
        outcome["artifact"], tuned, config = f"cells/{c.id}", {}, c.config
    started = time.perf_counter()
    test = evaluate(task, c.test, prompt=result, examples=True)
    examples = compact(test.pop("examples"))
    record = {"id": c.id, "task": c.task, "method": c.method, "preset": c.preset, "seed": c.seed, "status": "done",
              "metric": task.metric, "dev": outcome["dev"], "test": test[task.metric],
              "dev_metrics": outcome["dev_metrics"], "test_metrics": test,
              "trainable_params": outcome["trainable_params"], "trains": method.trains,
              "bytes_stored": outcome["bytes_stored"], "weights_sha256": outcome["weights_sha256"],
              "forward_tokens": outcome["forward_tokens"], "backward_tokens": outcome["backward_tokens"],
              "tokens_source": "measured", "wall_s": outcome["wall_s"], "peak_mb": outcome["peak_mb"],
              "memory_source": outcome["memory_source"], "threads": torch.get_num_threads(), "worker": os.getpid(),
              "artifact": outcome["artifact"], "config": config, "model": c.model,
              "data_sha256": {split: source_digest(getattr(c, split)) for split in ("train", "dev", "test")},
              "test_examples": examples, **tuned}
    if method.derived is not None:
        record["derived"] = [_derived(task, c, d, record) for d in method.derived(result, task)]
    record["eval_s"] = time.perf_counter() - started
    record["finished_at"] = time.strftime("%Y-%m-%dT%H:%M:%S")
    return record


def compact(examples: dict) -> dict:
    """A split's examples as results.jsonl keeps them: 'correct' as a string of 0/1 (one per scored
    example, in the split's order), 'predicted' and 'label' class indices (token ids for facts; None
    for target strings)."""
    return {"correct": "".join("1" if x else "0" for x in examples["correct"]), "predicted": examples["predicted"],
            "label": examples["label"]}


def _derived(task, c: Cell, derived, parent: dict) -> dict:
    """A prompt read off the result (a `frozen_lm.methods.Derived`), scored like any prompt; its
    training is the parent's, so it shares the parent's counts."""
    from frozen_lm.evaluate import evaluate

    dev = evaluate(task, c.dev, prompt=derived.prompt)
    test = evaluate(task, c.test, prompt=derived.prompt, examples=True)
    examples = compact(test.pop("examples"))
    return {"method": f"{c.method} ({derived.name})", "dev": dev[task.metric], "test": test[task.metric],
            "dev_metrics": dev, "test_metrics": test, "trainable_params": parent["trainable_params"],
            "trains": derived.trains, "bytes_stored": prompt_bytes(derived.prompt),
            "forward_tokens": parent["forward_tokens"], "backward_tokens": parent["backward_tokens"],
            "wall_s": parent["wall_s"], "peak_mb": parent["peak_mb"], "tokens_text": derived.text,
            "test_examples": examples}


def prompt_bytes(prompt) -> int:
    """Bytes a derived prompt keeps: its tensors (a result), or 8 per token id (a discrete prompt)."""
    if hasattr(prompt, "task_tensors"):
        return stored_bytes(prompt)
    return 8 * len(getattr(prompt, "trigger_ids", ()))
