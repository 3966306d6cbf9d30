"""The one run sequence every method goes through: `run(method, task, train, dev, config, ...)`.

    r = frozen_lm.run("gcg", task, train, dev, GCGConfig(search_width=64), out="runs/x")

In order, before any work: the config is checked against the task (the method's `prepare`), the
splits are loaded (and described: source, rows, sha256), the run being resumed is read and checked
(same method, model, task, data and config, except the fields the method lets a resume change, and
whatever its `check_resume` refuses), and the output folder is claimed (frozen_lm.outdir; nothing
is deleted). Then the global RNGs are seeded from config.seed and the method's `fit(run)` runs; it
reports its best-so-far result through `run.checkpoint`, which rewrites the artifact, so a killed
machine loses little. Ctrl-C: the method raises `RunInterrupted` with its result so far (or the
last checkpoint is taken), the runner saves it and raises `frozen_lm.errors.Interrupted`, which
`resume=` continues. At the end a `test` split is scored by the shared evaluator and the artifact
is written. With `report_to`, the run is also logged to experiment trackers (frozen_lm.tracking):
the config at the start, every event's numbers, the artifact folder and status at the end.
"""

from __future__ import annotations

import logging
import random
import time
from dataclasses import dataclass, field
from typing import Any

import torch

from frozen_lm import configs
from frozen_lm import data as data_mod
from frozen_lm.artifact import model_info
from frozen_lm.errors import Interrupted, UserError
from frozen_lm.events import Callback
from frozen_lm.methods import Method, resolve
from frozen_lm.outdir import OutFolder
from frozen_lm.results import Result, base_fields, load_result
from frozen_lm.task import PromptTask
from frozen_lm.tracking import current as current_tracking
from frozen_lm.tracking import run_params
from frozen_lm.tracking import start as start_tracking

logger = logging.getLogger(__name__)


class RunInterrupted(KeyboardInterrupt):
    """What a method raises on Ctrl-C: its result so far (status 'interrupted', with what continues
    it) and where it was cut ('after iteration 3')."""

    def __init__(self, result: Result, progress: str = ""):
        super().__init__(progress)
        self.result, self.progress = result, progress


@dataclass
class Run:
    """What a method's `fit` gets: the prepared task and config, the loaded splits ('train', 'dev'
    when given, 'test' when given) and their descriptions, the saved run being resumed, the
    method's extra inputs, the callback, and where its checkpoints go."""

    method: Method
    task: PromptTask
    config: Any
    splits: dict[str, data_mod.Dataset]
    data: dict[str, dict]
    previous: Result | None = None
    inputs: dict = field(default_factory=dict)
    callback: Callback | None = None
    progress: bool = True
    out: OutFolder | None = None
    started: float = field(default_factory=time.perf_counter)
    last: Result | None = None  # the last checkpointed result

    @property
    def train(self) -> data_mod.Dataset:
        return self.splits["train"]

    @property
    def dev(self) -> data_mod.Dataset | None:
        return self.splits.get("dev")

    @property
    def seconds_before(self) -> float:
        """Seconds the resumed run had already spent (0 for a new run)."""
        return float(self.previous.timings.get("total_seconds") or 0.0) if self.previous is not None else 0.0

    def elapsed(self) -> float:
        """Seconds of this run so far, a resumed run's earlier time included."""
        return self.seconds_before + time.perf_counter() - self.started

    def fields(self, task: PromptTask | None = None) -> dict:
        """The Result fields every method fills the same way (task: the task it ran, default the given one)."""
        return base_fields(self.method.name, self.config, task or self.task, self.data)

    def checkpoint(self, result: Result) -> None:
        """The best-so-far result (status 'running'): rewrites the artifact when there is an out folder."""
        self.last = result
        if self.out is not None:
            self.out.save(result)


def seed_everything(seed: int) -> None:
    """Seed Python's, NumPy's and torch's global generators (methods draw from their own seeded
    generators; this covers libraries that use the global ones)."""
    import numpy as np

    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def run(method, task: PromptTask, train, dev=None, config=None, *, test=None, out=None, resume=None,
        overwrite: bool = False, callback: Callback | None = None, progress: bool = True, inputs: dict | None = None,
        report_to=None, tracking_dir=None):
    """Run a registered method (a Method, its name, or None to take it from `config`) and return its
    result. train, dev, test: any data source `frozen_lm.data.load` takes (train None: a task with a
    fixed target and no data fields, which needs none); test is scored at the end, never used to
    choose. out: the artifact folder (nothing is written without it). resume: a saved result of the
    method, or its folder, to continue. callback(event) may stop the run by returning True. inputs:
    the method's extra inputs (e.g. intrinsic_dim's `prompt`). report_to: experiment trackers,
    'tensorboard', 'mlflow', 'wandb' (comma-separated or a list; frozen_lm.tracking), which get
    the config, every event's numbers and the artifact folder; tracking_dir: their local folder
    (default: as the enclosing `frozen_lm.tracking.using` block says, else no tracking)."""
    method = resolve(method, config)
    config = config if config is not None else method.config()
    if type(config) is not method.config:
        raise UserError(f"method {method.name!r} takes a {method.config.__name__}, got a {type(config).__name__}")
    tracking = current_tracking(report_to, tracking_dir)  # a missing package: before any work
    splits, data = _load(method, task, train, dev, test)
    if method.prepare is not None:
        task, config = method.prepare(task, config, splits)
    previous = _previous(method, resume, task, config, data)
    folder = OutFolder(out, overwrite, resume=_resumes_into(resume, out)) if out is not None else None
    trackers = None
    if tracking is not None:
        params = run_params(method.name, configs.to_dict(config), task.spec.to_dict(), model_info(task.lm), data)
        trackers = start_tracking(tracking, params, out)
        callback = trackers.wrap(callback) if trackers is not None else callback
    context = Run(method, task, config, splits, data, previous, dict(inputs or {}), callback, progress, folder)
    seed_everything(config.seed)
    if trackers is None:
        return _fit(context, resume, out)
    try:
        result = _fit(context, resume, out)
    except BaseException as e:
        trackers.end(out, "interrupted" if isinstance(e, Interrupted | KeyboardInterrupt) else "failed")
        raise
    trackers.end(out, result.status, result.metrics)
    return result


def _fit(context: Run, resume, out) -> Result:
    """The method's fit, Ctrl-C's save, the test split's score and the final save."""
    method, task, splits, folder, previous = context.method, context.task, context.splits, context.out, context.previous
    try:
        result = method.fit(context)
    except RunInterrupted as stop:
        raise _interrupted(context, stop.result, stop.progress) from None
    except KeyboardInterrupt:
        if context.last is None:
            raise
        context.last.status = "interrupted"
        raise _interrupted(context, context.last, "") from None
    if "test" in splits and "test" not in result.metrics:
        from frozen_lm.evaluate import evaluate

        result.metrics["test"] = evaluate(task, splits["test"], prompt=result)
    if folder is not None and not (result is previous and _resumes_into(resume, out)):
        folder.save(result)  # (a finished run given back as it was saved is not rewritten)
    return result


def _load(method: Method, task: PromptTask, train, dev, test) -> tuple[dict, dict]:
    """The splits as Datasets and their descriptions (UserError for a missing or bad file)."""
    if train is None:
        train = task.default_data()
        dev = train if dev is None else dev
    if dev is None and method.needs_dev:
        raise UserError("give dev=, the split the run selects its result on")
    sources = {"train": train, "dev": dev, "test": test}
    splits = {name: data_mod.load(source) for name, source in sources.items() if source is not None}
    return splits, {name: data_mod.describe(sources[name], ds) for name, ds in splits.items()}


def _resumes_into(resume, out) -> bool:
    """Whether `out` is the folder of the run being resumed (then the run continues in it)."""
    from pathlib import Path

    return (out is not None and resume is not None and not isinstance(resume, Result)
            and Path(resume).resolve() == Path(out).resolve())


def _previous(method: Method, resume, task: PromptTask, config, data: dict) -> Result | None:
    """The saved run to continue, checked: the same method, model, task, data and config (except
    the method's resumable fields), and whatever the method's check_resume refuses."""
    if resume is None:
        return None
    if method.resumable is None:
        raise UserError(f"{method.name} runs cannot be resumed; start a new one")
    previous = resume if isinstance(resume, Result) else load_result(resume)
    if previous.method != method.name:
        raise UserError(f"resume={resume} holds a {previous.method!r} run, not a {method.name!r} run")
    previous.check_model(task.lm)
    saved_task, now_task = previous.task.to_dict(), task.spec.to_dict()
    diffs = [f"PromptTask.{k} ({v!r} saved, {now_task.get(k)!r} now)" for k, v in saved_task.items()
             if now_task.get(k) != v]
    diffs += configs.diffs(configs.to_dict(previous.config), config, method.resumable)
    for split, now in data.items():
        saved = previous.data.get(split, {})
        if split != "test" and saved.get("sha256") and saved["sha256"] != now["sha256"]:
            diffs.append(f"the {split} data ({saved.get('source')}, {saved.get('rows')} rows saved; {now['source']}, "
                         f"{now['rows']} rows now)")
    if diffs:
        allowed = f" (only {', '.join(configs.name_of(config, f) for f in method.resumable)} may change)" \
            if method.resumable else ""
        raise UserError("resume: these differ from the saved run, so it would not continue it: " + "; ".join(diffs)
                        + allowed)
    if method.check_resume is not None:
        method.check_resume(previous, config)
    return previous


def _interrupted(context: Run, result: Result, progress: str) -> Interrupted:
    """Interrupted carrying the result so far, saved first when there is an out folder."""
    where = ""
    if context.out is not None:
        context.out.save(result)
        where = f"; the best so far is saved in {context.out.path}"
    return Interrupted(f"interrupted{' ' + progress if progress else ''}{where}", result,
                       out=context.out.path if context.out is not None else None,
                       resumable=context.method.resumable is not None)
