"""Options of `autoprompt intrinsic-dim` as one dataclass (field help becomes the --help text)."""

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
    dims: str | None = field(default=None, metadata={
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

    def __post_init__(self):
        if self.projection not in PROJECTIONS:
            raise UserError(f"unknown projection {self.projection!r}; choose one of: {', '.join(PROJECTIONS)}")
        if self.head not in ("none", "linear"):
            raise UserError(f"unknown --head {self.head!r}; choose none or linear")
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
        _ = self.dim_list  # validates --dims

    @property
    def dim_list(self) -> list[int] | None:
        """The --dims sizes, sorted and unique; None for the automatic search."""
        if self.dims is None:
            return None
        parts = [p.strip() for p in str(self.dims).split(",") if p.strip()]
        if not parts:
            raise UserError("--dims is empty; give sizes like 10,30,100 or leave it out for the automatic search")
        try:
            dims = [int(float(p)) if float(p).is_integer() else int("x") for p in parts]
        except ValueError:
            raise UserError(f"--dims {self.dims!r}: every size must be a whole number, e.g. 10,30,100") from None
        bad = [d for d in dims if d < 1]
        if bad:
            raise UserError(f"--dims: d must be at least 1 (got {bad[0]})")
        return sorted(set(dims))
