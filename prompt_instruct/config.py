"""`InstructConfig`: the options of instruction induction (APE, Zhou et al., 2023, with OPRO-style
rounds, Yang et al., 2024), a dataclass whose fields carry their help text; the command line is
generated from it and it is saved verbatim (seed included) in the artifact's config.json."""

from __future__ import annotations

from dataclasses import dataclass, field

from frozen_lm.configs import at_least, field_error, one_of, positive

SEPARATORS = {"newline": "\n", "space": " "}


@dataclass
class InstructConfig:
    """Instructions written by a language model from training examples (round 1, APE's forward
    template), then rewritten from the best ones so far and their scores (OPRO rounds); every
    candidate is the instruction before the hand-written template, scored by the shared evaluator
    on a batch of training examples, and the best few are scored on dev."""

    proposer_model: str | None = field(default=None, metadata={
        "help": "the model that writes the instructions: an alias, a local folder or a hub name (a causal LM; "
                "its chat template is used when it has one). Default: the task's model"})
    rounds: int = field(default=3, metadata={
        "help": "proposal rounds: the first from examples (APE), each later one from the best instructions so far "
                "with their scores (OPRO)"})
    n_candidates: int = field(default=8, metadata={"help": "instructions sampled per round"})
    n_demos: int = field(default=5, metadata={"help": "training examples (input -> label word) shown to the proposer"})
    keep: int = field(default=4, metadata={
        "help": "the best instructions so far (with their training scores) shown to the proposer in a later round"})
    eval_size: int = field(default=32, metadata={
        "help": "training examples every candidate is scored on (drawn once from the seed: the same ones for every "
                "candidate of every round, so scores compare across rounds)"})
    dev_top: int = field(default=4, metadata={
        "help": "the best candidates by training score that are scored on dev (beside the template without an "
                "instruction); the best on dev wins"})
    max_new_tokens: int = field(default=40, metadata={"help": "longest instruction the proposer writes, in tokens"})
    temperature: float = field(default=1.0, metadata={"help": "sampling temperature of the proposer (0 = greedy)"})
    top_p: float = field(default=0.95, metadata={"help": "nucleus sampling: draw from the top tokens holding this "
                                                         "share of the probability"})
    separator: str = field(default="newline", metadata={
        "help": "what comes between the instruction and the hand-written template (the instruction goes before it)",
        "choices": list(SEPARATORS)})
    batch_size: int = field(default=32, metadata={"help": "examples per forward pass when scoring"})
    seed: int = field(default=0, metadata={"help": "random seed (examples shown, the scoring batch, sampling); same seed, same "
                                                   "result on the same device"})

    def __post_init__(self):
        if self.proposer_model is not None and not str(self.proposer_model).strip():
            raise field_error(self, "proposer_model", "is empty; give a model (alias, folder or hub name), or leave it "
                              "out to use the task's model")
        at_least(self, 1, "rounds", "n_candidates", "keep", "eval_size", "dev_top", "max_new_tokens", "batch_size")
        at_least(self, 0, "n_demos", "temperature")
        positive(self, "top_p")
        if self.top_p > 1:
            raise field_error(self, "top_p", f"must be at most 1, got {self.top_p!r}")
        one_of(self, "separator", tuple(SEPARATORS))
