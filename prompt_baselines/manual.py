"""The manual baseline as a method: a hand-written template, scored as written (nothing trains).

Registered as method 'manual' (no command of its own: `autoprompt evaluate --template` scores a
template), so a grid treats it like every other method: `fit` returns a result with its dev
metrics, the result saves an artifact (config.json + results.json, an empty weights file), and
`autoprompt evaluate DIR` scores it on any split.
"""

from __future__ import annotations

from dataclasses import dataclass

from frozen_lm.errors import UserError
from frozen_lm.evaluate import Bound, evaluate
from frozen_lm.results import Result
from frozen_lm.runner import Run
from frozen_lm.task import PromptTask
from frozen_lm.transfer import TextPrompt
from prompt_baselines.config import ManualConfig


@dataclass
class ManualResult(Result):
    """The template as written; metrics['dev'] its dev score."""

    module = "prompt_baselines"

    def bind(self, task) -> Bound:
        self.check_model(task.lm)
        if task.template.n_triggers:
            raise UserError(f"template {task.spec.template!r} has [T] slots; the manual baseline scores a template "
                            "as written")
        return Bound(task)

    def as_text(self) -> TextPrompt:
        """The template itself: text any model reads (frozen_lm.transfer)."""
        return TextPrompt(self.task.template)


def prepare_manual(task: PromptTask, config: ManualConfig, splits: dict) -> tuple[PromptTask, ManualConfig]:
    """Refuse a template with [T] slots before any work."""
    if task.template.n_triggers:
        raise UserError(f"template {task.spec.template!r} has [T] slots; the manual baseline needs a template "
                        "without them")
    return task, config


def fit_manual(run: Run) -> ManualResult:
    """Score the task's template on the dev split (and a test split, when given); the train split is
    not read, and the result records only the splits it scored."""
    metrics = {name: evaluate(run.task, run.splits[name], batch_size=run.config.batch_size)
               for name in ("dev", "test") if name in run.splits}
    fields = {**run.fields(), "data": {k: v for k, v in run.data.items() if k in metrics}}
    return ManualResult(**fields, metrics=metrics, timings={"total_seconds": run.elapsed()})
