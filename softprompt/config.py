"""The configs of soft-prompt training: `PromptTuningConfig` (Lester et al., 2021),
`PrefixTuningConfig` (Li & Liang, 2021) and `PezConfig` (Wen et al., 2023), each a dataclass whose
fields carry their help text; the command line is generated from them and they are saved verbatim
(seed included) in the artifact's config.json.

All three share `SoftPromptOptions`: the shared training loop's options (frozen_lm.train.LoopOptions)
plus where the prompt sits, how it starts, the loss and the optimizer.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import ClassVar

from frozen_lm.configs import at_least, field_error, name_of, one_of
from frozen_lm.loop_options import OPTIMIZERS, SCHEDULES, LoopOptions
from frozen_lm.prompts.init import parse_init

LOSSES = ("classes", "vocab", "lm")
PEZ_METRICS = ("cosine", "l2")
PREFIX_LR = {True: 1e-4, False: 5e-3}  # prefix tuning's default lr: through the MLP, or on the key/values directly
# pez: the default learning rate is this many times the RMS coordinate of the model's token embeddings
# (frozen_lm.prompts.init.embedding_rms), resolved when the model is known (softprompt.fit.prepare):
# Adam moves every coordinate by about lr per step, and the distance between neighbouring tokens
# scales with the embeddings, so a fixed lr means different things on different models.
PEZ_LR_SCALE = 2.0

__all__ = ["PezConfig", "PrefixTuningConfig", "PromptTuningConfig", "SoftPromptOptions", "parse_init"]


@dataclass
class SoftPromptOptions(LoopOptions):
    """Options every soft-prompt training method has: the shared loop's, plus the prompt's length,
    its initialization, the loss and the optimizer."""

    placement: ClassVar[str] = "prompt"  # how the prompt meets the model (frozen_lm.prompts.effective)

    num_virtual_tokens: int | None = field(default=None, metadata={
        "help": "prepend this many [T] slots to the template (default: use the template's [T] slots)"})
    init: str = field(default="vocab", metadata={
        "help": "random (uniform, scaled to the token-embedding norms), vocab (frequent tokens), "
                "labels (label words, then vocab), or text:\"...\" (a text's tokens, repeated or cut to fit)"})
    truncate_init: bool = field(default=True, metadata={
        "help": "cut an init text longer than the number of slots (--no-truncate-init: refuse it)"})
    loss: str = field(default="classes", metadata={
        "help": "classes: cross-entropy over the classes' label words at [P]; vocab: -log p(label words) over the "
                "vocabulary (facts always use this); lm: mean cross-entropy of a target string's tokens, for "
                "target-string tasks (--target or --target-field), which always use it",
        "choices": list(LOSSES)})
    optimizer: str = field(default="adamw", metadata={"help": "optimizer", "choices": ["adamw", "adafactor"]})
    lr: float | None = field(default=None, metadata={"help": "peak learning rate"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast for the forward pass on CUDA (ignored on CPU)"})

    def check_options(self, at_least_one: tuple[str, ...] = ()) -> None:
        """UserError (naming the field) for an option out of range."""
        at_least(self, 1, "steps", "batch_size", "grad_accum", "eval_batch_size", *at_least_one)
        at_least(self, 0, "warmup_steps", "eval_every", "patience", "weight_decay", "max_grad_norm")
        at_least(self, 1, "num_virtual_tokens")
        parse_init(self.init, name_of(self, "init"))
        one_of(self, "loss", LOSSES)
        one_of(self, "optimizer", OPTIMIZERS)
        one_of(self, "schedule", SCHEDULES)
        if self.lr is not None and not self.lr > 0:  # (inf is allowed: the loop stops at a non-finite loss)
            raise field_error(self, "lr", f"must be positive, got {self.lr!r}")


@dataclass
class PromptTuningConfig(SoftPromptOptions):
    """Prompt tuning (Lester et al., 2021): a trainable input vector per [T] slot (or per prepended
    virtual token), in the model's embedding space."""

    lr: float = field(default=0.03, metadata={"help": "peak learning rate"})

    def __post_init__(self):
        self.check_options()


@dataclass
class PrefixTuningConfig(SoftPromptOptions):
    """Prefix tuning (Li & Liang, 2021): trainable key/values that every layer attends to first,
    trained through an MLP reparameterization (folded away when saving) or directly."""

    placement: ClassVar[str] = "prefix"

    num_virtual_tokens: int | None = field(default=None, metadata={
        "help": "prefix length (default: the number of the template's [T] slots, which are then removed from the text)"})
    lr: float | None = field(default=None, metadata={
        "help": "peak learning rate (default: 1e-4 through the MLP, 5e-3 without)"})
    prefix_projection: bool = field(default=True, metadata={
        "help": "train through an MLP reparameterization (folded away when saving)"})
    prefix_hidden: int = field(default=512, metadata={"help": "hidden size of the reparameterization MLP"})

    def __post_init__(self):
        if self.lr is None:
            self.lr = PREFIX_LR[bool(self.prefix_projection)]
        self.check_options(("prefix_hidden",))


@dataclass
class PezConfig(SoftPromptOptions):
    """PEZ, hard prompts made easy (Wen et al., 2023): a vector per [T] slot trained at its nearest
    tokens (straight-through); the result is the best discrete prompt on dev."""

    lr: float | None = field(default=None, metadata={
        "help": "peak learning rate (default: 2x the RMS coordinate of the model's token embeddings, 0.27 on "
                "smollm2-135m; the saved config holds the value)"})
    pez_metric: str = field(default="cosine", metadata={
        "help": "how a vector is projected onto its nearest token embedding (special tokens excluded)",
        "choices": list(PEZ_METRICS)})
    fluency_weight: float = field(default=0.0, metadata={
        "help": "add this times the trigger's own mean log-likelihood under the model (causal LMs) to the "
                "objective; results report the prompt's perplexity. Its gradient pulls each slot toward tokens likely "
                "after its context (and shapes the context of later slots)"})

    def __post_init__(self):
        self.check_options()
        if not (self.fluency_weight >= 0 and not math.isinf(self.fluency_weight)):
            raise field_error(self, "fluency_weight", f"must be 0 or more, got {self.fluency_weight!r}")
        one_of(self, "pez_metric", PEZ_METRICS)
