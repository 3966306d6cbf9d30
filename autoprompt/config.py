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

    method: str = field(default="autoprompt", metadata={
        "help": "autoprompt: HotFlip top-k for one or every slot (Shin et al.); gcg: --search-width candidates, "
                "each with --n-replace random slots set to one of their --topk tokens (Zou et al., nanoGCG)",
        "choices": ["autoprompt", "gcg"]})
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
    no_capitalized: bool = field(default=False, metadata={"help": "never use tokens with capital letters as triggers",
                                                          "flag": "--no-capitalized"})
    ascii_only: bool = field(default=False, metadata={
        "help": "triggers use printable ASCII tokens only (no non-ASCII letters, newlines, tabs or control characters)"})
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
    search_width: int = field(default=128, metadata={"help": "gcg: candidates per iteration"})
    topk: int = field(default=256, metadata={"help": "gcg: the tokens with the most negative gradient a slot may take"})
    n_replace: int = field(default=1, metadata={"help": "gcg: slots changed in each candidate"})
    mellowmax: bool = field(default=False, metadata={
        "help": "target strings: rank and differentiate the mellowmax of the target's -logits (nanoGCG's option) "
                "instead of their cross-entropy"})
    allow_non_ascii: bool = field(default=False, metadata={
        "help": "gcg: let triggers use any token (default, as nanoGCG: printable ASCII tokens only)"})
    filter_retokenized: bool = field(default=True, metadata={
        "help": "gcg: drop candidates whose text does not tokenize back to the same ids in its context"})
    early_stop: bool = field(default=False, metadata={
        "help": "stop once the best trigger is right on every dev example (target strings: greedy decoding "
                "reproduces every target)"})
    draft_model: str | None = field(default=None, metadata={
        "help": "gcg probe sampling: a smaller model with the same tokenizer that ranks all candidates; the "
                "target model scores a probe set and the draft's best (Zhao et al., 2024)"})
    probe_ratio: int = field(default=8, metadata={"help": "gcg probe sampling: the probe set is search-width / this"})
    probe_factor: int = field(default=16, metadata={
        "help": "gcg probe sampling: the target model also scores (1 - rank agreement) * search-width / this of "
                "the draft's best candidates"})
    fluency_weight: float = field(default=0.0, metadata={
        "help": "add this times the trigger's own log-likelihood under the model (causal LMs) to the objective, "
                "for readable prompts (FluentPrompt, ARCA); results report the prompt's perplexity. Start small "
                "(0.01): a swap moves this term by nats and a label's log-likelihood by tenths, and 0.1 already "
                "gave 'the the the' at chance accuracy on SST-2 (README, Fluency)"})
    seed: int = field(default=0, metadata={"help": "random seed; same seed, same result on CPU"})

    # what a resumed run may change (the rest must equal the saved run's, or the run would not be the same)
    RESUMABLE = ("iters", "patience")

    def __post_init__(self):
        for name in ("iters", "num_cand", "batch_size", "accumulation_steps", "eval_size", "beam_size", "search_width",
                     "topk", "n_replace", "probe_ratio", "probe_factor"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if (self.keep or self.extra_slots) and not self.from_template:
            raise UserError("--keep and --extra-slots shape a --from-template start; give --from-template too")
        if self.from_template is not None and not self.from_template.strip():
            raise UserError("--from-template is empty; give a hand-written template with [P], e.g. '{sentence} It was [P] .'")
        if self.from_template and self.initial_trigger not in ("auto", "the", "mask"):
            raise UserError("--from-template sets the start trigger itself; leave --initial-trigger out (or give the/mask "
                            "for the extra slots)")
        if self.fluency_weight < 0:
            raise UserError(f"--fluency-weight must be 0 or more (got {self.fluency_weight})")
        if self.draft_model and self.method != "gcg":
            raise UserError("--draft-model is GCG's probe sampling; add --method gcg")
        for name in ("dev_size", "patience", "extra_slots"):
            if getattr(self, name) < 0:
                raise UserError(f"--{name.replace('_', '-')} must be 0 or more (got {getattr(self, name)})")
