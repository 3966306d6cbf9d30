"""ICLResult: the demonstration pool of a run and how it applies to a task.

Nothing trains, so the artifact's weights file is empty: results.json keeps the pool (the training
rows the demonstrations are drawn from, only the columns they read), and the config keeps how they
are drawn (demos_per_class, mode, separator, seed). `bind(task)` rebuilds the same demonstrations
for every example of any split, so `evaluate(task, test, prompt=load_result(dir))` and
`autoprompt evaluate DIR --data test.jsonl` score exactly what the run scored; `as_text` lets
`evaluate` carry the demonstrations (text) to a task on another model.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frozen_lm import data as data_mod
from frozen_lm.evaluate import Bound
from frozen_lm.results import Result
from frozen_lm.transfer import TextPrompt
from prompt_icl.demos import Demonstrations


class ICLBound(Bound):
    """The task's template after its demonstrations: `data` adds each row's demonstrations column,
    which the scoring task's {__demos__} field reads."""

    def __init__(self, demos: Demonstrations):
        super().__init__(demos.scoring_task)
        self.demos = demos

    def data(self, dataset: data_mod.Dataset) -> data_mod.Dataset:
        return self.demos.add_to(dataset)


@dataclass
class ICLResult(Result):
    """pool: the training rows the demonstrations are drawn from; example: the first dev example as
    the model read it (its demonstrations, then the query with [P]); metrics['dev'] (and 'test')
    from the shared evaluator."""

    module = "prompt_icl"

    pool: list = field(default_factory=list, repr=False)
    example: str = ""

    @property
    def metric(self) -> str:
        """The score the run reports: exact_match (target strings), p_at_1 (facts) or accuracy."""
        if self.task.target is not None or self.task.target_field is not None:
            return "exact_match"
        return "p_at_1" if self.task.label_map is None else "accuracy"

    def demonstrations(self, task) -> Demonstrations:
        """This result's demonstrations written for `task` (the task it was made with, on its model)."""
        self.check_model(task.lm)
        return Demonstrations(task, self.pool, self.config)

    def bind(self, task) -> ICLBound:
        return ICLBound(self.demonstrations(task))

    def as_text(self) -> TextPrompt:
        """The query template and the demonstrations written from the pool: text any model reads
        (frozen_lm.transfer rebinds the same pool on a task of another model)."""
        return TextPrompt(self.task.template, rebind=lambda task: ICLBound(Demonstrations(task, self.pool, self.config)))
