"""Run one cell where it is scheduled (this process, or a Ray worker) and return its record.

The model is loaded by name inside the process that runs the cell, once per process. The method
runs through its registered `run` function with the cell's train and dev splits (dev picks the
best checkpoint or prompt); then the shared evaluator scores the result on dev and on test, which
the method never saw. The artifact goes to DIR/cells/<id>/.
"""

from __future__ import annotations

import importlib
import logging
import os
import random
import shutil
import time
from pathlib import Path

import torch

from prompt_compare.cells import Cell
from prompt_compare.meter import Meter
from prompt_compare.presets import preset
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


def seed_everything(seed: int) -> None:
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run_cell(cell: dict, out: str, threads: int | None = None) -> dict:
    """Run a cell (a Cell.to_dict()) and return its results.jsonl record; raises when it fails."""
    from frozen_lm.artifact import WEIGHTS, claim_out
    from frozen_lm.evaluate import evaluate
    from frozen_lm.results import config_from_dict
    from frozen_lm.task import PromptTask

    c = Cell.from_dict(cell)
    if threads:
        torch.set_num_threads(threads)
    lm = load_model(c.model, c.device, c.dtype)
    p = preset(c.preset)
    method = p.registered()
    for module in p.imports:  # a library's import is not the method's memory
        importlib.import_module(module)
    config = config_from_dict(method.config, c.config, c.label)
    task = PromptTask(lm, c.template, c.label_map, label_field=c.label_field, text_fields=c.text_fields)
    art = Path(out) / "cells" / c.id
    if art.exists():
        shutil.rmtree(art)  # a cell cut short earlier: its folder is this cell's own
    claim_out(art)
    seed_everything(c.seed)
    with Meter(lm.device) as meter:
        started = time.perf_counter()
        result = method.run(task, c.train, c.dev, config, out=art, progress=False)
        wall = time.perf_counter() - started
    started = time.perf_counter()
    scores = {split: evaluate(task, getattr(c, split), prompt=result) for split in ("dev", "test")}
    record = {"id": c.id, "task": c.task, "method": c.method, "preset": c.preset, "seed": c.seed, "status": "done",
              "metric": task.metric, "dev": scores["dev"][task.metric], "test": scores["test"][task.metric],
              "dev_metrics": scores["dev"], "test_metrics": scores["test"],
              "trainable_params": _trainable(meter, result, p.trains), "trains": p.trains,
              "bytes_stored": stored_bytes(result), "weights_sha256": file_digest(art / WEIGHTS),
              "forward_tokens": meter.forward_tokens, "backward_tokens": meter.backward_tokens,
              "tokens_source": "measured", "wall_s": wall, "peak_mb": meter.peak_bytes / 2**20,
              "memory_source": meter.memory_source, "threads": torch.get_num_threads(), "worker": os.getpid(),
              "artifact": f"cells/{c.id}", "config": c.config,
              "data_sha256": {split: source_digest(getattr(c, split)) for split in ("train", "dev", "test")}}
    if p.nearest:
        record["derived"] = [_nearest(task, c, result, record)]
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


def _nearest(task, c: Cell, result, parent: dict) -> dict:
    """The nearest-token reading of a soft prompt, scored like any prompt (its training is the parent's)."""
    import softprompt
    from frozen_lm.evaluate import evaluate

    reading = softprompt.nearest(result, k=1, lm=task.lm)
    scores = {split: evaluate(task, getattr(c, split), prompt=reading.prompt) for split in ("dev", "test")}
    ids = reading.prompt.trigger_ids
    return {"method": f"{c.method} (nearest tokens)", "dev": scores["dev"][task.metric],
            "test": scores["test"][task.metric], "dev_metrics": scores["dev"], "test_metrics": scores["test"],
            "trainable_params": parent["trainable_params"], "trains": "tokens", "bytes_stored": 8 * len(ids),
            "forward_tokens": parent["forward_tokens"], "backward_tokens": parent["backward_tokens"],
            "wall_s": parent["wall_s"], "peak_mb": parent["peak_mb"], "tokens_text": reading.trigger_text}
