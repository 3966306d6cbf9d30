"""What the runner calls for in-context demonstrations: `prepare` (checks before any work) and `fit`."""

from __future__ import annotations

from frozen_lm.evaluate import evaluate
from frozen_lm.runner import Run
from frozen_lm.task import PromptTask
from prompt_icl.config import ICLConfig
from prompt_icl.demos import Demonstrations, refuse_triggers, select_pool
from prompt_icl.result import ICLResult


def prepare(task: PromptTask, config: ICLConfig, splits: dict) -> tuple[PromptTask, ICLConfig]:
    """Before any work: a template without [T] slots, a training split with demos_per_class examples
    of every class, and room in the model's rows for the demonstrations and an example (UserError
    naming the config field otherwise)."""
    refuse_triggers(task)
    if "train" in splits:
        Demonstrations(task, select_pool(task, splits["train"], config), config).check_length()
    return task, config


def fit(run: Run) -> ICLResult:
    """Keep the demonstration pool from the training split and score the template after its
    demonstrations on the dev split (a test split is scored by the runner); nothing trains."""
    config = run.config
    pool = select_pool(run.task, run.train, config)
    result = ICLResult(**run.fields(), pool=pool)
    if run.dev is not None:
        result.metrics["dev"] = evaluate(run.task, run.dev, prompt=result, batch_size=config.batch_size)
    first = (run.dev if run.dev is not None else run.train).rows[0]
    result.example = result.demonstrations(run.task).preview(first)
    result.timings = {"total_seconds": run.elapsed()}
    return result
