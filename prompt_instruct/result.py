"""`InstructResult`: the chosen instruction and the full template it makes, the proposer, and every
candidate scored (history). The prompt is text: `bind(task)` scores the task's template replaced by
that template, as written, on any model (it transfers like any discrete prompt)."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from frozen_lm.errors import UserError
from frozen_lm.evaluate import Bound
from frozen_lm.results import Result

logger = logging.getLogger(__name__)


@dataclass
class InstructResult(Result):
    """instruction: the chosen instruction ('' when the hand-written template won); template: the
    full template (instruction, separator, the hand-written template), what `bind` scores;
    proposer: the model that wrote the instructions; rounds_done: proposal rounds finished;
    history: every candidate {round (0: the template alone, 1: APE, later: OPRO), instruction,
    template, train, train_loglik, dev (None when not scored on dev)}; metrics['dev']: the chosen
    template's dev scores."""

    module = "prompt_instruct"

    instruction: str = ""
    template: str = ""
    proposer: str = ""
    rounds_done: int = 0

    @property
    def filled_template(self) -> str:
        """The found prompt as text (what the CLI shows beside a hand-written template)."""
        return self.template

    @property
    def metric(self) -> str:
        """exact_match (target strings), p_at_1 (facts) or accuracy."""
        if self.task.target is not None or self.task.target_field is not None:
            return "exact_match"
        return "p_at_1" if self.task.label_map is None else "accuracy"

    def check_model(self, lm) -> None:
        """Any model may score the template (it is text); a different one is noted, not refused."""
        if lm.name != self.model.get("name"):
            logger.info("the instruction was chosen with %s; scoring it on %s", self.model.get("name"), lm.name)

    def as_text(self):
        """The found template: text any model reads (a frozen_lm.transfer.TextPrompt without slots)."""
        from frozen_lm.transfer import TextPrompt

        return TextPrompt(self.template)

    def card_lines(self) -> list[str]:
        """The instruction and the template it makes, for the artifact's README.md."""
        shown = self.instruction or "(none: the hand-written template alone scored best on dev)"
        return [f"Instruction ({self.proposer} proposed it): {shown}", "", "Template:", "",
                "```", self.template, "```"]

    def bind(self, task) -> Bound:
        if not self.template:
            raise UserError(f"this {self.method} result has no template; its results.json is damaged (rerun)")
        if task.spec.template == self.template:
            return Bound(task)
        return Bound(task.derive(template=self.template))
