"""Where cells run: one after another in this process (workers=1, Ray never imported), or on Ray
(a local Ray started here with `workers` CPUs, or an existing cluster at `ray_address`).

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
import os
import sys
import time
from collections import deque
from collections.abc import Callable
from pathlib import Path

from frozen_lm.errors import UserError
from frozen_lm.methods import methods
from prompt_compare.cells import Cell
from prompt_compare.execute import run_cell

logger = logging.getLogger(__name__)
ATTEMPTS = 2


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


def error_text(e: BaseException) -> str:
    """One line: the exception type and its first line (a Ray error: the cause inside it)."""
    cause = getattr(e, "cause", None) or e
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"[:500]


def default_threads(workers: int) -> int:
    """Torch threads per worker: the machine's cores split between the workers."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run_sequential(cells: list[Cell], out: Path, on_record: Callable[[dict], bool], threads: int | None = None) -> str:
    """Run cells here, in order; 'stopped' when on_record asks to stop, else 'done'."""
    for cell in cells:
        record = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                record = {**run_cell(cell.to_dict(), str(out), threads), "attempts": attempt}
                break
            except Exception as e:  # noqa: BLE001 - a failing cell must not stop the grid
                logger.warning("%s failed (attempt %d of %d): %s", cell.label, attempt, ATTEMPTS, error_text(e))
                logger.debug("cell failure", exc_info=True)
                if attempt == ATTEMPTS:
                    record = failed_record(cell, error_text(e), attempt)
        if on_record(record):
            return "stopped"
    return "done"


def run_ray(cells: list[Cell], out: Path, on_record: Callable[[dict], bool], workers: int,
            ray_address: str | None = None, threads: int | None = None) -> str:
    """Run cells on Ray, at most `workers` at a time; 'stopped' when on_record asks to stop (cells in
    flight finish first), else 'done'."""
    ray, started_here = _start_ray(workers, ray_address, threads)
    remote = ray.remote(run_cell).options(num_cpus=1 if ray_address is None else threads or 1,
                                          num_gpus=_gpus_per_cell(cells, workers), max_retries=0)
    pending, inflight, stopping = deque(cells), {}, False
    try:
        while pending or inflight:
            while pending and not stopping and len(inflight) < workers:
                cell = pending.popleft()
                inflight[remote.remote(cell.to_dict(), str(out.resolve()), threads)] = (cell, 1)
            if not inflight:
                break
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            cell, attempt = inflight.pop(ref)
            try:
                record = {**ray.get(ref), "attempts": attempt}
            except Exception as e:  # noqa: BLE001 - RayTaskError, a dead worker: retried, then recorded
                logger.warning("%s failed (attempt %d of %d): %s", cell.label, attempt, ATTEMPTS, error_text(e))
                if attempt < ATTEMPTS:
                    inflight[remote.remote(cell.to_dict(), str(out.resolve()), threads)] = (cell, attempt + 1)
                    continue
                record = failed_record(cell, error_text(e), attempt)
            stopping = bool(on_record(record)) or stopping
    except KeyboardInterrupt:
        for ref in inflight:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
    return "stopped" if stopping else "done"


def _gpus_per_cell(cells: list[Cell], workers: int) -> float:
    """GPUs a Ray task asks for (Ray hides the GPUs from tasks that ask for none): the local GPUs
    shared by the workers, when the cells may use CUDA; 0 on CPU."""
    import torch

    if not cells or cells[0].device == "cpu" or not torch.cuda.is_available():
        return 0
    return min(1.0, torch.cuda.device_count() / workers)


def _start_ray(workers: int, address: str | None, threads: int | None):
    """(ray, whether it was started here): a local Ray with `workers` CPUs, the cluster at `address`,
    or the Ray this process is already connected to."""
    try:
        import ray
    except ImportError:
        raise UserError("workers above 1 run cells on Ray: pip install 'ray>=2.9' (or the 'compare' extra), "
                        "or give workers=1") from None
    env = {"OMP_NUM_THREADS": str(threads or 1), "TOKENIZERS_PARALLELISM": "false"}
    if ray.is_initialized():
        return ray, False
    if address is None:
        roots = {str(Path(sys.modules[p].__file__).resolve().parents[1]) for p in packages()}
        env["PYTHONPATH"] = os.pathsep.join([*sorted(roots), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        os.environ.setdefault("RAY_raylet_start_wait_time_s", "300")  # a busy machine starts Ray slowly
        try:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     object_store_memory=200 * 2**20, runtime_env={"env_vars": env})
        except Exception as e:  # raylet/GCS start-up failures come as plain Exceptions
            raise UserError(f"Ray could not start locally ({error_text(e)}); give workers=1 (same numbers, no Ray)") from None
        return ray, True
    modules = [sys.modules[p] for p in packages()]
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": env, "py_modules": modules})
    except ConnectionError as e:
        raise UserError(f"ray_address={address}: cannot connect ({error_text(e)})") from None
    return ray, True
