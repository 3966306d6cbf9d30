"""FinetuneResult: a fine-tuned baseline (what trained, how it trained) and how to apply it to a task.

The artifact stores only what trains: PEFT's adapter tensors (`peft.<name>`), or the overridden
weights that changed (`param.<name>`; BitFit's biases, the last k blocks, or every weight for full
fine-tuning). `bind(task)` rebuilds the adapted model around the frozen one from the result's
config (its class says which baseline it is), so `evaluate(task, data, prompt=load_result(dir))`
and `autoprompt evaluate DIR` score it.
"""

from __future__ import annotations

from dataclasses import dataclass

from frozen_lm.results import TrainedResult
from prompt_baselines.adapt import AdaptedBound, restore


@dataclass
class FinetuneResult(TrainedResult):
    """The shared loop's fields (template, best_step, best_dev, steps_done, stopped, note); plus
    trainable_params: the number of values that trained; implementation: PEFT (with its version and
    config class) or functional overrides."""

    module = "prompt_baselines"

    trainable_params: int = 0
    implementation: str = ""

    def bind(self, task) -> AdaptedBound:
        """The fine-tuned model applied to `task` (on the model it was trained on)."""
        self.check_model(task.lm)
        return restore(task.lm, self.config, self.tensors).bind(task)
