"""IntrinsicDimConfig: every option of `intrinsic_dim.measure` (and `autoprompt intrinsic-dim`, whose
--help text is the field help), with validation. The seed is part of it."""

from __future__ import annotations

from dataclasses import dataclass, field

from frozen_lm.errors import UserError
from intrinsic_dim.projections import PROJECTIONS


@dataclass
class IntrinsicDimConfig:
    """Subspace training theta = theta_0 + P(theta_d) and the d90 sweep."""

    projection: str = field(default="fastfood", metadata={
        "help": f"random projection P: {', '.join(PROJECTIONS)} (dense needs D*d floats; fastfood about 4*D)"})
    params: str = field(default="all", metadata={
        "help": "which weight tensors move: all, attention, mlp, or a regular expression over parameter names"})
    said: bool = field(default=False, metadata={
        "help": "SAID: one learned scale per moving tensor (counted in d)"})
    head: str = field(default="none", metadata={
        "help": "objective: none = label words at [P]; linear = a classification head on the [P] hidden state "
                "(its weights are part of theta and count in d)", "choices": ["none", "linear"]})
    loss: str = field(default="classes", metadata={
        "help": "label-word loss: cross-entropy over the classes' words, or -log p(word) over the vocabulary",
        "choices": ["classes", "vocab"]})
    dims: list[int] | None = field(default=None, metadata={
        "help": "comma-separated subspace sizes, e.g. 10,30,100,300,1000; default: automatic (log grid, then bisection)"})
    seeds: int = field(default=1, metadata={"help": "projection seeds per d (d90 is reported with its spread)"})
    max_dim: int = field(default=100_000, metadata={"help": "largest d the automatic search tries"})
    bisect_steps: int = field(default=3, metadata={"help": "bisection runs between the last failing and first passing d"})
    threshold: float = field(default=0.9, metadata={"help": "fraction of the baseline score that defines d90"})
    baseline_score: float | None = field(default=None, metadata={
        "help": "full fine-tuning score to compare against (default: run full fine-tuning first)"})
    steps: int = field(default=100, metadata={"help": "training steps per run"})
    baseline_steps: int | None = field(default=None, metadata={"help": "full fine-tuning steps (default: --steps)"})
    batch_size: int = field(default=8, metadata={"help": "examples per training step"})
    lr: float | None = field(default=None, metadata={
        "help": "learning rate of theta_d (default: baseline-lr * sqrt(D / d), the same step length in theta)"})
    baseline_lr: float = field(default=1e-4, metadata={"help": "learning rate of full fine-tuning"})
    optimizer: str = field(default="adam", metadata={"help": "optimizer", "choices": ["adam", "sgd"]})
    max_train: int | None = field(default=None, metadata={"help": "use at most this many training examples (seeded sample)"})
    max_dev: int | None = field(default=None, metadata={"help": "score at most this many dev examples (seeded sample)"})
    eval_batch_size: int = field(default=32, metadata={"help": "examples per scoring pass"})
    max_projection_gib: float | None = field(default=None, metadata={
        "help": "memory a projection may take, GiB (default: a quarter of free memory)"})
    plot: bool = field(default=True, metadata={"help": "write d90.png (needs matplotlib)"})
    seed: int = field(default=0, metadata={"help": "random seed; same seed, same result on CPU"})

    def __post_init__(self):
        if self.projection not in PROJECTIONS:
            raise UserError(f"unknown projection {self.projection!r}; choose one of: {', '.join(PROJECTIONS)}")
        for name, choices in (("head", ("none", "linear")), ("loss", ("classes", "vocab")), ("optimizer", ("adam", "sgd"))):
            if getattr(self, name) not in choices:
                raise UserError(f"unknown --{name} {getattr(self, name)!r}; choose {' or '.join(choices)}")
        for name in ("seeds", "max_dim", "steps", "batch_size", "eval_batch_size"):
            if getattr(self, name) < 1:
                raise UserError(f"--{name.replace('_', '-')} must be at least 1 (got {getattr(self, name)})")
        if self.baseline_steps is not None and self.baseline_steps < 1:
            raise UserError(f"--baseline-steps must be at least 1 (got {self.baseline_steps})")
        if self.bisect_steps < 0:
            raise UserError("--bisect-steps must be 0 or more")
        if not 0 < self.threshold <= 1:
            raise UserError(f"--threshold must be in (0, 1] (got {self.threshold})")
        for name in ("lr", "baseline_lr", "max_projection_gib"):
            value = getattr(self, name)
            if value is not None and not value > 0:
                raise UserError(f"--{name.replace('_', '-')} must be positive (got {value})")
        self.dims = parse_dims(self.dims)


def parse_dims(dims) -> list[int] | None:
    """Subspace sizes, sorted and unique, from a list or a comma-separated string ('10,100', as
    older configs saved them); None for the automatic search."""
    if dims is None:
        return None
    if isinstance(dims, str):
        parts = [p.strip() for p in dims.split(",") if p.strip()]
    else:
        parts = list(dims) if isinstance(dims, (list, tuple)) else [dims]
    if not parts:
        raise UserError("--dims is empty; give sizes like 10,30,100 or leave it out for the automatic search")
    try:
        out = [_whole(p) for p in parts]
    except (TypeError, ValueError):
        raise UserError(f"--dims {dims!r}: every size must be a whole number, e.g. 10,30,100") from None
    bad = [d for d in out if d < 1]
    if bad:
        raise UserError(f"--dims: d must be at least 1 (got {bad[0]})")
    return sorted(set(out))


def _whole(value) -> int:
    if isinstance(value, bool):
        raise TypeError(value)
    number = float(value)
    if not number.is_integer():
        raise ValueError(value)
    return int(number)
