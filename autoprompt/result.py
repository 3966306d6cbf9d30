"""SearchResult: a found trigger (AutoPrompt or GCG), how it scored, the per-iteration history and the
search state.

`evaluate(task, data, prompt=result)` writes the trigger into the task's [T] slots; `result.prompt`
is the same trigger as a `DiscretePrompt`; the state lets `search(..., resume=result)` continue
exactly where the run stopped.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from autoprompt.search import State
from frozen_lm.evaluate import DiscretePrompt
from frozen_lm.results import Result
from frozen_lm.transfer import TextPrompt


@dataclass
class SearchResult(Result):
    """metric: 'accuracy' or 'p_at_1'; best_dev: the best trigger's dev score during the search;
    metrics['dev'] / ['test']: the shared evaluator's metrics of the best trigger (after the run), and
    ['start_dev'] / ['start_test'] those of the start (never better on dev than the found trigger);
    trigger_*: the best trigger as ids, token texts and decoded text; filled_template: the template
    with the trigger written in; state: the searcher's counters for resuming. models: the models the
    prompt was searched for besides the task's (search(models=): their info and 'tokenizer', 'shared'
    or 'text'); then best_dev is the mean over the models, and metrics['dev_models'] / ['dev_mean']
    (and test's) hold the best trigger's metrics on each model and their mean."""

    module = "autoprompt"

    metric: str = "accuracy"
    best_dev: float = 0.0
    trigger_ids: list[int] = field(default_factory=list)
    trigger_tokens: list[str] = field(default_factory=list)
    trigger_text: str = ""
    filled_template: str = ""
    trigger_round_trips: bool = True  # whether trigger_text tokenizes back to trigger_ids
    start_ids: list[int] = field(default_factory=list)  # the trigger the search started from
    state: dict = field(default_factory=dict)
    models: list[dict] = field(default_factory=list)  # models searched besides the task's (autoprompt.models)

    @property
    def prompt(self) -> DiscretePrompt:
        """The best trigger as a discrete prompt (`evaluate(task, data, prompt=r.prompt)`); the ids come
        from the tensors (weights.safetensors), the texts from results.json."""
        self.require("trigger_ids")
        ids = [int(i) for i in self.tensors["trigger_ids"]]
        return DiscretePrompt(ids, list(self.trigger_tokens), self.trigger_text)

    def task_tensors(self) -> dict[str, torch.Tensor]:
        """The best trigger's token ids (the beam and its scores are the search's state, for --resume)."""
        self.require("trigger_ids")
        return {"trigger_ids": self.tensors["trigger_ids"]}

    @property
    def iterations(self) -> int:
        return int(self.state.get("iteration", len(self.history)))

    @property
    def start_prompt(self) -> DiscretePrompt:
        """The trigger the search started from (a --from-template start: the hand-written words)."""
        return DiscretePrompt(list(self.start_ids), [], "")

    def bind(self, task):
        """The found trigger in the task's [T] slots; a task whose template is the --from-template
        start (no [T] slots) gets the slot template the search used."""
        cfg = self.config
        if task.template.n_triggers == 0 and cfg.from_template and task.spec.template == cfg.from_template:
            task = task.derive(template=self.task.template)
        return self.prompt.bind(task)

    def as_text(self) -> TextPrompt:
        """The found trigger as text for the template it was searched in (frozen_lm.transfer: another
        model reads it as text; one with the same tokenizer keeps the ids)."""
        p = self.prompt
        return TextPrompt.from_tokens(self.task.template, p.trigger_ids, p.tokens, p.text)

    def search_state(self) -> State:
        """The searcher's state at the end of this run (what a resumed search starts from)."""
        self.require("trigger_ids", "beam", "beam_scores")
        s = self.state
        return State(s["iteration"], self.tensors["beam"].long(), self.tensors["beam_scores"].double(),
                     self.tensors["trigger_ids"].long(), s["best_dev"], s["current_dev"], s.get("stale", 0),
                     list(self.history), s.get("best_dev_loglik", float("-inf")),
                     s.get("current_dev_loglik", float("-inf")))

    @classmethod
    def from_artifact(cls, art, config):
        result = super().from_artifact(art, config)
        old = art.results  # package 0.1 kept the dev metrics and the timing at the top level
        if "dev" in old and "dev" not in result.metrics:
            result.metrics = {**result.metrics, "dev": old["dev"]}
        if "seconds_per_iteration" in old and not result.timings:
            result.timings = {"seconds_per_iteration": old["seconds_per_iteration"]}
        ids = result.tensors.get("trigger_ids")
        if ids is not None and len(ids) != len(result.trigger_ids):
            from frozen_lm.errors import UserError

            raise UserError(f"{art.path}: weights.safetensors holds {len(ids)} trigger ids but results.json "
                            f"{len(result.trigger_ids)}; the artifact is damaged")
        return result
