"""A behaviors harness: one GCG search per (goal, target) row of a file in AdvBench's format, or one
universal suffix for all rows (progressive goals, as llm-attacks), with per-row records and a summary.

    from autoprompt.behaviors import behaviors
    r = behaviors("smollm2-135m", "benchmarks/data/behaviors_benign.csv",
                  GCGConfig(iters=60, search_width=64, topk=64, schedule="acg"), out="runs/b")
    r.summary(); r.table(); BehaviorsResult.load("runs/b")

Each row is a registered 'gcg' run through `frozen_lm.run` into out/rows/<i>/ (an artifact of its
own, so a cut harness resumes row by row: finished rows are read back, the others continue), on a
task whose template has the goal in it ('{goal} [T]x20' by default, a chat user message unless
chat=False) and whose target is the row's target. workers > 1 runs rows on Ray workers
(frozen_lm.parallel.run_jobs: a failing row is tried once more, then recorded as failed).

universal=True: one suffix for every goal (autoprompt.universal): it is optimised on the first goal,
and each time it makes every goal so far succeed the next goal joins (stages in out/universal/).

Per row: whether greedy generation after the prompt reproduces the target ('success'), whether the
greedy response starts with a refusal (`refusal_prefixes`, matched at its start, ignoring case), the
final loss (mean cross-entropy per target token), the loss curve against the search's own seconds
(the iterations' time: gradient, sampling, scoring, checks; not the artifact writes between them),
and the seconds to the first iteration whose trigger reproduced the target ('time_to_success').
"""

from __future__ import annotations

import logging
import shutil
from dataclasses import dataclass
from pathlib import Path

from autoprompt.behavior_rows import (
    FILE,
    BehaviorsResult,
    parse_prefixes,
    read_behaviors,
    record_of,
    row_task,
    succeeded,
)
from frozen_lm import configs
from frozen_lm.errors import UserError
from frozen_lm.parallel import Job

logger = logging.getLogger(__name__)
TEMPLATE = "{goal} [T]x20"
REPLACED = ".replaced"  # where overwrite=True keeps the harness it replaces until the new one finishes
_MODELS: dict[tuple, object] = {}  # a worker's loaded models, reused by its later rows


def behaviors(model, rows_or_path, config=None, *, template: str = TEMPLATE, chat: bool = True,
              universal: bool = False, out=None, resume=None, overwrite: bool = False, workers: int = 1,
              refusal_prefixes=None, goal_field: str = "goal", target_field: str = "target", dtype: str | None = None,
              progress: bool = True, ray_address: str | None = None) -> BehaviorsResult:
    """Run GCG on every behavior (see the module docstring) and return their records.

    model: a FrozenLM, or a model name/folder (loaded here, and by every Ray worker); rows_or_path:
    a CSV/JSONL file with goal and target columns (AdvBench's harmful_behaviors.csv format), a list
    of dicts or a Dataset; config: a GCGConfig (default GCGConfig()); template: the message with the
    goal field and the [T] slots; out: the harness folder (behaviors.json, rows/<i>/), rewritten as
    rows finish; resume: a harness folder to continue (out defaults to it); a folder holding another
    harness's set-up is refused unless overwrite=True, which keeps the old harness in out/.replaced/ until
    the new one finishes. workers > 1: rows on Ray (each worker loads the
    model by its name, in its dtype). refusal_prefixes: a list, '|'-separated text or a .txt file;
    dtype: for a model given by name (default auto).
    """
    from autoprompt.config import GCGConfig
    from frozen_lm.model import FrozenLM

    config = config if config is not None else GCGConfig()
    if not isinstance(config, GCGConfig):
        raise UserError(f"behaviors runs GCG: give a GCGConfig, got a {type(config).__name__}")
    if workers < 1:
        raise UserError(f"workers must be at least 1, got {workers}")
    if universal and workers > 1:
        raise UserError("`universal` runs one search for every row; `workers` goes with one search per row")
    out = Path(out) if out is not None else (Path(resume) if resume is not None else None)
    if resume is not None and not (Path(resume) / FILE).exists():
        raise UserError(f"resume={resume} holds no {FILE}; give the out folder of a behaviors run")
    rows, source = read_behaviors(rows_or_path, goal_field, target_field)
    lm = model if isinstance(model, FrozenLM) else None
    name = lm.name if lm is not None else str(model)
    dtype = str(lm.dtype).split(".")[-1] if lm is not None else (dtype or "auto")
    setup = {"model": name, "dtype": dtype, "template": template, "chat": chat, "goal_field": goal_field, "target_field": target_field,
             "config": configs.to_dict(config), "refusal_prefixes": list(parse_prefixes(refusal_prefixes)),
             "universal": universal, "source": source}
    if out is not None:
        _claim(out, setup, overwrite)
    if lm is None and (workers == 1 or universal):
        lm = _worker_model(name, dtype)
    _check_template(lm or _worker_model(name, dtype), setup, rows)
    if universal:
        from autoprompt.universal import run_universal

        result = run_universal(lm, rows, config, setup, out, progress)
    else:
        result = _run_rows(lm, rows, setup, out, workers, progress, ray_address)
    if out is not None and (out / REPLACED).exists():  # the new harness is whole: the one it replaced goes
        shutil.rmtree(out / REPLACED)
    return result


def _claim(out: Path, setup: dict, overwrite: bool) -> None:
    """Refuse a folder holding another harness (or anything else) unless overwrite; the same set-up continues."""
    if out.exists() and not out.is_dir():
        raise UserError(f"out={out} is a file; give a folder")
    saved = out / FILE
    if saved.exists():
        same = _comparable(BehaviorsResult.load(out).setup) == _comparable(setup)
        if not same and not overwrite:
            raise UserError(f"out={out} holds a behaviors run with another set-up (model, template, rows or "
                            "config); give overwrite=True to replace it, or another out=")
        if not same:  # kept aside, whole, until the new harness finishes (then deleted)
            kept = out / REPLACED
            if kept.exists():  # an earlier replacement was cut: the run kept there is the older one
                for sub in ("rows", "universal"):
                    shutil.rmtree(out / sub, ignore_errors=True)
                saved.unlink()
            else:
                kept.mkdir()
                for name in ("rows", "universal", FILE):
                    if (out / name).exists():
                        (out / name).rename(kept / name)
            logger.warning("out=%s: the earlier behaviors run is kept in %s until this one finishes", out, kept)
    elif out.is_dir() and any(out.iterdir()) and not overwrite:
        raise UserError(f"out={out} is not empty and holds no behaviors run; give a new or empty folder")
    out.mkdir(parents=True, exist_ok=True)


def _comparable(setup: dict) -> dict:
    """What must match for a harness folder to continue: everything but the config's iterations and
    where the rows file lies (its rows and hash count)."""
    out = {k: v for k, v in setup.items() if k not in ("config", "source")}
    out["config"] = {k: v for k, v in dict(setup.get("config", {})).items() if k != "iters"}
    out["source"] = {k: (setup.get("source") or {}).get(k) for k in ("rows", "sha256")}
    return out


def _check_template(lm, setup: dict, rows: list[dict]) -> None:
    """The task of the first row builds (its template has slots and reads the goal), before any search."""
    task = row_task(lm, setup)
    if task.template.n_triggers == 0:
        raise UserError(f"template {setup['template']!r} has no [T] slots to search; add some, e.g. '{TEMPLATE}'")
    task.encode(rows[:1])


@dataclass
class RowJob(Job):
    """One behavior to search (what run_jobs hands a worker, as a dict)."""

    index: int
    row: dict
    setup: dict
    out: str | None
    progress: bool = False

    @property
    def label(self) -> str:
        return f"behavior {self.index}"


def _run_rows(lm, rows, setup, out, workers, progress, ray_address) -> BehaviorsResult:
    from frozen_lm.parallel import run_jobs

    result = BehaviorsResult([], setup)
    jobs = [RowJob(i, row, setup, str(out / "rows" / str(i)) if out is not None else None, progress and workers == 1)
            for i, row in enumerate(rows)]
    done: dict[int, dict] = {}

    def on_done(job, record) -> bool:
        done[job.index] = {"index": job.index, **job.row, **record}
        result.rows = [done[i] for i in sorted(done)]
        if out is not None:
            result.save(out)
        logger.info("behavior %d: %s", job.index, "success" if record.get("success") else record.get("status"))
        return False

    def failed(job, error, attempts) -> dict:
        return {"status": "failed", "error": error, "attempts": attempts, "success": False, "refused": None}

    args = (lm,) if workers == 1 and ray_address is None else (None,)
    run_jobs(jobs, run_row, on_done, workers=workers, ray_address=ray_address, args=args, failed=failed,
             packages=("frozen_lm", "autoprompt"))
    return result


def run_row(job: dict, lm=None) -> dict:
    """One behavior's search (resumed or read back from its folder) and its record (a Ray task too)."""
    import autoprompt  # noqa: F401  (registers 'gcg' in a fresh worker)
    from autoprompt.config import GCGConfig
    from frozen_lm.results import load_result
    from frozen_lm.runner import run

    setup, row, folder = job["setup"], job["row"], job["out"]
    lm = lm if lm is not None else _worker_model(setup["model"], setup.get("dtype", "auto"))
    task = row_task(lm, setup)
    config = configs.from_dict(GCGConfig, setup["config"])
    previous = None
    if folder is not None and (Path(folder) / "config.json").exists():
        previous = load_result(folder)
    if previous is not None and previous.status == "done" and (previous.iterations >= config.iters or succeeded(previous)):
        result = previous
    else:
        result = run("gcg", task, [row], [row], config, out=folder, resume=folder if previous is not None else None,
                     progress=job.get("progress", False))
    return {**record_of(task, [row], result, setup["refusal_prefixes"]), "out": folder}


def _worker_model(name: str, dtype: str = "auto"):
    from frozen_lm.model import FrozenLM

    if (name, dtype) not in _MODELS:
        _MODELS[(name, dtype)] = FrozenLM.load(name, None, dtype)
    return _MODELS[(name, dtype)]


