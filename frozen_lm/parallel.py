"""Independent jobs in order in this process, or on Ray: what a grid of cells (prompt_compare) and a
file of behaviors (autoprompt's harness) share.

`run_jobs(jobs, fn, on_done, workers=...)` calls `fn(job.to_dict(), *args) -> record` for every job:
workers=1 (and no ray_address) runs them here, one after another, without importing Ray; otherwise a
local Ray with `workers` CPUs (or the cluster at `ray_address`) runs at most `workers` at a time.
Each job is tried twice at most: a job that raises (or whose Ray worker dies) runs once more, then
`failed(job, error, attempts)` is its record. Every record goes to `on_done(job, record)` as soon as
it exists; on_done returning True stops the run after the jobs in flight. Ctrl-C cancels the jobs in
flight and raises; finished ones have been handed over already.
"""

from __future__ import annotations

import logging
import os
import sys
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import asdict, fields
from pathlib import Path

from frozen_lm.errors import UserError

logger = logging.getLogger(__name__)
ATTEMPTS = 2


class Job:
    """Base of a dataclass job for run_jobs: handed to a worker as a plain dict (`to_dict`), read back
    with `from_dict` (keys the class does not have are left out); subclasses give `label`."""

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, d: dict):
        names = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in d.items() if k in names})


def error_text(e: BaseException) -> str:
    """One line: the exception type and its first line (a Ray error: the cause inside it)."""
    cause = getattr(e, "cause", None) or e
    first = (str(cause).strip().splitlines() or [""])[0]
    return f"{type(cause).__name__}: {first}"[:500]


def default_threads(workers: int) -> int:
    """Torch threads per worker: the machine's cores split between the workers."""
    return max(1, (os.cpu_count() or 1) // max(1, workers))


def run_jobs(jobs: Sequence, fn: Callable[..., dict], on_done: Callable[[object, dict], bool], *, workers: int = 1,
             ray_address: str | None = None, threads: int | None = None, args: tuple = (),
             failed: Callable[[object, str, int], dict] | None = None, packages: Sequence[str] = ("frozen_lm",),
             gpus: float = 0) -> str:
    """Run every job (see the module docstring); 'stopped' when on_done asked to stop, else 'done'.
    packages: the top-level packages a worker imports (put on its path, or shipped to a cluster);
    gpus: GPUs each Ray task asks for."""
    failed = failed or (lambda job, error, attempts: {"status": "failed", "error": error, "attempts": attempts})
    if workers == 1 and ray_address is None:
        return _in_order(jobs, fn, on_done, args, failed)
    return _on_ray(jobs, fn, on_done, workers, ray_address, threads, args, failed, packages, gpus)


def _label(job) -> str:
    return getattr(job, "label", None) or str(job)


def _in_order(jobs, fn, on_done, args, failed) -> str:
    for job in jobs:
        record = None
        for attempt in range(1, ATTEMPTS + 1):
            try:
                record = {**fn(job.to_dict(), *args), "attempts": attempt}
                break
            except Exception as e:  # noqa: BLE001 - a failing job must not stop the others
                logger.warning("%s failed (attempt %d of %d): %s", _label(job), attempt, ATTEMPTS, error_text(e))
                logger.debug("job failure", exc_info=True)
                if attempt == ATTEMPTS:
                    record = failed(job, error_text(e), attempt)
        if on_done(job, record):
            return "stopped"
    return "done"


def _on_ray(jobs, fn, on_done, workers, ray_address, threads, args, failed, packages, gpus) -> str:
    ray, started_here = start_ray(workers, ray_address, threads, packages)
    remote = ray.remote(fn).options(num_cpus=1 if ray_address is None else threads or 1, num_gpus=gpus, max_retries=0)
    pending, inflight, stopping = deque(jobs), {}, False
    try:
        while pending or inflight:
            while pending and not stopping and len(inflight) < workers:
                job = pending.popleft()
                inflight[remote.remote(job.to_dict(), *args)] = (job, 1)
            if not inflight:
                break
            (ref,), _ = ray.wait(list(inflight), num_returns=1)
            job, attempt = inflight.pop(ref)
            try:
                record = {**ray.get(ref), "attempts": attempt}
            except Exception as e:  # noqa: BLE001 - RayTaskError, a dead worker: retried, then recorded
                logger.warning("%s failed (attempt %d of %d): %s", _label(job), attempt, ATTEMPTS, error_text(e))
                if attempt < ATTEMPTS:
                    inflight[remote.remote(job.to_dict(), *args)] = (job, attempt + 1)
                    continue
                record = failed(job, error_text(e), attempt)
            stopping = bool(on_done(job, record)) or stopping
    except KeyboardInterrupt:
        for ref in inflight:
            ray.cancel(ref, force=True)
        raise
    finally:
        if started_here:
            ray.shutdown()
    return "stopped" if stopping else "done"


def start_ray(workers: int, address: str | None, threads: int | None, packages: Sequence[str]):
    """(ray, whether it was started here): a local Ray with `workers` CPUs, the cluster at `address`,
    or the Ray this process is already connected to."""
    try:
        import ray
    except ImportError:
        raise UserError("workers above 1 run on Ray: pip install 'ray>=2.9' (or the 'compare' extra), "
                        "or give workers=1") from None
    env = {"OMP_NUM_THREADS": str(threads or 1), "TOKENIZERS_PARALLELISM": "false"}
    if ray.is_initialized():
        return ray, False
    if address is None:
        roots = {str(Path(sys.modules[p].__file__).resolve().parents[1]) for p in packages if p in sys.modules}
        env["PYTHONPATH"] = os.pathsep.join([*sorted(roots), os.environ.get("PYTHONPATH", "")]).rstrip(os.pathsep)
        os.environ.setdefault("RAY_raylet_start_wait_time_s", "300")  # a busy machine starts Ray slowly
        try:
            ray.init(num_cpus=workers, include_dashboard=False, log_to_driver=False, configure_logging=False,
                     object_store_memory=200 * 2**20, runtime_env={"env_vars": env})
        except Exception as e:  # raylet/GCS start-up failures come as plain Exceptions
            raise UserError(f"Ray could not start locally ({error_text(e)}); give workers=1 (same numbers, no Ray)") from None
        return ray, True
    modules = [sys.modules[p] for p in packages if p in sys.modules]
    try:
        ray.init(address=address, log_to_driver=False, configure_logging=False,
                 runtime_env={"env_vars": env, "py_modules": modules})
    except ConnectionError as e:
        raise UserError(f"ray_address={address}: cannot connect ({error_text(e)})") from None
    return ray, True
