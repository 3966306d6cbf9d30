"""FinetuneResult: a fine-tuned baseline (what trained, how it trained) and how to apply it to a task.

The artifact stores only what trains: PEFT's adapter tensors (`peft.<name>`), or the overridden
weights that changed (`param.<name>`; BitFit's biases, the last k blocks, or every weight for full
fine-tuning). `bind(task)` rebuilds the adapted model around the frozen one, so
`evaluate(task, data, prompt=load_result(dir))` and `autoprompt evaluate DIR` score it.
"""

from __future__ import annotations

from dataclasses import dataclass

from baselines.adapt import AdaptedBound, restore
from frozen_lm.results import Result

METHOD = "finetune"


@dataclass
class FinetuneResult(Result):
    """template: the template it trained on; best_step / best_dev: the kept checkpoint and its dev
    score; steps_done; stopped: 'steps', 'early_stopping', 'nan' or 'callback'; note: what happened
    on a 'nan' stop; trainable_params: the number of values that trained; implementation: PEFT (with
    its version and config class) or functional overrides."""

    module = "baselines"
    saved_to = None  # the folder the result was last saved to (runtime only, not a field)

    template: str = ""
    best_step: int = 0
    best_dev: float | None = None
    steps_done: int = 0
    stopped: str = "steps"
    note: str | None = None
    trainable_params: int = 0
    implementation: str = ""

    @property
    def metric(self) -> str:
        if self.task.target is not None or self.task.target_field is not None:
            return "exact_match"
        return "p_at_1" if self.task.label_map is None else "accuracy"

    def bind(self, task) -> AdaptedBound:
        """The fine-tuned model applied to `task` (on the model it was trained on)."""
        self.check_model(task.lm)
        return restore(task.lm, self.config, self.tensors).bind(task)

    def save(self, out):
        path = super().save(out)
        self.saved_to = path
        return path
