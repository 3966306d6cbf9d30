"""SearchConfig: every option of `autoprompt search`, with help text, choices and validation.

One flat dataclass (as nanoGCG's GCGConfig): the command line is generated from its fields and it is
saved verbatim in the artifact's config.json. The seed is part of it.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frozen_lm.errors import UserError


@dataclass
class SearchConfig:
    """Options of `autoprompt search` (the paper's behaviour is the default unless noted)."""

    iters: int = field(default=20, metadata={"help": "search iterations"})
    num_cand: int = field(default=10, metadata={"help": "HotFlip candidates per slot (top-k of -grad . E)"})
    batch_size: int = field(default=32, metadata={"help": "training examples per gradient batch"})
    accumulation_steps: int = field(default=1, metadata={"help": "gradient batches averaged per iteration"})
    eval_size: int = field(default=32, metadata={"help": "training examples every candidate is scored on per iteration"})
    dev_size: int = field(default=0, metadata={"help": "dev examples used to pick the best trigger (0 = all)"})
    slots: str = field(default="random", metadata={
        "help": "which slots get candidates each iteration: one random slot (paper) or all slots",
        "choices": ["random", "all"]})
    beam_size: int = field(default=1, metadata={"help": "trigger sequences kept per iteration (1 = greedy, as the paper)"})
    score: str = field(default="auto", metadata={
        "help": "candidate score on the scoring batch: label log-likelihood (paper); accuracy, ties by "
                "log-likelihood; margin = accuracy, ties by how far the wrong answers are below the top token; "
                "auto = margin for facts (P@1: the answer must beat every other token), log-likelihood for label words",
        "choices": ["auto", "loglik", "accuracy", "margin"]})
    loss: str = field(default="classes", metadata={
        "help": "loss for gradients and log-likelihood scores: cross-entropy over the classes' label words "
                "(default) or -log p(label words) over the vocabulary (the paper's; facts always use the vocabulary)",
        "choices": ["vocab", "classes"]})
    initial_trigger: str = field(default="auto", metadata={
        "help": "start trigger: 'mask' (masked LMs), 'the', a text with one token per [T], or auto (mask for masked LMs, as the paper; else 'the')"})
    patience: int = field(default=0, metadata={"help": "stop after this many iterations without dev improvement (score, or log-likelihood at equal score; 0 = never)"})
    no_capitalized: bool = field(default=False, metadata={"help": "never use tokens with capital letters as triggers"})
    ascii_only: bool = field(default=False, metadata={"help": "never use tokens with non-ASCII characters as triggers"})
    packing: str = field(default="auto", metadata={
        "help": "score causal-LM candidates packed behind one shared prefix per example (auto = when possible)",
        "choices": ["auto", "on", "off"]})
    from_template: str | None = field(default=None, metadata={
        "help": "start from a hand-written template, e.g. 'The opposite of {sub_label} is [P]': each of its word "
                "tokens becomes a [T] slot that starts as that token (the task's template is replaced); the "
                "result is never worse on dev than this start"})
    keep: str | None = field(default=None, metadata={
        "help": "with --from-template: words that stay as written and never change, comma-separated, e.g. 'is,of'"})
    extra_slots: int = field(default=0, metadata={
        "help": "with --from-template: free [T] slots added before [P] (they start as --initial-trigger's token)"})
    seed: int = field(default=0, metadata={"help": "random seed; same seed, same result on CPU"})

    # what a resumed run may change (the rest must equal the saved run's, or the run would not be the same)
    RESUMABLE = ("iters", "patience")

    def __post_init__(self):
        for name in ("iters", "num_cand", "batch_size", "accumulation_steps", "eval_size", "beam_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if (self.keep or self.extra_slots) and not self.from_template:
            raise UserError("--keep and --extra-slots shape a --from-template start; give --from-template too")
        if self.from_template is not None and not self.from_template.strip():
            raise UserError("--from-template is empty; give a hand-written template with [P], e.g. '{sentence} It was [P] .'")
        if self.from_template and self.initial_trigger not in ("auto", "the", "mask"):
            raise UserError("--from-template sets the start trigger itself; leave --initial-trigger out (or give the/mask "
                            "for the extra slots)")
        for name in ("dev_size", "patience", "extra_slots"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be 0 or more (got {getattr(self, name)})")
