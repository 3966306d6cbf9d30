"""TuneConfig: every option of `softprompt.tune` (and `autoprompt tune`), with help text, choices
and validation.

One flat dataclass (as in PEFT's PromptTuningConfig): the command line is generated from its fields,
and it is saved verbatim, seed included, in the artifact's config.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from frozen_lm.errors import UserError
from frozen_lm.train import LoopOptions

METHODS = {"prompt": "prompt_tuning", "prefix": "prefix_tuning", "pez": "pez"}  # method -> artifact method name
INIT_KINDS = ("random", "vocab", "labels", "text:")
DEFAULT_LR = {"prompt": 0.03, "prefix": 1e-4, "prefix_direct": 5e-3}
# pez: the default learning rate is this many times the RMS coordinate of the model's token embeddings
# (frozen_lm.prompts.init.embedding_rms), resolved when the model is known (softprompt.run.check_config):
# Adam moves every coordinate by about lr per step, and the distance between neighbouring tokens
# scales with the embeddings, so a fixed lr means different things on different models.
PEZ_LR_SCALE = 2.0
PEZ_METRICS = ("cosine", "l2")


@dataclass
class TuneConfig(LoopOptions):
    """Options of prompt tuning (Lester et al., 2021), prefix tuning (Li & Liang, 2021) and PEZ
    (Wen et al., 2023: a continuous prompt trained through its projection onto token embeddings,
    whose result is the best discrete prompt)."""

    method: str = field(default="prompt", metadata={
        "help": "prompt: a trainable input vector per [T] slot; prefix: trainable key/values at every layer; "
                "pez: hard prompts made easy, a vector per [T] slot trained at its nearest tokens (a discrete prompt)",
        "choices": list(METHODS)})
    num_virtual_tokens: int | None = field(default=None, metadata={
        "help": "prompt, pez: prepend this many [T] slots to the template (default: use the template's [T] slots); "
                "prefix: prefix length (default: the number of [T] slots, which are then removed from the text)"})
    init: str = field(default="vocab", metadata={
        "help": "random (uniform, scaled to the token-embedding norms), vocab (frequent tokens), "
                "labels (label words, then vocab), or text:\"...\" (a text's tokens, repeated or cut to fit)"})
    truncate_init: bool = field(default=True, metadata={
        "help": "cut an init text longer than the number of slots (--no-truncate-init: refuse it)"})
    prefix_projection: bool = field(default=True, metadata={
        "help": "prefix: train through an MLP reparameterization (folded away when saving)"})
    prefix_hidden: int = field(default=512, metadata={"help": "prefix: hidden size of the reparameterization MLP"})
    loss: str = field(default="classes", metadata={
        "help": "classes: cross-entropy over the classes' label words at [P]; vocab: -log p(label words) over the "
                "vocabulary (facts always use this); lm: mean cross-entropy of a target string's tokens, for "
                "target-string tasks (--target or --target-field), which always use it",
        "choices": ["classes", "vocab", "lm"]})
    pez_metric: str = field(default="cosine", metadata={
        "help": "pez: how a vector is projected onto its nearest token embedding (special tokens excluded)",
        "choices": list(PEZ_METRICS)})
    fluency_weight: float = field(default=0.0, metadata={
        "help": "pez: add this times the trigger's own mean log-likelihood under the model (causal LMs) to the "
                "objective; results report the prompt's perplexity. Its gradient pulls each slot toward tokens likely "
                "after its context (and shapes the context of later slots)"})
    optimizer: str = field(default="adamw", metadata={"help": "optimizer", "choices": ["adamw", "adafactor"]})
    lr: float | None = field(default=None, metadata={
        "help": "peak learning rate (default: 0.03 prompt; prefix 1e-4 through the MLP, 5e-3 without; pez 2x the "
                "RMS coordinate of the model's token embeddings, 0.27 on smollm2-135m; the saved config holds the value)"})
    bf16: bool = field(default=False, metadata={"help": "bfloat16 autocast for the forward pass on CUDA (ignored on CPU)"})

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"--method {self.method!r} is unknown; choose one of: {', '.join(METHODS)}")
        if self.num_virtual_tokens is not None and self.num_virtual_tokens < 1:
            raise UserError(f"--num-virtual-tokens must be at least 1, got {self.num_virtual_tokens}")
        parse_init(self.init)
        if self.lr is None and self.method != "pez":  # pez: resolved from the model (see PEZ_LR_SCALE)
            direct = self.method == "prefix" and not self.prefix_projection
            self.lr = DEFAULT_LR["prefix_direct" if direct else self.method]
        if self.lr is not None and (not self.lr > 0 or math.isnan(self.lr)):
            raise UserError(f"--lr must be positive, got {self.lr}")
        self.check_loop(("prefix_hidden",))
        if not self.fluency_weight >= 0 or math.isinf(self.fluency_weight):
            raise UserError(f"--fluency-weight must be 0 or more, got {self.fluency_weight}")
        if self.fluency_weight and self.method != "pez":
            raise UserError("--fluency-weight applies to discrete prompts; add --method pez")
        if self.pez_metric not in PEZ_METRICS:
            raise UserError(f"--pez-metric {self.pez_metric!r} is unknown; choose one of: {', '.join(PEZ_METRICS)}")

    @property
    def artifact_method(self) -> str:
        return METHODS[self.method]

    @property
    def placement(self) -> str:
        """How the prompt meets the model (frozen_lm.prompts.effective): 'prefix', or 'prompt' (vectors at [T] slots)."""
        return "prefix" if self.method == "prefix" else "prompt"


def parse_init(spec: str) -> tuple[str, str | None]:
    """'random' | 'vocab' | 'labels' | 'text:...' -> (kind, text); UserError for anything else."""
    if spec in ("random", "vocab", "labels"):
        return spec, None
    if spec.startswith("text:"):
        text = spec[5:].strip()
        if len(text) >= 2 and text[0] == text[-1] and text[0] in "\"'":
            text = text[1:-1]
        if not text.strip():
            raise UserError("--init text: needs some text, e.g. --init 'text:Classify the sentiment'")
        return "text", text
    raise UserError(f"--init {spec!r} is unknown; use random, vocab, labels or text:\"...\"")
