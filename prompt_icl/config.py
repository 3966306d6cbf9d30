"""ICLConfig: how many demonstrations go before each example, how they are drawn and joined."""

from __future__ import annotations

from dataclasses import dataclass, field

from frozen_lm.configs import at_least, field_error, one_of

MODES = ("sampled", "fixed")
AUTO = "auto"


@dataclass
class ICLConfig:
    """Options of in-context demonstrations (LM-BFF's demonstrations, Gao et al. 2021; GPT-3's
    k-shot context, Brown et al. 2020). Nothing trains; the training split is the pool the
    demonstrations are drawn from."""

    demos_per_class: int = field(default=1, metadata={
        "help": "demonstrations of each class before every example (LM-BFF: 1); facts and target strings, "
                "which have no classes, take this many in all"})
    mode: str = field(default="sampled", metadata={
        "help": "sampled: a fresh set of demonstrations per example, drawn from the seed and the example's "
                "position (LM-BFF); fixed: one k-shot context for every example (GPT-3)", "choices": list(MODES)})
    separator: str = field(default=AUTO, metadata={
        "help": "text between two demonstrations and between the last one and the example; auto: a newline "
                "for causal LMs, a space for masked LMs; \\n writes a newline, \\t a tab"})
    pool_size: int = field(default=512, metadata={
        "help": "training examples kept as the demonstration pool (saved with the result), drawn evenly "
                "across the classes with the seed when the training split is larger"})
    batch_size: int = field(default=32, metadata={"help": "examples per forward pass"})
    seed: int = field(default=0, metadata={"help": "random seed: which demonstrations each example gets"})

    def __post_init__(self):
        at_least(self, 1, "demos_per_class", "pool_size", "batch_size")
        one_of(self, "mode", MODES)
        if not isinstance(self.separator, str) or self.separator == "":
            raise field_error(self, "separator", f"must be text (or {AUTO!r}), got {self.separator!r}")

    def separator_for(self, is_masked: bool) -> str:
        """The separator as text: 'auto' chosen by the kind of model, \\n and \\t unescaped."""
        if self.separator == AUTO:
            return " " if is_masked else "\n"
        return self.separator.replace("\\n", "\n").replace("\\t", "\t")
