"""The options of the shared training loop (frozen_lm.train) that a method's config exposes as they
are: a method's config dataclass subclasses `LoopOptions`, adds its own fields, and calls
`check_loop()` from its __post_init__."""

from __future__ import annotations

from dataclasses import dataclass, field

OPTIMIZERS = ("adamw", "adam", "adafactor", "sgd")
SCHEDULES = ("constant", "linear", "cosine")


@dataclass
class LoopOptions:
    """The options of the shared loop that a method's config exposes as they are (its CLI options and
    saved config fields): a config dataclass subclasses this and adds its own fields (method, lr,
    optimizer, ...), then calls `check_loop()` from its __post_init__."""

    weight_decay: float = field(default=0.0, metadata={"help": "decoupled weight decay"})
    steps: int = field(default=100, metadata={"help": "optimizer steps"})
    batch_size: int = field(default=8, metadata={"help": "examples per micro-batch"})
    grad_accum: int = field(default=1, metadata={"help": "micro-batches per optimizer step (gradient accumulation)"})
    warmup_steps: int = field(default=0, metadata={"help": "linear learning-rate warmup steps"})
    schedule: str = field(default="linear", metadata={
        "help": "learning-rate decay after warmup", "choices": ["linear", "cosine", "constant"]})
    max_grad_norm: float = field(default=1.0, metadata={"help": "clip the gradient norm to this (0: no clipping)"})
    eval_every: int = field(default=10, metadata={"help": "score the dev split every N steps (0: only at the end)"})
    patience: int = field(default=0, metadata={
        "help": "stop after this many dev evaluations without improvement (0: never stop early)"})
    eval_batch_size: int = field(default=32, metadata={"help": "examples per forward pass when scoring"})
    seed: int = field(default=0, metadata={"help": "random seed; same seed, same result on CPU"})

    def check_loop(self, at_least_one: tuple[str, ...] = ()) -> None:
        """UserError (naming the config field) for a loop option out of range (and for the config's own
        `at_least_one` fields)."""
        from frozen_lm.configs import at_least

        at_least(self, 1, "steps", "batch_size", "grad_accum", "eval_batch_size", *at_least_one)
        at_least(self, 0, "warmup_steps", "eval_every", "patience", "weight_decay", "max_grad_norm")
