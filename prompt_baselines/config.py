"""The configs of the baselines, one per method, each a dataclass whose fields carry their help text;
the command line is generated from them and they are saved verbatim (seed included) in the
artifact's config.json.

The six fine-tuning baselines share `FinetuneOptions`: the shared loop's options (LoopOptions) plus
the loss, the optimizer and the learning rate, whose default each method sets to its own. Then one
config per method: `LoRAFinetuneConfig`, `IA3FinetuneConfig`, `AdapterFinetuneConfig` (through
PEFT), `BitFitConfig`, `LastKConfig`, `FullFinetuneConfig` (functional overrides), and
`ManualConfig` for the hand-written template as written.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from frozen_lm.configs import at_least, field_error, one_of, positive
from frozen_lm.loop_options import OPTIMIZERS, LoopOptions

LOSSES = ("classes", "vocab")
DEFAULT_LR = {"lora": 1e-3, "ia3": 1e-2, "adapter": 1e-3, "bitfit": 1e-3, "last_k": 1e-4, "full": 2e-5}


def _lr(default: float):
    return field(default=default, metadata={"help": "peak learning rate"})


@dataclass
class FinetuneOptions(LoopOptions):
    """Options every fine-tuning baseline has: the shared loop's, the loss on the task's template and
    label words (prompt tuning's objective), the optimizer and the learning rate."""

    loss: str = field(default="classes", metadata={
        "help": "classes: cross-entropy over the classes' label words at [P]; vocab: -log p(label words) over "
                "the vocabulary (facts always use this)", "choices": list(LOSSES)})
    optimizer: str = field(default="adamw", metadata={"help": "optimizer", "choices": list(OPTIMIZERS)})
    lr: float = _lr(1e-3)

    def __post_init__(self):
        self.check_finetune()

    def check_finetune(self, at_least_one: tuple[str, ...] = ()) -> None:
        """UserError (naming the field) for an option out of range."""
        if self.lr is None:  # (earlier versions: None meant the method's default)
            self.lr = type(self).__dataclass_fields__["lr"].default
        at_least(self, 1, "steps", "batch_size", "grad_accum", "eval_batch_size", *at_least_one)
        at_least(self, 0, "warmup_steps", "eval_every", "patience", "weight_decay", "max_grad_norm")
        positive(self, "lr")
        one_of(self, "loss", LOSSES)
        one_of(self, "optimizer", OPTIMIZERS)
        one_of(self, "schedule", ("linear", "cosine", "constant"))


@dataclass
class PeftOptions(FinetuneOptions):
    """A baseline PEFT injects into a weight-sharing copy of the model: which modules it targets."""

    target_modules: str | None = field(default=None, metadata={
        "help": "comma-separated module names (default: PEFT's for the architecture; adapter: each block's "
                "feed-forward output projection)"})

    def check_finetune(self, at_least_one: tuple[str, ...] = ()) -> None:
        super().check_finetune(at_least_one)
        if self.target_modules is not None and not self.modules:
            raise field_error(self, "target_modules", f"is {self.target_modules!r}; give module names such as "
                              "'q_proj,v_proj'")

    @property
    def modules(self) -> list[str] | None:
        """target_modules as a list (None: the default for the architecture)."""
        if self.target_modules is None:
            return None
        return [m.strip() for m in self.target_modules.split(",") if m.strip()]


@dataclass
class LoRAFinetuneConfig(PeftOptions):
    """LoRA (Hu et al., 2021) through PEFT: low-rank updates of the targeted weights."""

    lr: float = _lr(DEFAULT_LR["lora"])
    r: int = field(default=8, metadata={"help": "rank of the updates"})
    lora_alpha: float = field(default=16.0, metadata={"help": "scaling numerator (updates scaled by lora_alpha / r)"})

    def __post_init__(self):
        self.check_finetune(("r",))
        positive(self, "lora_alpha")


@dataclass
class IA3FinetuneConfig(PeftOptions):
    """(IA)3 (Liu et al., 2022) through PEFT: learned vectors scaling the targeted activations."""

    lr: float = _lr(DEFAULT_LR["ia3"])


@dataclass
class AdapterFinetuneConfig(PeftOptions):
    """A bottleneck adapter beside each block's feed-forward output projection: PEFT LoRA of rank
    adapter_size, scale 1, there (the `adapters` package does not run with transformers 5)."""

    lr: float = _lr(DEFAULT_LR["adapter"])
    adapter_size: int = field(default=64, metadata={"help": "bottleneck size"})

    def __post_init__(self):
        self.check_finetune(("adapter_size",))


@dataclass
class BitFitConfig(FinetuneOptions):
    """BitFit (Ben Zaken et al., 2022): only the biases train (zero-initialized biases on every
    block's linear layers when the model has none)."""

    lr: float = _lr(DEFAULT_LR["bitfit"])


@dataclass
class LastKConfig(FinetuneOptions):
    """Every weight of the last k transformer blocks trains."""

    lr: float = _lr(DEFAULT_LR["last_k"])
    last_k: int = field(default=2, metadata={"help": "how many of the last transformer blocks train"})

    def __post_init__(self):
        self.check_finetune(("last_k",))


@dataclass
class FullFinetuneConfig(FinetuneOptions):
    """Full fine-tuning: every weight of the model trains."""

    lr: float = _lr(DEFAULT_LR["full"])


FINETUNE_CONFIGS = (LoRAFinetuneConfig, IA3FinetuneConfig, AdapterFinetuneConfig, BitFitConfig, LastKConfig,
                    FullFinetuneConfig)


@dataclass
class ManualConfig:
    """Options of the manual baseline (only how it is scored)."""

    batch_size: int = field(default=32, metadata={"help": "examples per forward pass"})
    seed: int = field(default=0, metadata={"help": "random seed (scoring itself is deterministic)"})

    def __post_init__(self):
        at_least(self, 1, "batch_size")
