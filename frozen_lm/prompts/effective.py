"""The effective task: the template a soft prompt is trained and applied with.

`effective_task` is the one place this transform lives; `tune`, `TuneResult.bind` and the nearest
tokens' discrete reading (`ReadingPrompt`) all call it, so a soft prompt is always trained and scored on the same rows.

Virtual-token placement: `num_virtual_tokens=K` glues K `[T]` slots to the front of the template
(no space added, so the text after them tokenizes exactly as without them). They come right after
any special tokens the tokenizer itself puts in front of a text (BERT's [CLS], a Llama-2 style
<s>). PEFT puts its virtual tokens before everything, BOS included; for tokenizers that add no BOS
(SmolLM2, GPT-2) the two placements are identical, and the PEFT export warns when they differ. We
keep the slots after BOS so that a soft prompt and its discrete reading (`autoprompt evaluate
--trigger ...`) are encoded the same way.

Prefix tuning: the prefix length is `num_virtual_tokens`, else the template's number of [T] slots;
the slots are then removed from the template (the prefix is attended before every token) and the
task keeps that many model positions free (`reserved_positions`).
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

from frozen_lm.errors import UserError
from frozen_lm.evaluate import DiscretePrompt
from frozen_lm.task import PromptTask
from frozen_lm.templates import Template

logger = logging.getLogger(__name__)


def parse_slots(template: str) -> Template:
    """The template parsed for its [T] slots; a target-string template may leave out [P] (the target
    follows the text), so one is assumed at its end."""
    if "[P]" not in template and "[Y]" not in template:
        template = template.rstrip() + " [P]"
    return Template.parse(template)


def strip_triggers(template: str) -> str:
    """The template without its [T] slots, '[T]xN' repeats included (prefix tuning puts its prompt in
    the key/values instead)."""
    return re.sub(r"\[T\](?:x\d+)?\s*", "", template).strip()


def effective_template(template: str, method: str, num_virtual_tokens: int | None = None,
                       length: int | None = None) -> tuple[str, int]:
    """(the template the prompt is trained and applied with, number of trainable positions).

    method: 'prompt' or 'prefix'; length: a prefix's known length (a trained prefix's tensor)."""
    n = parse_slots(template).n_triggers
    if method == "prefix":
        length = length or num_virtual_tokens or n
        if length == 0:
            raise UserError(f"template {template!r} has no [T] slots; give `num_virtual_tokens` K for the prefix length")
        if n:
            logger.info("prefix tuning: the template's %d [T] slots are removed; the prefix is %d key/values", n, length)
        return strip_triggers(template), length
    if num_virtual_tokens:
        return "[T]" * num_virtual_tokens + template, n + num_virtual_tokens
    if n == 0:
        raise UserError(f"template {template!r} has no [T] slots; put [T] where prompt vectors go, "
                        "or give `num_virtual_tokens` K to prepend K of them")
    return template, n


def effective_task(task: PromptTask, method: str, num_virtual_tokens: int | None = None, *,
                   effective: str | None = None, length: int | None = None) -> tuple[PromptTask, int]:
    """(the task a soft prompt is trained and applied with, its number of trainable positions).

    effective: the template a trained prompt was made with; a task that already has it is taken as
    it is (a prefix still gets its positions reserved). length: a trained prefix's length."""
    if effective is not None and task.spec.template == effective:
        n = parse_slots(effective).n_triggers
        template, k = effective, ((length or num_virtual_tokens or n) if method == "prefix" else n)
    else:
        template, k = effective_template(task.spec.template, method, num_virtual_tokens, length)
    changes = {"template": template} if template != task.spec.template else {}
    if method == "prefix" and task.spec.reserved_positions != k:
        changes["reserved_positions"] = k
    return (task.derive(**changes) if changes else task), k


@dataclass
class ReadingPrompt(DiscretePrompt):
    """Tokens for the [T] slots of a tuned prompt's effective template (a soft prompt's nearest tokens,
    or the prompt PEZ found) as a discrete prompt for the task the run was given: `bind` transforms
    the task as tuning did (`effective_task`), then writes the tokens into its [T] slots.
    template: the effective template; num_virtual_tokens: the prepended slots."""

    template: str = ""
    num_virtual_tokens: int | None = None

    def bind(self, task):
        eff, _ = effective_task(task, "prompt", self.num_virtual_tokens, effective=self.template)
        return DiscretePrompt.bind(self, eff)
