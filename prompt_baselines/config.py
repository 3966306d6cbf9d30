"""FinetuneConfig: every option of `baselines.finetune` (and `autoprompt finetune`), with help text,
choices and validation.

One flat dataclass, as softprompt's TuneConfig: the command line is generated from its fields, and
it is saved verbatim, seed included, in the artifact's config.json.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from frozen_lm.errors import UserError
from frozen_lm.train import LoopOptions

METHODS = ("lora", "ia3", "adapter", "bitfit", "last_k", "full")
PEFT_METHODS = ("lora", "ia3", "adapter")  # through PEFT, on a copy of the module tree sharing the frozen weights
DEFAULT_LR = {"lora": 1e-3, "ia3": 1e-2, "adapter": 1e-3, "bitfit": 1e-3, "last_k": 1e-4, "full": 2e-5}


@dataclass
class FinetuneConfig(LoopOptions):
    """Options of the lecture's fine-tuning baselines, trained on the task's template and label words
    (the same objective as prompt tuning): LoRA and (IA)3 through PEFT, a bottleneck adapter (PEFT
    LoRA on each block's feed-forward output projection; the `adapters` package does not run with
    transformers 5), BitFit, the last k transformer blocks, and full fine-tuning."""

    method: str = field(default="lora", metadata={
        "help": "lora: low-rank updates (PEFT); ia3: learned scaling vectors (PEFT); adapter: a bottleneck of "
                "--adapter-size beside each block's feed-forward output projection (PEFT LoRA there); bitfit: "
                "only the biases (zero-initialized biases on every block's linear layers when the model has "
                "none); last_k: every weight of the last --last-k blocks; full: every weight",
        "choices": list(METHODS)})
    r: int = field(default=8, metadata={"help": "lora: rank of the updates"})
    lora_alpha: float = field(default=16.0, metadata={"help": "lora: scaling numerator (updates scaled by alpha / r)"})
    adapter_size: int = field(default=64, metadata={"help": "adapter: bottleneck size"})
    target_modules: str | None = field(default=None, metadata={
        "help": "lora, ia3, adapter: comma-separated module names (default: PEFT's for the architecture; "
                "adapter: the feed-forward output projection)"})
    last_k: int = field(default=2, metadata={"help": "last_k: how many of the last transformer blocks train"})
    loss: str = field(default="classes", metadata={
        "help": "classes: cross-entropy over the classes' label words at [P]; vocab: -log p(label words) over "
                "the vocabulary (facts always use this)", "choices": ["classes", "vocab"]})
    optimizer: str = field(default="adamw", metadata={"help": "optimizer", "choices": ["adamw", "adam", "adafactor", "sgd"]})
    lr: float | None = field(default=None, metadata={
        "help": "peak learning rate (default: lora 1e-3, ia3 1e-2, adapter 1e-3, bitfit 1e-3, last_k 1e-4, full 2e-5)"})

    def __post_init__(self):
        if self.method not in METHODS:
            raise UserError(f"--method {self.method!r} is unknown; choose one of: {', '.join(METHODS)}")
        if self.lr is None:
            self.lr = DEFAULT_LR[self.method]
        if not self.lr > 0 or math.isinf(self.lr):
            raise UserError(f"--lr must be positive, got {self.lr}")
        self.check_loop(("r", "adapter_size", "last_k"))
        if not self.lora_alpha > 0:
            raise UserError(f"--lora-alpha must be positive, got {self.lora_alpha}")
        if self.target_modules is not None and not self.modules:
            raise UserError("--target-modules is empty; give module names such as 'q_proj,v_proj'")
        if self.target_modules is not None and self.method not in PEFT_METHODS:
            raise UserError(f"--target-modules applies to lora, ia3 and adapter, not {self.method}")

    @property
    def modules(self) -> list[str] | None:
        """target_modules as a list (None: the default for the architecture)."""
        if self.target_modules is None:
            return None
        return [m.strip() for m in self.target_modules.split(",") if m.strip()]

    @property
    def uses_peft(self) -> bool:
        return self.method in PEFT_METHODS
