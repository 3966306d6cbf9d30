"""Where cells run: one after another in this process (workers=1, Ray never imported), or on Ray
(a local Ray started here with `workers` CPUs, or an existing cluster at `ray_address`), through
frozen_lm.parallel. The transfer jobs of a grid with several models (prompt_compare.transfer) run
the same way once the cells are done.

Each cell is tried twice at most: a cell that raises (or whose Ray worker dies) runs once more,
then is recorded with its error, and the grid goes on. Every finished cell is handed to
`on_record` as soon as it is done (the caller appends it to results.jsonl). Ctrl-C stops the grid:
cells in flight are cancelled and not recorded; finished ones are already kept.

Cells are seeded and independent, so their numbers depend neither on the order nor on the worker
that runs them. The one difference between workers=1 and N is torch's thread count (all cores
here, cores / N per Ray worker), which could only change float summation order; on the tiny test
models and a 256-wide one, 1 and 2 threads train bit-identical weights.
"""

from __future__ import annotations

import logging
import sys
import time
from collections.abc import Callable
from pathlib import Path

from frozen_lm.methods import methods
from frozen_lm.parallel import run_jobs
from prompt_compare import store
from prompt_compare.cells import Cell
from prompt_compare.execute import run_cell
from prompt_compare.transfer import failed_transfer, run_transfer, transfer_jobs

logger = logging.getLogger(__name__)


def packages() -> list[str]:
    """The top-level packages a worker imports: the core, this package, and every package that
    registers a method (found through the registry, which loads them)."""
    registering = {m.module.split(".")[0] for m in methods().values() if m.module}
    found = [p for p in registering if getattr(sys.modules.get(p), "__file__", None)]
    return sorted({"frozen_lm", "prompt_compare", *found})


def failed_record(cell: Cell, error: str, attempts: int) -> dict:
    return {"id": cell.id, "task": cell.task, "method": cell.method, "preset": cell.preset, "seed": cell.seed,
            "status": "failed", "error": error, "attempts": attempts, "config": cell.config,
            "finished_at": time.strftime("%Y-%m-%dT%H:%M:%S")}


def run_sequential(cells: list[Cell], out: Path, on_record: Callable[[dict], bool], threads: int | None = None,
                   tracking=None) -> str:
    """Run cells here, in order; 'stopped' when on_record asks to stop, else 'done'. tracking: the
    grid's (frozen_lm.tracking.Tracking), each cell a run of its own."""
    return run_jobs(cells, run_cell, lambda cell, record: on_record(record),
                    args=(str(out), threads, tracking),
                    failed=failed_record)


def run_ray(cells: list[Cell], out: Path, on_record: Callable[[dict], bool], workers: int,
            ray_address: str | None = None, threads: int | None = None, tracking=None) -> str:
    """Run cells on Ray, at most `workers` at a time; 'stopped' when on_record asks to stop (cells in
    flight finish first), else 'done'. tracking: the grid's, each cell a run of its own."""
    return run_jobs(cells, run_cell, lambda cell, record: on_record(record), workers=workers,
                    ray_address=ray_address, threads=threads, args=(str(out.resolve()), threads, tracking),
                    failed=failed_record, packages=packages(),
                    gpus=_gpus_per_cell(cells, workers))


def run_transfers(cells: list[Cell], out: Path, models: list[str], workers: int = 1, ray_address: str | None = None,
                  threads: int | None = None) -> str:
    """Score every finished cell's discrete results on the other models (the jobs not in
    transfer.jsonl yet), appending each record there; 'done'."""
    kept = store.read_records(out, store.TRANSFER)
    jobs = [j for j in transfer_jobs(cells, store.read_records(out), models)
            if kept.get(j.id, {}).get("status") != "done"]
    if not jobs:
        return "done"
    logger.info("%d transfer jobs: discrete results scored on the other models", len(jobs))

    def on_done(job, record) -> bool:
        store.append_record(out, record, store.TRANSFER)
        logger.info("%s: %s", job.label, f"test {record['test']:.4f}" if record.get("status") == "done"
                    else f"failed ({record.get('error')})")
        return False

    local = workers == 1 and ray_address is None
    return run_jobs(jobs, run_transfer, on_done, workers=workers, ray_address=ray_address, threads=threads,
                    args=(str(out if local else out.resolve()), threads), failed=failed_transfer,
                    packages=packages(), gpus=0 if local else _gpus_per_cell(cells, workers))


def _gpus_per_cell(cells: list[Cell], workers: int) -> float:
    """GPUs a Ray task asks for (Ray hides the GPUs from tasks that ask for none): the local GPUs
    shared by the workers, when the cells may use CUDA; 0 on CPU."""
    import torch

    if not cells or cells[0].device == "cpu" or not torch.cuda.is_available():
        return 0
    return min(1.0, torch.cuda.device_count() / workers)
