"""The candidates of a run and how they are scored and chosen.

A candidate is an instruction placed before the task's hand-written template (the template with
no instruction is candidate zero). Each is scored by the shared scorer (frozen_lm.evaluate) on the
run's training batch: the task's metric, ties broken by the mean label log-likelihood. The best
`dev_top` by that score, and candidate zero, are scored on dev (each once); the best on dev wins
(ties: the training score, then the shorter instruction), so the result is never worse on dev than
the hand-written template.
"""

from __future__ import annotations

import logging

from frozen_lm.data import Dataset
from frozen_lm.evaluate import Bound, evaluate, score
from frozen_lm.task import PromptTask
from prompt_instruct.config import SEPARATORS, InstructConfig


def leading_specials(template: str, specials: tuple[str, ...]) -> tuple[str, str]:
    """(the special-token strings a template starts with, e.g. '[CLS] ', and the rest): an
    instruction goes after them, where the text starts."""
    head, rest = "", template.lstrip()
    ordered = sorted((s for s in specials if s), key=len, reverse=True)
    while True:
        found = next((s for s in ordered if rest.startswith(s)), None)
        if found is None:
            return head, rest
        head, rest = head + found + " ", rest[len(found):].lstrip()


def candidate_template(base: str, instruction: str, separator: str, specials: tuple[str, ...] = ()) -> str:
    """The template of a candidate: the instruction (already made harmless), the separator, and the
    hand-written template; the template itself when there is no instruction."""
    if not instruction:
        return base
    head, rest = leading_specials(base, specials)
    return head + instruction + SEPARATORS[separator] + rest


def derive(task: PromptTask, template: str) -> PromptTask:
    """The task with a candidate's template; the template module's notes about the hand-written part
    (text after [P] ignored, say) were shown for the task itself and are not repeated per candidate."""
    notes = logging.getLogger("frozen_lm.templates")
    level = notes.level
    notes.setLevel(max(level, logging.WARNING))
    try:
        return task.derive(template=template)
    finally:
        notes.setLevel(level)


class Pool:
    """Every candidate so far (history records) and the one chosen on dev."""

    def __init__(self, task: PromptTask, config: InstructConfig, dev: Dataset):
        self.task, self.config, self.dev = task, config, dev
        self.specials = tuple(getattr(task.lm.tokenizer, "all_special_tokens", ()))
        self.records: list[dict] = []
        self.seen: set[str] = set()
        self.winner: dict | None = None

    def is_new(self, instruction: str) -> bool:
        return instruction.casefold() not in self.seen

    def add(self, round_: int, instruction: str, batch: Dataset) -> dict:
        """Score a new candidate on the training batch and keep it."""
        self.seen.add(instruction.casefold())
        template = candidate_template(self.task.spec.template, instruction, self.config.separator, self.specials)
        task = derive(self.task, template)
        s = score(Bound(task), task.encode(batch).rows, self.config.batch_size)
        record = {"round": round_, "instruction": instruction, "template": template, "train": s.correct / max(s.n, 1),
                  "train_loglik": s.mean("classes"), "dev": None}
        self.records.append(record)
        return record

    @staticmethod
    def train_key(r: dict) -> tuple:
        return r["train"], r["train_loglik"], -len(r["instruction"])

    def best(self, k: int, with_empty: bool = True) -> list[dict]:
        """The k best candidates by training score, best first."""
        pool = [r for r in self.records if with_empty or r["instruction"]]
        return sorted(pool, key=self.train_key, reverse=True)[:k]

    def choose(self) -> dict:
        """Score the best `dev_top` candidates by training score and candidate zero on dev (those not
        scored yet) and choose the best on dev."""
        chosen = self.best(self.config.dev_top) + [self.records[0]]
        for r in chosen:
            if r["dev"] is None:
                metrics = evaluate(derive(self.task, r["template"]), self.dev, batch_size=self.config.batch_size)
                r["dev_metrics"], r["dev"] = metrics, metrics[self.task.metric]
        self.winner = max(chosen, key=lambda r: (r["dev"], *self.train_key(r)))
        return self.winner
